"""The lecture's operations ("Convolutional Networks II"), written from first principles.

Every function here is exact against a PyTorch built-in (the tests check it) and every
module is a drop-in layer for the models. Read top to bottom:

1. **Sizes** (slides 34-38, 56, 71). A convolution of an ``N x N`` map with an ``M x M`` filter at
   stride ``S`` with zero padding ``P_L`` (left/top) and ``P_R`` (right/bottom) gives
   ``floor((N + P_L + P_R - M) / S) + 1`` outputs per side; pooling a ``P x P`` window at stride
   ``D`` gives ``floor((N - P) / D) + 1``. A conv layer with ``K`` filters over ``C`` maps has
   ``K (C M^2 + 1)`` parameters (slide 71's ``K1 (3 M^2 + 1)`` for colour input).

   "Same" padding (slide 38): ``P_L + P_R = M - 1`` with ``P_L = P_R`` or ``|P_L - P_R| = 1``.
   For odd ``M`` both sides get ``(M - 1) / 2``; for even ``M`` **the extra row/column goes to
   the right/bottom** (``P_R = P_L + 1``), as TensorFlow and PyTorch's ``padding="same"`` do.
   This convention is used everywhere in the project.

2. **Convolution as scanning** (slides 13-29): a filter is a perceptron with a bias, scanned over
   all the maps of the previous layer,
   ``z(i, j) = sum_c sum_k sum_l w(c, k, l) x_c(i S + k, j S + l) + b``.
   :func:`scan_conv2d` gathers every patch the perceptron sees (``Tensor.unfold``) and applies
   all ``K`` perceptrons to all patches with one matrix product.

3. **Correlation in the transform domain** (slides 41-42): ``Y = IDFT2(DFT2(X) o conj(DFT2(W)))``.
   :func:`fft_conv2d` does this with real FFTs, sums over input maps in the frequency domain,
   and costs ``O(N^2 log N)`` per map pair instead of the ``O(N^2 M^2)`` of scanning.

4. **A conv layer that picks its algorithm** (:class:`Conv2d`, ``algorithm="direct" | "scan" |
   "fft" | "auto"``; ``direct`` is PyTorch's own ``F.conv2d``). ``auto`` evaluates the
   lecture's cost model, ``O(N^2 M^2)`` scanning against ``O(N^2 log N)`` in the transform
   domain, with the batch and map counts written out:

   - direct: ``t = d0 + d1 * B C K N_out^2 M^2 + d2 * B (C N^2 + K N_out^2)`` (the multiply-adds,
     then the memory traffic that dominates small filters),
   - scan: ``t = s0 + s1 * B C K N_out^2 M^2 + s2 * B C N_out^2 M^2`` (the product, then the
     copy of the patches),
   - fft: ``t = f0 + f1 * (B C + C K + B K) L^2 log2(L^2) + f2 * B C K L^2 / 2``
     (the transforms, then the per-frequency products),

   and runs the cheapest. In the crossover band, where another algorithm is predicted within a
   factor :data:`AUTO_MARGIN` (3) of the cheapest, it times those candidates once on the real
   input and remembers the winner for that shape (:func:`auto_algorithm`).

   The constants are *calibrated on the running machine*: the first time ``auto`` runs on a
   device, :func:`calibrate` times the three algorithms on a dozen probe shapes (a few
   seconds; the fastest of three interleaved runs each, in thread CPU time when torch runs one
   thread, see :func:`clock_for`), fits the constants by non-negative least squares on the
   relative error, and caches the fit as JSON in ``$NEOLENET_CACHE_DIR/conv_calibration.json``
   (default ``~/.cache/neolenet/``), keyed by device, thread count, torch version and model
   version. Delete the file (or call ``calibrate(force=True)``) to re-measure.

5. **Pooling** (slides 44-59): :func:`max_pool2d` keeps the argmax of each window and sends the
   gradient only there; :func:`avg_pool2d` is mean pooling; :class:`LearnedPool2d` is one small
   network shared by every ``P x P`` block ("network in network").

6. **Scanning an MLP is a CNN** (slides 2-4, 40): :func:`mlp_to_conv` turns an MLP applied to
   every ``N x N`` block at stride ``S`` into a stack of conv layers (``N x N`` filters first,
   then ``1 x 1``); :func:`scan_mlp` runs the MLP on the blocks directly, for comparison.

The torch-like functions take torch's argument order ``(input, weight, bias, stride, padding)``.
``padding`` is an int, torch's ``(P_H, P_W)`` pair, an asymmetric ``(P_L, P_R, P_T, P_B)``
tuple (``F.pad``'s order), or ``"same"`` / ``"valid"``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError

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

Padding = int | tuple[int, int]

# ---------------------------------------------------------------------------------------------
# 1. Sizes
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# 2. Convolution as scanning: unfold the patches, one matrix product
# ---------------------------------------------------------------------------------------------

#: Largest patch matrix (in elements) that :func:`scan_conv2d` builds at once (4 MiB of
#: float32); bigger inputs are scanned a block of output rows at a time. Blocks that stay in
#: the CPU's cache make the scan about 3x faster than one huge patch matrix, and bound memory.
SCAN_CHUNK_ELEMENTS = 1 << 20


def unfold_patches(x: Tensor, kh: int, kw: int, sh: int = 1, sw: int = 1) -> Tensor:
    """Every ``kh x kw`` patch the scanned perceptron sees, as a view (no copy).

    Returns ``p`` of shape ``(B, C, H_out, W_out, kh, kw)`` with
    ``p[b, c, i, j, k, l] = x[b, c, i * sh + k, j * sw + l]``: the lecture's scanning formula.
    """
    return x.unfold(2, kh, sh).unfold(3, kw, sw)


def scan_conv2d(
    input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0
) -> Tensor:
    """Convolution (the deep-learning kind, i.e. correlation) by scanning a perceptron.

    ``z[b, k, i, j] = sum_{c, u, v} weight[k, c, u, v] * x_pad[b, c, i S + u, j S + v] + bias[k]``

    The patches of all ``C`` input maps under each position form the columns of a matrix
    ``(C M^2, positions)``; the ``K`` filters are the rows of a ``(K, C M^2)`` matrix; their
    product is every filter at every position. Same arguments and result as ``F.conv2d``
    (plus asymmetric ``padding``). Large inputs are done a block of output rows at a time
    so that the patch matrix stays under :data:`SCAN_CHUNK_ELEMENTS`.
    """
    (sh, sw), pads, ho, wo = _conv_args(input, weight, stride, padding)
    x = _zero_pad(input, pads)
    k_out, c, kh, kw = weight.shape
    w_mat = weight.reshape(k_out, c * kh * kw)  # one perceptron per row
    n = x.shape[0]

    def scan_rows(xb: Tensor, rows: int) -> Tensor:
        patches = unfold_patches(xb, kh, kw, sh, sw)  # (b, C, rows, W_out, kh, kw)
        # columns = patches: (b, C*kh*kw, rows*W_out), in the (c, u, v) order of the weight
        cols = patches.permute(0, 1, 4, 5, 2, 3).reshape(xb.shape[0], c * kh * kw, rows * wo)
        return (w_mat @ cols).view(xb.shape[0], k_out, rows, wo)

    per_row = c * kh * kw * wo  # patch-matrix elements for one output row of one image
    if n * ho * per_row <= SCAN_CHUNK_ELEMENTS:
        out = scan_rows(x, ho)
    else:
        rows = max(1, SCAN_CHUNK_ELEMENTS // per_row)
        batch = max(1, SCAN_CHUNK_ELEMENTS // (per_row * ho)) if rows >= ho else 1
        blocks = []
        for b0 in range(0, n, batch):
            xb = x[b0 : b0 + batch]
            row_blocks = []
            for i0 in range(0, ho, rows):
                i1 = min(ho, i0 + rows)
                xr = xb[:, :, i0 * sh : (i1 - 1) * sh + kh]  # input rows these outputs see
                row_blocks.append(scan_rows(xr, i1 - i0))
            blocks.append(torch.cat(row_blocks, dim=2) if len(row_blocks) > 1 else row_blocks[0])
        out = torch.cat(blocks, dim=0) if len(blocks) > 1 else blocks[0]
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def direct_conv2d(
    input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0
) -> Tensor:
    """PyTorch's own ``F.conv2d`` (oneDNN / cuDNN), with ``F.pad`` first for asymmetric padding."""
    (sh, sw), pads, _, _ = _conv_args(input, weight, stride, padding)
    l, r, t, b = pads
    if l == r and t == b:
        return F.conv2d(input, weight, bias, (sh, sw), (t, l))
    return F.conv2d(F.pad(input, pads), weight, bias, (sh, sw))


# ---------------------------------------------------------------------------------------------
# 3. Correlation in the transform domain
# ---------------------------------------------------------------------------------------------


def fft_size(n: int) -> int:
    """The smallest ``L >= n`` of the form ``2^a 3^b 5^c`` (sizes the FFT does fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


#: Largest spectrum (complex elements, input plus output maps) of one group of images in
#: :func:`fft_conv2d` (16 MiB).
FFT_GROUP_ELEMENTS = 1 << 21


class _SpectralSum(torch.autograd.Function):
    """``Y[b, k, f] = sum_c X[b, c, f] * W[k, c, f]`` for complex spectra.

    This is the "sum over input maps" of slide 22, done frequency by frequency. A loop over
    the input maps of broadcast multiply-adds (on cache-sized blocks of frequencies) is several
    times faster on a CPU than the equivalent einsum, which becomes one tiny complex matrix
    product per frequency.
    """

    BLOCK = 4096  # frequencies per block

    @staticmethod
    def _sum(a: Tensor, b: Tensor, conj_a: bool = False, conj_b: bool = False) -> Tensor:
        # out[p, q, f] = sum_r a[p, r, f] * b[q, r, f]   (a: (P, R, F), b: (Q, R, F))
        if conj_a:
            a = a.conj()
        if conj_b:
            b = b.conj()
        p, r, nf = a.shape
        q = b.shape[0]
        out = torch.empty(p, q, nf, dtype=torch.promote_types(a.dtype, b.dtype), device=a.device)
        if a.device.type != "cpu":  # on a GPU one batched contraction is best
            return torch.einsum("prf,qrf->pqf", a, b)
        for f0 in range(0, nf, _SpectralSum.BLOCK):
            sl = slice(f0, f0 + _SpectralSum.BLOCK)
            o, ab, bb = out[:, :, sl], a[:, :, sl], b[:, :, sl]
            torch.mul(ab[:, 0, None], bb[None, :, 0], out=o)
            for i in range(1, r):
                o.addcmul_(ab[:, i, None], bb[None, :, i])
        return out

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:  # x: (B, C, F), w: (K, C, F)
        ctx.save_for_backward(x, w)
        return _SpectralSum._sum(x, w)

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad: (B, K, F); PyTorch's convention: dL/d conj(z)
        x, w = ctx.saved_tensors
        gx = gw = None
        if ctx.needs_input_grad[0]:  # gx[b, c] = sum_k grad[b, k] conj(w[k, c])
            gx = _SpectralSum._sum(grad, w.transpose(0, 1), conj_b=True)
        if ctx.needs_input_grad[1]:  # gw[k, c] = sum_b grad[b, k] conj(x[b, c])
            gw = _SpectralSum._sum(grad.transpose(0, 1), x.transpose(0, 1), conj_b=True)
        return gx, gw


def fft_conv2d(
    input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0
) -> Tensor:
    """Correlation in the transform domain: ``Y = IDFT2(DFT2(X) o conj(DFT2(W)))`` (slide 42).

    With both ``X`` (padded to ``H x W``) and ``W`` zero-padded to ``L_h x L_w`` and ``L >= H``,
    the circular correlation ``y[i] = sum_u x[(i + u) mod L] w[u]`` equals the linear one for
    the ``H - M + 1`` outputs we keep: for those ``i + u <= H - 1 < L``, so nothing wraps
    around (the wrapped terms only land in outputs that are thrown away). ``L`` is the next
    ``2^a 3^b 5^c`` size. The products are summed over input maps in the frequency domain
    (one inverse transform per output map), the bias is added, and stride ``S`` keeps every
    ``S``-th output of the stride-1 result. Same arguments and result as ``F.conv2d``.
    """
    (sh, sw), pads, ho, wo = _conv_args(input, weight, stride, padding)
    x = _zero_pad(input, pads)
    kh, kw = weight.shape[-2:]
    hv, wv = x.shape[-2] - kh + 1, x.shape[-1] - kw + 1  # stride-1 ("valid") output size
    lh, lw = fft_size(x.shape[-2]), fft_size(x.shape[-1])
    work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    n, c, k = x.shape[0], x.shape[1], weight.shape[0]
    wf = torch.fft.rfft2(weight.to(work), s=(lh, lw)).conj().reshape(k, c, -1)  # (K, C, freqs)
    # The images go through in groups whose spectra stay under FFT_GROUP_ELEMENTS: the same
    # arithmetic, but small buffers that the allocator reuses instead of fresh pages each call.
    group = max(1, FFT_GROUP_ELEMENTS // ((c + k) * lh * (lw // 2 + 1)))
    outs = []
    for b0 in range(0, n, group):
        xf = torch.fft.rfft2(x[b0 : b0 + group].to(work), s=(lh, lw))  # (b, C, lh, lw // 2 + 1)
        yf = _SpectralSum.apply(xf.reshape(xf.shape[0], c, -1), wf)  # (b, K, freqs)
        y = torch.fft.irfft2(yf.view(-1, k, lh, lw // 2 + 1), s=(lh, lw))
        outs.append(y[:, :, : hv : sh, : wv : sw])  # keep the valid outputs, every S-th
    y = torch.cat(outs) if len(outs) > 1 else outs[0].contiguous()
    assert y.shape[-2:] == (ho, wo)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1).to(work)
    return y.to(input.dtype)


# ---------------------------------------------------------------------------------------------
# 4. A conv layer that chooses its algorithm by the lecture's cost model
# ---------------------------------------------------------------------------------------------

ALGORITHMS: dict[str, Callable[..., Tensor]] = {
    "direct": direct_conv2d,
    "scan": scan_conv2d,
    "fft": fft_conv2d,
}


def _features(shape_x: Sequence[int], shape_w: Sequence[int], stride, padding) -> dict[str, list[float]]:
    """The cost model's terms for each algorithm (see the module docstring)."""
    n, c, h, w = shape_x
    k, _, kh, kw = shape_w
    sh, sw = _pair(stride, "stride")
    l, r, t, b = _pad4(padding, kh, kw)
    hp, wp = h + t + b, w + l + r
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    taps = c * ho * wo * kh * kw  # multiply-adds of one filter over one image
    lh, lw = fft_size(hp), fft_size(wp)
    area = lh * lw
    transforms = (n * c + c * k + n * k) * area * math.log2(max(area, 2))  # FFTs of all planes
    return {
        "direct": [1.0, n * k * taps, n * (c * hp * wp + k * ho * wo)],
        "scan": [1.0, n * k * taps, n * taps],
        "fft": [1.0, transforms, n * c * k * area / 2],
    }


def predicted_costs(shape_x, shape_w, stride=1, padding=0, calibration: dict | None = None) -> dict[str, float]:
    """Predicted seconds of each algorithm for one forward pass, from ``calibration``'s constants."""
    cal = calibration if calibration is not None else _calibration_for(torch.device("cpu"))
    feats = _features(shape_x, shape_w, stride, padding)
    return {alg: sum(a * f for a, f in zip(cal[alg], fs)) for alg, fs in feats.items()}


def choose_algorithm(shape_x, shape_w, stride=1, padding=0, calibration: dict | None = None) -> str:
    """The algorithm with the smallest predicted cost (:func:`predicted_costs`)."""
    costs = predicted_costs(shape_x, shape_w, stride, padding, calibration)
    return min(costs, key=costs.get)


#: Width of the crossover band: when another algorithm's predicted cost is within this factor
#: of the cheapest, ``auto`` times those candidates once on the real input and keeps the
#: fastest. The fitted model is within about 15% for planes up to 128 x 128 but underestimates
#: the transforms of 256 x 256 planes (which no longer fit a core's cache) by up to 2x on the
#: 2-core development machine, so the band is a factor 3. Set to 1 for the pure cost model.
AUTO_MARGIN = 3.0

_MEASURED_CHOICES: dict[tuple, str] = {}  # (device, shapes, stride, padding, dtype) -> algorithm


def auto_candidates(shape_x, shape_w, stride=1, padding=0, calibration: dict | None = None) -> list[str]:
    """The algorithms whose predicted cost is within :data:`AUTO_MARGIN` of the cheapest,
    cheapest first. ``auto`` runs the first when it is alone, else times them."""
    costs = predicted_costs(shape_x, shape_w, stride, padding, calibration)
    best = min(costs.values())
    return sorted((a for a in costs if costs[a] <= AUTO_MARGIN * best), key=costs.get)


def auto_algorithm(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0) -> str:
    """What ``algorithm="auto"`` runs for these arguments: the cost model's choice, refined
    by one timing of the candidates in the crossover band (remembered per shape)."""
    stride = _pair(stride, "stride")
    padding = _pad4(padding, *weight.shape[-2:])
    cands = auto_candidates(input.shape, weight.shape, stride, padding, _calibration_for(input.device))
    if len(cands) == 1:
        return cands[0]
    key = (_device_key(input.device), tuple(input.shape), tuple(weight.shape), stride, padding,
           input.dtype, bias is not None)
    if key not in _MEASURED_CHOICES:
        predicted = predicted_costs(input.shape, weight.shape, stride, padding, _calibration_for(input.device))
        repeats = max(3, min(7, int(0.2 / max(predicted[cands[0]], 1e-9))))  # fastest of 3 to 7
        with torch.no_grad():
            fns = {a: (lambda a=a: ALGORITHMS[a](input, weight, bias, stride, padding)) for a in cands}
            times = _time_interleaved(fns, input.device, repeats)
        _MEASURED_CHOICES[key] = min(times, key=times.get)
    return _MEASURED_CHOICES[key]


# Probe shapes (batch, maps in, maps out, side, kernel) timed by `calibrate`: typical layers
# (8 images, 16 -> 16 maps), a first layer (1 -> 8 maps), a wide one (32 -> 32 maps) and two
# large, thin ones.
_PROBES: list[tuple[int, int, int, int, int]] = [
    *[(8, 16, 16, 32, m) for m in (3, 9, 17)],
    *[(8, 16, 16, 64, m) for m in (5, 13, 25)],
    (32, 1, 8, 32, 5),
    (32, 1, 8, 64, 15),
    (2, 32, 32, 32, 7),
    (2, 32, 32, 64, 21),
    (1, 8, 8, 128, 9),
    (2, 8, 8, 256, 7),
]



_COST_MODEL_VERSION = 2  # part of the cache key: a changed model never reads old constants


def _cache_file() -> Path:
    root = os.environ.get("NEOLENET_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "neolenet"
    return base / "conv_calibration.json"


def _device_key(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{device.type}-threads{torch.get_num_threads()}"
    return f"{name}|torch{torch.__version__}|model{_COST_MODEL_VERSION}"


def clock_for(device: torch.device) -> Callable[[], float]:
    """The clock to time ops with: CPU time of the calling thread on a CPU running one torch
    thread (other processes on a shared machine cannot inflate it, and with one thread every
    op runs on the caller), wall-clock time otherwise."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def _time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device,
                      repeats: int = 3) -> dict[str, float]:
    """Fastest of ``repeats`` runs of each function after a warm-up, the runs interleaved.

    The minimum (not the median) because other processes can only make a run slower;
    interleaving spreads their load over all the algorithms alike.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = clock_for(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            sync()
            if round_:  # round 0 is the warm-up
                times[name].append(clock() - t0)
    return {name: min(ts) for name, ts in times.items()}


def _nnls_relative(rows: list[list[float]], times: list[float]) -> list[float]:
    """Non-negative ``a`` minimising ``sum_i ((rows_i . a - t_i) / t_i)^2``.

    With at most three unknowns, try every subset of free coefficients (the others 0) and keep
    the best feasible least-squares solution.
    """
    a_mat = torch.tensor(rows, dtype=torch.float64) / torch.tensor(times, dtype=torch.float64)[:, None]
    target = torch.ones(len(times), dtype=torch.float64)
    m = a_mat.shape[1]
    scale = a_mat.abs().amax(0).clamp_min(1e-300)  # column scaling for conditioning
    best, best_err = [0.0] * m, float("inf")
    for mask in range(1, 1 << m):
        cols = [j for j in range(m) if mask >> j & 1]
        sub = a_mat[:, cols] / scale[cols]
        sol = torch.linalg.lstsq(sub, target[:, None]).solution[:, 0] / scale[cols]
        if (sol < 0).any():
            continue
        coef = torch.zeros(m, dtype=torch.float64)
        coef[cols] = sol
        err = float(((a_mat @ coef - target) ** 2).sum())
        if err < best_err:
            best, best_err = coef.tolist(), err
    return best


def calibrate(
    device: torch.device | str | None = None,
    force: bool = False,
    probes: Sequence[tuple[int, int, int, int, int]] | None = None,
    repeats: int = 3,
) -> dict:
    """Fit the cost model's constants on this machine, cache and return them.

    Reads ``conv_calibration.json`` in the cache dir when it has an entry for this device
    (unless ``force``); otherwise times direct, scan and fft forward passes on ``probes``
    (``(batch, maps in, maps out, side, kernel)``, default :data:`_PROBES`), fits each
    algorithm's constants with :func:`_nnls_relative`, and writes the entry.
    """
    device = torch.device(device or "cpu")
    key = _device_key(device)
    path = _cache_file()
    cache: dict = {}
    if path.exists():
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
    if key in cache and not force:
        _CALIBRATIONS[key] = cache[key]
        return cache[key]
    rows: dict[str, list[list[float]]] = {alg: [] for alg in ALGORITHMS}
    times: dict[str, list[float]] = {alg: [] for alg in ALGORITHMS}
    gen = torch.Generator(device="cpu").manual_seed(0)
    with torch.no_grad():
        for n, c, k, side, m in probes if probes is not None else _PROBES:
            x = torch.randn(n, c, side, side, generator=gen).to(device)
            w = torch.randn(k, c, m, m, generator=gen).to(device)
            feats = _features(x.shape, w.shape, 1, 0)
            fns = {alg: (lambda fn=fn: fn(x, w)) for alg, fn in ALGORITHMS.items()}
            for alg, t in _time_interleaved(fns, device, repeats).items():
                rows[alg].append(feats[alg])
                times[alg].append(t)
    fit = {alg: _nnls_relative(rows[alg], times[alg]) for alg in ALGORITHMS}
    cache[key] = fit
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=2))
    tmp.replace(path)
    _CALIBRATIONS[key] = fit
    return fit


_CALIBRATIONS: dict[str, dict] = {}  # in-memory copy of the cache


def _calibration_for(device: torch.device) -> dict:
    key = _device_key(device)
    if key not in _CALIBRATIONS:
        calibrate(device)
    return _CALIBRATIONS[key]


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           algorithm: str = "auto") -> Tensor:
    """``F.conv2d`` by the named algorithm; ``"auto"`` picks by the calibrated cost model."""
    if algorithm == "auto":
        algorithm = auto_algorithm(input, weight, bias, stride, padding)
    if algorithm not in ALGORITHMS:
        raise ConfigError(
            f"conv: algorithm must be one of {sorted(ALGORITHMS) + ['auto']}, got {algorithm!r}"
        )
    return ALGORITHMS[algorithm](input, weight, bias, stride, padding)


class Conv2d(nn.Module):
    """A convolutional layer: ``out_channels`` perceptrons scanned over all input maps.

    Drop-in for ``nn.Conv2d`` (same ``weight``/``bias`` shapes, same initialisation), plus
    asymmetric ``padding=(P_L, P_R, P_T, P_B)`` and ``algorithm``: ``"direct"`` (PyTorch's
    ``F.conv2d``), ``"scan"`` (unfold + one matrix product), ``"fft"`` (transform domain)
    or ``"auto"`` (:func:`auto_algorithm`: the cheapest by the calibrated cost model, decided
    once per input shape).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | str | Sequence[int] = 0,
        bias: bool = True,
        algorithm: str = "direct",
    ):
        super().__init__()
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"Conv2d: {what} must be a positive integer, got {v!r}")
        if algorithm not in (*ALGORITHMS, "auto"):
            raise ConfigError(
                f"Conv2d: algorithm must be one of {sorted(ALGORITHMS) + ['auto']}, got {algorithm!r}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = _pair(stride, "stride", "Conv2d")
        self.padding = _pad4(padding, *self.kernel_size, layer="Conv2d")
        self.algorithm = algorithm
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._choice: dict[tuple, str] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation: Kaiming-uniform weights, bias U(+-1/sqrt(fan_in))."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def output_size(self, h: int, w: int | None = None) -> tuple[int, int]:
        """``(H_out, W_out)`` for an ``h x w`` input, or a ConfigError naming the layer."""
        w = h if w is None else w
        l, r, t, b = self.padding
        return (
            check_conv("Conv2d (rows)", h, self.kernel_size[0], self.stride[0], (t, b)),
            check_conv("Conv2d (columns)", w, self.kernel_size[1], self.stride[1], (l, r)),
        )

    def chosen_algorithm(self, x: Tensor) -> str:
        """The algorithm this layer runs for inputs like ``x`` (decided once per shape)."""
        if self.algorithm != "auto":
            return self.algorithm
        key = (tuple(x.shape), str(x.device), x.dtype)
        if key not in self._choice:
            self._choice[key] = auto_algorithm(x, self.weight, self.bias, self.stride, self.padding)
        return self._choice[key]

    def forward(self, x: Tensor) -> Tensor:
        alg = self.chosen_algorithm(x)
        return ALGORITHMS[alg](x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}, "
            f"algorithm={self.algorithm!r}"
        )


# ---------------------------------------------------------------------------------------------
# 5. Pooling
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# 6. Scanning an MLP is a CNN
# ---------------------------------------------------------------------------------------------

_ELEMENTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU, nn.Softplus,
    nn.Hardtanh, nn.Identity, nn.Dropout,
)


def _mlp_layers(mlp: nn.Module | Iterable[nn.Module]) -> list[nn.Module]:
    layers = list(mlp.children()) if isinstance(mlp, nn.Module) else list(mlp)
    if isinstance(mlp, nn.Linear):
        layers = [mlp]
    if layers and isinstance(layers[0], nn.Flatten):
        layers = layers[1:]
    for layer in layers:
        if not isinstance(layer, (nn.Linear, *_ELEMENTWISE)):
            raise ConfigError(
                f"mlp_to_conv: the MLP may hold only nn.Linear and element-wise activations, "
                f"found {type(layer).__name__}"
            )
    if not layers or not isinstance(layers[0], nn.Linear):
        raise ConfigError("mlp_to_conv: the MLP must start with an nn.Linear layer")
    return layers


def mlp_to_conv(mlp: nn.Module, block_size: int, stride: int = 1, in_channels: int = 1,
                algorithm: str = "direct") -> nn.Sequential:
    """The CNN that computes ``mlp`` on every ``N x N`` block at stride ``S`` (slide 40).

    The MLP reads a block flattened in ``(channel, row, column)`` order, i.e.
    ``x[:, :, i:i+N, j:j+N].flatten(1)``. Its first ``nn.Linear(C N^2, H1)`` becomes ``H1``
    filters of size ``N x N`` over ``C`` maps at stride ``S``; every later ``nn.Linear(H, H')``
    becomes ``H'`` ``1 x 1`` filters (a perceptron over the depth of the maps, slide 69);
    activations stay as they are. The weights are copied, so the result is independent of
    ``mlp``. Output: ``(B, H_last, H_out, W_out)`` with ``H_out = floor((H - N) / S) + 1``.
    """
    layers = _mlp_layers(mlp)
    first = layers[0]
    if first.in_features != in_channels * block_size * block_size:
        raise ConfigError(
            f"mlp_to_conv: the first Linear layer reads {first.in_features} inputs, but a "
            f"{block_size}x{block_size} block of {in_channels} map(s) has "
            f"{in_channels * block_size * block_size}; fix block_size or in_channels"
        )
    convs: list[nn.Module] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            if i == 0:
                conv = Conv2d(in_channels, layer.out_features, block_size, stride,
                              bias=layer.bias is not None, algorithm=algorithm)
            else:
                conv = Conv2d(layer.in_features, layer.out_features, 1,
                              bias=layer.bias is not None, algorithm=algorithm)
            with torch.no_grad():
                conv.weight.copy_(layer.weight.reshape(conv.weight.shape))
                if layer.bias is not None:
                    conv.bias.copy_(layer.bias)
            convs.append(conv)
        else:
            convs.append(layer)
    return nn.Sequential(*convs).to(first.weight.device)


def scan_mlp(mlp: nn.Module, x: Tensor, block_size: int, stride: int = 1) -> Tensor:
    """Run ``mlp`` separately on every ``N x N`` block of ``x`` at stride ``S`` (the slow,
    literal form of slide 40). Returns ``(B, outputs, H_out, W_out)``, like :func:`mlp_to_conv`."""
    blocks = unfold_patches(x, block_size, block_size, stride, stride)  # (B, C, Ho, Wo, N, N)
    b, _, ho, wo = blocks.shape[:4]
    flat = blocks.permute(0, 2, 3, 1, 4, 5).reshape(b, ho, wo, -1)  # (c, row, col) order
    for layer in _mlp_layers(mlp):  # (a leading nn.Flatten is skipped: blocks come flat)
        flat = layer(flat)
    return flat.permute(0, 3, 1, 2)
