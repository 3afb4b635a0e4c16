"""The Neocognitron's cells, shared by both networks (:mod:`models.neocognitron`, the lecture's
supervised one, and :mod:`models.neocognitron_fukushima`, Fukushima's self-organising one).

Both model files import from here and never from each other.

* ``phi[x] = max(x, 0)``, the half-wave rectifier of every cell (Fukushima 1980, Biological
  Cybernetics 36).
* C-cells: ``u_C = psi[gain * sum_k d(k) u_S(n + k)]`` with a fixed centre-weighted blurring kernel
  ``d`` (a Gaussian summing to 1) and the saturation ``psi[x] = phi[x] / (1 + phi[x])``
  (Fukushima 2003, Neurocomputing 51): :class:`BlurCPlanes`. The lecture's max or mean C-cells
  ("Convolutional Networks II", slide 4): :class:`PoolCPlanes`.
* S-cells with subtractive inhibition by a V-cell (Fukushima 2010, Neural Networks 23; 2011,
  Neural Networks 24; written as eq. (1)-(2) of "Training multi-layered neural network
  neocognitron", Neural Networks 40, 2013)::

      u_S(n) = phi[ sum_{kappa, nu} a(kappa, nu) x_kappa(n + nu) - theta * v(n) ] / (1 - theta)
      v(n)   = sqrt( sum_{kappa, nu} c(nu) x_kappa(n + nu)^2 )          (the V-cell)

  :class:`SLayer`, with its competitive learning and Add-if-Silent growth.
* The fixed kernels of Fukushima's first layers: UG's difference of Gaussians
  (:func:`dog_kernel`, 2003) and US1's oriented edge extractors (:func:`edge_kernels`).
* The checks of settings both networks use, :func:`check_int` and :func:`check_number`, live in
  :mod:`models.checks` with every model's; they are importable from here as well.

C-plane kernels are buffers, never Parameters: they are saved in the state dict, move with
``.to()``, and no optimiser can change them.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_int, check_number  # noqa: F401  (re-exported: models.cells.check_int keeps working)


# ----------------------------------------------------------------------------- functions and kernels
def phi(x: torch.Tensor) -> torch.Tensor:
    """Fukushima's half-wave rectifier phi[x] = max(x, 0)."""
    return x.clamp_min(0)


def saturate(x: torch.Tensor) -> torch.Tensor:
    """The C-cell saturation psi[x] = phi[x] / (1 + phi[x]) (Fukushima 2003), in [0, 1)."""
    p = phi(x)
    return p / (1.0 + p)


def gaussian_kernel(m: int, sigma: float | None = None) -> torch.Tensor:
    """A centre-weighted ``m x m`` blurring kernel (a separable Gaussian), summing to 1.

    ``sigma`` defaults to ``m / 4`` so the window edge gets about e^-2 of the centre weight.
    """
    sigma = m / 4.0 if sigma is None else float(sigma)
    r = torch.arange(m, dtype=torch.float64) - (m - 1) / 2.0
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def dog_kernel(m: int, sigma_c: float, sigma_s: float) -> torch.Tensor:
    """Zero-sum on-centre difference of Gaussians, ``m x m`` (each Gaussian sums to 1)."""
    return gaussian_kernel(m, sigma_c) - gaussian_kernel(m, sigma_s)


def edge_kernels(n_orient: int, m: int, sigma: float | None = None) -> torch.Tensor:
    """US1's fixed edge extractors over UG's (on, off) planes: ``(n_orient, 2, m, m)``.

    Orientation ``k`` uses ``g(r) = (r . e_k) exp(-|r|^2 / 2 sigma^2)`` with ``e_k`` at angle
    ``2 pi k / n_orient``: the on-centre plane is read where ``g > 0``, the off-centre plane
    where ``g < 0`` (an edge is an on-response beside an off-response).
    """
    sigma = m / 4.0 if sigma is None else sigma
    r = torch.arange(m, dtype=torch.float64) - (m - 1) / 2.0
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    env = torch.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    out = []
    for k in range(n_orient):
        ang = 2 * math.pi * k / n_orient
        g = (xx * math.cos(ang) + yy * math.sin(ang)) * env
        out.append(torch.stack([g.clamp_min(0), (-g).clamp_min(0)]))
    return torch.stack(out).float()


def conv_single(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, k)`` for one input and one output plane (``k``: ``(1, 1, m, m)``), run as a
    grouped convolution over the batch, which CPU backends do several times faster."""
    b, _, h, w = x.shape
    y = F.conv2d(x.reshape(1, b, h, w), k.expand(b, 1, k.shape[-2], k.shape[-1]), groups=b)
    return y.reshape(b, 1, y.shape[-2], y.shape[-1])


def pads_lrtb(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) for F.pad from an int or a (P_L, P_R) pair."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    p_l, p_r = padding
    return p_l, p_r, p_l, p_r


# ----------------------------------------------------------------------------- C-cells
class BlurCPlanes(nn.Module):
    """Fukushima's C-cells: a fixed centre-weighted blur of each S-plane, then saturation.

    ``u_C = psi[gain * sum_k d(k) u_S(n + k)]`` with ``d`` a Gaussian kernel summing to 1
    (a depthwise convolution with stride). The kernel is a buffer: it is saved in the state
    dict, moves with ``.to()``, and is never a Parameter, so no optimiser can change it.
    """

    def __init__(self, planes: int, m: int, stride: int, padding: int | Sequence[int] = 0,
                 gain: float = 1.0, sigma: float | None = None, saturation: bool = True):
        super().__init__()
        self.planes, self.m, self.stride = planes, m, stride
        self.pads = pads_lrtb(padding)
        self.gain, self.saturation = float(gain), bool(saturation)
        k = gaussian_kernel(m, sigma).expand(planes, 1, m, m).clone()
        self.register_buffer("kernel", k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads)
        y = F.conv2d(x, self.kernel, stride=self.stride, groups=self.planes) * self.gain
        return saturate(y) if self.saturation else y

    def blur_all(self, x: torch.Tensor) -> torch.Tensor:
        """The same cells over any number of planes, all with the one kernel of plane 0 (Fukushima's
        network keeps a single kernel, ``planes=1``, for layers whose plane count grows)."""
        if x.shape[1] == 0:
            n = (x.shape[2] + self.pads[2] + self.pads[3] - self.m) // self.stride + 1
            return x.new_zeros(x.shape[0], 0, n, n)
        if any(self.pads):
            x = F.pad(x, self.pads)
        k = self.kernel[:1].expand(x.shape[1], 1, self.m, self.m)
        y = F.conv2d(x, k, stride=self.stride, groups=x.shape[1]) * self.gain
        return saturate(y) if self.saturation else y

    def extra_repr(self) -> str:
        return f"{self.planes}, M={self.m}, stride={self.stride}, pads={self.pads}, gain={self.gain}"


class PoolCPlanes(nn.Module):
    """The lecture's C-cells: max (or mean) over an ``M x M`` window of each S-plane, with a stride."""

    def __init__(self, kind: str, m: int, stride: int, padding: int = 0):
        super().__init__()
        self.kind, self.m, self.stride, self.padding = kind, m, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return F.max_pool2d(x, self.m, self.stride, self.padding)
        return F.avg_pool2d(x, self.m, self.stride, self.padding, count_include_pad=False)

    def extra_repr(self) -> str:
        return f"{self.kind}, M={self.m}, stride={self.stride}, padding={self.padding}"


# ----------------------------------------------------------------------------- S-cells
class SLayer(nn.Module):
    """A layer of S-cell planes with V-cell inhibition (the subtractive form in the module docs).

    ``acc`` (``(planes, C * L * L)``) holds each plane's accumulated (unnormalised) weight
    direction ``w``; the effective excitatory weights are ``a = c * w / sqrt(sum c w^2)``, so that
    ``sum a x <= v`` (Cauchy-Schwarz) and ``u_S = v * phi[s - theta] / (1 - theta)`` with ``s`` the
    c-weighted cosine similarity of weights and input. ``c`` is the V-cell's fixed weight per input
    position (a Gaussian over the ``L x L`` window, the same for every input plane, summing to 1
    over the window). ``theta`` is the selectivity while recognising, ``theta_learn`` the higher one
    while learning (dual thresholds, Fukushima, Nagahara & Shouno 1997). The number of planes grows
    during learning (Add-if-Silent) up to ``max_planes``; :meth:`learn` also reinforces the planes
    by competition unless told to keep generated planes frozen, as the papers' AiS does.
    """

    def __init__(self, name: str, in_planes: int, kernel: int, theta: float, theta_learn: float,
                 max_planes: int, sigma_c: float | None = None):
        super().__init__()
        self.name, self.in_planes, self.kernel = name, in_planes, kernel
        self.theta, self.theta_learn, self.max_planes = theta, theta_learn, max_planes
        c2d = gaussian_kernel(kernel, sigma_c if sigma_c is not None else kernel / 2.0)
        self.register_buffer("c2d", c2d.view(1, 1, kernel, kernel).clone())
        self.register_buffer("acc", torch.zeros(0, in_planes * kernel * kernel))

    def c(self, in_planes: int) -> torch.Tensor:
        """The V-cell weights per input position, in unfold order ``(C, L, L)``: ``(C * L * L,)``."""
        return self.c2d.reshape(-1).repeat(in_planes)

    @property
    def planes(self) -> int:
        return self.acc.shape[0]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "acc"
        if key in state_dict:  # the layer grows while learning: take the checkpoint's size
            self.acc = torch.empty_like(state_dict[key], device=self.acc.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def weights(self) -> torch.Tensor:
        """The excitatory weights ``a = c w`` with ``sum c w^2 = 1``: ``(planes, C, L, L)``."""
        cin = self.acc.shape[1] // self.kernel**2
        c = self.c(cin)
        norm = (c * self.acc**2).sum(1, keepdim=True).sqrt().clamp_min(1e-12)
        return (c * self.acc / norm).view(-1, cin, self.kernel, self.kernel)

    def set_weights(self, w: torch.Tensor) -> None:
        """Fix the layer's weight directions ``w`` (``(planes, C, L, L)``), e.g. US1's edges."""
        self.acc = w.reshape(w.shape[0], -1).to(self.acc)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        p = (self.kernel - 1) // 2
        return F.pad(x, (p, self.kernel - 1 - p, p, self.kernel - 1 - p))

    def vcell(self, x: torch.Tensor) -> torch.Tensor:
        """``v(n) = sqrt(sum c x^2)``, ``(B, 1, H, W)``."""
        return conv_single(self.pad(x).pow(2).sum(1, keepdim=True), self.c2d).clamp_min(0).sqrt()

    def forward(self, x: torch.Tensor, theta: float | None = None) -> torch.Tensor:
        theta = self.theta if theta is None else theta
        if self.planes == 0:
            return x.new_zeros(x.shape[0], 0, x.shape[2], x.shape[3])
        e = F.conv2d(self.pad(x), self.weights())
        return phi(e - theta * self.vcell(x)) / (1 - theta)

    def patches_at(self, x: torch.Tensor, b: torch.Tensor, pos: torch.Tensor,
                   v: torch.Tensor) -> torch.Tensor:
        """The unit-norm inputs ``x / v`` of the S-cells of patterns ``b`` at flat positions
        ``pos`` (any equal shapes), as ``(*b.shape, C * L * L)`` in unfold order."""
        L, W = self.kernel, x.shape[3]
        ar = torch.arange(L, device=x.device)
        i, j = pos // W, pos % W
        xp = self.pad(x)
        # advanced indices around a slice: the result is (*b.shape, L, L, C)
        p = xp[b[..., None, None], :, i[..., None, None] + ar[:, None], j[..., None, None] + ar]
        p = p.movedim(-1, -3).flatten(-3)
        return p / v.clamp_min(1e-12)[..., None]

    @torch.no_grad()
    def learn(self, x: torch.Tensor, q: float, active: float, frozen: bool = False) -> dict[str, float]:
        """One batch of Add-if-Silent, with competitive learning unless ``frozen``, on the planes ``x``.

        Competition: in each S-column (all planes x a 3x3 neighbourhood) the cell with the largest
        output is a candidate seed; each plane takes at most one seed per pattern, its strongest,
        and adds the seed's normalised input to its shared weights (``Delta a = q c x``).
        Add-if-Silent (Fukushima 2013): a pattern with a strong input location (a local maximum of
        ``v`` with ``v >= active * max v``) where every S-cell is silent generates a new plane whose
        weights are the input there (at most one per pattern, up to ``max_planes``). With
        ``frozen=False`` generated planes go on learning by competition like the others; with
        ``frozen=True`` there is no competition and a plane's weights never change after it is
        generated: AiS as the papers define it.
        """
        B, _, H, W = x.shape
        v = self.vcell(x).flatten(1)  # (B, HW)
        bidx = torch.arange(B, device=x.device)
        seeds = 0
        if self.planes:
            u = self(x, self.theta_learn)  # (B, K, H, W), with the learning selectivity
            silent_here = u.amax(1).flatten(1) <= 0  # (B, HW)
        else:
            silent_here = torch.ones_like(v, dtype=torch.bool)
        if self.planes and not frozen:
            colmax = F.max_pool2d(u.amax(1, keepdim=True), 3, 1, 1)  # S-column maximum
            cand = torch.where((u >= colmax) & (u > 0), u, torch.zeros_like(u))
            best, pos = cand.flatten(2).max(2)  # each plane's seed, (B, K)
            ok = best > 0
            if ok.any():
                bb = bidx[:, None].expand_as(pos)[ok]
                seed_x = self.patches_at(x, bb, pos[ok], v[bb, pos[ok]])
                plane = torch.arange(self.planes, device=x.device).expand_as(pos)[ok]
                self.acc.index_add_(0, plane, q * seed_x)
            seeds = int(ok.sum())
        # Add-if-Silent: a pattern with a strong input location where no S-cell answers.
        vmap = v.view(B, 1, H, W)  # candidate locations: local maxima of the input strength
        peak = (vmap >= F.max_pool2d(vmap, 3, 1, 1)).view(B, -1)
        strong = peak & (v >= active * v.amax(1, keepdim=True)) & (v > 0)
        score = torch.where(strong & silent_here, v, torch.zeros_like(v))
        vbest, where = score.max(1)
        silent = vbest > 0
        grown = 0
        if silent.any():
            b = bidx[silent]
            grown = self._add_planes(self.patches_at(x, b, where[silent], v[b, where[silent]]))
        return {"silent": float(silent.float().mean()), "n_silent": int(silent.sum()), "seeds": seeds,
                "grown": grown}

    def _add_planes(self, cand: torch.Tensor) -> int:
        """Add candidates as new planes, skipping any a plane added just before already answers."""
        room = self.max_planes - self.planes
        if room <= 0 or len(cand) == 0:
            return 0
        sim = (cand * self.c(cand.shape[1] // self.kernel**2)) @ cand.t()
        keep: list[int] = []
        for i in range(len(cand)):
            if len(keep) == room:
                break
            if not keep or bool((sim[i, keep] < self.theta_learn).all()):
                keep.append(i)
        self.acc = torch.cat([self.acc.reshape(-1, cand.shape[1]), cand[keep]])
        return len(keep)
