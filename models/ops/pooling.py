"""Pooling ("Convolutional Networks II", slides 44-59 and 75).

:func:`max_pool2d` keeps the argmax of each window and sends the gradient only there (slide 75);
:func:`avg_pool2d` is mean pooling (slide 57); :class:`MaxPool2d` and :class:`AvgPool2d` are
their layer forms; :class:`LearnedPool2d` is one small network shared by every ``P x P`` block
(slides 58-59, "network in network": Lin, Chen & Yan, ICLR 2014). Each equals PyTorch's
built-in (``F.max_pool2d`` with ``return_indices=True``, ``F.avg_pool2d``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .conv import unfold_patches
from .sizes import _pair, check_pool

__all__ = ["max_pool2d", "avg_pool2d", "MaxPool2d", "AvgPool2d", "LearnedPool2d"]


def _pool_args(x: Tensor, kernel_size, stride, padding, layer: str):
    if x.dim() != 4:
        raise ConfigError(f"{layer}: expected input (B, C, H, W), got shape {tuple(x.shape)}")
    kh, kw = _pair(kernel_size, "kernel_size", layer)
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride", layer)
    pads = (padding, padding) if isinstance(padding, int) else tuple(padding)
    if len(pads) != 2 or not all(isinstance(p, int) for p in pads):
        raise ConfigError(f"{layer}: padding must be an int or an (H, W) pair, got {padding!r}")
    ph, pw = pads
    if not (0 <= ph <= kh // 2 and 0 <= pw <= kw // 2):
        raise ConfigError(
            f"{layer}: padding must be between 0 and half the window ({kh}x{kw}), got {padding!r}"
        )
    ho = check_pool(f"{layer} (rows)", x.shape[-2] + 2 * ph, kh, sh)
    wo = check_pool(f"{layer} (columns)", x.shape[-1] + 2 * pw, kw, sw)
    return kh, kw, sh, sw, ph, pw, ho, wo


class _MaxPool(torch.autograd.Function):
    """Max pooling that remembers where each maximum came from (slide 75: "keep track of which
    position had the highest value") and sends the gradient only there."""

    @staticmethod
    def forward(ctx, x: Tensor, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int):
        n, c, h, w = x.shape
        xp = F.pad(x, (pw, pw, ph, ph), value=-math.inf) if ph or pw else x
        windows = unfold_patches(xp, kh, kw, sh, sw)  # (B, C, Ho, Wo, kh, kw)
        ho, wo = windows.shape[2:4]
        values, arg = windows.reshape(n, c, ho, wo, kh * kw).max(dim=-1)  # first maximum wins
        # Position of the maximum in the unpadded input, flattened per plane (F.max_pool2d's
        # return_indices convention): row i*S + u - P, column j*S + v - P.
        rows = torch.arange(ho, device=x.device).view(-1, 1) * sh - ph + torch.div(arg, kw, rounding_mode="floor")
        cols = torch.arange(wo, device=x.device) * sw - pw + arg % kw
        indices = rows * w + cols
        ctx.save_for_backward(indices)
        ctx.input_shape = x.shape
        ctx.mark_non_differentiable(indices)
        return values, indices

    @staticmethod
    def backward(ctx, grad_values: Tensor, _grad_indices: Tensor | None):
        (indices,) = ctx.saved_tensors
        n, c, h, w = ctx.input_shape
        grad = torch.zeros(n, c, h * w, dtype=grad_values.dtype, device=grad_values.device)
        # Each output's gradient goes to its argmax; overlapping windows that share an argmax add up.
        grad.scatter_add_(2, indices.reshape(n, c, -1), grad_values.reshape(n, c, -1))
        return grad.view(n, c, h, w), None, None, None, None, None, None


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> tuple[Tensor, Tensor]:
    """Max pooling of every ``P x P`` window at stride ``D``; returns ``(values, indices)``.

    ``values`` equals ``F.max_pool2d(x, kernel_size, stride, padding)``; ``indices`` equals its
    ``return_indices=True`` output (the argmax's position in the flattened ``H x W`` input
    plane; on ties the first in row-major order). The backward pass routes each output's
    gradient only to its argmax. ``stride`` defaults to ``kernel_size``; padding is implicit
    ``-inf`` (at most half the window), as in PyTorch.
    """
    kh, kw, sh, sw, ph, pw, _, _ = _pool_args(x, kernel_size, stride, padding, "max_pool2d")
    return _MaxPool.apply(x, kh, kw, sh, sw, ph, pw)


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """Mean pooling of every ``P x P`` window at stride ``D`` (slide 57).

    Equals ``F.avg_pool2d(x, kernel_size, stride, padding)`` (zero padding counted in the mean,
    PyTorch's default ``count_include_pad=True``). Autograd spreads each gradient evenly.
    """
    kh, kw, sh, sw, ph, pw, _, _ = _pool_args(x, kernel_size, stride, padding, "avg_pool2d")
    xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
    return unfold_patches(xp, kh, kw, sh, sw).mean(dim=(-2, -1))


class MaxPool2d(nn.Module):
    """Layer form of :func:`max_pool2d`. Returns the values; ``self.indices`` holds the argmax
    positions of the last forward (or set ``return_indices=True`` to get ``(values, indices)``)."""

    def __init__(self, kernel_size, stride=None, padding=0, return_indices: bool = False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.return_indices = return_indices
        self.indices: Tensor | None = None

    def forward(self, x: Tensor):
        values, self.indices = max_pool2d(x, self.kernel_size, self.stride, self.padding)
        return (values, self.indices) if self.return_indices else values

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(nn.Module):
    """Layer form of :func:`avg_pool2d`."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class LearnedPool2d(nn.Module):
    """Learned pooling (slides 58-59, "network in network").

    One small MLP ``P^2 -> hidden -> ... -> 1`` with shared parameters is applied to every
    ``P x P`` block of every map at stride ``D``, so the output has the pooled size
    ``floor((N - P) / D) + 1`` and the same number of maps. Trained by backprop it can become
    max pooling, mean pooling or anything in between.
    """

    def __init__(self, kernel_size: int = 2, stride: int | None = None,
                 hidden: Sequence[int] = (16, 16), activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", "LearnedPool2d")
        self.stride = _pair(stride if stride is not None else self.kernel_size, "stride", "LearnedPool2d")
        sizes = [self.kernel_size[0] * self.kernel_size[1], *hidden, 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if not isinstance(b, int) or b < 1:
                raise ConfigError(f"LearnedPool2d: hidden sizes must be positive integers, got {hidden!r}")
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        check_pool("LearnedPool2d (rows)", x.shape[-2], kh, sh)
        check_pool("LearnedPool2d (columns)", x.shape[-1], kw, sw)
        blocks = unfold_patches(x, kh, kw, sh, sw).flatten(-2)  # (B, C, Ho, Wo, P*P)
        return self.net(blocks).squeeze(-1)

