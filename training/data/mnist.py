"""The MNIST family (MNIST, Fashion-MNIST, Kuzushiji-MNIST): torchvision's IDX files, each checked
before it is read (:func:`check_idx`), downloaded when missing, and the folders a failed download
created removed again."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from models.errors import DataError
from .base import TensorDataModule, _expected_files


def check_idx(path: Path) -> None:
    """Check an IDX file (the MNIST format) before reading it: the magic number says unsigned
    bytes in ``ndim`` dimensions (``0x0000080<ndim>``), and the file is exactly as long as the
    sizes in its header promise. ``ndim`` is read from the name (``...-idx3-ubyte``)."""
    import math
    import re

    match = re.search(r"idx(\d)", path.name)
    ndim = int(match.group(1)) if match else None
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        magic = int.from_bytes(head, "big") if len(head) == 4 else None
        if magic is None:
            raise DataError(f"{path} is truncated or corrupt: {size} bytes, not even an IDX header. "
                            f"Delete it and download again (or copy an intact one there).")
        want = 0x800 | ndim if ndim else None
        if (magic >> 8) != 0x08 or (want is not None and magic != want):
            raise DataError(
                f"{path} has the wrong magic number 0x{magic:08x}; an IDX file of unsigned bytes with "
                f"{ndim if ndim else 'n'} dimension(s) starts with 0x{want or 0x800:08x}. It is not an MNIST-format "
                f"file (a compressed .gz? another format?) or it is corrupt; delete it and download again."
            )
        ndim = magic & 0xFF
        dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"{path} is truncated or corrupt: its header is cut off ({size} bytes). "
                        f"Delete it and download again.")
    dims = [int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header promises {' x '.join(map(str, dims))} bytes of data "
            f"({expected} bytes in all), the file has {size}. Delete it and download again."
        )


class MNISTDataModule(TensorDataModule):
    """MNIST (LeCun, Cortes, Burges): 60,000 train / 10,000 test 28x28 grey digits."""

    dataset_cls = torchvision.datasets.MNIST
    mean, std = (0.1307,), (0.3081,)

    def load_split(self, train: bool):
        cls = self.dataset_cls
        raw = self.root / cls.__name__ / "raw"
        names = [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
        present = all((raw / n).exists() for n in names)
        if not present and self.hparams.download:
            # the folders the download creates (data root, MNIST/, MNIST/raw/): removed again if it fails,
            # so that a failed download leaves nothing behind (none of them existed, so all in them is its own)
            created = [d for d in (self.root, raw.parent, raw) if not d.exists()]
            try:
                cls(str(self.root), train=train, download=True)
            except Exception as e:  # no network, server error, ...
                err = f"{type(e).__name__}: {e}"
            else:
                err = None
            present = all((raw / n).exists() for n in names)
            if not present and created:
                import shutil

                shutil.rmtree(created[0], ignore_errors=True)
        if not present:
            raise DataError(
                f"{cls.__name__} not found in {self.root.resolve()} and it could not be downloaded"
                f"{' (' + err + ')' if self.hparams.download and err else ''}.\n"
                f"Put the four uncompressed IDX files here:\n{_expected_files(raw, names)}\n"
                f"or point data.root (or the DATA_DIR environment variable) at a folder that has them."
            )
        for n in names:
            check_idx(raw / n)
        try:
            ds = cls(str(self.root), train=train, download=False)
            x, y = ds.data, ds.targets
        except Exception as e:
            raise DataError(
                f"{cls.__name__} files in {raw.resolve()} are truncated or corrupt ({type(e).__name__}: {e}). "
                f"Delete them and download again (or copy intact ones there)."
            ) from None
        if x.ndim != 3 or len(x) != len(y) or x.dtype != torch.uint8:
            raise DataError(
                f"{cls.__name__} files in {raw.resolve()} have unexpected shapes: images {tuple(x.shape)}, "
                f"labels {tuple(y.shape)}. Delete them and download again."
            )
        bad = (y < 0) | (y >= len(self.classes))
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            labels = raw / next(n for n in names if "labels" in n and n.startswith("train") == train)
            raise DataError(
                f"{labels.resolve()} holds the label {int(y[i])} (at index {i}; {int(bad.sum())} label(s) in all outside "
                f"0..{len(self.classes) - 1}): {cls.__name__} has {len(self.classes)} classes. The file is corrupt or not "
                f"{cls.__name__}'s labels; delete it and download again (or copy an intact one there)."
            )
        return x.unsqueeze(1).contiguous(), y.long()


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Xiao et al. 2017): 10 clothing classes, MNIST's sizes."""

    dataset_cls = torchvision.datasets.FashionMNIST
    mean, std = (0.2860,), (0.3530,)
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class KMNISTDataModule(MNISTDataModule):
    """Kuzushiji-MNIST (Clanuwat et al. 2018): 10 cursive Japanese characters."""

    dataset_cls = torchvision.datasets.KMNIST
    mean, std = (0.1918,), (0.3483,)
    classes = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
