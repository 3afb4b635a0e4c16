"""Sizes and padding of the lecture's layers ("Convolutional Networks II", slides 34-38, 56, 71).

A convolution of an ``N x N`` map with an ``M x M`` filter at stride ``S`` with zero padding
``P_L`` (left/top) and ``P_R`` (right/bottom) gives ``floor((N + P_L + P_R - M) / S) + 1``
outputs per side; pooling a ``P x P`` window at stride ``D`` gives ``floor((N - P) / D) + 1``.
A conv layer with ``K`` filters over ``C`` maps has ``K (C M^2 + 1)`` parameters (slide 71's
``K1 (3 M^2 + 1)`` for colour input).

"Same" padding (slide 38): ``P_L + P_R = M - 1`` with ``P_L = P_R`` or ``|P_L - P_R| = 1``.
For odd ``M`` both sides get ``(M - 1) / 2``; for even ``M`` **the extra row/column goes to the
right/bottom** (``P_R = P_L + 1``), as TensorFlow and PyTorch's ``padding="same"`` do. This
convention is used everywhere in the project.

Also here: the argument normalisation the torch-like functions of :mod:`models.ops` share
(``_pair``, ``_pad4``, ``_conv_args``, ``_zero_pad``). ``padding`` is an int, torch's
``(P_H, P_W)`` pair, an asymmetric ``(P_L, P_R, P_T, P_B)`` tuple (``F.pad``'s order), or
``"same"`` / ``"valid"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

__all__ = [
    "Padding",
    "Pad4",
    "conv_output_size",
    "pool_output_size",
    "same_padding",
    "conv_param_count",
    "check_conv",
    "check_pool",
]

Padding = int | tuple[int, int]


def _pads(padding: Padding) -> tuple[int, int]:
    if isinstance(padding, int):
        return padding, padding
    left, right = padding
    return int(left), int(right)


def conv_output_size(n: int, m: int, stride: int = 1, padding: Padding = 0) -> int:
    """Output side of a convolution: floor((N + P_L + P_R - M) / S) + 1.

    ``padding`` is an int (both sides) or a ``(P_L, P_R)`` pair. Returns a value
    ``<= 0`` when the filter does not fit; use :func:`check_conv` to get an error.
    """
    if stride < 1:
        raise ConfigError(f"stride must be a positive integer, got {stride}")
    p_l, p_r = _pads(padding)
    return (n + p_l + p_r - m) // stride + 1


def pool_output_size(n: int, p: int, stride: int | None = None) -> int:
    """Output side of pooling a P x P window at stride D: floor((N - P) / D) + 1."""
    stride = p if stride is None else stride
    if stride < 1:
        raise ConfigError(f"stride must be a positive integer, got {stride}")
    return (n - p) // stride + 1


def same_padding(m: int) -> tuple[int, int]:
    """``(P_L, P_R)`` with P_L + P_R = M - 1; for even M the extra one goes right/bottom."""
    if m < 1:
        raise ConfigError(f"kernel size must be a positive integer, got {m}")
    p_l = (m - 1) // 2
    return p_l, m - 1 - p_l


def conv_param_count(in_maps: int, out_maps: int, m: int, bias: bool = True) -> int:
    """Parameters of a conv layer: K * (C * M^2 + 1) (the lecture's K1(3M^2 + 1) for colour)."""
    return out_maps * (in_maps * m * m + (1 if bias else 0))


def check_conv(layer: str, n: int, m: int, stride: int = 1, padding: Padding = 0) -> int:
    """:func:`conv_output_size`, raising a :class:`ConfigError` that names ``layer`` if it is < 1."""
    for what, v in (("kernel size", m), ("stride", stride)):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{layer}: {what} must be a positive integer, got {v!r}")
    p_l, p_r = _pads(padding)
    if p_l < 0 or p_r < 0:
        raise ConfigError(f"{layer}: padding must be >= 0, got {padding!r}")
    out = conv_output_size(n, m, stride, padding)
    if out < 1:
        raise ConfigError(
            f"{layer}: a {m}x{m} kernel (stride {stride}, padding {padding}) does not fit its "
            f"{n}x{n} input map (output side {out}); use a smaller kernel, more padding, "
            f"or a larger input"
        )
    return out


def check_pool(layer: str, n: int, p: int, stride: int | None = None) -> int:
    """:func:`pool_output_size`, raising a :class:`ConfigError` that names ``layer`` if it is < 1."""
    stride = p if stride is None else stride
    for what, v in (("pool size", p), ("pool stride", stride)):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{layer}: {what} must be a positive integer, got {v!r}")
    out = pool_output_size(n, p, stride)
    if out < 1:
        raise ConfigError(
            f"{layer}: a {p}x{p} pooling window (stride {stride}) does not fit its {n}x{n} "
            f"input map; use a smaller window or a larger input"
        )
    return out


# --- argument normalisation for the torch-like functions -------------------------------------

Pad4 = tuple[int, int, int, int]


def _pair(value: int | Sequence[int], what: str, layer: str = "conv") -> tuple[int, int]:
    """An int or an (H, W) pair of positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ConfigError(f"{layer}: {what} must be a positive int or an (H, W) pair, got {value!r}")
    return pair  # type: ignore[return-value]


def _pad4(padding: int | str | Sequence[int], kh: int, kw: int, layer: str = "conv") -> Pad4:
    """Normalise ``padding`` to ``(P_L, P_R, P_T, P_B)`` (``F.pad``'s order for two dims).

    int ``p``: ``p`` on every side. ``(P_H, P_W)``: torch's pair, symmetric per dimension.
    ``(P_L, P_R, P_T, P_B)``: asymmetric. ``"same"``: :func:`same_padding` per dimension
    (the extra row/column right/bottom). ``"valid"``: no padding.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            return (*same_padding(kw), *same_padding(kh))
        raise ConfigError(f"{layer}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    if isinstance(padding, int):
        pads: tuple = (padding,) * 4
    else:
        pads = tuple(padding)
        if len(pads) == 2:
            pads = (pads[1], pads[1], pads[0], pads[0])
        elif len(pads) != 4:
            raise ConfigError(
                f"{layer}: padding must be an int, (P_H, P_W) or (P_L, P_R, P_T, P_B), got {padding!r}"
            )
    if not all(isinstance(p, int) and p >= 0 for p in pads):
        raise ConfigError(f"{layer}: padding values must be integers >= 0, got {padding!r}")
    return pads  # type: ignore[return-value]


def _conv_args(input: Tensor, weight: Tensor, stride, padding) -> tuple[tuple[int, int], Pad4, int, int]:
    """Check shapes for a conv and return ``(stride, pads, H_out, W_out)``."""
    if input.dim() != 4 or weight.dim() != 4:
        raise ConfigError(
            f"conv: expected input (B, C, H, W) and weight (K, C, M, M), got {tuple(input.shape)} "
            f"and {tuple(weight.shape)}"
        )
    if input.shape[1] != weight.shape[1]:
        raise ConfigError(
            f"conv: the input has {input.shape[1]} maps but the filters expect {weight.shape[1]}; "
            f"set in_channels to {input.shape[1]}"
        )
    kh, kw = weight.shape[-2:]
    sh, sw = _pair(stride, "stride")
    pads = _pad4(padding, kh, kw)
    l, r, t, b = pads
    ho = check_conv("conv (rows)", input.shape[-2], kh, sh, (t, b))
    wo = check_conv("conv (columns)", input.shape[-1], kw, sw, (l, r))
    return (sh, sw), pads, ho, wo


def _zero_pad(x: Tensor, pads: Pad4) -> Tensor:
    return F.pad(x, pads) if any(pads) else x
