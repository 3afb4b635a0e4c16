"""Fukushima's self-organising Neocognitron, trained without backprop.

Structure (K. Fukushima, "Neocognitron for handwritten digit recognition", Neurocomputing 51,
2003): ``U0 -> UG -> US1 -> UC1 -> US2 -> UC2 -> US3 -> UC3 -> US4`` (+ the class decision).

* **UG** (contrast extraction): an on-centre and an off-centre plane,
  ``phi[+-(DoG * u0)]`` with a zero-sum difference-of-Gaussians kernel.
* **S-cells** (every US layer) use the *subtractive* inhibition by a V-cell of Fukushima,
  "Neocognitron trained with winner-kill-loser rule" (Neural Networks 23, 2010) and
  "Increasing robustness against background noise" (Neural Networks 24, 2011), as written in
  "Training multi-layered neural network neocognitron" (Neural Networks 40, 2013), eq. (1)-(2)::

      u_S(n) = phi[ sum_{kappa, nu} a(kappa, nu) x_kappa(n + nu) - theta * v(n) ] / (1 - theta)
      v(n)   = sqrt( sum_{kappa, nu} c(nu) x_kappa(n + nu)^2 )          (the V-cell)

  with fixed V-cell weights ``c(nu)`` that decrease with the distance from the centre (a
  Gaussian), and the excitatory weights kept as ``a = c * w`` with ``sum c w^2 = 1``, so that
  ``sum a x <= v`` (Cauchy-Schwarz) and ``u_S = v * phi[s - theta] / (1 - theta)``, where ``s`` is
  the c-weighted cosine similarity of the weights and the input. ``theta`` is the selectivity
  of the layer; learning uses a higher ``theta`` than recognition (dual thresholds,
  Fukushima, Nagahara & Shouno 1997).
* **C-cells**: fixed blurring connections (a Gaussian kernel), then the saturation
  ``psi[x] = phi[x] / (1 + phi[x])`` (2003). The maps are kept fine: UC1 blurs without
  thinning out (stride 1, 28x28), UC2 and UC3 halve (14x14, 7x7), and UC3's blur is 3x3.
  Fukushima's networks thin out far less than a 2x-per-stage pyramid on a 28x28 digit would
  (the 2003 network works on a 65x65 input), and on MNIST the coarse 28 -> 14 -> 7 -> 4
  pyramid lost most of what the top layer needs (10k training images, the top rule applied to
  UC3: 4x4 UC3 92.8% test, 28 -> 14 -> 7 -> 7 93.0%, 28 -> 28 -> 14 -> 7 95.9%). The inhibitory
  surround of the 2003 S->C connections (a centre Gaussian minus 0.6 x one twice as wide) was
  tried and left out (95.8% against 96.3% without it).
* **What the defaults rest on** (``benchmarks/bench_neocognitron.py --train-limit N --probe 2 3``:
  MNIST test accuracy with each training image stored as a reference vector, interpolating
  between 4 per class, so that the layers are compared, not the top rule): with 5x5 receptive
  fields in US2 and US3, UC2's output gave 98.18% but UC3's only 96.76% (10k training images):
  US3 lost what UC2 had (with the defaults now: UC2 98.44%, UC3 98.28%). A 3x3 receptive field in US3 gives 97.32%, in US2 and US3 97.85%, with US3
  recognising at theta 0.5 97.99%; on 20k images US1 at theta 0.5 then 98.51%, and UC2/UC3
  gains 8 98.54%. These layers grow few planes (US2 21, US3 22: a 1,078-long top vector).
  More planes (a higher learning theta or larger caps) never did better at the same size of
  training set (96.4-97.99% on 10k) and cost time.
* **US1**: fixed edge extractors (Fukushima also fixed them in later papers): ``n_orient``
  oriented derivative-of-Gaussian edges over the on/off planes of UG.
* **US2, US3** learn, unsupervised, by competition: in each S-column (all planes x a 3x3
  neighbourhood) the cell with the largest output is a candidate seed, and each plane takes
  at most one seed per pattern, its strongest; the seed's input, normalised, is added to the
  plane's shared weights (``Delta a = q c x``; weight sharing moves the whole plane).
  **Add-if-Silent** (Fukushima 2013, ICONIP 2014): for a training pattern where every S-cell
  is silent at one of its strong input locations (a local maximum of the V-cell's ``v`` with
  ``v >= active * max v``), a new cell-plane is generated whose weights are the input at the
  strongest such location (at most one per pattern, up to ``max_planes`` per layer).
* **US4** (top) is trained with labels: a training pattern that is misclassified, or draws
  no response (best similarity below the learning ``theta``, 0.9), or that its own class wins by
  less than ``margin`` (0.05; the *margined winner-take-all* of Fukushima, Neural Networks 97,
  2018), becomes a new labelled reference vector (supervised competitive learning, 2003 /
  Add-if-Silent, 2013). Recognition uses the **interpolating-vector** idea (2013): for each
  class, the best cosine similarity between the input and the cone spanned by that class's
  ``intvec_k`` most similar reference vectors (interpolation between neighbouring reference
  vectors; ``intvec_k: 1`` is plain winner-take-all), and the label of the winner. With these
  features the top rule decides much: one pass over 60k images with the plain rule (learning
  theta 0.8, no margin) keeps 2,268 vectors and gives 97.23% test; theta 0.9 98.20%; theta 0.9
  with margin 0.02 98.73% (9,169 vectors), with margin 0.05 98.97% (31,265 vectors); all 60k
  stored 99.03%. The margin was chosen on 5k held-out training images (0.02: 98.70%, one pass;
  0.05: 99.04%).

Learning is driven by the harness' non-backprop protocol: ``learns_by_backprop = False``;
``learn(x, y)`` is called on each training batch, and ``learning_epoch_end()`` moves on to the
next phase: epoch 0 trains US2, epoch 1 US3, epochs 2.. the top layer. All weights are
buffers; nothing here uses autograd. Everything is batched (convolutions, gathers of seed
inputs, argmax per column); the only Python loops are over layers, classes and the Add-if-Silent candidates of
a batch (at most one per pattern).

The input is rescaled per image to [0, 1] (min-max) first, so any normalisation of the data
module works; colour inputs are averaged to one grey plane.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .neocognitron import BlurCPlanes, _number, _pos_int, gaussian_kernel, phi, saturate
from .ops import check_conv, conv_output_size, same_padding
from .registry import register_model


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


class SLayer(nn.Module):
    """A layer of S-cell planes with V-cell inhibition (the subtractive form above).

    ``acc`` (``(planes, C * L * L)``) holds each plane's accumulated (unnormalised) weight
    direction ``w``; the effective excitatory weights are ``a = c * w / sqrt(sum c w^2)``.
    ``c`` is the V-cell's fixed weight per input position (a Gaussian over the ``L x L``
    window, the same for every input plane, summing to 1 over the window). The number of planes
    grows during learning (Add-if-Silent) up to ``max_planes``.
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
    def learn(self, x: torch.Tensor, q: float, active: float) -> dict[str, float]:
        """One batch of competitive learning + Add-if-Silent on the input planes ``x``."""
        B, _, H, W = x.shape
        v = self.vcell(x).flatten(1)  # (B, HW)
        bidx = torch.arange(B, device=x.device)
        seeds = 0
        if self.planes:
            u = self(x, self.theta_learn)  # (B, K, H, W), with the learning selectivity
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
            silent_here = u.amax(1).flatten(1) <= 0  # (B, HW)
        else:
            silent_here = torch.ones_like(v, dtype=torch.bool)
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
        return {"silent": float(silent.float().mean()), "seeds": seeds, "grown": grown}

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


class FukushimaNeocognitron(nn.Module):
    """``U0 -> UG -> US1/UC1 -> US2/UC2 -> US3/UC3 -> US4``, self-organised; see the module docs."""

    learns_by_backprop = False

    def __init__(self, in_channels: int, num_classes: int, input_size: int, *,
                 ug_kernel: int, ug_sigmas: Sequence[float], n_orient: int,
                 s_kernels: Sequence[int], thetas: Sequence[float], thetas_learn: Sequence[float],
                 max_planes: Sequence[int], c_kernels: Sequence[int], c_strides: Sequence[int],
                 c_gains: Sequence[float],
                 q: float, active: float, learn_limit: Sequence[int | None], top_epochs: int,
                 max_refs: int, intvec_k: int, margin: float):
        super().__init__()
        w = "neocognitron_fukushima"
        _pos_int(w, "in_channels", in_channels)
        self.num_classes = _pos_int(w, "num_classes", num_classes)
        _pos_int(w, "input_size", input_size)
        self.n_orient = _pos_int(w, "n_orient", n_orient)
        ug_kernel = _pos_int(w, "ug_kernel", ug_kernel)
        lists = {"s_kernels": (s_kernels, 3), "thetas": (thetas, 4), "thetas_learn": (thetas_learn, 3),
                 "max_planes": (max_planes, 2), "c_kernels": (c_kernels, 3), "c_strides": (c_strides, 3),
                 "c_gains": (c_gains, 3),
                 "learn_limit": (learn_limit, 2), "ug_sigmas": (ug_sigmas, 2)}
        for key, (val, n) in lists.items():
            if isinstance(val, (str, bytes)) or not hasattr(val, "__len__") or len(val) != n:
                raise ConfigError(f"{w}: {key} must be a list of {n} values, got {val!r}")
        s_kernels = [_pos_int(w, f"s_kernels[{i}]", k) for i, k in enumerate(s_kernels)]
        c_kernels = [_pos_int(w, f"c_kernels[{i}]", k) for i, k in enumerate(c_kernels)]
        c_strides = [_pos_int(w, f"c_strides[{i}]", k) for i, k in enumerate(c_strides)]
        # selectivities lie in (0, 1): 0 would make the S-cells answer anything, 1 divides by zero
        thetas = [_number(w, f"thetas[{i}]", t, lo_open=True, hi=1.0) for i, t in enumerate(thetas)]
        thetas_learn = [_number(w, f"thetas_learn[{i}]", t, lo_open=True, hi=1.0) for i, t in enumerate(thetas_learn)]
        c_gains = [_number(w, f"c_gains[{i}]", g, lo_open=True) for i, g in enumerate(c_gains)]
        max_planes = [_pos_int(w, f"max_planes[{i}]", k) for i, k in enumerate(max_planes)]
        self.learn_limit = [None if n is None else _pos_int(w, f"learn_limit[{i}]", n)
                            for i, n in enumerate(learn_limit)]
        ug_sigmas = [_number(w, f"ug_sigmas[{i}]", s, lo_open=True) for i, s in enumerate(ug_sigmas)]
        if ug_sigmas[0] >= ug_sigmas[1]:
            raise ConfigError(f"{w}: ug_sigmas must be (centre, surround) with centre < surround, got {ug_sigmas}")
        self.q = _number(w, "q", q, lo_open=True)
        self.active = _number(w, "active", active, hi=1.0)
        self.top_epochs = _pos_int(w, "top_epochs", top_epochs)
        self.max_refs = _pos_int(w, "max_refs", max_refs)
        self.intvec_k = _pos_int(w, "intvec_k", intvec_k)
        self.margin = _number(w, "margin", margin, hi=1.0)
        if self.intvec_k > 4:
            raise ConfigError(f"{w}: intvec_k must be 1..4 (reference vectors interpolated per class), got {intvec_k}")
        self.theta_top, self.theta_top_learn = thetas[3], thetas_learn[2]

        self.register_buffer("dog", dog_kernel(ug_kernel, *ug_sigmas).view(1, 1, ug_kernel, ug_kernel))
        n = check_conv(f"{w} UG", input_size, ug_kernel, 1, same_padding(ug_kernel))
        self.us1 = SLayer("US1", 2, s_kernels[0], thetas[0], thetas[0], n_orient)
        self.us1.set_weights(edge_kernels(n_orient, s_kernels[0]))
        self.us2 = SLayer("US2", n_orient, s_kernels[1], thetas[1], thetas_learn[0], max_planes[0])
        self.us3 = SLayer("US3", max_planes[0], s_kernels[2], thetas[2], thetas_learn[1], max_planes[1])
        self.uc = nn.ModuleList()
        self.sizes = [n]
        for i, (m, st, g) in enumerate(zip(c_kernels, c_strides, c_gains)):
            n = check_conv(f"{w} UC{i + 1}", n, m, st, (m - 1) // 2)
            self.uc.append(BlurCPlanes(1, m, st, (m - 1) // 2, g))  # one kernel, shared by all planes
            self.sizes.append(n)
        self.register_buffer("refs", torch.zeros(0, 0))
        self.register_buffer("ref_labels", torch.zeros(0, dtype=torch.long))
        self.register_buffer("learned_phases", torch.zeros((), dtype=torch.long))  # in checkpoints
        self.seen = 0
        self.stats: dict[str, float] = {}

    # ------------------------------------------------------------------ recognition
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in ("refs", "ref_labels"):
            if prefix + key in state_dict:
                setattr(self, key, torch.empty_like(state_dict[prefix + key], device=self.dog.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _blur(self, i: int, x: torch.Tensor) -> torch.Tensor:
        uc = self.uc[i]  # one fixed kernel, shared by every plane: a depthwise convolution
        if x.shape[1] == 0:
            n = conv_output_size(x.shape[2], uc.m, uc.stride, (uc.m - 1) // 2)
            return x.new_zeros(x.shape[0], 0, n, n)
        if any(uc.pads):
            x = F.pad(x, uc.pads)
        k = uc.kernel.expand(x.shape[1], 1, uc.m, uc.m)
        return saturate(F.conv2d(x, k, stride=uc.stride, groups=x.shape[1]) * uc.gain)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Grey, rescaled per image to [0, 1]: the input layer U0."""
        x = x.float().mean(1, keepdim=True)
        lo = x.amin((2, 3), keepdim=True)
        hi = x.amax((2, 3), keepdim=True)
        return (x - lo) / (hi - lo).clamp_min(1e-6)

    def contrast(self, u0: torch.Tensor) -> torch.Tensor:
        """UG: on- and off-centre planes ``phi[+-(DoG * u0)]``."""
        m = self.dog.shape[-1]
        p = (m - 1) // 2
        g = conv_single(F.pad(u0, (p, m - 1 - p, p, m - 1 - p)), self.dog)
        return torch.cat([phi(g), phi(-g)], 1)

    def layers_upto(self, x: torch.Tensor, upto: int) -> torch.Tensor:
        """Output of UC1 (``upto=1``), UC2 (2) or UC3 (3), in recognition mode."""
        u = self._blur(0, self.us1(self.contrast(self.preprocess(x))))
        if upto >= 2:
            u = self._blur(1, self.us2(u))
        if upto >= 3:
            u = self._blur(2, self.us3(u))
        return u

    def top_features(self, x: torch.Tensor) -> torch.Tensor:
        """UC3 flattened and normalised to unit length (the input of the top S-cells)."""
        f = self.layers_upto(x, 3).flatten(1)
        return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def class_similarity(self, f: torch.Tensor, sims: torch.Tensor | None = None) -> torch.Tensor:
        """Per class, the interpolating-vector similarity; -1 where a class has no vectors.
        ``sims``: ``f @ refs.T`` when the caller has it already."""
        B = f.shape[0]
        out = f.new_full((B, self.num_classes), -1.0)
        if self.refs.shape[0] == 0 or self.refs.shape[1] != f.shape[1]:
            return out
        if sims is None:
            sims = f @ self.refs.t()  # (B, N), cosines (both unit length)
        for c in range(self.num_classes):
            idx = (self.ref_labels == c).nonzero().squeeze(1)
            if len(idx) == 0:
                continue
            k = min(self.intvec_k, len(idx))
            top, arg = sims[:, idx].topk(k, dim=1)
            best = top[:, 0].clone()
            if k > 1:
                vecs = self.refs[idx][arg]  # (B, k, D)
                gram = vecs @ vecs.transpose(1, 2)
                for r in range(2, k + 1):
                    for sub in combinations(range(k), r):
                        s = list(sub)
                        g = gram[:, s][:, :, s] + 1e-6 * torch.eye(r, device=f.device)
                        b = top[:, s]
                        alpha = torch.linalg.solve(g, b.unsqueeze(-1)).squeeze(-1)
                        cos = (alpha * b).sum(1).clamp_min(0).sqrt()  # |projection| / |f|
                        inside = (alpha >= 0).all(1)  # inside the cone of the vectors
                        best = torch.where(inside & (cos > best), cos, best)
            out[:, c] = best
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_similarity(self.top_features(x))

    # ------------------------------------------------------------------ learning
    @property
    def phase(self) -> int:
        """0: US2 learns, 1: US3 learns, 2..: top-layer passes; ``2 + top_epochs``: done."""
        return int(self.learned_phases)

    @phase.setter
    def phase(self, value: int) -> None:
        self.learned_phases.fill_(value)

    @property
    def phase_name(self) -> str:
        return ["US2", "US3"][self.phase] if self.phase < 2 else f"US4 pass {self.phase - 1}"

    @property
    def done_learning(self) -> bool:
        return self.phase >= 2 + self.top_epochs

    @torch.no_grad()
    def learn(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One training batch of the current phase (no autograd anywhere)."""
        if self.done_learning:
            return {}
        B = x.shape[0]
        if self.phase < 2:
            limit = self.learn_limit[self.phase]
            if limit is not None and self.seen >= limit:
                return {}
            x = x[: (B if limit is None else limit - self.seen)]
            layer = (self.us2, self.us3)[self.phase]
            st = layer.learn(self.layers_upto(x, self.phase + 1), self.q, self.active)
            self.seen += x.shape[0]
            self.stats["silent_patterns"] = self.stats.get("silent_patterns", 0.0) + st["silent"] * x.shape[0]
            self.stats["planes_grown"] = self.stats.get("planes_grown", 0.0) + st["grown"]
            self.stats["patterns"] = self.stats.get("patterns", 0.0) + x.shape[0]
            return {f"{layer.name.lower()}_planes": float(layer.planes), f"{layer.name.lower()}_silent": st["silent"]}
        return self._learn_top(x, y)

    def _learn_top(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        f = self.top_features(x)
        y = y.to(f.device)
        if self.refs.shape[0]:
            sims = f @ self.refs.t()
            scores = self.class_similarity(f, sims)
            wrong = scores.argmax(1) != y
            silent = sims.amax(1) < self.theta_top_learn
            # margined winner-take-all (Fukushima 2018): a pattern whose own class wins by less
            # than the margin is learned as if it had lost
            own = scores.gather(1, y[:, None]).squeeze(1)
            rival = scores.scatter(1, y[:, None], -2.0).amax(1)
            close = own - rival < self.margin
        else:
            wrong = silent = close = torch.ones(len(f), dtype=torch.bool, device=f.device)
        new = wrong | silent | close
        room = self.max_refs - self.refs.shape[0]
        idx = new.nonzero().squeeze(1)[: max(room, 0)]
        if len(idx):
            self.refs = torch.cat([self.refs.reshape(-1, f.shape[1]), f[idx]])
            self.ref_labels = torch.cat([self.ref_labels, y[idx]])
        n = float(len(f))
        self.stats["errors"] = self.stats.get("errors", 0.0) + float(wrong.sum())
        self.stats["silent_patterns"] = self.stats.get("silent_patterns", 0.0) + float(silent.sum())
        self.stats["close"] = self.stats.get("close", 0.0) + float((close & ~wrong).sum())
        self.stats["planes_grown"] = self.stats.get("planes_grown", 0.0) + float(len(idx))
        self.stats["patterns"] = self.stats.get("patterns", 0.0) + n
        return {"us4_refs": float(self.refs.shape[0]), "us4_train_err": float(wrong.float().mean())}

    def learning_epoch_end(self) -> dict[str, float]:
        """Close the current phase and move on; returns per-layer figures for the log."""
        if self.done_learning:
            return {}
        tag = ["us2", "us3"][self.phase] if self.phase < 2 else "us4"
        n = max(self.stats.get("patterns", 0.0), 1.0)
        out = {f"{tag}_planes_grown": self.stats.get("planes_grown", 0.0),
               f"{tag}_silent_frac": self.stats.get("silent_patterns", 0.0) / n,
               "us2_planes": float(self.us2.planes), "us3_planes": float(self.us3.planes),
               "us4_refs": float(self.refs.shape[0])}
        if self.phase >= 2:
            out["us4_train_err"] = self.stats.get("errors", 0.0) / n
            out["us4_margin_frac"] = self.stats.get("close", 0.0) / n  # right, but by less than the margin
        self.phase += 1
        self.seen = 0
        self.stats = {}
        return out

    def describe(self) -> str:
        return (f"planes US1 {self.us1.planes}, US2 {self.us2.planes}, US3 {self.us3.planes}, "
                f"US4 {self.refs.shape[0]} reference vectors; theta recog "
                f"{[self.us1.theta, self.us2.theta, self.us3.theta, self.theta_top]}, learn "
                f"{[self.us2.theta_learn, self.us3.theta_learn, self.theta_top_learn]}, margin {self.margin}")


@register_model
def neocognitron_fukushima(
    in_channels: int = 1, num_classes: int = 10, input_size: int = 28, *,
    ug_kernel: int = 7, ug_sigmas: Sequence[float] = (0.8, 1.6), n_orient: int = 16,
    s_kernels: Sequence[int] = (5, 3, 3), thetas: Sequence[float] = (0.5, 0.55, 0.5, 0.5),
    thetas_learn: Sequence[float] = (0.75, 0.7, 0.9), max_planes: Sequence[int] = (48, 96),
    c_kernels: Sequence[int] = (5, 5, 3), c_strides: Sequence[int] = (1, 2, 2),
    c_gains: Sequence[float] = (4.0, 8.0, 8.0),
    q: float = 1.0, active: float = 0.5, learn_limit: Sequence[Any] = (10000, 10000),
    top_epochs: int = 1, max_refs: int = 60000, intvec_k: int = 4, margin: float = 0.05,
) -> nn.Module:
    """Fukushima's self-organised Neocognitron (no backprop); see :mod:`models.neocognitron_fukushima`.

    ``thetas`` are the recognition selectivities of US1..US4 and ``thetas_learn`` the higher
    learning ones of US2..US4; ``max_planes`` caps US2 and US3; ``learn_limit`` is the number
    of training patterns US2 and US3 learn from (``null``: the whole epoch).
    """
    return FukushimaNeocognitron(
        in_channels, num_classes, input_size, ug_kernel=ug_kernel, ug_sigmas=ug_sigmas,
        n_orient=n_orient, s_kernels=s_kernels, thetas=thetas, thetas_learn=thetas_learn,
        max_planes=max_planes, c_kernels=c_kernels, c_strides=c_strides, c_gains=c_gains, q=q, active=active,
        learn_limit=learn_limit, top_epochs=top_epochs, max_refs=max_refs, intvec_k=intvec_k, margin=margin)
