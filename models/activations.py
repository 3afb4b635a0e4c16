"""The activation functions of every network, by the name a config gives them: one table.

``ACTIVATIONS`` maps a name to an ``nn.Module`` class (no parameters, so choosing one never
changes a state dict). Each network accepts the names of its own ``ACTIVATIONS`` tuple, a
subset of this table: :mod:`models.convnet`, :mod:`models.neocognitron` and
:mod:`models.lenet_layers` (LeNet's are those whose derivative its second-derivative pass for
SDLM knows). :func:`activation` builds one by name.

``scaled_tanh`` is LeNet's squashing function ``f(a) = A tanh(S a)`` with ``A = 1.7159`` and
``S = 2/3``, so that ``f(1) = 1`` and ``f(-1) = -1`` (LeCun, Bottou, Bengio & Haffner,
"Gradient-based learning applied to document recognition", Proc. IEEE 86(11), 1998: II.B
eq. (6), Appendix A).
"""

from __future__ import annotations

import torch
from torch import nn

# [1998] II.B eq. (6), Appendix A: f(a) = A tanh(S a) with A = 1.7159, S = 2/3, so that f(1) = 1, f(-1) = -1.
SQUASH_A = 1.7159
SQUASH_S = 2.0 / 3.0


class ScaledTanh(nn.Module):
    """LeNet's squashing function ``f(a) = 1.7159 tanh(2a / 3)`` [1998, II.B eq. (6)]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SQUASH_A * torch.tanh(SQUASH_S * x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,  # Fukushima's phi[x] = max(x, 0)
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "identity": nn.Identity,
    "scaled_tanh": ScaledTanh,
}


def activation(name: str) -> nn.Module:
    """A new activation module ``name`` (a key of :data:`ACTIVATIONS`, checked by the caller against
    the names its network accepts)."""
    return ACTIVATIONS[name]()
