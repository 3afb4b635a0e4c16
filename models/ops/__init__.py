"""The lecture's operations ("Convolutional Networks II"), written from first principles.

Every function here is exact against a PyTorch built-in (the tests check it) and every module is
a drop-in layer for the models. One module per topic, in reading order:

- :mod:`~models.ops.sizes`: output sizes of convolution and pooling, "same" padding (the extra
  row/column right/bottom), parameter counts, and the checks that name the layer that does not
  fit (slides 34-38, 56, 71).
- :mod:`~models.ops.conv`: convolution as a scanned perceptron (unfold + one matrix product,
  slides 13-29) and correlation in the transform domain (FFT, slides 41-42).
- :mod:`~models.ops.auto`: :class:`Conv2d`, which picks ``direct``, ``scan`` or ``fft`` by the
  lecture's cost model, its constants calibrated on the running machine and cached.
- :mod:`~models.ops.pooling`: max pooling with its argmax, mean pooling, learned pooling
  (slides 44-59).
- :mod:`~models.ops.mlp`: an MLP scanned over blocks is a CNN (slides 2-4, 40).

Imports go one way: ``sizes <- conv <- auto``; ``pooling`` uses ``sizes`` and ``conv``, ``mlp``
uses ``conv`` and ``auto``. Everything public is re-exported here, so ``from models import ops;
ops.scan_conv2d(...)`` and ``from models.ops import check_conv`` work as before.

The tunable constants live in the module that reads them, and are read and set there only
(``ops.conv.SCAN_CHUNK_ELEMENTS``, ``ops.conv.FFT_GROUP_ELEMENTS``, ``ops.auto.AUTO_MARGIN = 1.0``):
a copy on the package would be a value no code reads, so asking the package for one names its home.
"""

from __future__ import annotations

from . import auto, conv, mlp, pooling, sizes
from .auto import (
    ALGORITHMS,
    Conv2d,
    auto_algorithm,
    auto_candidates,
    calibrate,
    choose_algorithm,
    clock_for,
    conv2d,
    predicted_costs,
)
from .conv import direct_conv2d, fft_conv2d, fft_size, scan_conv2d, unfold_patches
from .mlp import mlp_to_conv, scan_mlp
from .pooling import AvgPool2d, LearnedPool2d, MaxPool2d, avg_pool2d, max_pool2d
from .sizes import (
    Pad4,
    Padding,
    check_conv,
    check_pool,
    conv_output_size,
    conv_param_count,
    pool_output_size,
    same_padding,
)

__all__ = [
    "conv_output_size",
    "pool_output_size",
    "same_padding",
    "conv_param_count",
    "check_conv",
    "check_pool",
    "scan_conv2d",
    "fft_conv2d",
    "direct_conv2d",
    "conv2d",
    "Conv2d",
    "ALGORITHMS",
    "choose_algorithm",
    "auto_algorithm",
    "auto_candidates",
    "predicted_costs",
    "calibrate",
    "max_pool2d",
    "avg_pool2d",
    "MaxPool2d",
    "AvgPool2d",
    "LearnedPool2d",
    "mlp_to_conv",
    "scan_mlp",
]

#: The tunable constants, by the module whose code reads them (and where they are set).
_SETTINGS = {"SCAN_CHUNK_ELEMENTS": "conv", "FFT_GROUP_ELEMENTS": "conv", "AUTO_MARGIN": "auto"}


def __getattr__(name: str):
    if name in _SETTINGS:
        home = _SETTINGS[name]
        raise AttributeError(f"{name} is a setting of models.ops.{home}: read or set it there "
                             f"(ops.{home}.{name}), not on the package")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
