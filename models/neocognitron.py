"""The Neocognitron (Fukushima), supervised as in the lecture ("Convolutional Networks II", slides 1-4).

A stage is an **S-layer** followed by a **C-layer**:

* an S-plane is one set of weights shared over the whole plane, with an ``L x L`` receptive
  field over all planes of the layer below, followed by an activation -- i.e. a convolution
  (the lecture: "identical to scanning (convolving) with a single neuron/filter");
* a C-plane is *fixed*: it holds no learnable parameters and pools an ``M x M`` window of its
  own S-plane with a stride. ``c_kind: max`` is the lecture's max (slide 4);
  ``c_kind: blur`` is Fukushima's C-cell, a fixed centre-weighted (Gaussian) average followed
  by the saturation ``psi(x) = phi(x) / (1 + phi(x))`` (the kernel is a buffer, not a
  Parameter); ``c_kind: avg`` is a plain mean.

After the last C-layer a supervised decision layer (linear, or an MLP with ``decision``
hidden widths) gives the class scores; backprop trains every S-plane and the decision layer,
the C-planes are never updated.

The S/C cascade is K. Fukushima's, "Neocognitron: a self-organizing neural network model for a
mechanism of pattern recognition unaffected by shift in position" (Biological Cybernetics 36,
1980); training it with a teacher goes back to Fukushima, "Neocognitron: a hierarchical neural
network capable of visual pattern recognition" (Neural Networks 1, 1988), where the teacher picks
the features; here backprop does. The blurring C-cell and its saturation are those of Fukushima,
"Neocognitron for handwritten digit recognition" (Neurocomputing 51, 2003).

The self-organising network Fukushima trained without backprop is
:mod:`models.neocognitron_fukushima`; the cells both share are in :mod:`models.cells`. An S-layer
and the decision layer are :func:`models.blocks.conv_block` and :func:`models.blocks.mlp_head`,
the blocks of :mod:`models.convnet` as well.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .blocks import check_padding, conv_block, mlp_head
from .cells import BlurCPlanes, PoolCPlanes
from .checks import check_bool, check_choice, check_int, check_number, is_int
from .errors import ConfigError
from .ops import check_conv, check_pool
from .registry import register_model

C_KINDS = ("max", "avg", "blur")
# The activations of the S-cells (models.activations.ACTIVATIONS has them all); relu is
# Fukushima's phi[x] = max(x, 0).
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "identity")
# How model=neocognitron words an unknown activation or c_kind.
IS_UNKNOWN = "{where}: {key} {value!r} is unknown; use one of {options}"


# ----------------------------------------------------------------------------- validation
STAGE_KEYS = {"planes", "s_kernel", "s_stride", "s_padding", "activation", "batchnorm",
              "c_kernel", "c_stride", "c_padding", "c_kind", "c_gain", "c_saturate"}


def _stage_spec(i: int, spec: Any) -> dict:
    where = f"neocognitron stage {i}"
    if not isinstance(spec, dict) and not hasattr(spec, "items"):
        raise ConfigError(f"{where}: a stage must be a mapping of {sorted(STAGE_KEYS)}, got {spec!r}")
    spec = dict(spec.items())
    unknown = set(spec) - STAGE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(STAGE_KEYS)}")
    if "planes" not in spec:
        raise ConfigError(f"{where}: 'planes' (number of S-planes) is required")
    s = {
        "planes": check_int(where, "planes", spec["planes"]),
        "s_kernel": check_int(where, "s_kernel", spec.get("s_kernel", 5)),
        "s_stride": check_int(where, "s_stride", spec.get("s_stride", 1)),
        "activation": spec.get("activation", "relu"),
        "batchnorm": spec.get("batchnorm", False),
        "c_kind": spec.get("c_kind", "max"),
        "c_kernel": check_int(where, "c_kernel", spec.get("c_kernel", 2)),
    }
    s["s_padding"] = check_padding(where, "s_padding", spec.get("s_padding", "same"), s["s_kernel"])
    s["c_stride"] = check_int(where, "c_stride", spec.get("c_stride", s["c_kernel"]))
    s["c_padding"] = spec.get("c_padding", 0)
    check_choice(where, "activation", s["activation"], ACTIVATIONS, message=IS_UNKNOWN)
    check_bool(where, "batchnorm", s["batchnorm"])
    check_choice(where, "c_kind", s["c_kind"], C_KINDS, message=IS_UNKNOWN)
    cp = s["c_padding"]
    if not is_int(cp) or cp < 0 or (
            s["c_kind"] != "blur" and cp > s["c_kernel"] // 2):
        raise ConfigError(f"{where}: c_padding must be an integer >= 0 (and <= c_kernel // 2 = "
                          f"{s['c_kernel'] // 2} for max/avg), got {cp!r}")
    s["c_gain"] = check_number(where, "c_gain", spec.get("c_gain", 1.0), lo_open=True)
    s["c_saturate"] = check_bool(where, "c_saturate", spec.get("c_saturate", True))
    return s


# ----------------------------------------------------------------------------- the network
class Neocognitron(nn.Module):
    """Stages of S-planes (conv + activation) and fixed C-planes, then a decision layer."""

    def __init__(self, in_channels: int, num_classes: int, input_size: int, stages: Sequence[Any],
                 decision: Sequence[int] = (), dropout: float = 0.0):
        super().__init__()
        check_int("neocognitron", "in_channels", in_channels)
        check_int("neocognitron", "num_classes", num_classes)
        check_int("neocognitron", "input_size", input_size)
        if isinstance(stages, (str, bytes)) or not hasattr(stages, "__len__") or len(stages) == 0:
            raise ConfigError(f"neocognitron: stages must be a non-empty list of stage mappings, got {stages!r}")
        if isinstance(decision, (str, bytes)) or not hasattr(decision, "__iter__"):
            raise ConfigError(f"neocognitron: decision must be a list of hidden widths, got {decision!r}")
        dropout = check_number("neocognitron", "dropout", dropout, hi=1.0)
        self.specs = [_stage_spec(i, st) for i, st in enumerate(stages)]
        self.sizes = [input_size]  # side of the map entering each stage, then the final C side
        layers: list[nn.Module] = []
        n, c = input_size, in_channels
        for i, s in enumerate(self.specs):
            n = check_conv(f"neocognitron stage {i} S-layer", n, s["s_kernel"], s["s_stride"], s["s_padding"])
            s_layer = conv_block(c, s["planes"], s["s_kernel"], s["s_stride"], s["s_padding"],
                                 batch_norm=s["batchnorm"], activation=s["activation"])
            c = s["planes"]
            where = f"neocognitron stage {i} C-layer"
            if s["c_padding"]:
                n = check_conv(where, n, s["c_kernel"], s["c_stride"], s["c_padding"])
            else:
                n = check_pool(where, n, s["c_kernel"], s["c_stride"])
            if s["c_kind"] == "blur":
                c_layer: nn.Module = BlurCPlanes(c, s["c_kernel"], s["c_stride"], s["c_padding"], s["c_gain"],
                                                      saturation=s["c_saturate"])
            else:
                c_layer = PoolCPlanes(s["c_kind"], s["c_kernel"], s["c_stride"], s["c_padding"])
            layers.append(nn.Sequential(nn.Sequential(*s_layer), c_layer))
            self.sizes.append(n)
        self.stages = nn.Sequential(*layers)
        self.decision = mlp_head("neocognitron decision", c * n * n, decision, num_classes, dropout=dropout,
                                 dropout_before=True)
        self.in_channels, self.input_size = in_channels, input_size

    def s_layers(self) -> list[nn.Module]:
        return [st[0] for st in self.stages]

    def c_layers(self) -> list[nn.Module]:
        return [st[1] for st in self.stages]

    def feature_layers(self) -> dict[str, nn.Module]:
        """``{S1: ..., C1: ..., S2: ...}``: each stage's S- and C-layer, in forward order (the
        layers whose outputs and filters :mod:`training.visualize` draws under these names)."""
        layers: dict[str, nn.Module] = {}
        for i, (s, c) in enumerate(zip(self.s_layers(), self.c_layers())):
            layers[f"S{i + 1}"], layers[f"C{i + 1}"] = s, c
        return layers

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last C-layer, ``(B, planes, n, n)``."""
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decision(self.stages(x))


DEFAULT_STAGES = (
    {"planes": 32, "s_kernel": 5, "s_padding": 2, "batchnorm": True, "c_kind": "max", "c_kernel": 2},
    {"planes": 64, "s_kernel": 5, "s_padding": 2, "batchnorm": True, "c_kind": "max", "c_kernel": 2},
)


@register_model
def neocognitron(in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
                 stages: Sequence[Any] = DEFAULT_STAGES, decision: Sequence[int] = (128,),
                 dropout: float = 0.25) -> nn.Module:
    """The lecture's supervised Neocognitron: S/C stages + a backprop-trained decision layer.

    ``stages`` is a list of mappings with keys ``planes`` (S-planes), ``s_kernel`` (L),
    ``s_stride``, ``s_padding`` (int or ``same``), ``activation``, ``batchnorm`` (an optional
    BatchNorm inside the S-cell, before its activation -- not in Fukushima's network),
    ``c_kind`` (``max`` | ``avg`` | ``blur``), ``c_kernel`` (M), ``c_stride`` (default M),
    ``c_padding``, ``c_gain`` (blur only: the input gain before saturation) and ``c_saturate``
    (blur only, default true: ``false`` leaves out the saturation, an ablation).
    """
    return Neocognitron(in_channels, num_classes, input_size, stages, decision, dropout)

