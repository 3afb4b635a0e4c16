"""The lecture's operations (models/ops/) against PyTorch's built-ins.

Property-based tests (hypothesis) draw random sizes, strides, paddings and channel counts;
fixed tests check the lecture's own worked examples, the calibration cache, learned pooling
and the "scanning an MLP is a CNN" equivalence.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from models import ops
from models.errors import ConfigError

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# A fixed calibration so that no test times anything: fft is predicted cheap only for big
# filters (about M >= 9 for these shapes), scan never.
FAKE_CAL = {
    "direct": [1e-5, 3e-11, 1e-9],
    "scan": [1e-5, 1e-10, 1e-9],
    "fft": [1e-5, 3e-10, 4e-10],
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These ops are tiny; on a shared 2-core machine a second OpenMP thread only waits for a
    core (10x slower under load), so run this module single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_timing(monkeypatch, tmp_path):
    """Use FAKE_CAL for every device and a temporary cache dir: tests never time anything."""
    monkeypatch.setenv("NEOLENET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ops.auto, "_calibration_for", lambda device: FAKE_CAL)


def reference_conv(x, w, b, stride, pads):
    """F.conv2d after F.pad with (P_L, P_R, P_T, P_B)."""
    return F.conv2d(F.pad(x, pads), w, b, stride)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the reference's scale (its largest magnitude)."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def assert_close_f32(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    """Equal to ``tol`` in float32: |a - b| <= tol * (|b| + max |b|) element-wise.

    Both sides sum the same products in different orders, so their rounding errors scale
    with the size of the terms, not of each (possibly cancelled) result.
    """
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * float(b.abs().max()))


@st.composite
def conv_case(draw, max_side=12):
    """A random conv problem: (x, w, b, stride, (P_L, P_R, P_T, P_B))."""
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 4))
    k = draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h = draw(st.integers(max(1, kh - pads[2] - pads[3]), max_side))
    w_ = draw(st.integers(max(1, kw - pads[0] - pads[1]), max_side))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w_, generator=g)
    wt = torch.randn(k, c, kh, kw, generator=g)
    b = torch.randn(k, generator=g) if draw(st.booleans()) else None
    return x, wt, b, (sh, sw), pads


# --------------------------------------------------------------------------------------------
# 1. sizes
# --------------------------------------------------------------------------------------------


def test_size_formulas_on_the_lectures_numbers():
    assert ops.conv_output_size(5, 3, 1) == 3 and ops.conv_output_size(5, 3, 2) == 2
    assert ops.conv_output_size(28, 5, 1, (2, 2)) == 28
    assert ops.pool_output_size(4, 2, 2) == 2 and ops.pool_output_size(28, 2) == 14
    assert ops.pool_output_size(7, 3, 2) == 3
    assert ops.same_padding(3) == (1, 1) and ops.same_padding(5) == (2, 2)
    assert ops.same_padding(4) == (1, 2) and ops.same_padding(2) == (0, 1)  # extra right/bottom
    # K1 (3 M^2 + 1) for colour input; LeNet-5's C1 (6 filters 5x5 on 1 map) has 156
    assert ops.conv_param_count(3, 16, 5) == 16 * (3 * 25 + 1)
    assert ops.conv_param_count(1, 6, 5) == 156


@SETTINGS
@given(n=st.integers(1, 40), m=st.integers(1, 9), s=st.integers(1, 4),
       pl=st.integers(0, 4), pr=st.integers(0, 4))
def test_conv_output_size_matches_torch(n, m, s, pl, pr):
    out = ops.conv_output_size(n, m, s, (pl, pr))
    if out < 1:
        with pytest.raises(ConfigError, match="layerX"):
            ops.check_conv("layerX", n, m, s, (pl, pr))
        return
    y = F.conv2d(F.pad(torch.zeros(1, 1, n, 1), (0, 0, pl, pr)), torch.zeros(1, 1, m, 1), stride=s)
    assert y.shape[2] == out == ops.check_conv("layerX", n, m, s, (pl, pr))


@SETTINGS
@given(n=st.integers(1, 40), p=st.integers(1, 6), d=st.integers(1, 6))
def test_pool_output_size_matches_torch(n, p, d):
    if p > n:
        with pytest.raises(ConfigError, match="pool9"):
            ops.check_pool("pool9", n, p, d)
        return
    assert F.max_pool2d(torch.zeros(1, 1, n, n), p, d).shape[-1] == ops.pool_output_size(n, p, d)


@SETTINGS
@given(m=st.integers(1, 12), n=st.integers(12, 20))
def test_same_padding_keeps_the_size_and_matches_torch_same(m, n):
    p_l, p_r = ops.same_padding(m)
    assert p_l + p_r == m - 1 and 0 <= p_r - p_l <= 1
    assert ops.conv_output_size(n, m, 1, (p_l, p_r)) == n
    x, w = torch.randn(1, 2, n, n + 1), torch.randn(3, 2, m, m)
    # PyTorch's padding="same" puts the extra row/column at the right/bottom too
    # (direct pads and then calls F.conv2d on another shape, so it may sum in another order)
    assert_close_f32(ops.direct_conv2d(x, w, padding="same"), F.conv2d(x, w, padding="same"))
    assert_close_f32(ops.scan_conv2d(x, w, padding="same"), F.conv2d(x, w, padding="same"))


@SETTINGS
@given(c=st.integers(1, 5), k=st.integers(1, 8), m=st.integers(1, 7), bias=st.booleans())
def test_param_count_matches_layers(c, k, m, bias):
    expected = ops.conv_param_count(c, k, m, bias)
    assert sum(p.numel() for p in nn.Conv2d(c, k, m, bias=bias).parameters()) == expected
    assert sum(p.numel() for p in ops.Conv2d(c, k, m, bias=bias).parameters()) == expected


def test_bad_sizes_raise_config_errors_naming_the_problem():
    x, w = torch.randn(1, 3, 4, 4), torch.randn(2, 3, 5, 5)
    with pytest.raises(ConfigError, match="does not fit"):
        ops.scan_conv2d(x, w)
    with pytest.raises(ConfigError, match="in_channels to 2"):
        ops.fft_conv2d(torch.randn(1, 2, 8, 8), w)
    with pytest.raises(ConfigError, match="padding"):
        ops.scan_conv2d(x, torch.randn(2, 3, 3, 3), padding=(1, 2, 3))
    with pytest.raises(ConfigError, match="padding"):
        ops.scan_conv2d(x, torch.randn(2, 3, 3, 3), padding=-1)
    with pytest.raises(ConfigError, match="algorithm"):
        ops.Conv2d(3, 2, 3, algorithm="winograd")
    with pytest.raises(ConfigError, match="max_pool2d"):
        ops.max_pool2d(x, 5)
    with pytest.raises(ConfigError, match="half the window"):
        ops.max_pool2d(x, 2, padding=2)


# --------------------------------------------------------------------------------------------
# 2.-3. convolution by scanning and in the transform domain
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(case=conv_case())
def test_scan_conv2d_equals_torch_outputs_and_gradients(case):
    x, w, b, stride, pads = case
    args = [t.clone().requires_grad_() for t in (x, w)] + ([b.clone().requires_grad_()] if b is not None else [])
    refs = [t.clone().requires_grad_() for t in args]
    y = ops.scan_conv2d(args[0], args[1], args[2] if b is not None else None, stride, pads)
    r = reference_conv(refs[0], refs[1], refs[2] if b is not None else None, stride, pads)
    assert_close_f32(y, r)
    g = torch.randn_like(r)
    for gy, gr in zip(torch.autograd.grad(y, args, g), torch.autograd.grad(r, refs, g)):
        assert_close_f32(gy, gr)


@SETTINGS
@given(case=conv_case())
def test_fft_conv2d_equals_torch_outputs_and_gradients(case):
    x, w, b, stride, pads = case
    args = [t.clone().requires_grad_() for t in (x, w)] + ([b.clone().requires_grad_()] if b is not None else [])
    refs = [t.clone().requires_grad_() for t in args]
    y = ops.fft_conv2d(args[0], args[1], args[2] if b is not None else None, stride, pads)
    r = reference_conv(refs[0], refs[1], refs[2] if b is not None else None, stride, pads)
    assert y.shape == r.shape and y.dtype == r.dtype
    assert rel_err(y, r) < 1e-4
    g = torch.randn_like(r)
    for gy, gr in zip(torch.autograd.grad(y, args, g), torch.autograd.grad(r, refs, g)):
        assert rel_err(gy, gr) < 1e-4


def test_scan_and_fft_in_float64_agree_to_rounding():
    g = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(2, 3, 17, 13, dtype=torch.float64, generator=g), \
        torch.randn(4, 3, 6, 5, dtype=torch.float64, generator=g), torch.randn(4, dtype=torch.float64, generator=g)
    ref = reference_conv(x, w, b, (2, 3), (1, 2, 3, 0))
    assert rel_err(ops.scan_conv2d(x, w, b, (2, 3), (1, 2, 3, 0)), ref) < 1e-12
    assert rel_err(ops.fft_conv2d(x, w, b, (2, 3), (1, 2, 3, 0)), ref) < 1e-12


def test_scan_conv2d_in_row_blocks_equals_one_block(monkeypatch):
    x, w = torch.randn(3, 2, 20, 19), torch.randn(5, 2, 4, 3)
    whole = ops.scan_conv2d(x, w, stride=(2, 1), padding=(1, 0, 2, 1))
    monkeypatch.setattr(ops.conv, "SCAN_CHUNK_ELEMENTS", 100)  # forces one output row at a time
    torch.testing.assert_close(ops.scan_conv2d(x, w, stride=(2, 1), padding=(1, 0, 2, 1)), whole)


def test_scan_conv2d_in_groups_of_images_keeps_each_image_in_place(monkeypatch):
    """Whole images in groups of 2 (5 images: groups of 2, 2, 1): each output is its own image's
    convolution (a reversed group, or reversed groups, would put images in the wrong place)."""
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(5, 2, 20, 19, generator=g), torch.randn(5, 2, 4, 3, generator=g)
    ref = reference_conv(x, w, None, (2, 1), (1, 0, 2, 1))
    ho, wo = ref.shape[-2:]
    monkeypatch.setattr(ops.conv, "SCAN_CHUNK_ELEMENTS", 2 * 2 * 4 * 3 * wo * ho)  # two whole images a group
    torch.testing.assert_close(ops.scan_conv2d(x, w, stride=(2, 1), padding=(1, 0, 2, 1)), ref, rtol=1e-4, atol=1e-4)


def test_fft_conv2d_in_groups_of_images_keeps_each_image_in_place(monkeypatch):
    g = torch.Generator().manual_seed(4)
    x, w, b = torch.randn(5, 2, 12, 11, generator=g), torch.randn(3, 2, 3, 4, generator=g), torch.randn(3, generator=g)
    lh, lw = ops.fft_size(12 + 0 + 2), ops.fft_size(11 + 1 + 1)  # of the padded images
    monkeypatch.setattr(ops.conv, "FFT_GROUP_ELEMENTS", 2 * (2 + 3) * lh * (lw // 2 + 1))  # groups of 2, 2, 1
    ref = reference_conv(x, w, b, (1, 2), (1, 1, 0, 2))
    torch.testing.assert_close(ops.fft_conv2d(x, w, b, (1, 2), (1, 1, 0, 2)), ref, rtol=1e-4, atol=1e-4)


def test_one_by_one_filter_is_a_perceptron_over_the_depth():
    x, w, b = torch.randn(2, 5, 6, 7), torch.randn(3, 5, 1, 1), torch.randn(3)
    per_pixel = torch.einsum("bchw,kc->bkhw", x, w[:, :, 0, 0]) + b.view(1, -1, 1, 1)
    for fn in (ops.scan_conv2d, ops.fft_conv2d):
        torch.testing.assert_close(fn(x, w, b), per_pixel, rtol=1e-4, atol=1e-5)


def test_fft_size_is_smooth_and_minimal():
    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 300):
        l = ops.fft_size(n)
        assert l >= n and smooth(l) and not any(smooth(j) for j in range(n, l))


# --------------------------------------------------------------------------------------------
# 4. the layer and its algorithm choice
# --------------------------------------------------------------------------------------------


def test_conv2d_layer_is_a_drop_in_for_nn_conv2d():
    torch.manual_seed(3)
    ref = nn.Conv2d(3, 5, 4, stride=2, padding=1)
    torch.manual_seed(3)
    ours = ops.Conv2d(3, 5, 4, stride=2, padding=1)
    assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)  # same init
    assert ours.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(2, 3, 15, 16)
    for alg in ("direct", "scan", "fft", "auto"):
        ours.algorithm = alg
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)
    assert ours.output_size(15, 16) == tuple(ref(x).shape[-2:])


@SETTINGS
@given(case=conv_case(max_side=10), alg=st.sampled_from(["direct", "scan", "fft", "auto"]))
def test_conv2d_layer_all_algorithms_equal_torch(case, alg):
    x, w, b, stride, pads = case
    layer = ops.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[-2:]), stride, pads, bias=b is not None, algorithm=alg)
    with torch.no_grad():
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
    assert rel_err(layer(x), reference_conv(x, w, b, stride, pads)) < 1e-4


def test_auto_follows_the_fitted_cost_model():
    picks = {}
    for side in (32, 128):
        for m in (3, 5, 9, 15, 31):
            shape_x, shape_w = (8, 16, side, side), (16, 16, m, m)
            costs = ops.predicted_costs(shape_x, shape_w, calibration=FAKE_CAL)
            pick = ops.choose_algorithm(shape_x, shape_w, calibration=FAKE_CAL)
            assert costs[pick] == min(costs.values())
            assert ops.auto_candidates(shape_x, shape_w, calibration=FAKE_CAL)[0] == pick
            picks[side, m] = pick
    assert picks[128, 3] == "direct" and picks[128, 31] == "fft"  # the lecture's O(N²M²) vs O(N² log N)
    # a machine where transforms were free would always choose fft, one where they cost a lot never
    cheap_fft = {**FAKE_CAL, "fft": [0.0, 1e-15, 1e-15]}
    dear_fft = {**FAKE_CAL, "fft": [1.0, 1.0, 1.0]}
    assert ops.choose_algorithm((8, 16, 32, 32), (16, 16, 3, 3), calibration=cheap_fft) == "fft"
    assert ops.choose_algorithm((8, 16, 128, 128), (16, 16, 31, 31), calibration=dear_fft) == "direct"


def test_auto_times_the_candidates_only_in_the_crossover_band(monkeypatch):
    timed = []

    def fake_timing(fns, device, repeats=3):
        timed.append(sorted(fns))
        return {a: (0.5 if a == "scan" else 1.0) for a in fns}  # pretend scan wins when timed

    monkeypatch.setattr(ops.auto, "_time_interleaved", fake_timing)
    monkeypatch.setattr(ops.auto, "_MEASURED_CHOICES", {})
    x = torch.randn(2, 3, 12, 12)
    far = {"direct": [0, 1e-12, 0], "scan": [0, 1e-9, 0], "fft": [1.0, 0, 0]}  # direct by far
    near = {"direct": [0, 1e-12, 0], "scan": [0, 1.5e-12, 0], "fft": [1.0, 0, 0]}  # direct ~ scan
    monkeypatch.setattr(ops.auto, "_calibration_for", lambda device: far)
    layer = ops.Conv2d(3, 4, 3, algorithm="auto")
    assert layer.chosen_algorithm(x) == "direct" and timed == []
    monkeypatch.setattr(ops.auto, "_calibration_for", lambda device: near)
    assert ops.auto_candidates(x.shape, layer.weight.shape, calibration=near) == ["direct", "scan"]
    layer = ops.Conv2d(3, 4, 3, algorithm="auto")
    assert layer.chosen_algorithm(x) == "scan" and timed == [["direct", "scan"]]
    layer(x), ops.conv2d(x, layer.weight, layer.bias, algorithm="auto")
    assert len(timed) == 1  # the measured choice is remembered per shape
    monkeypatch.setattr(ops.auto, "AUTO_MARGIN", 1.0)  # the pure cost model
    assert ops.Conv2d(3, 4, 3, algorithm="auto").chosen_algorithm(x) == "direct"


def test_calibration_is_fitted_cached_and_read_back(monkeypatch, tmp_path):
    monkeypatch.setenv("NEOLENET_CACHE_DIR", str(tmp_path))
    probes = [(2, 2, 2, 12, 3), (2, 2, 2, 16, 5), (2, 2, 2, 16, 9)]
    fit = ops.calibrate("cpu", force=True, probes=probes, repeats=1)
    path = tmp_path / "conv_calibration.json"
    stored = json.loads(path.read_text())
    key = ops.auto._device_key(torch.device("cpu"))
    assert stored[key] == fit
    assert set(fit) == {"direct", "scan", "fft"}
    assert all(len(fit[a]) == 3 and min(fit[a]) >= 0 and max(fit[a]) > 0 for a in fit)

    def no_timing(*args, **kwargs):
        raise AssertionError("a cached calibration must not be re-measured")

    monkeypatch.setattr(ops.auto, "_time_interleaved", no_timing)
    assert ops.calibrate("cpu", probes=probes) == fit  # read from the file
    stored[key] = {"direct": [1.0, 0, 0], "scan": [2.0, 0, 0], "fft": [0.5, 0, 0]}
    path.write_text(json.dumps(stored))
    assert ops.calibrate("cpu")["fft"] == [0.5, 0, 0]


def test_nnls_fit_recovers_known_constants():
    rows = [[1.0, float(n), float(n * n)] for n in range(1, 9)]
    truth = [0.5, 0.0, 0.25]
    times = [sum(a * b for a, b in zip(r, truth)) for r in rows]
    fit = ops.auto._nnls_relative(rows, times)
    assert min(fit) >= 0
    for a, b in zip(fit, truth):
        assert abs(a - b) < 1e-9


# --------------------------------------------------------------------------------------------
# 5. pooling
# --------------------------------------------------------------------------------------------


@st.composite
def pool_case(draw):
    p = draw(st.integers(1, 4))
    d = draw(st.integers(1, 4))
    pad = draw(st.integers(0, p // 2))
    h = draw(st.integers(max(1, p - 2 * pad), 11))
    w = draw(st.integers(max(1, p - 2 * pad), 11))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if draw(st.booleans()):
        x = torch.randint(0, 3, (2, 3, h, w), generator=g).float()  # many ties
    else:
        x = torch.randn(2, 3, h, w, generator=g)
    return x, p, d, pad


@SETTINGS
@given(case=pool_case())
def test_max_pool2d_values_indices_and_gradient_equal_torch(case):
    x, p, d, pad = case
    xa, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    v, i = ops.max_pool2d(xa, p, d, pad)
    rv, ri = F.max_pool2d(xr, p, d, pad, return_indices=True)
    assert torch.equal(v, rv) and torch.equal(i, ri)
    g = torch.randn_like(rv)
    (ga,), (gr,) = torch.autograd.grad(v, xa, g), torch.autograd.grad(rv, xr, g)
    torch.testing.assert_close(ga, gr)
    # the gradient reaches only the argmax positions
    hit = torch.zeros(x.shape[0], x.shape[1], x.shape[2] * x.shape[3], dtype=torch.bool)
    hit.scatter_(2, i.flatten(2), True)
    assert (ga.flatten(2)[~hit] == 0).all()


@SETTINGS
@given(case=pool_case())
def test_avg_pool2d_equals_torch(case):
    x, p, d, pad = case
    xa, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    y, r = ops.avg_pool2d(xa, p, d, pad), F.avg_pool2d(xr, p, d, pad)
    torch.testing.assert_close(y, r)
    g = torch.randn_like(r)
    torch.testing.assert_close(torch.autograd.grad(y, xa, g)[0], torch.autograd.grad(r, xr, g)[0])


def test_pool_modules():
    x = torch.randn(2, 3, 8, 8)
    mp = ops.MaxPool2d(2)
    torch.testing.assert_close(mp(x), F.max_pool2d(x, 2))
    assert torch.equal(mp.indices, F.max_pool2d(x, 2, return_indices=True)[1])
    torch.testing.assert_close(ops.MaxPool2d(3, 2, 1, return_indices=True)(x)[0], F.max_pool2d(x, 3, 2, 1))
    torch.testing.assert_close(ops.AvgPool2d(3, 1, 1)(x), F.avg_pool2d(x, 3, 1, 1))


@pytest.mark.parametrize("target", ["max", "mean"])
def test_learned_pooling_learns_max_and_mean_from_examples(target):
    torch.manual_seed(0)
    pool = ops.LearnedPool2d(2, 2, hidden=(16, 16))
    teacher = (lambda x: F.max_pool2d(x, 2)) if target == "max" else (lambda x: F.avg_pool2d(x, 2))
    x_test = torch.randn(64, 2, 8, 8)
    y_test = teacher(x_test)

    def rel_mse():
        with torch.no_grad():
            return float(((pool(x_test) - y_test) ** 2).mean() / y_test.var())

    before = rel_mse()
    opt = torch.optim.Adam(pool.parameters(), lr=1e-2)
    for step in range(400):
        x = torch.randn(64, 2, 8, 8)
        loss = F.mse_loss(pool(x), teacher(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = rel_mse()
    assert pool(x_test).shape == y_test.shape == (64, 2, 4, 4)
    assert before > 0.3  # an untrained network is neither max nor mean
    assert after < (0.02 if target == "max" else 1e-3), (before, after)


# --------------------------------------------------------------------------------------------
# 6. scanning an MLP is a CNN; identical copies of a neuron are one scanned filter
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(c=st.integers(1, 3), n=st.integers(1, 5), s=st.integers(1, 3), extra=st.integers(0, 6),
       hidden=st.lists(st.integers(1, 6), min_size=0, max_size=2), seed=st.integers(0, 999))
def test_mlp_scanned_over_blocks_equals_the_conv_stack(c, n, s, extra, hidden, seed):
    torch.manual_seed(seed)
    sizes = [c * n * n, *hidden, 3]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    mlp = nn.Sequential(*layers[:-1])
    x = torch.randn(2, c, n + extra, n + extra + 1)
    cnn = ops.mlp_to_conv(mlp, n, s, in_channels=c)
    out = cnn(x)
    # the literal scan: run the MLP on every block, one at a time
    ho, wo = ops.pool_output_size(x.shape[2], n, s), ops.pool_output_size(x.shape[3], n, s)
    literal = torch.stack([torch.stack([mlp(x[:, :, i * s:i * s + n, j * s:j * s + n])
                                        for j in range(wo)], -1) for i in range(ho)], -2)
    assert_close_f32(out, literal)
    assert_close_f32(ops.scan_mlp(mlp, x, n, s), literal)
    convs = [m for m in cnn if isinstance(m, ops.Conv2d)]
    assert convs[0].kernel_size == (n, n) and convs[0].stride == (s, s)
    assert all(m.kernel_size == (1, 1) for m in convs[1:])


def test_mlp_to_conv_rejects_what_is_not_an_mlp():
    with pytest.raises(ConfigError, match="block"):
        ops.mlp_to_conv(nn.Sequential(nn.Linear(10, 2)), 3, in_channels=1)
    with pytest.raises(ConfigError, match="Conv2d"):
        ops.mlp_to_conv(nn.Sequential(nn.Linear(9, 2), nn.Conv2d(2, 2, 1)), 3)


def test_neocognitron_identical_copies_equal_one_scanned_filter():
    """Slide 2-4: the Neocognitron has one copy of each S-cell per position; with shared
    weights that is one filter scanned -- same outputs, and the shared weight's gradient is
    the sum of the copies' gradients."""
    torch.manual_seed(0)
    c, m, h = 2, 3, 6
    neuron = nn.Linear(c * m * m, 1)
    x = torch.randn(1, c, h, h)
    ho = h - m + 1
    copies = [[copy.deepcopy(neuron) for _ in range(ho)] for _ in range(ho)]
    plane = torch.stack([torch.stack([copies[i][j](x[0, :, i:i + m, j:j + m].reshape(-1))[0]
                                      for j in range(ho)]) for i in range(ho)])
    w = neuron.weight.detach().view(1, c, m, m).clone().requires_grad_()
    b = neuron.bias.detach().clone().requires_grad_()
    scanned = ops.scan_conv2d(x, w, b)[0, 0]
    torch.testing.assert_close(plane, scanned)
    g = torch.randn(ho, ho)
    (plane * g).sum().backward()
    (scanned * g).sum().backward()
    summed = sum(cp.weight.grad for row in copies for cp in row).view(1, c, m, m)
    torch.testing.assert_close(summed, w.grad)
    torch.testing.assert_close(sum(cp.bias.grad for row in copies for cp in row), b.grad)


# --------------------------------------------------------------------------------------------
# 7. the lecture's own examples
# --------------------------------------------------------------------------------------------

IMAGE = torch.tensor([[1, 1, 1, 0, 0],
                      [0, 1, 1, 1, 0],
                      [0, 0, 1, 1, 1],
                      [0, 0, 1, 1, 0],
                      [0, 1, 1, 0, 0]], dtype=torch.float32).view(1, 1, 5, 5)
FILTER = torch.tensor([[1, 0, 1],
                       [0, 1, 0],
                       [1, 0, 1]], dtype=torch.float32).view(1, 1, 3, 3)
MAP = torch.tensor([[1, 1, 2, 4],
                    [5, 6, 7, 8],
                    [3, 2, 1, 0],
                    [1, 2, 3, 4]], dtype=torch.float32).view(1, 1, 4, 4)


@pytest.mark.parametrize("algorithm", ["direct", "scan", "fft", "auto"])
def test_lecture_convolution_example(algorithm):
    bias = torch.zeros(1)
    stride1 = ops.conv2d(IMAGE, FILTER, bias, 1, 0, algorithm=algorithm)
    stride2 = ops.conv2d(IMAGE, FILTER, bias, 2, 0, algorithm=algorithm)
    torch.testing.assert_close(stride1[0, 0], torch.tensor([[4., 3, 4], [2, 4, 3], [2, 3, 4]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(stride2[0, 0], torch.tensor([[4., 4], [2, 4]]), atol=1e-5, rtol=0)
    # "same" zero padding (slide 38) keeps the 5x5 size at stride 1
    assert ops.conv2d(IMAGE, FILTER, bias, 1, "same", algorithm=algorithm).shape[-2:] == (5, 5)


def test_lecture_pooling_example():
    values, indices = ops.max_pool2d(MAP, 2, 2)
    assert torch.equal(values[0, 0], torch.tensor([[6., 8], [3, 4]]))
    assert torch.equal(indices[0, 0], torch.tensor([[5, 7], [8, 15]]))  # where 6, 8, 3, 4 are
    assert torch.equal(ops.avg_pool2d(MAP, 2, 2)[0, 0], torch.tensor([[3.25, 5.25], [2., 2.]]))


# --------------------------------------------------------------------------------------------
# the package: one module per topic, re-exported
# --------------------------------------------------------------------------------------------

# What each module of models/ops/ may import from its siblings (sizes <- conv <- auto).
ALLOWED_SIBLINGS = {
    "sizes": set(),
    "conv": {"sizes"},
    "auto": {"sizes", "conv"},
    "pooling": {"sizes", "conv"},
    "mlp": {"conv", "auto"},
}


def test_ops_modules_import_only_the_ones_before_them():
    folder = Path(ops.__file__).parent
    assert {p.stem for p in folder.glob("*.py")} == {"__init__", *ALLOWED_SIBLINGS}
    for name, allowed in ALLOWED_SIBLINGS.items():
        tree = ast.parse((folder / f"{name}.py").read_text())
        siblings = {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
        siblings |= {alias.name for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module
                     for alias in node.names}
        assert siblings <= allowed, f"models/ops/{name}.py imports {sorted(siblings - allowed)}"
        assert ast.get_docstring(tree), f"models/ops/{name}.py has no module docstring"


def test_the_package_reexports_every_public_name_of_its_modules():
    for module in (ops.sizes, ops.conv, ops.auto, ops.pooling, ops.mlp):
        for name in set(module.__all__) - set(ops._SETTINGS):  # settings are set on their module
            assert getattr(ops, name) is getattr(module, name), f"ops.{name}"
    assert all(hasattr(ops, name) for name in ops.__all__)


@pytest.mark.parametrize("padding", [(1, 3), (3, 0), (2, 1)])
def test_symmetric_padding_with_different_rows_and_columns_matches_torch(padding):
    """``(P_H, P_W)`` with P_H != P_W on a non-square input: a swap of the two (or of rows and
    columns anywhere in the argument handling) fails here."""
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, 9, 13), torch.randn(4, 3, 3, 5), torch.randn(4)
    ref = F.conv2d(x, w, b, 1, padding)
    assert ops.direct_conv2d(x, w, b, 1, padding).shape == ref.shape
    torch.testing.assert_close(ops.direct_conv2d(x, w, b, 1, padding), ref)
    assert_close_f32(ops.scan_conv2d(x, w, b, 1, padding), ref)
    assert_close_f32(ops.fft_conv2d(x, w, b, 1, padding), ref)


@pytest.mark.parametrize("name, home", [("SCAN_CHUNK_ELEMENTS", "conv"), ("FFT_GROUP_ELEMENTS", "conv"),
                                        ("AUTO_MARGIN", "auto")])
def test_a_setting_is_read_and_set_on_its_home_module_only(monkeypatch, name, home):
    """No copy on the package that code would not read: asking for one names where it lives; a
    setting monkeypatched on its home module is undone by any pytest (9.x deletes what it added)."""
    module = getattr(ops, home)
    before = getattr(module, name)
    with pytest.raises(AttributeError, match=rf"ops\.{home}\.{name}"):
        getattr(ops, name)
    monkeypatch.setattr(module, name, 7)
    assert getattr(module, name) == 7
    monkeypatch.undo()
    assert getattr(module, name) == before and name not in vars(ops)


def test_auto_margin_one_gives_the_pure_cost_model(monkeypatch):
    """``ops.auto.AUTO_MARGIN = 1`` (as its comment says) switches the timing off."""
    near = {"direct": [0, 1e-12, 0], "scan": [0, 1.5e-12, 0], "fft": [1.0, 0, 0]}  # direct ~ scan
    shape_x, shape_w = (2, 3, 12, 12), (4, 3, 3, 3)
    assert ops.auto_candidates(shape_x, shape_w, calibration=near) == ["direct", "scan"]
    monkeypatch.setattr(ops.auto, "AUTO_MARGIN", 1.0)
    assert ops.auto_candidates(shape_x, shape_w, calibration=near) == ["direct"]


# --------------------------------------------------------------------------------------------
# on a GPU, when there is one
# --------------------------------------------------------------------------------------------


@CUDA
def test_ops_on_cuda_equal_torch():
    x, w, b = torch.randn(2, 3, 20, 21, device="cuda"), torch.randn(4, 3, 5, 4, device="cuda"), \
        torch.randn(4, device="cuda")
    ref = reference_conv(x, w, b, (2, 1), (1, 2, 0, 3))
    assert rel_err(ops.scan_conv2d(x, w, b, (2, 1), (1, 2, 0, 3)), ref) < 1e-4
    assert rel_err(ops.fft_conv2d(x, w, b, (2, 1), (1, 2, 0, 3)), ref) < 1e-4
    v, i = ops.max_pool2d(x, 3, 2, 1)
    rv, ri = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert torch.equal(v, rv) and torch.equal(i, ri)
