"""Convolution by scanning and in the transform domain ("Convolutional Networks II").

**Scanning** (slides 13-29): a filter is a perceptron with a bias, scanned over all the maps of
the previous layer, ``z(i, j) = sum_c sum_k sum_l w(c, k, l) x_c(i S + k, j S + l) + b``.
:func:`scan_conv2d` gathers every patch the perceptron sees (:func:`unfold_patches`, i.e.
``Tensor.unfold``) and applies all ``K`` perceptrons to all patches with one matrix product.
:func:`direct_conv2d` is PyTorch's own ``F.conv2d``, for reference and speed.

**Correlation in the transform domain** (slides 41-42; Mathieu, Henaff & LeCun, "Fast Training
of Convolutional Networks through FFTs", ICLR 2014): ``Y = IDFT2(DFT2(X) o conj(DFT2(W)))``.
:func:`fft_conv2d` does this with real FFTs, sums over input maps in the frequency domain, and
costs ``O(N^2 log N)`` per map pair instead of the ``O(N^2 M^2)`` of scanning.

All three take torch's argument order ``(input, weight, bias, stride, padding)`` and return what
``F.conv2d`` returns (plus asymmetric padding, see :mod:`models.ops.sizes`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .sizes import _conv_args, _zero_pad

__all__ = [
    "SCAN_CHUNK_ELEMENTS",
    "FFT_GROUP_ELEMENTS",
    "unfold_patches",
    "scan_conv2d",
    "direct_conv2d",
    "fft_size",
    "fft_conv2d",
]

# ---------------------------------------------------------------------------------------------
# Convolution as scanning: unfold the patches, one matrix product
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
# Correlation in the transform domain
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

