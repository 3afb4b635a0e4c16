"""A conv layer that picks its algorithm by the lecture's cost model ("Convolutional Networks II",
slides 41-42: scanning costs ``O(N^2 M^2)``, the transform domain ``O(N^2 log N)``).

:class:`Conv2d` (and :func:`conv2d`) run ``algorithm="direct" | "scan" | "fft" | "auto"``
(:data:`ALGORITHMS`; ``direct`` is PyTorch's own ``F.conv2d``). ``auto`` evaluates the cost
model with the batch and map counts written out:

- direct: ``t = d0 + d1 * B C K N_out^2 M^2 + d2 * B (C N^2 + K N_out^2)`` (the multiply-adds,
  then the memory traffic that dominates small filters),
- scan: ``t = s0 + s1 * B C K N_out^2 M^2 + s2 * B C N_out^2 M^2`` (the product, then the copy
  of the patches),
- fft: ``t = f0 + f1 * (B C + C K + B K) L^2 log2(L^2) + f2 * B C K L^2 / 2`` (the transforms,
  then the per-frequency products),

and runs the cheapest. In the crossover band, where another algorithm is predicted within a
factor :data:`AUTO_MARGIN` (3) of the cheapest, it times those candidates once on the real input
and remembers the winner for that shape (:func:`auto_algorithm`).

The constants are *calibrated on the running machine*: the first time ``auto`` runs on a device,
:func:`calibrate` times the three algorithms on a dozen probe shapes (a few seconds; the fastest
of three interleaved runs each, in thread CPU time when torch runs one thread, see
:func:`clock_for`), fits the constants by non-negative least squares on the relative error, and
caches the fit as JSON in ``$NEOLENET_CACHE_DIR/conv_calibration.json`` (default
``~/.cache/neolenet/``), keyed by device, thread count, torch version and model version. Delete
the file (or call ``calibrate(force=True)``) to re-measure.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .conv import direct_conv2d, fft_conv2d, fft_size, scan_conv2d
from .sizes import _pad4, _pair, check_conv

__all__ = [
    "ALGORITHMS",
    "AUTO_MARGIN",
    "predicted_costs",
    "choose_algorithm",
    "auto_candidates",
    "auto_algorithm",
    "clock_for",
    "calibrate",
    "conv2d",
    "Conv2d",
]

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
#: fastest. Set to 1 for the pure cost model. (How 3 was chosen: docs/speed.md.)
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

