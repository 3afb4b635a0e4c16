"""Image folders (``<split>/<class>/<image>``) read into one uint8 tensor and cached
(:func:`load_image_folder`), and the data module for a user's own folders
(:class:`ImageFolderDataModule`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from models.checks import is_int
from models.errors import ConfigError, DataError, ImageError
from ..images import DECODER_VERSION, IMAGE_SUFFIXES, decode_image
from .base import TensorDataModule, cache_dir


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
        if num_classes is not None and (not is_int(num_classes) or num_classes < 2):
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
