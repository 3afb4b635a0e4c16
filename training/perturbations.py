"""Exact, batched perturbations of image batches, for measuring a network's tolerance.

The Neocognitron (Fukushima 1980, "Neocognitron: a self-organizing neural network model for a
mechanism of pattern recognition unaffected by shift in position") was built to recognise a pattern
whatever its position and despite deformation. These transforms measure that claim on any model
(``benchmarks/bench_tolerance.py``; the notebooks use the same code):

- :func:`shift` moves the pixels by whole pixels (the background fills in, nothing wraps around);
  :func:`directions` gives the 8 offsets at a distance, :func:`mean_over_shifts` a score's mean over them;
- :func:`rotate` and :func:`scale` (about the image centre), :func:`affine_each` and LeCun's
  distortions :func:`random_affine`, and :func:`elastic` (Simard, Steinkraus & Platt 2003) resample
  the image bilinearly (:func:`remap`);
- :func:`gaussian_noise` and :func:`occlude` (a random square set to the background);
- :func:`shift_consistency` (Zhang 2019): how often a model's prediction survives two random shifts.

Each takes a batch ``(B, C, H, W)`` of uint8 images (values 0..255) or float images (on the scale
``0..255`` unless a function says otherwise) and returns a batch of the same shape, dtype and device;
uint8 results are rounded. ``fill`` is the background value (0 for MNIST-style light-on-dark digits;
a number, or one per channel). At the identity level (shift 0, rotation 0, scale 1, alpha 0, std 0,
size 0) every transform returns its input exactly: :func:`remap` at integer positions copies pixels.
Plain PyTorch: nothing here imports Lightning or Hydra.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Fill = float | Sequence[float]


def _fill_tensor(fill: Fill, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``fill`` as a ``(1, C or 1, 1, 1)`` tensor broadcastable against ``x``."""
    f = torch.as_tensor(fill, dtype=dtype or x.dtype, device=x.device).reshape(-1)
    if f.numel() not in (1, x.shape[1]):
        raise ValueError(f"fill has {f.numel()} values, the images have {x.shape[1]} channels")
    return f.view(1, -1, 1, 1)


def _check(x: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images (B, C, H, W), got shape {tuple(x.shape)}")


def _like(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out`` (float) back to ``x``'s dtype: uint8 is rounded and clipped to 0..255."""
    if x.dtype == torch.uint8:
        return out.round().clamp_(0, 255).to(torch.uint8)
    return out.to(x.dtype)


# --- shifts ------------------------------------------------------------------------------


def shift(x: torch.Tensor, dy: int, dx: int, fill: Fill = 0) -> torch.Tensor:
    """``x`` moved ``dy`` pixels down and ``dx`` pixels right (negative: up, left). The pixels that
    leave the image are lost and the background ``fill`` comes in: no wrap-around, no resampling."""
    _check(x)
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    out[:] = _fill_tensor(fill, x)
    if abs(dy) < h and abs(dx) < w:
        out[..., max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
            x[..., max(-dy, 0): h + min(-dy, 0), max(-dx, 0): w + min(-dx, 0)]
    return out


def directions(d: int) -> list[tuple[int, int]]:
    """The 8 offsets ``(dy, dx)`` at distance ``d``: each of dy and dx in {-d, 0, d}, not both 0
    (the 4 axis directions at ``d`` pixels and the 4 diagonals at ``d`` pixels along each axis)."""
    return [(sy * d, sx * d) for sy in (-1, 0, 1) for sx in (-1, 0, 1) if (sy, sx) != (0, 0)]


def mean_over_shifts(score: Callable[[torch.Tensor], float], x: torch.Tensor, d: int, fill: Fill = 0) -> float:
    """The mean of ``score`` (e.g. an accuracy) over ``x`` shifted by ``d`` pixels in each of the 8
    :func:`directions`; at ``d = 0``, ``score(x)``."""
    offsets = directions(d) if d else [(0, 0)]
    return sum(score(shift(x, dy, dx, fill)) for dy, dx in offsets) / len(offsets)


def shift_each(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Image ``i`` shifted by its own integer offset ``(dy[i], dx[i])``, as :func:`shift` (exactly)."""
    _check(x)
    b, _, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
    py = (ys - dy.to(x.device, torch.float32).view(b, 1, 1)).expand(b, h, w)
    px = (xs - dx.to(x.device, torch.float32).view(b, 1, 1)).expand(b, h, w)
    return remap(x, py, px, fill)


# --- resampling --------------------------------------------------------------------------


def remap(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Bilinear resampling: output pixel ``(i, j)`` of image ``b`` is ``x[b]`` read at the (real)
    pixel position ``(py[b, i, j], px[b, i, j])`` (rows, columns; pixel centres at integers).
    Neighbours outside the image read as ``fill``. At integer positions the weights are exactly 1
    and 0, so a pixel is copied unchanged (no interpolation error, unlike ``grid_sample``'s
    normalised coordinates)."""
    _check(x)
    b, c, h, w = x.shape
    xf = x.float().reshape(b, c, h * w)
    fillv = _fill_tensor(fill, x, torch.float32).view(1, -1, 1)
    py, px = py.float().expand(b, h, w), px.float().expand(b, h, w)
    y0, x0 = py.floor(), px.floor()
    wy, wx = py - y0, px - x0
    y0, x0 = y0.long(), x0.long()
    out = torch.zeros(b, c, h * w, device=x.device)
    for dy, dx, wgt in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        yy, xx = y0 + dy, x0 + dx
        inside = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)).view(b, 1, h * w)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).view(b, 1, h * w).expand(b, c, h * w)
        v = torch.where(inside, xf.gather(2, idx), fillv)
        out += wgt.view(b, 1, h * w) * v
    return _like(out.view(b, c, h, w), x)


def _about_centre(x: torch.Tensor, matrix: torch.Tensor, fill: Fill) -> torch.Tensor:
    """``x`` resampled at ``centre + matrix @ (p - centre)`` for each output pixel ``p = (row, col)``:
    ``matrix`` maps output to input positions, in pixels, about the image centre."""
    b, _, h, w = x.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ys = (torch.arange(h, device=x.device, dtype=torch.float32) - cy).view(h, 1)
    xs = (torch.arange(w, device=x.device, dtype=torch.float32) - cx).view(1, w)
    m = matrix.tolist()
    py = m[0][0] * ys + m[0][1] * xs + cy
    px = m[1][0] * ys + m[1][1] * xs + cx
    return remap(x, py.expand(b, h, w), px.expand(b, h, w), fill)


def rotate(x: torch.Tensor, degrees: float, fill: Fill = 0) -> torch.Tensor:
    """``x`` rotated by ``degrees`` counter-clockwise as displayed (rows down), about the image
    centre, bilinear; corners that come from outside the image are the background ``fill``.
    90 degrees on a square image is exactly ``torch.rot90(x, 1, (2, 3))``."""
    _check(x)
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    if degrees % 90 == 0:  # exact cosines and sines at the right angles (cos(pi/2) is 6e-17, not 0)
        c, s = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][int(degrees // 90) % 4]
    # output (row, col) reads the input rotated back by the angle, in (row, col) with rows pointing down
    return _about_centre(x, torch.tensor([[c, s], [-s, c]]), fill)


def scale(x: torch.Tensor, factor: float, fill: Fill = 0) -> torch.Tensor:
    """``x`` magnified by ``factor`` about the image centre (``< 1`` shrinks it; the background
    ``fill`` comes in at the border), bilinear, no antialiasing."""
    _check(x)
    if factor <= 0:
        raise ValueError(f"scale factor must be positive, got {factor}")
    return _about_centre(x, torch.tensor([[1 / factor, 0.0], [0.0, 1 / factor]]), fill)


def affine_each(x: torch.Tensor, ty: torch.Tensor, tx: torch.Tensor, scale: torch.Tensor, squeeze: torch.Tensor,
                shear: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Image ``i`` under its own planar affine map about the image centre c, in (row, col) pixels: a
    point q of the input goes to ``c + A_i (q - c) + (ty_i, tx_i)`` with
    ``A = scale * diag(1 / squeeze, squeeze) @ [[1, 0], [shear, 1]]``. So ``ty``/``tx`` move the
    pattern down/right by that many pixels, ``scale`` magnifies it, ``squeeze`` < 1 compresses it
    horizontally while elongating it vertically (> 1 the reverse), ``shear`` moves each row right
    by ``shear`` times its distance below the centre. The output reads the input bilinearly at
    ``A^-1`` of its own positions (:func:`remap`); the identity (0, 0, 1, 1, 0) copies ``x``."""
    _check(x)
    b, _, h, w = x.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    f = lambda v: torch.as_tensor(v, dtype=torch.float32, device=x.device).expand(b).reshape(b, 1, 1)  # noqa: E731
    ty, tx, scale, squeeze, shear = f(ty), f(tx), f(scale), f(squeeze), f(shear)
    if (scale <= 0).any() or (squeeze <= 0).any():
        raise ValueError("affine_each: scale and squeeze must be > 0")
    u = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1) - cy - ty  # output - c - t
    v = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w) - cx - tx
    # A = s [[1/q, 0], [q k, q]]  ->  A^-1 = (1/s) [[q, 0], [-q k, 1/q]]
    py = cy + squeeze * u / scale
    px = cx + (-squeeze * shear * u + v / squeeze) / scale
    return remap(x, py.expand(b, h, w), px.expand(b, h, w), fill)


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None, *, translate: float = 2.0,
                  scale: float = 0.1, squeeze: float = 0.1, shear: float = 0.2, fill: Fill = 0) -> torch.Tensor:
    """The distortions of [LeCun et al. 1998, III.C.7]: "random combinations of planar affine
    transformations: horizontal and vertical translations, scaling, squeezing (simultaneous
    horizontal compression and vertical elongation, or the reverse) and horizontal shearing". One
    draw per image, each uniform: a shift of up to ``translate`` pixels along each axis, a scale in
    1 +- ``scale``, a squeeze in 1 +- ``squeeze``, a shear in +- ``shear``. UNCERTAIN: the paper
    gives no ranges; these defaults are this project's (docs/lenet.md)."""
    _check(x)
    b = x.shape[0]

    def draw(half_width: float, centre: float = 0.0) -> torch.Tensor:
        return centre + half_width * (2 * torch.rand(b, generator=generator) - 1)

    return affine_each(x, draw(translate), draw(translate), draw(scale, 1.0), draw(squeeze, 1.0), draw(shear),
                       fill)


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """The normalised 1-D Gaussian of std ``sigma``, cut at ``truncate * sigma`` (as SciPy's
    ``gaussian_filter``)."""
    r = max(int(truncate * sigma + 0.5), 0)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def elastic_field(shape: tuple[int, int, int], alpha: float, sigma: float,
                  generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Simard, Steinkraus & Platt (2003), "Best practices for convolutional neural networks applied
    to visual document analysis", section 2: a displacement field ``(B, 2, H, W)`` (rows, columns),
    uniform in [-1, 1] at each pixel, convolved with a Gaussian of std ``sigma`` (zero outside the
    image), times ``alpha`` (pixels). Zero at ``alpha = 0``."""
    b, h, w = shape
    gdev = generator.device if generator is not None else device
    u = torch.rand((b * 2, 1, h, w), generator=generator, device=gdev).to(device) * 2 - 1
    if sigma > 0:
        k = gaussian_kernel(sigma).to(u.device)
        r = len(k) // 2
        u = F.conv2d(F.pad(u, (r, r, 0, 0)), k.view(1, 1, 1, -1))
        u = F.conv2d(F.pad(u, (0, 0, r, r)), k.view(1, 1, -1, 1))
    return (u * alpha).view(b, 2, h, w)


def elastic(x: torch.Tensor, alpha: float, sigma: float, generator: torch.Generator | None = None,
            fill: Fill = 0) -> torch.Tensor:
    """An elastic deformation (Simard, Steinkraus & Platt 2003): each image is resampled bilinearly
    at its pixel positions plus its own :func:`elastic_field` (``alpha``: intensity in pixels,
    ``sigma``: smoothness; the paper's MNIST setting is sigma = 4, alpha = 34). ``alpha = 0``
    returns ``x`` exactly (the field is zero, and :func:`remap` copies pixels at integer positions)."""
    _check(x)
    b, _, h, w = x.shape
    d = elastic_field((b, h, w), alpha, sigma, generator, x.device)
    ys = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
    return remap(x, ys + d[:, 0], xs + d[:, 1], fill)


# --- noise and occlusion -----------------------------------------------------------------


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None,
                   peak: float = 255.0) -> torch.Tensor:
    """``x`` plus independent Gaussian noise of std ``std`` grey levels on the 0..255 scale at every
    pixel, clipped back to the range 0..``peak`` (``peak``: the image's white, 255 for uint8; pass
    1.0 for float images in [0, 1], and ``std`` is still given in 0..255 levels)."""
    _check(x)
    gdev = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=gdev).to(x.device) * (std * peak / 255.0)
    return _like((x.float() + noise).clamp_(0, peak), x)


def occlude(x: torch.Tensor, size: int, generator: torch.Generator | None = None, fill: Fill = 0) -> torch.Tensor:
    """One square of side ``size`` per image, at a uniformly random position wholly inside the image,
    set to ``fill`` (the background: the part of the pattern under it disappears), in every channel."""
    _check(x)
    b, _, h, w = x.shape
    if not 0 <= size <= min(h, w):
        raise ValueError(f"occluding square of side {size} does not fit {h}x{w} images")
    gdev = generator.device if generator is not None else x.device
    top = torch.randint(0, h - size + 1, (b,), generator=generator, device=gdev).to(x.device).view(b, 1, 1)
    left = torch.randint(0, w - size + 1, (b,), generator=generator, device=gdev).to(x.device).view(b, 1, 1)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    mask = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
    return torch.where(mask[:, None], _fill_tensor(fill, x), x)


# --- shift consistency -------------------------------------------------------------------


def shift_consistency(predict_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, k: int,
                      generator: torch.Generator | None = None, fill: Fill = 0) -> float:
    """Zhang (2019), "Making convolutional networks shift-invariant again" (ICML), section 4.1: the
    fraction of images whose predicted class is the same under two independent random shifts, each
    offset ``(dy, dx)`` uniform in ``[-k, k]^2`` (integers; the background ``fill`` comes in).
    ``predict_fn`` maps a batch like ``x`` to classes ``(B,)`` or scores ``(B, K)``. 1.0 at ``k = 0``."""
    _check(x)
    b = x.shape[0]
    gdev = generator.device if generator is not None else x.device
    offsets = torch.randint(-k, k + 1, (4, b), generator=generator, device=gdev)
    preds = []
    for dy, dx in (offsets[:2], offsets[2:]):
        p = predict_fn(shift_each(x, dy, dx, fill))
        preds.append(p.argmax(1) if p.ndim == 2 else p)
    return int((preds[0] == preds[1]).sum()) / b
