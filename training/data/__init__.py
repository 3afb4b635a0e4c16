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

The package, by topic: :mod:`.loaders` (the batch sampler and loader), :mod:`.augment` (random
shift and flip), :mod:`.base` (:class:`TensorDataModule`, the data and cache folders),
:mod:`.mnist` (the MNIST family and its IDX checks), :mod:`.cifar` (CIFAR-10), :mod:`.folders`
(image folders and their cache). Every name is importable from ``training.data``, the path the
configs' ``_target_`` and the checkpoints name.
"""

from ..images import DECODER_VERSION, IMAGE_SUFFIXES, NORMALIZATIONS, decode_image, transform_batch
from .augment import random_crop_flip
from .base import TensorDataModule, _expected_files, _unknown_arguments, cache_dir, default_root, public_target
from .cifar import CIFAR10DataModule, read_cifar_batches
from .folders import ImageFolderDataModule, _index_key, load_image_folder
from .loaders import EpochShuffleSampler, ResumableLoader, _TensorBatches
from .mnist import FashionMNISTDataModule, KMNISTDataModule, MNISTDataModule, check_idx

__all__ = [
    # data modules
    "TensorDataModule", "MNISTDataModule", "FashionMNISTDataModule", "KMNISTDataModule", "CIFAR10DataModule",
    "ImageFolderDataModule",
    # loading
    "EpochShuffleSampler", "ResumableLoader", "_TensorBatches",
    # readers and checks
    "check_idx", "read_cifar_batches", "load_image_folder", "_index_key", "_expected_files", "_unknown_arguments",
    # folders, augmentation, the checkpoint's class path
    "default_root", "cache_dir", "random_crop_flip", "public_target",
    # from training.images, importable here as before
    "DECODER_VERSION", "IMAGE_SUFFIXES", "NORMALIZATIONS", "decode_image", "transform_batch",
]
