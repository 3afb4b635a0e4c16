"""The lecture's operations ("Convolutional Networks II"), written from first principles.

Sizes
-----
A convolution of an ``N x N`` map with an ``M x M`` filter at stride ``S`` with zero
padding ``P_L`` (left/top) and ``P_R`` (right/bottom) gives ``floor((N + P_L + P_R - M) / S) + 1``
outputs per side; pooling a ``P x P`` window at stride ``D`` gives ``floor((N - P) / D) + 1``.

"Same" padding: ``P_L + P_R = M - 1``. For odd ``M`` both sides get ``(M - 1) / 2``; for even
``M`` the extra row/column goes to the right/bottom side (``P_R = P_L + 1``), as TensorFlow
and PyTorch's ``padding="same"`` do. This convention is used everywhere in the project.
"""

from __future__ import annotations

from .errors import ConfigError

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
