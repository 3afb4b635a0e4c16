"""CIFAR-10, read from the official pickled batches (:func:`read_cifar_batches`) or from image
folders ``CIFAR10/{train,test}/<class>/<index>.png``."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from models.errors import DataError
from .base import TensorDataModule, _expected_files
from .folders import load_image_folder


def read_cifar_batches(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the official pickled CIFAR-10 batches (``data``: N x 3072 uint8, ``labels``: N ints)."""
    import pickle

    import numpy as np

    xs, ys = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 batch {path} is missing; delete {folder} and download again")
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            data = np.asarray(batch["data"], dtype=np.uint8)
            labels = np.asarray(batch.get("labels", batch.get("fine_labels")), dtype=np.int64)
        except Exception as e:
            raise DataError(f"CIFAR-10 batch {path} is truncated or corrupt ({type(e).__name__}: {e}); "
                            f"delete {folder} and download again") from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
            raise DataError(f"CIFAR-10 batch {path} has the wrong shape: data {data.shape}, labels {labels.shape} "
                            f"(expected N x 3072 and N); delete {folder} and download again")
        xs.append(torch.from_numpy(data).view(-1, 3, 32, 32))
        ys.append(torch.from_numpy(labels))
    return torch.cat(xs), torch.cat(ys)


class CIFAR10DataModule(TensorDataModule):
    """CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test 32x32 colour images."""

    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    batch_files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]

    def load_split(self, train: bool):
        batches = self.root / "cifar-10-batches-py"
        folders = self.root / "CIFAR10"
        if not batches.is_dir() and not folders.is_dir() and self.hparams.download:
            try:
                torchvision.datasets.CIFAR10(str(self.root), train=train, download=True)
            except Exception:
                pass  # reported below
        if batches.is_dir():
            return read_cifar_batches(batches, self.batch_files[:5] if train else self.batch_files[5:])
        if folders.is_dir():
            x, y, _ = load_image_folder(folders / ("train" if train else "test"), 3, 32, list(self.classes))
            return x, y
        raise DataError(
            f"CIFAR-10 not found in {self.root.resolve()} and it could not be downloaded. Put either the official "
            f"batches here:\n{_expected_files(batches, self.batch_files)}\nor image folders "
            f"{folders}/train/<class>/<index>.png and {folders}/test/<class>/<index>.png, "
            f"or point data.root (or DATA_DIR) at a folder that has them."
        )
