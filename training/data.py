"""LightningDataModules that are fast by construction.

Each split is kept as one uint8 tensor ``(N, C, H, W)`` and one int64 label tensor.
A training step draws a whole batch by indexing those tensors with a list of indices
(no per-sample Python, no PIL), the batch travels to the device as uint8 (4x less
than float32), and conversion, resizing, augmentation and normalisation happen there
on the whole batch (:meth:`TensorDataModule.on_after_batch_transfer`).

Datasets are read from ``root`` (default ``$DATA_DIR``, else ``./data``) in torchvision's
on-disk layouts, and downloaded there when missing and the network allows. CIFAR-10
is read from the official ``cifar-10-batches-py`` folder or from image folders
(``CIFAR10/{train,test}/<class>/<index>.png``). ``ImageFolderDataModule`` trains on a
user's own ``train/<class>/*`` and ``test/<class>/*`` images.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, Sampler

from models.errors import ConfigError, DataError, ImageError
from .images import DECODER_VERSION, IMAGE_SUFFIXES, NORMALIZATIONS, decode_image, transform_batch  # noqa: F401


def default_root() -> str:
    return os.environ.get("DATA_DIR") or "./data"


def cache_dir() -> Path:
    return Path(os.environ.get("NEOLENET_CACHE_DIR") or Path.home() / ".cache" / "neolenet")


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool) -> torch.Tensor:
    """Batched random crop with zero padding (a random shift of up to ``pad`` pixels) and
    optional horizontal flip, one random draw per image, no Python loop over images.

    The crop is one ``gather`` along each padded image's flattened pixels: image ``i`` starts at
    offset ``dy_i * W' + dx_i`` of its padded ``H' x W'`` map (3-4x faster on a CPU than indexing
    with four broadcast index tensors)."""
    b, c, h, w = x.shape
    if pad > 0:
        hp, wp = h + 2 * pad, w + 2 * pad
        xp = F.pad(x, (pad, pad, pad, pad)).reshape(b, c, hp * wp)
        dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
        grid = (torch.arange(h, device=x.device)[:, None] * wp + torch.arange(w, device=x.device)).view(1, 1, h * w)
        idx = (grid + (dy * wp + dx).view(b, 1, 1)).expand(b, c, h * w)
        x = xp.gather(2, idx).view(b, c, h, w)
    if flip:
        mask = torch.rand(b, device=x.device) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


class _TensorBatches(torch.utils.data.Dataset):
    """Indexed by a list of indices (from a batch sampler): returns a whole batch at once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx):
        idx = torch.as_tensor(idx, device=self.x.device)
        return self.x[idx], self.y[idx]


class EpochShuffleSampler(Sampler[list[int]]):
    """Batches of indices of ``range(n)`` for rank ``rank`` of ``world_size`` processes.

    ``shuffle=True`` (training): each epoch is one permutation drawn from ``(seed, epoch)`` alone,
    so every rank draws the same one; it is cut to a multiple of ``world_size`` (the
    ``n % world_size`` left-over samples, different ones each epoch, sit that epoch out: no sample
    is seen twice) and rank ``r`` takes every ``world_size``-th index from position ``r``. The
    ranks' shards are disjoint, cover the epoch and have equal lengths (so equal batch counts,
    which DDP needs).
    ``shuffle=False`` (evaluation): rank ``r`` takes ``r, r + world_size, ...`` in order, nothing
    dropped or padded; shards differ in length by at most one, so metrics summed over ranks
    are exact.

    ``set_epoch(epoch)`` (Lightning calls it every epoch) picks the permutation. ``state_dict()``
    records the epoch and how many batches of it were yielded; after ``load_state_dict`` the next
    iteration skips those batches once (mid-epoch resume).
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1, *,
                 batch_size: int = 1, shuffle: bool = True):
        if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"EpochShuffleSampler: rank {rank} must be in [0, world_size={world_size})")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"EpochShuffleSampler: batch_size must be a positive integer, got {batch_size!r}")
        if n < world_size:
            raise ConfigError(f"a split of {n} samples cannot be shared by {world_size} processes "
                              f"(each needs at least one); use more data or fewer devices")
        self.n, self.seed, self.rank, self.world_size = int(n), int(seed), rank, world_size
        self.batch_size, self.shuffle = batch_size, shuffle
        self.epoch = 0
        self._skip = 0  # batches to skip once (set by load_state_dict)
        self._done = 0  # batches of this epoch yielded so far

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._skip, self._done = int(epoch), 0, 0

    def shard(self) -> torch.Tensor:
        """This rank's indices for the current epoch, in order."""
        if not self.shuffle:
            return torch.arange(self.rank, self.n, self.world_size)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**62)
        perm = torch.randperm(self.n, generator=g)
        return perm[: self.n - self.n % self.world_size][self.rank :: self.world_size]

    def __len__(self) -> int:
        return -(-len(range(self.rank, self._usable(), self.world_size)) // self.batch_size)

    def _usable(self) -> int:
        return self.n - self.n % self.world_size if self.shuffle else self.n

    def __iter__(self):
        batches = self.shard().split(self.batch_size)
        start, self._skip = self._skip, 0
        for i in range(start, len(batches)):
            self._done = i + 1
            yield batches[i].tolist()

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "batches_done": self._done}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
        self._skip = self._done = int(state.get("batches_done", 0))


class ResumableLoader(DataLoader):
    """A DataLoader whose position in the epoch is saved in checkpoints: Lightning stores
    ``state_dict()`` (its sampler's epoch and batches done) and calls ``load_state_dict`` on
    resume, so a run resumed from a mid-epoch checkpoint sees exactly the batches that remain.

    It has its own ``generator``: a plain DataLoader draws a number from the global random
    generator each time an epoch's iterator is created (a base seed for workers, drawn even with
    none), which shifts every later dropout mask and augmentation by one draw between a run and
    the same run resumed from a checkpoint."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("generator", torch.Generator().manual_seed(0))
        super().__init__(*args, **kwargs)

    def state_dict(self) -> dict:
        return self.sampler.state_dict() if hasattr(self.sampler, "state_dict") else {}

    def load_state_dict(self, state: dict) -> None:
        if state and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(state)


class TensorDataModule(L.LightningDataModule):
    """Base class: subclasses implement :meth:`load_split` returning uint8 images and labels."""

    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        split_seed: int = 0,
        normalize: str = "standard",
        resize: int | None = None,
        augment: bool = False,
        crop_padding: int = 0,
        hflip: bool = False,
        download: bool = True,
        pin_memory: bool = True,
        on_device: bool = True,
        train_subset: int | None = None,
        in_channels: int | None = None,
        num_classes: int | None = None,
        image_size: int | None = None,
        **unknown,
    ):
        """``in_channels``, ``num_classes`` and ``image_size`` are the data set's own (the model
        configs read them by interpolation, ``${data.num_classes}``); given, they are checked
        against the data when it is read. Any other keyword is refused, naming the closest one."""
        if unknown:
            raise ConfigError(_unknown_arguments(type(self), unknown))
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ConfigError(f"data.normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not is_int(value) or value < 1:
                raise ConfigError(f"data.{key} must be a positive integer, got {value!r}")
        if not is_int(val_size) or val_size < 0:
            raise ConfigError(f"data.val_size must be an integer >= 0, got {val_size!r}")
        if resize is not None and (not is_int(resize) or resize < 1):
            raise ConfigError(f"data.resize must be null or a positive integer, got {resize!r}")
        if train_subset is not None and (not is_int(train_subset) or train_subset < 1):
            raise ConfigError(f"data.train_subset must be null or a positive integer, got {train_subset!r}")
        if not is_int(crop_padding) or crop_padding < 0:
            raise ConfigError(f"data.crop_padding must be an integer >= 0, got {crop_padding!r}")
        if not is_int(split_seed):
            raise ConfigError(f"data.split_seed must be an integer, got {split_seed!r}")
        for key, value in (("augment", augment), ("hflip", hflip), ("download", download), ("pin_memory", pin_memory),
                           ("on_device", on_device)):
            if not isinstance(value, bool):
                raise ConfigError(f"data.{key} must be true or false, got {value!r}")
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise ConfigError(f"data.root must be a folder path, got {root!r}")
        for key, value in (("in_channels", in_channels), ("num_classes", num_classes), ("image_size", image_size)):
            if value is not None and (not is_int(value) or value < 1):
                raise ConfigError(f"data.{key} must be a positive integer, got {value!r}")
        if num_classes == 1:  # torchmetrics refuses it when the model is built (Hydra's exit 1)
            raise ConfigError("data.num_classes must be at least 2 (a classifier tells two classes apart at least), got 1; "
                              "drop the data.num_classes override, it follows the data set")
        self.root = Path(root or default_root()).expanduser()
        self.save_hyperparameters(ignore=["unknown", "in_channels", "num_classes", "image_size"])
        self.hparams["root"] = str(self.root)
        self.declared = {"in_channels": in_channels, "num_classes": num_classes, "image_size": image_size}
        self.data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- what subclasses provide -------------------------------------------------------
    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    # -- setup -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.load_split(train=True)  # downloads when missing (and fails clearly when it cannot)

    def setup(self, stage: str | None = None) -> None:
        if self.data:
            return
        x, y = self.load_split(train=True)
        if self.hparams.val_size >= len(y):
            raise ConfigError(
                f"data.val_size={self.hparams.val_size} leaves no training images (the training split has {len(y)})"
            )
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.hparams.split_seed))
        val_idx, train_idx = perm[: self.hparams.val_size], perm[self.hparams.val_size :]
        if self.hparams.train_subset:
            if self.hparams.train_subset > len(train_idx):
                raise ConfigError(
                    f"data.train_subset={self.hparams.train_subset}, but the training split has {len(train_idx)} images "
                    f"(of {len(y)}, data.val_size={self.hparams.val_size} held out for validation): use "
                    f"data.train_subset={len(train_idx)} or less, or null for all of them"
                )
            train_idx = train_idx[: self.hparams.train_subset]
        self.split_indices = {"train": train_idx, "val": val_idx}  # into the official training split
        self.data["train"] = (x[train_idx].contiguous(), y[train_idx].contiguous())
        self.data["val"] = (x[val_idx].contiguous(), y[val_idx].contiguous())
        self.data["test"] = self.load_split(train=False)
        self.check_declared(x)
        if self.hparams.pin_memory and torch.cuda.is_available():
            self.data = {k: (a.pin_memory(), b.pin_memory()) for k, (a, b) in self.data.items()}

    def check_declared(self, x: torch.Tensor) -> None:
        """The data's own channel count, class count and (resized) image size against the ones the
        config declares (the model is built from those), and the random shift against the image:
        a :class:`ConfigError` before any training step, not a shape error (or a run at chance)."""
        name = type(self).__name__.removesuffix("DataModule")
        size = self.hparams.resize or x.shape[-1]
        have = {"in_channels": x.shape[1], "num_classes": len(self.classes), "image_size": size}
        for key, value in self.declared.items():
            if value is not None and value != have[key]:
                what = {"in_channels": f"{name}'s images have {have[key]} channel(s)",
                        "num_classes": f"{name} has {have[key]} classes",
                        "image_size": f"{name}'s images are {have[key]} pixels a side (to train at another size, "
                                      f"set data.resize instead)"}[key]
                raise ConfigError(f"data.{key}={value}, but {what}: drop the data.{key} override, it follows the "
                                  f"data set")
        if self.hparams.augment and 2 * self.hparams.crop_padding >= min(x.shape[-2:]):
            raise ConfigError(
                f"data.crop_padding={self.hparams.crop_padding} shifts {name}'s {x.shape[-1]}x{x.shape[-2]} images by up to "
                f"{self.hparams.crop_padding} pixels, which moves most of each image out of the frame (training would be at "
                f"chance): use a shift below half the image, e.g. data.crop_padding={max(1, min(x.shape[-2:]) // 8)}"
            )

    # -- loaders -----------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """Whole batches drawn by an :class:`EpochShuffleSampler`, sharded over the trainer's
        ranks (training: disjoint equal shards of a permutation shared by all ranks, seeded
        by ``PL_GLOBAL_SEED``, i.e. the run's ``seed``; evaluation: disjoint strided shards,
        nothing padded, so the metrics that torchmetrics sums over ranks are exact)."""
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else None
        if self.hparams.on_device and device is not None and device.type != "cpu":
            # on an accelerator the whole uint8 split lives in its memory (MNIST's 60,000 images
            # are 47 MB), copied once: batches are then gathered there, with no copy per step
            if self.data[split][0].device != device:
                self.data[split] = tuple(t.to(device) for t in self.data[split])
        x, y = self.data[split]
        ds = _TensorBatches(x, y)
        size = self.hparams.batch_size if split == "train" else self.hparams.eval_batch_size
        rank, world = 0, 1
        if trainer is not None and trainer.world_size > 1:
            from training.private_api import uses_distributed_sampler

            if uses_distributed_sampler(trainer):
                raise ConfigError(
                    "this data module shards its own batches over the ranks; create the Trainer with "
                    "use_distributed_sampler=False (trainer=ddp does) so Lightning does not shard them again"
                )
            rank, world = trainer.global_rank, trainer.world_size
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = EpochShuffleSampler(len(ds), seed, rank, world, batch_size=size, shuffle=shuffle)
        return ResumableLoader(ds, batch_size=None, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """The validation split carved from the training split; with ``val_size: 0`` there is
        none, and no validation loop (never the test split under another name)."""
        return self._loader("val", shuffle=False) if len(self.data["val"][1]) else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        if x.dtype != torch.uint8:  # already transformed (e.g. a user's own tensors)
            return x, y
        training = self.trainer is not None and self.trainer.training
        if training and self.hparams.augment:
            x = random_crop_flip(x, self.hparams.crop_padding, self.hparams.hflip)
        return self.transform(x), y

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The evaluation transform of uint8 images (also used by predict.py)."""
        return transform_batch(x, list(self.mean), list(self.std), self.hparams.normalize, self.hparams.resize)

    def sample_batch(self, n: int, split: str = "train", device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random normalised images of ``split`` (e.g. for SDLM's Hessian estimate). The draw
        depends on the run's seed (``PL_GLOBAL_SEED``) and the epoch only, so every DDP rank draws
        the same images (SDLM's step sizes stay equal on all ranks) and a resumed run the same as
        an uninterrupted one."""
        if not self.data:
            self.setup()
        x, y = self.data[split]
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        g = torch.Generator().manual_seed((seed * 1_000_003 + 7_919 * epoch + n + 1) % 2**62)
        idx = torch.randperm(len(y), generator=g)[:n].to(x.device)
        if device is None and self.trainer is not None:
            device = self.trainer.strategy.root_device
        return self.transform(x[idx].to(device)), y[idx].to(device)

    def state_dict(self) -> dict:
        """Saved in every checkpoint, so eval.py and predict.py can rebuild this data module."""
        cls = type(self)
        return {
            "target": f"{cls.__module__}.{cls.__qualname__}",
            "hparams": dict(self.hparams),
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def load_state_dict(self, state: dict) -> None:
        pass  # the data is reloaded from disk; nothing to restore


# --- MNIST family --------------------------------------------------------------------


def _unknown_arguments(cls: type, unknown: dict) -> str:
    """``data.bacth_size is not a setting of MNISTDataModule (did you mean data.batch_size?)``."""
    import difflib
    import inspect

    known = sorted({p for c in cls.__mro__ if "__init__" in vars(c)
                    for p in inspect.signature(c.__init__).parameters if p not in ("self", "args", "kwargs", "unknown")})
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        parts.append(f"data.{key}" + (f" (did you mean data.{close[0]}?)" if close else ""))
    return f"{', '.join(parts)} {'is not a setting' if len(parts) == 1 else 'are not settings'} of {cls.__name__}; " \
           f"its settings: {', '.join(known)}"


def _expected_files(folder: Path, names) -> str:
    return "\n".join(f"  {folder / n}" for n in names)


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


# --- image folders and CIFAR-10 -------------------------------------------------------


def _index_key(path: Path):
    """Sort files by the number in their name when there is one (CIFAR's canonical order)."""
    stem = path.stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def load_image_folder(
    folder: Path, channels: int, size: int | None, classes: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read ``folder/<class>/<image>`` files into a uint8 ``(N, channels, size, size)`` tensor.

    Each file is decoded by :func:`training.images.decode_image`, as predict.py decodes its images:
    16-bit images scaled to 8 bits, transparency composited over black, the channel count
    converted, a non-square image padded to a square (black) and resized. The result is cached
    (keyed by the folder, its file list and modification times) in :func:`cache_dir`
    (``images-<key>.pt``), so a second run reads one file instead of decoding every image;
    deleting that file is safe (it is rebuilt). Decoding many images prints its progress on stderr.
    """
    import sys
    import time

    if not folder.is_dir():
        raise DataError(f"image folder {folder.resolve()} does not exist")
    classes = classes or sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [
        (f, label)
        for label, c in enumerate(classes)
        for f in sorted((folder / c).iterdir() if (folder / c).is_dir() else [], key=_index_key)
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise DataError(
            f"no images found in {folder.resolve()}: expected {folder}/<class>/<image>.png (or .jpg) files"
        )
    key = hashlib.sha1(
        repr((str(folder.resolve()), channels, size, classes, [(str(f), f.stat().st_mtime_ns) for f, _ in files],
              DECODER_VERSION)).encode()
    ).hexdigest()[:16]
    cached = cache_dir() / f"images-{key}.pt"
    if cached.exists():
        try:
            x, y = torch.load(cached, weights_only=True)
            return x, y, classes
        except Exception:
            pass  # a bad cache is rebuilt below
    images = []
    start = last = time.monotonic()
    for i, (f, _) in enumerate(files):
        try:
            img, _notes = decode_image(f, channels, size)
        except ImageError as e:
            raise DataError(f"{f} could not be read as an image ({e}); remove it or replace it") from None
        images.append(img)
        now = time.monotonic()
        if now - last >= 5.0:  # a large folder (CIFAR-10's 50,000 PNGs): say what is happening
            last = now
            print(f"decoding {folder}: {i + 1:,}/{len(files):,} images ({now - start:.0f} s; once: "
                  f"cached for the next runs in {cached})", file=sys.stderr, flush=True)
    shapes = {tuple(i.shape) for i in images}
    if len(shapes) > 1:
        raise DataError(f"images in {folder} have different sizes {sorted(shapes)[:3]}...; set data.image_size")
    x = torch.stack(images)
    y = torch.tensor([label for _, label in files], dtype=torch.long)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        torch.save((x, y), tmp)
        os.replace(tmp, cached)
        print(f"decoded {len(files):,} images of {folder}; cached in {cached} ({cached.stat().st_size / 1e6:.0f} MB; "
              f"NEOLENET_CACHE_DIR moves it, deleting it is safe)", file=sys.stderr)
    except OSError:
        pass  # caching is an optimisation only
    return x, y, classes


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


class ImageFolderDataModule(TensorDataModule):
    """A user's own images: ``root/train/<class>/*`` and ``root/test/<class>/*`` (any size,
    padded to a square and resized to ``image_size``; grey or colour, converted to ``in_channels``;
    decoded as predict.py decodes, :func:`training.images.decode_image`).

    Before anything is decoded, the class folders are checked: ``num_classes`` (the model's output
    count) must equal the number of training class folders, there must be at least two, none may be
    empty, and the test split may only hold classes that the training split has."""

    def __init__(self, root: str | None = None, in_channels: int = 3, image_size: int = 32,
                 num_classes: int | None = None, **kwargs):
        if not isinstance(image_size, int) or image_size < 1:
            raise ConfigError(f"data.image_size must be a positive integer, got {image_size!r}")
        if in_channels not in (1, 3):
            raise ConfigError(f"data.in_channels must be 1 or 3 for image folders, got {in_channels!r}")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
            raise ConfigError(f"data.num_classes must be an integer >= 2 (the number of class folders), got {num_classes!r}")
        super().__init__(root=root, **kwargs)
        self.hparams.update(in_channels=in_channels, image_size=image_size, num_classes=num_classes)
        self.mean = self.std = None

    def check_classes(self) -> list[str]:
        """The training class folders' names, checked (see the class's docstring)."""
        train, test = self.root / "train", self.root / "test"
        classes = sorted(p.name for p in train.iterdir() if p.is_dir())
        if not classes:
            raise DataError(f"{train.resolve()} has no class folders: data=image_folder expects "
                            f"{train}/<class>/<image> files, one folder per class")
        empty = [c for c in classes if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in (train / c).iterdir())]
        if empty:
            raise DataError(f"class folder(s) {', '.join(str(train / c) for c in empty)} hold no images "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder(s)")
        named = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
        if len(classes) < 2:
            raise DataError(f"{train.resolve()} has only one class folder ({named}); a classifier needs at least "
                            f"two classes: add a folder of images for each other class")
        n = self.hparams.get("num_classes")
        if n is not None and n != len(classes):
            raise DataError(
                f"data.num_classes={n} but {train.resolve()} has {len(classes)} class folders ({named}); "
                f"set data.num_classes={len(classes)} (the model needs one output per class)"
            )
        if test.is_dir():
            extra = sorted(p.name for p in test.iterdir() if p.is_dir() and p.name not in classes)
            if extra:
                raise DataError(
                    f"{test.resolve()} has class folder(s) that {train.resolve()} lacks: {', '.join(extra[:20])}; "
                    f"the model can only learn the training classes ({named}): rename them to training "
                    f"classes, add training images for them, or remove them"
                )
        return classes

    def load_split(self, train: bool):
        split = self.root / ("train" if train else "test")
        for folder in (self.root / "train", split):
            if not folder.is_dir():
                raise DataError(
                    f"image folder {folder.resolve()} not found: data=image_folder expects "
                    f"{self.root}/train/<class>/<image> and {self.root}/test/<class>/<image> files"
                )
        classes = self.check_classes()
        x, y, classes = load_image_folder(split, self.hparams.in_channels, self.hparams.image_size, classes)
        self.classes = tuple(classes)
        if train:
            xf = x.float().div_(255)
            self.mean = tuple(xf.mean(dim=(0, 2, 3)).tolist())
            self.std = tuple(xf.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
        return x, y
