"""LeNet family (models/lenet.py, models/lenet_layers.py) and SDLM (models/sdlm.py): sizes, tables,
bitmaps, criteria, second derivatives, the optimiser's step, the schedule, and a short learning run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import ConfigError, get_model, list_models
from models import lenet as L
from models.sdlm import SDLM, PiecewiseConstantLR

LENETS = ["lenet1", "lenet4", "lenet5", "lenet5_modern", "lenet1989"]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


# -- parameter counts, layer by layer, against the papers ------------------------------


def test_all_lenets_registered():
    assert set(LENETS) <= set(list_models())


def test_layers_importable_from_lenet_and_layers_do_not_import_lenet():
    import subprocess
    import sys

    from models import lenet_layers

    for name in ("TableConv2d", "Subsample", "Dense", "EuclideanRBF", "Stage", "digit_bitmaps", "DIGIT_BITMAPS",
                 "SQUASH_A", "SQUASH_S", "INIT_SCALE", "INITS", "LECUN_BACKGROUND", "_act", "_act_prime_sq"):
        assert getattr(L, name) is getattr(lenet_layers, name)
    code = "import sys, models.lenet_layers; assert 'models.lenet' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lenet5_parameter_counts_match_paper():
    m = get_model("lenet5")
    # [1998] II.B
    assert m.layer_params() == {"C1": 156, "S2": 12, "C3": 1516, "S4": 32, "C5": 48120, "F6": 10164}
    assert n_params(m) == 60_000
    assert m.layer_params() == L.LENET5_PAPER_PARAMS


def test_lenet1989_parameter_counts_match_paper():
    m = get_model("lenet1989")
    # [1989]: H1 12*25 weights + 12*8*8 unit biases, H2 12*8*25 + 12*4*4, H3 192*30+30, out 30*10+10
    assert m.layer_params() == {"H1": 1068, "H2": 2592, "H3": 5790, "output": 310}
    assert n_params(m) == 9_760


def test_lenet1_parameter_count_matches_1990_paper():
    m = get_model("lenet1")
    assert m.layer_params() == L.LENET1_PAPER_PARAMS
    assert n_params(m) == 2_578  # [1990]; "about 2,600" in [1998] III.C


def test_lenet1_connections_match_1990_paper():
    # [1990]: 98,442 connections. Connections of a unit = its inputs + 1 (bias), per output unit.
    h1 = 24 * 24 * 4 * (25 + 1)
    h2 = 12 * 12 * 4 * (4 + 1)
    h3 = 8 * 8 * sum(len(r) * 25 + 1 for r in L.LENET1_H3_TABLE)
    h4 = 4 * 4 * 12 * (4 + 1)
    out = 10 * (192 + 1)
    assert h1 + h2 + h3 + h4 + out == 98_442


def test_lenet4_parameter_count_near_paper():
    m = get_model("lenet4")
    assert abs(n_params(m) - 17_000) <= 100  # [1998] III.C: "about 17,000"
    assert m.layer_params()["C1"] == 4 * 26 and m.layer_params()["S2"] == 8 * 2


def test_lenet4_parameter_count_is_exactly_that_of_its_tables():
    """Each layer's count from its connection table (kernels x 25 + one bias per map or unit):
    one extra parameter anywhere fails (a tolerance of 100 let 25 through)."""
    c3 = sum(len(r) for r in L.LENET4_C3_TABLE) * 25 + len(L.LENET4_C3_TABLE)
    c5 = sum(len(r) for r in L.LENET4_C5_TABLE) * 25 + len(L.LENET4_C5_TABLE)
    expected = {"C1": 4 * 26, "S2": 8 * 2, "C3": c3, "S4": 16 * 2, "C5": c5, "output": 10 * 121}
    m = get_model("lenet4")
    assert m.layer_params() == expected and n_params(m) == sum(expected.values()) == 16_998


def test_lenet5_cifar_builds_and_counts_colour_c1():
    m = get_model("lenet5", in_channels=3, input_size=32)
    assert m.layer_params()["C1"] == 6 * (3 * 25 + 1)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", LENETS)
def test_forward_shapes_mnist_and_cifar(name):
    size = 16 if name == "lenet1989" else 28
    m = get_model(name, input_size=size)
    assert m(torch.randn(3, 1, size, size)).shape == (3, 10)
    csize = 16 if name == "lenet1989" else 32
    linear = {} if name in ("lenet5_modern", "lenet1", "lenet4", "lenet1989") else {"output": "linear", "criterion": "ce"}
    mc = get_model(name, in_channels=3, num_classes=7 if linear or name != "lenet5" else 10, input_size=csize, **linear)
    out = mc(torch.randn(2, 3, csize, csize))
    assert out.shape[0] == 2 and torch.isfinite(out).all()


# -- the C3 table -------------------------------------------------------------------------


def test_c3_table_is_table_one():
    t = L.LENET5_C3_TABLE
    assert [len(r) for r in t] == [3] * 6 + [4] * 9 + [6]
    assert t[0] == (0, 1, 2) and t[4] == (4, 5, 0) and t[5] == (5, 0, 1) and t[11] == (5, 0, 1, 2)
    assert t[12] == (0, 1, 3, 4) and t[13] == (1, 2, 4, 5) and t[14] == (0, 2, 3, 5)
    assert sorted(t[15]) == list(range(6))
    assert sum(len(r) for r in t) == 60


# Table I of [1998] as printed: a row per S2 map, a column per C3 map (0-15), X where connected.
TABLE_I = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
"""


def test_every_row_of_table_one():
    rows = TABLE_I.split()
    printed = [tuple(r for r in range(6) if rows[r][o] == "X") for o in range(16)]
    assert [tuple(sorted(c)) for c in L.LENET5_C3_TABLE] == printed


def test_table_conv_equals_per_map_reference():
    torch.manual_seed(0)
    conv = L.TableConv2d("C3", 6, L.LENET5_C3_TABLE, 5)
    x = torch.randn(2, 6, 14, 14)
    got = conv(x)
    w = conv.full_weight()
    for o, row in enumerate(L.LENET5_C3_TABLE):
        unconnected = [j for j in range(6) if j not in row]
        assert torch.all(w[o, unconnected] == 0)
        ref = F.conv2d(x[:, list(row)], w[o:o + 1, list(row)]) + conv.bias[o]
        torch.testing.assert_close(got[:, o:o + 1], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [[[0, 1, 6]], [[0, 0]], [[]], "nonsense", [[-1]]])
def test_bad_tables_raise_config_error(bad):
    with pytest.raises(ConfigError, match="C3"):
        get_model("lenet5", c3_table=bad)


def test_full_c3_table_counts():
    assert get_model("lenet5", c3_table="full").layer_params()["C3"] == 16 * (6 * 25 + 1)


# -- RBF output ------------------------------------------------------------------------------


def test_rbf_bitmaps():
    b = L.digit_bitmaps()
    assert b.shape == (10, 84) and L.BITMAP_ROWS * L.BITMAP_COLS == 84
    assert set(b.unique().tolist()) == {-1.0, 1.0}
    assert all(len(r) == 7 for bmp in L.DIGIT_BITMAPS for r in bmp) and all(len(bmp) == 12 for bmp in L.DIGIT_BITMAPS)
    assert len({tuple(r.tolist()) for r in b}) == 10  # ten different digits
    # nearest-bitmap classification of the bitmaps themselves is the identity
    m = get_model("lenet5")
    assert torch.equal((-m.head(b)).argmax(1), torch.arange(10))


def test_rbf_output_is_squared_distance():
    torch.manual_seed(0)
    m = get_model("lenet5")
    x = torch.randn(4, 84)
    ref = ((x[:, None, :] - L.digit_bitmaps()[None]) ** 2).sum(-1)
    torch.testing.assert_close(m.head(x), ref, rtol=1e-5, atol=1e-4)
    assert m.head.centres.requires_grad is False and "centres" not in dict(m.named_parameters())


# -- criteria on hand examples -----------------------------------------------------------------


def test_paper_criterion_equals_formula():
    m = get_model("lenet5", criterion="paper", rbf_j=0.5)
    y = torch.tensor([[3.0, 1.0, 2.0, 5.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]])  # RBF penalties
    scores, target = -y, torch.tensor([1])
    expected = 1.0 + math.log(math.exp(-0.5) + sum(math.exp(-v) for v in y[0].tolist()))
    assert m.loss(scores, target).item() == pytest.approx(expected, rel=1e-6)
    assert get_model("lenet5", criterion="mle").loss(scores, target).item() == pytest.approx(1.0)
    ce = get_model("lenet5", criterion="ce").loss(scores, target).item()
    assert ce == pytest.approx(1.0 + math.log(sum(math.exp(-v) for v in y[0].tolist())), rel=1e-6)


def test_mse_criterion_equals_formula():
    m = get_model("lenet1989")
    out = torch.tensor([[0.5, -0.5, 1.0]])
    # targets +1 for class 2, -1 otherwise
    expected = (0.5 + 1) ** 2 + (-0.5 + 1) ** 2 + (1.0 - 1) ** 2
    assert m.loss(out, torch.tensor([2])).item() == pytest.approx(expected)


def test_criterion_output_mismatch_raises():
    with pytest.raises(ConfigError, match="RBF"):
        get_model("lenet5", output="linear", criterion="paper")
    with pytest.raises(ConfigError, match="num_classes"):
        get_model("lenet5", num_classes=5)


# -- sizes, padding, init ---------------------------------------------------------------------


def test_size_errors_name_the_fix():
    with pytest.raises(ConfigError, match="data.resize=32"):
        get_model("lenet5", input_size=40)
    with pytest.raises(ConfigError, match="data.resize=16"):
        get_model("lenet1989", input_size=28)
    with pytest.raises(ConfigError, match="activation"):
        get_model("lenet5", activation="swish")


def test_padding_uses_the_background_value():
    torch.manual_seed(0)
    m28 = get_model("lenet5", input_size=28)
    m32 = get_model("lenet5", input_size=32)
    m32.load_state_dict(m28.state_dict())
    x = torch.rand(2, 1, 28, 28) * 1.275 - 0.1
    x32 = F.pad(x, (2, 2, 2, 2), value=L.LECUN_BACKGROUND)
    torch.testing.assert_close(m28(x), m32(x32))


def test_scaled_tanh():
    a = torch.tensor([1.0, -1.0, 0.0])
    torch.testing.assert_close(L._act("scaled_tanh", a), torch.tensor([1.0, -1.0, 0.0]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("init,power", [("lecun", 1.0), ("lecun_sqrt", 0.5)])
def test_init_range(init, power):
    torch.manual_seed(0)
    m = get_model("lenet5", init=init)
    c1, c3, f6 = m.stages[0].op, m.stages[2].op, m.stages[5].op
    assert c1.weight.abs().max() <= 2.4 / 25**power
    assert c1.weight.abs().max() > 0.8 * 2.4 / 25**power  # fills the range
    for k in range(c3.weight.shape[0]):  # per map: fan-in 75, 100 or 150
        fan = len(L.LENET5_C3_TABLE[int(c3.conn_map[k])]) * 25
        assert c3.weight[k].abs().max() <= 2.4 / fan**power + 1e-7
    assert f6.weight.abs().max() <= 2.4 / 120**power
    assert m.stages[1].op.coef.abs().max() <= 2.4 / 4**power


# -- second derivatives (LeCun 1998, Appendix C) -------------------------------------------------


def test_second_derivatives_match_explicit_formula_two_layers():
    torch.manual_seed(0)
    s1 = L.Stage("A", L.Dense("A", 3, 4), "scaled_tanh")
    s2 = L.Stage("B", L.Dense("B", 4, 2), "identity")
    m = L.LeNet([s1, s2], criterion="mse", init="lecun_sqrt")
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    h = m.second_derivatives(x, y)
    w1, w2 = s1.op.weight.detach(), s2.op.weight.detach()
    a1 = x @ w1.t() + s1.op.bias.detach()
    x1 = L._act("scaled_tanh", a1)
    fp2 = (L.SQUASH_A * L.SQUASH_S * (1 - torch.tanh(L.SQUASH_S * a1) ** 2)) ** 2
    h_a2 = torch.full((5, 2), 2.0)  # d2E/dout^2 for sum (out - t)^2, identity output
    h_w2 = torch.einsum("bk,bi->ki", h_a2, x1**2) / 5
    h_a1 = fp2 * (h_a2 @ (w2**2))
    h_w1 = torch.einsum("bi,bj->ij", h_a1, x**2) / 5
    torch.testing.assert_close(h["stages.1.op.weight"], h_w2)
    torch.testing.assert_close(h["stages.1.op.bias"], h_a2.mean(0))
    torch.testing.assert_close(h["stages.0.op.weight"], h_w1)
    torch.testing.assert_close(h["stages.0.op.bias"], h_a1.mean(0))


def test_second_derivatives_shared_conv_weight_sums_connections():
    torch.manual_seed(0)
    conv = L.TableConv2d("C", 2, [(0,), (0, 1)], 3)
    m = L.LeNet([L.Stage("C", conv, "identity")], criterion="mse")
    x = torch.randn(4, 2, 5, 5)
    h = m.second_derivatives(x, torch.zeros(4, dtype=torch.long))
    cols = F.unfold(x**2, 3)  # (B, 2*9, 9 positions)
    # every output unit has d2E/da^2 = 2; a weight's h sums x_j^2 over the 9 positions it is used at
    per_in = 2 * cols.sum(2).mean(0).view(2, 3, 3)
    torch.testing.assert_close(h["stages.0.op.weight"], torch.stack([per_in[0], per_in[0], per_in[1]]))
    torch.testing.assert_close(h["stages.0.op.bias"], torch.full((2,), 2.0 * 9))


@pytest.mark.parametrize("name", LENETS)
def test_second_derivatives_cover_every_parameter(name):
    size = 16 if name == "lenet1989" else 28
    m = get_model(name, input_size=size)
    x, y = torch.randn(6, 1, size, size), torch.randint(0, 10, (6,))
    h = m.second_derivatives(x, y)
    for n, p in m.named_parameters():
        assert h[n].shape == p.shape and torch.isfinite(h[n]).all() and (h[n] >= 0).all()
    assert any(v.sum() > 0 for v in h.values())


# -- SDLM and the schedule --------------------------------------------------------------------


def test_sdlm_step_is_eta_over_mu_plus_h_times_grad():
    torch.manual_seed(0)
    m = L.LeNet([L.Stage("A", L.Dense("A", 3, 2), "scaled_tanh")], criterion="mse")
    opt = SDLM(m.parameters(), lr=0.01, mu=0.02, step_scale=4)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    opt.estimate_hessian(m, None, x, y)
    h = m.second_derivatives(x, y)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    loss = m.loss(m(x[:4]), y[:4])
    loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    opt.step()
    for n, p in m.named_parameters():
        expected = before[n] - 0.01 * 4 / (0.02 + h[n]) * grads[n]
        torch.testing.assert_close(p.detach(), expected)


def test_sdlm_empirical_fisher_fallback():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2))
    x, y = torch.randn(6, 3), torch.randint(0, 2, (6,))
    opt = SDLM(net.parameters(), lr=0.01)
    opt.estimate_hessian(net, F.cross_entropy, x, y, chunk=4)
    ref = torch.zeros_like(net[0].weight)
    for i in range(6):
        net.zero_grad()
        F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        ref += net[0].weight.grad**2 / 6
    torch.testing.assert_close(opt.state[net[0].weight]["h"], ref)


def test_sdlm_rejects_bad_settings():
    with pytest.raises(ConfigError, match="mu"):
        SDLM(nn.Linear(2, 2).parameters(), mu=0.0)
    with pytest.raises(ConfigError, match="step_scale"):
        SDLM(nn.Linear(2, 2).parameters(), step_scale=0)


def test_paper_schedule():
    opt = SDLM(nn.Linear(2, 2).parameters())
    sched = PiecewiseConstantLR(opt)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs == [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    with pytest.raises(ConfigError, match="durations"):
        PiecewiseConstantLR(opt, lrs=[1e-3, 1e-4], durations=[2, 3])


# -- learning -------------------------------------------------------------------------------------


def _digits_28():
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4)) * 1.275 - 0.1  # 28x28, lecun scaling
    return x, torch.tensor(d.target)


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: threads only add overhead (and the CPU is shared)
    yield
    torch.set_num_threads(n)


def test_lenet5_sdlm_learns_digits(one_thread):
    torch.manual_seed(0)
    x, y = _digits_28()
    xtr, ytr, xte, yte = x[:800], y[:800], x[1300:], y[1300:]
    m = get_model("lenet5")
    opt = SDLM(m.parameters(), lr=5e-4, step_scale=4)
    with torch.no_grad():
        err0 = (m(xte).argmax(1) != yte).float().mean().item()
    first = None
    for epoch in range(2):
        opt.estimate_hessian(m, m.loss, xtr[:500], ytr[:500])
        for i in range(0, len(xtr), 16):
            loss = m.loss(m(xtr[i:i + 16]), ytr[i:i + 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = loss.item() if first is None else first
    with torch.no_grad():
        err = (m(xte).argmax(1) != yte).float().mean().item()
    assert loss.item() < 0.5 * first
    assert err < 0.25 and err < err0


# -- the Hydra experiment, end to end on the fake MNIST of conftest ------------------------------


def test_lenet5_paper_experiment_trains_with_sdlm_and_hessian_callback(mnist_root, tmp_path, one_thread):
    import train as train_script
    from tests.conftest import compose_train

    cfg = compose_train([
        "experiment=lenet5_paper", f"data.root={mnist_root}", "data.download=false", "data.val_size=200",
        "trainer.max_epochs=2", "++trainer.limit_train_batches=4", "++trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1", "callbacks.progress_bar.refresh_rate=0",
        "trainer.enable_model_summary=false", "logger=csv", "test=false",
    ], tmp_path)
    assert cfg.data.normalize == "lecun" and cfg.data.batch_size == 16 and cfg.trainer.max_epochs == 2
    metrics = train_script.train(cfg)
    assert metrics["train/sdlm_h_mean"] > 0  # the callback estimated h before the epoch
    import csv

    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    lrs = [float(r["lr-SDLM"]) for r in rows if r.get("lr-SDLM")]
    assert lrs[:2] == [5e-4, 5e-4]  # the paper's first two passes


def test_trainable_subsampling_is_the_block_sum_times_a_coefficient_plus_a_bias():
    """[1998] II.B: the four inputs are added, multiplied by a trainable coefficient and added to
    a trainable bias (per map); worked by hand on a 4x4 map, so a block mean, or a coefficient
    or bias shared across maps, fails."""
    from models.lenet_layers import Subsample

    s = Subsample("S2", 2, "trainable")
    with torch.no_grad():
        s.coef.copy_(torch.tensor([2.0, -1.0]))
        s.bias.copy_(torch.tensor([0.5, 3.0]))
    x = torch.arange(32, dtype=torch.float32).view(1, 2, 4, 4)
    # map 0's top-left block is 0, 1, 4, 5 (sum 10); map 1's is 16, 17, 20, 21 (sum 74)
    out = s(x)
    assert out[0, 0, 0, 0].item() == 10 * 2.0 + 0.5 and out[0, 1, 0, 0].item() == 74 * -1.0 + 3.0
    sums = x.view(1, 2, 2, 2, 2, 2).sum(dim=(3, 5))  # every block's sum
    expected = sums * torch.tensor([2.0, -1.0]).view(1, 2, 1, 1) + torch.tensor([0.5, 3.0]).view(1, 2, 1, 1)
    torch.testing.assert_close(out, expected)
