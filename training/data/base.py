"""The base of every data module (:class:`TensorDataModule`: its settings checked, the split into
training and validation images, the loaders, the batch transform on the device, the state saved in
checkpoints), where data sets and caches live (:func:`default_root`, :func:`cache_dir`), and the
wording of errors shared by the data sets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from models.checks import check_choice, is_int
from models.errors import ConfigError
from ..images import NORMALIZATIONS, transform_batch
from .augment import random_crop_flip
from .loaders import EpochShuffleSampler, ResumableLoader, _TensorBatches


def default_root() -> str:
    return os.environ.get("DATA_DIR") or "./data"


def cache_dir() -> Path:
    return Path(os.environ.get("NEOLENET_CACHE_DIR") or Path.home() / ".cache" / "neolenet")


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


def public_target(cls: type) -> str:
    """The class path a checkpoint saves for data module ``cls``: ``training.data.MNISTDataModule``
    for a class that this package exports (the path the configs' ``_target_`` names, which resuming
    compares with the checkpoint's), else its own ``module.qualname``."""
    module, package = cls.__module__, __package__
    if module.startswith(package + ".") and getattr(sys.modules.get(package), cls.__qualname__, None) is cls:
        module = package
    return f"{module}.{cls.__qualname__}"


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
        check_choice("data", "normalize", normalize, NORMALIZATIONS,
                     message="{where}.{key} must be one of {options}, got {value!r}")
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
            "target": public_target(cls),
            "hparams": dict(self.hparams),
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def load_state_dict(self, state: dict) -> None:
        pass  # the data is reloaded from disk; nothing to restore
