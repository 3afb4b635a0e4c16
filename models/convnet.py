"""The modern conv/pool/MLP stack, configured as a list of conv blocks and MLP widths.

Each block is ``conv (kernel, stride, padding) -> [batch norm] -> activation -> [pool] ->
[dropout]``, or with ``pool_first: true`` ``conv -> pool -> [batch norm] -> activation`` (max
pooling commutes with a monotonic activation, and normalising and activating the pooled maps
costs a quarter as much: on a CPU these element-wise passes, not the convolutions, dominate a
small network's step); then the maps are flattened into an MLP (``mlp`` hidden widths, then the
class scores). Sizes are checked at construction with the lecture's formulas, so a
block that would shrink its maps to nothing fails with a message naming it. The blocks and the
MLP are :func:`models.blocks.conv_block` and :func:`models.blocks.mlp_head`, which the supervised
Neocognitron is built from as well.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from .blocks import check_padding, conv_block, mlp_head
from .checks import check_choice, check_number, check_positive_int
from .errors import ConfigError
from .ops import check_conv, check_pool
from .registry import register_model

# The activations model=convnet accepts (models.activations.ACTIVATIONS has them all).
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "silu", "identity")
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
# How model=convnet words an unknown activation or pool.
UNKNOWN = "{where}: unknown {key} {value!r}; choose one of {options}"
BLOCK_KEYS = {"channels", "kernel", "stride", "padding", "activation", "pool", "pool_size", "pool_stride", "pool_first",
              "batch_norm", "dropout"}

DEFAULT_BLOCKS = (
    {"channels": 32, "kernel": 3, "padding": "same", "batch_norm": True, "pool": "max"},
    {"channels": 64, "kernel": 3, "padding": "same", "batch_norm": True, "pool": "max"},
)


def _dropout(where: str, p) -> float:
    return check_number(where, "dropout", p, 0.0, hi=1.0, must="a number in [0, 1)")


class ConvNet(nn.Module):
    """Conv blocks (``features``) then an MLP (``classifier``); ``blocks`` as in the module docs."""

    def __init__(self, in_channels: int, num_classes: int, input_size: int, blocks, mlp, mlp_dropout: float = 0.0,
                 mlp_activation: str = "relu", name: str = "convnet"):
        super().__init__()
        for key, v in (("in_channels", in_channels), ("num_classes", num_classes), ("input_size", input_size)):
            check_positive_int(name, key, v)
        if not blocks and name == "convnet":
            raise ConfigError("convnet: blocks must list at least one conv block (model=mlp has none)")
        layers, c, n = [], in_channels, input_size
        for i, block in enumerate(blocks):
            where = f"convnet block {i}"
            if not isinstance(block, dict):
                raise ConfigError(f"{where}: expected a mapping of block settings, got {block!r}")
            unknown = set(block) - BLOCK_KEYS
            if unknown:
                raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known keys are {sorted(BLOCK_KEYS)}")
            out = check_positive_int(where, "channels", block.get("channels"))
            k = check_positive_int(where, "kernel", block.get("kernel", 3))
            s = check_positive_int(where, "stride", block.get("stride", 1))
            pads = check_padding(where, "padding", block.get("padding", 0), k, pairs=True)
            n = check_conv(f"{where} (conv {k}x{k})", n, k, s, pads)
            act = check_choice(where, "activation", block.get("activation", "relu"), ACTIVATIONS, message=UNKNOWN)
            pool, pool_first = block.get("pool"), bool(block.get("pool_first", False))
            pool_layer = None
            if pool not in (None, "none"):
                p = check_positive_int(where, "pool_size", block.get("pool_size", 2))
                ps = check_positive_int(where, "pool_stride", block.get("pool_stride", p))
                n = check_pool(f"{where} ({pool} pool {p}x{p})", n, p, ps)
                pool_layer = POOLS[check_choice(where, "pool", pool, [*POOLS, "none"], message=UNKNOWN)](p, ps)
            elif pool_first:
                raise ConfigError(f"{where}: pool_first needs a pool (max or avg)")
            layers += conv_block(c, out, k, s, pads, batch_norm=bool(block.get("batch_norm", False)), activation=act,
                                 pool=pool_layer, pool_first=pool_first)
            drop = _dropout(where, block.get("dropout", 0.0))
            if drop:
                layers.append(nn.Dropout2d(drop))
            c = out
        self.features = nn.Sequential(*layers)
        act = check_choice(f"{name} mlp", "activation", mlp_activation, ACTIVATIONS, message=UNKNOWN)
        self.classifier = mlp_head(f"{name} mlp", c * n * n, mlp or [], num_classes, activation=act,
                                   dropout=_dropout(f"{name} mlp", mlp_dropout))

    def forward(self, x):
        return self.classifier(self.features(x))

    def feature_layers(self) -> dict[str, nn.Module]:
        """The convolutions and poolings of ``features`` by module name (``features.0``, ...): the
        layers whose outputs :mod:`training.visualize` draws (none for model=mlp)."""
        return {f"features.{i}": m for i, m in enumerate(self.features)
                if isinstance(m, (nn.Conv2d, *POOLS.values()))}


@register_model
def convnet(in_channels: int = 1, num_classes: int = 10, input_size: int = 28, blocks=DEFAULT_BLOCKS,
            mlp=(256,), mlp_dropout: float = 0.3, mlp_activation: str = "relu") -> nn.Module:
    """A modern CNN: conv blocks (BN, ReLU, max pooling) then an MLP."""
    if not isinstance(blocks, (list, tuple)) or not all(isinstance(b, Mapping) for b in blocks):
        raise ConfigError(f"convnet: model.model_kwargs.blocks must be a list of block settings, e.g. "
                          f"[{{channels:32,kernel:3,pool:max}}], got {blocks!r}")
    return ConvNet(in_channels, num_classes, input_size, [dict(b) for b in blocks], list(mlp), mlp_dropout, mlp_activation)


@register_model
def mlp(in_channels: int = 1, num_classes: int = 10, input_size: int = 28, hidden=(512, 128), dropout: float = 0.3,
        activation: str = "relu") -> nn.Module:
    """A multilayer perceptron on the flattened image (no convolution, no pooling): the baseline
    without any built-in tolerance to shifts. The default widths give 468,874 parameters on MNIST,
    about as many as the default supervised Neocognitron (455,018)."""
    if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
        raise ConfigError(f"mlp: hidden must be a list of layer widths (e.g. [512, 128]; [] for a linear classifier), got {hidden!r}")
    return ConvNet(in_channels, num_classes, input_size, [], list(hidden), dropout, activation, name="mlp")
