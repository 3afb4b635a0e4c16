"""The modern conv/pool/MLP stack, configured as a list of conv blocks and MLP widths.

Each block is ``conv (kernel, stride, padding) -> [batch norm] -> activation -> [pool] ->
[dropout]``, or with ``pool_first: true`` ``conv -> pool -> [batch norm] -> activation`` (max
pooling commutes with a monotonic activation, and normalising and activating the pooled maps
costs a quarter as much: on a CPU these element-wise passes, not the convolutions, dominate a
small network's step); then the maps are flattened into an MLP (``mlp`` hidden widths, then the
class scores). Sizes are checked at construction with the lecture's formulas, so a
block that would shrink its maps to nothing fails with a message naming it.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from .errors import ConfigError
from .ops import check_conv, check_pool, same_padding
from .registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU, "identity": nn.Identity}
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
BLOCK_KEYS = {"channels", "kernel", "stride", "padding", "activation", "pool", "pool_size", "pool_stride", "pool_first",
              "batch_norm", "dropout"}

DEFAULT_BLOCKS = (
    {"channels": 32, "kernel": 3, "padding": "same", "batch_norm": True, "pool": "max"},
    {"channels": 64, "kernel": 3, "padding": "same", "batch_norm": True, "pool": "max"},
)


def _positive_int(where: str, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _choice(where: str, key: str, value, options) -> str:
    if value not in options:
        raise ConfigError(f"{where}: unknown {key} {value!r}; choose one of {', '.join(map(str, options))}")
    return value


def _dropout(where: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ConfigError(f"{where}: dropout must be a number in [0, 1), got {p!r}")
    return float(p)


class ConvNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, input_size: int, blocks, mlp, mlp_dropout: float = 0.0,
                 mlp_activation: str = "relu", name: str = "convnet"):
        super().__init__()
        for key, v in (("in_channels", in_channels), ("num_classes", num_classes), ("input_size", input_size)):
            _positive_int(name, key, v)
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
            out = _positive_int(where, "channels", block.get("channels"))
            k = _positive_int(where, "kernel", block.get("kernel", 3))
            s = _positive_int(where, "stride", block.get("stride", 1))
            pad = block.get("padding", 0)
            pad = same_padding(k) if pad == "same" else pad
            if isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0:
                pad = (pad, pad)
            if not (isinstance(pad, (tuple, list)) and len(pad) == 2 and all(isinstance(p, int) and p >= 0 for p in pad)):
                raise ConfigError(f"{where}: padding must be 'same', an integer >= 0 or a [left, right] pair, got {block.get('padding')!r}")
            n = check_conv(f"{where} (conv {k}x{k})", n, k, s, tuple(pad))
            if pad[0] != pad[1]:
                layers.append(nn.ZeroPad2d((pad[0], pad[1], pad[0], pad[1])))
                conv_pad = 0
            else:
                conv_pad = pad[0]
            bn = bool(block.get("batch_norm", False))
            layers.append(nn.Conv2d(c, out, k, s, conv_pad, bias=not bn))
            post = [nn.BatchNorm2d(out)] if bn else []
            post.append(ACTIVATIONS[_choice(where, "activation", block.get("activation", "relu"), ACTIVATIONS)]())
            pool, pool_first = block.get("pool"), bool(block.get("pool_first", False))
            if pool not in (None, "none"):
                p = _positive_int(where, "pool_size", block.get("pool_size", 2))
                ps = _positive_int(where, "pool_stride", block.get("pool_stride", p))
                n = check_pool(f"{where} ({pool} pool {p}x{p})", n, p, ps)
                post.insert(0 if pool_first else len(post),
                            POOLS[_choice(where, "pool", pool, list(POOLS) + ["none"])](p, ps))
            elif pool_first:
                raise ConfigError(f"{where}: pool_first needs a pool (max or avg)")
            layers += post
            drop = _dropout(where, block.get("dropout", 0.0))
            if drop:
                layers.append(nn.Dropout2d(drop))
            c = out
        self.features = nn.Sequential(*layers)
        act = ACTIVATIONS[_choice(f"{name} mlp", "activation", mlp_activation, ACTIVATIONS)]
        mlp_dropout = _dropout(f"{name} mlp", mlp_dropout)
        head, width = [nn.Flatten()], c * n * n
        for j, h in enumerate(mlp or []):
            head += [nn.Linear(width, _positive_int(f"{name} mlp layer {j}", "width", h)), act()]
            if mlp_dropout:
                head.append(nn.Dropout(mlp_dropout))
            width = h
        head.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x))


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
