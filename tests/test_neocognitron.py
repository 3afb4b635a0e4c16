"""Both Neocognitrons: shapes, fixed C-planes, validation, the S-cell equation, Add-if-Silent,
learning without autograd, self-organisation on bars, learning on small data, and the layout
(the shared cells in models.cells, no import between the two model files)."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import models
from models import ConfigError, get_model
from models.cells import BlurCPlanes, PoolCPlanes, SLayer, edge_kernels, gaussian_kernel, saturate
from tests.conftest import bar_image

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- supervised
STAGE_CONFIGS = [
    ([{"planes": 4}], 1, 28),
    ([{"planes": 4, "c_kind": "blur", "c_kernel": 3, "c_stride": 2, "c_padding": 1}], 1, 28),
    ([{"planes": 6, "s_kernel": 4, "s_padding": "same"}, {"planes": 8, "c_kind": "avg"}], 1, 28),
    ([{"planes": 3, "s_kernel": 3, "s_stride": 2, "s_padding": 0, "c_kernel": 3, "c_stride": 1},
      {"planes": 5, "s_kernel": 3, "batchnorm": True, "activation": "tanh", "c_kind": "blur",
       "c_kernel": 2}], 3, 32),
    ([{"planes": 4, "c_kernel": 2}, {"planes": 4, "c_kernel": 2}, {"planes": 4, "c_kernel": 2},
      {"planes": 4, "s_kernel": 1, "c_kernel": 1}], 1, 28),
    ([{"planes": 8, "s_kernel": 5, "s_padding": 0, "c_kernel": 2}], 1, 8),
]


@pytest.mark.parametrize("stages,cin,size", STAGE_CONFIGS)
def test_supervised_shapes(stages, cin, size):
    net = get_model("neocognitron", in_channels=cin, num_classes=7, input_size=size,
                    stages=stages, decision=[16])
    out = net(torch.randn(3, cin, size, size))
    assert out.shape == (3, 7)
    feats = net.features(torch.randn(2, cin, size, size))
    assert feats.shape[-1] == net.sizes[-1] and feats.shape[1] == stages[-1]["planes"]


def test_supervised_default_and_omegaconf():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"stages": [{"planes": 4, "c_kind": "blur", "c_kernel": 3,
                                         "c_padding": 1, "c_stride": 2}], "decision": [8]})
    net = get_model("neocognitron", stages=cfg.stages, decision=cfg.decision)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    default = get_model("neocognitron")
    assert default.sizes == [28, 14, 7]
    # the S-layer parameter counts follow K * (C * L^2 + 1) (no conv bias with batchnorm: + BN's 2K)
    s0 = default.s_layers()[0]
    assert sum(p.numel() for p in s0.parameters()) == 32 * 25 + 2 * 32


def test_c_planes_have_no_parameters_and_stay_fixed():
    torch.manual_seed(0)
    stages = [{"planes": 4, "s_kernel": 3, "c_kind": "blur", "c_kernel": 3, "c_stride": 2, "c_padding": 1},
              {"planes": 4, "s_kernel": 3, "c_kind": "max", "c_kernel": 2}]
    net = get_model("neocognitron", input_size=12, stages=stages, decision=[])
    for c in net.c_layers():
        assert list(c.parameters()) == []
    blur = net.c_layers()[0]
    assert "kernel" in dict(blur.named_buffers())
    kernel0 = blur.kernel.clone()
    s_w0 = net.s_layers()[0][0].weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = torch.randn(16, 1, 12, 12), torch.randint(0, 10, (16,))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    assert torch.equal(blur.kernel, kernel0)
    assert not torch.equal(net.s_layers()[0][0].weight, s_w0)  # the S-planes did learn


def test_blur_and_max_c_planes_match_their_definitions():
    x = torch.rand(2, 3, 9, 9) * 3
    blur = BlurCPlanes(3, 3, 2, 1, gain=2.0)
    k = gaussian_kernel(3)
    assert torch.isclose(k.sum(), torch.tensor(1.0)) and k[1, 1] == k.max()  # centre-weighted
    y = blur(x)
    xp = F.pad(x, (1, 1, 1, 1))
    # output cell (1, 2) of plane 1 reads input rows 1..3, cols 3..5 of the padded map
    s = 2.0 * (xp[0, 1, 2:5, 4:7] * k).sum()
    assert torch.isclose(y[0, 1, 1, 2], s / (1 + s))
    assert torch.allclose(saturate(torch.tensor([-1.0, 0.0, 3.0])), torch.tensor([0.0, 0.0, 0.75]))
    assert torch.equal(PoolCPlanes("max", 2, 2)(x), F.max_pool2d(x, 2, 2))
    assert torch.allclose(PoolCPlanes("avg", 3, 2)(x), F.avg_pool2d(x, 3, 2))


def test_blur_c_saturate_false_leaves_out_only_the_saturation():
    # the ablation of issue 30: the same network, C-cells the plain Gaussian blur (no psi)
    stage = {"planes": 3, "s_kernel": 3, "c_kind": "blur", "c_kernel": 3, "c_stride": 2, "c_padding": 1,
             "c_gain": 2.0}
    torch.manual_seed(0)
    sat = get_model("neocognitron", input_size=9, stages=[stage], decision=[])
    torch.manual_seed(0)
    lin = get_model("neocognitron", input_size=9, stages=[{**stage, "c_saturate": False}], decision=[])
    c_sat, c_lin = sat.c_layers()[0], lin.c_layers()[0]
    assert c_sat.saturation and not c_lin.saturation
    x = torch.rand(2, 3, 9, 9) * 3
    assert torch.allclose(c_sat(x), saturate(c_lin(x)))  # psi of the same blur
    assert c_lin(x).max() > 1 > c_sat(x).max()
    with pytest.raises(ConfigError, match="c_saturate"):
        get_model("neocognitron", input_size=9, stages=[{**stage, "c_saturate": "no"}])


@pytest.mark.parametrize("stages,match", [
    ([{"planes": 4, "c_kind": "median"}], "stage 0.*c_kind"),
    ([{"planes": 0}], "stage 0.*planes"),
    ([{"planes": 4}, {"planes": 4, "s_kernel": 15, "s_padding": 0}], "stage 1 S-layer"),
    ([{"planes": 4, "c_kernel": 2}] * 5, "stage 4 C-layer"),
    ([{"planes": 4, "colour": 1}], "unknown key"),
    ([{"planes": 4, "activation": "swish"}], "activation"),
    ([{"planes": 4, "s_padding": -1}], "s_padding"),
    ([], "non-empty"),
])
def test_supervised_config_errors(stages, match):
    with pytest.raises(ConfigError, match=match):
        get_model("neocognitron", stages=stages)


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target)


def test_supervised_learns_small_digits():
    torch.manual_seed(0)
    x, y = _digits()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    xtr, ytr, xte, yte = x[:1200], y[:1200], x[1200:], y[1200:]
    net = get_model("neocognitron", input_size=8, decision=[32], dropout=0.0, stages=[
        {"planes": 16, "s_kernel": 3, "c_kind": "max", "c_kernel": 2},
        {"planes": 32, "s_kernel": 3, "c_kind": "max", "c_kernel": 2}])
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.eval()
    with torch.no_grad():
        loss0 = F.cross_entropy(net(xtr), ytr).item()
    net.train()
    for _ in range(8):
        for i in torch.randperm(1200).split(64):
            opt.zero_grad()
            F.cross_entropy(net(xtr[i]), ytr[i]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        assert F.cross_entropy(net(xtr), ytr).item() < loss0 / 5
        acc = (net(xte).argmax(1) == yte).float().mean().item()
    assert acc > 0.9, acc


# ----------------------------------------------------------------------------- Fukushima
def test_fukushima_is_registered_and_has_no_parameters():
    assert {"neocognitron", "neocognitron_fukushima"} <= set(models.list_models())
    net = get_model("neocognitron_fukushima")
    assert net.learns_by_backprop is False and list(net.parameters()) == []
    assert net.sizes == [28, 28, 14, 7]
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_fukushima_handles_other_inputs_and_validates():
    net = get_model("neocognitron_fukushima", in_channels=3, num_classes=4, input_size=32)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    with pytest.raises(ConfigError, match="thetas"):
        get_model("neocognitron_fukushima", thetas=[0.5, 0.5, 1.2])
    with pytest.raises(ConfigError, match="max_planes"):
        get_model("neocognitron_fukushima", max_planes=[8])
    with pytest.raises(ConfigError, match="UC3"):  # 4 -> 3 -> 1 -> 0 with 4x4 blurs
        get_model("neocognitron_fukushima", input_size=4, c_kernels=[4, 4, 4])


def test_s_cell_equals_its_equation_by_hand():
    # One input plane, a 3x3 receptive field, one S-plane, selectivity 0.5.
    layer = SLayer("US", 1, 3, theta=0.5, theta_learn=0.5, max_planes=1)
    w = [[0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 1.0, 0.0]]  # a vertical-line weight direction
    layer.set_weights(torch.tensor(w).view(1, 1, 3, 3))
    x = [[0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 0.0]]
    c = layer.c2d.view(3, 3).tolist()  # the V-cell's fixed weights, centre-weighted
    assert c[1][1] > c[0][1] > c[0][0]
    norm = math.sqrt(sum(c[i][j] * w[i][j] ** 2 for i in range(3) for j in range(3)))
    a = [[c[i][j] * w[i][j] / norm for j in range(3)] for i in range(3)]  # a = c w, sum c w^2 = 1
    excit = sum(a[i][j] * x[i][j] for i in range(3) for j in range(3))
    v = math.sqrt(sum(c[i][j] * x[i][j] ** 2 for i in range(3) for j in range(3)))
    expected = max(excit - 0.5 * v, 0.0) / (1 - 0.5)
    u = layer(torch.tensor(x).view(1, 1, 3, 3))
    assert expected > 0
    assert u[0, 0, 1, 1].item() == pytest.approx(expected, rel=1e-5)
    # a stronger selectivity silences the same cell: sum a x / v is below 0.9
    assert excit / v < 0.9 and layer(torch.tensor(x).view(1, 1, 3, 3), theta=0.9)[0, 0, 1, 1] == 0


def test_add_if_silent_grows_only_for_unanswered_patterns():
    layer = SLayer("US", 1, 5, theta=0.5, theta_learn=0.7, max_planes=4)
    assert layer.planes == 0
    st = layer.learn(bar_image(True, 4), q=1.0, active=0.5)
    assert st["grown"] == 1 and layer.planes == 1  # no plane at all: silent -> a new plane
    st = layer.learn(bar_image(True, 4), q=1.0, active=0.5)
    assert st["grown"] == 0 and st["silent"] == 0 and layer.planes == 1  # answered
    st = layer.learn(bar_image(False, 4), q=1.0, active=0.5)
    assert st["grown"] == 1 and layer.planes == 2  # a vertical bar: the horizontal plane is silent
    w = layer.weights()
    # the new plane took its input as weights: it answers the vertical bar best
    u = layer(bar_image(False, 4))
    assert u[0, 1].amax() > 0 and u[0, 0].amax() == 0
    assert w.shape == (2, 1, 5, 5)


def test_add_if_silent_respects_the_cap():
    layer = SLayer("US", 1, 5, theta=0.5, theta_learn=0.95, max_planes=2)
    batch = torch.cat([bar_image(True, 4), bar_image(False, 4), bar_image(True, 2) + bar_image(False, 6)])
    layer.learn(batch, q=1.0, active=0.5)
    assert layer.planes == 2


def _bars(n: int, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    imgs, kinds = [], []
    for i in range(n):
        horizontal = bool(i % 2)
        img = torch.zeros(1, size, size)
        p = int(torch.randint(3, size - 3, (1,), generator=g))
        if horizontal:
            img[0, p, 2:size - 2] = 1
        else:
            img[0, 2:size - 2, p] = 1
        imgs.append(img)
        kinds.append(int(horizontal))
    return torch.stack(imgs), torch.tensor(kinds)


def test_self_organisation_separates_bars_without_labels():
    net = get_model("neocognitron_fukushima", input_size=16, n_orient=8, max_planes=[6, 6],
                    thetas=[0.6, 0.5, 0.5], thetas_learn=[0.7, 0.7, 0.7])
    x, kind = _bars(40)
    net.learn(x, None)  # US2 learns from unlabelled bars
    net.learning_epoch_end()
    assert 2 <= net.us2.planes <= 6
    u = net.us2(net.layers_upto(x, 1))  # (B, K, H, W)
    winner = u.amax((2, 3)).argmax(1)
    h_win = torch.mode(winner[kind == 1]).values
    v_win = torch.mode(winner[kind == 0]).values
    assert h_win != v_win
    assert (winner[kind == 1] == h_win).float().mean() > 0.8
    assert (winner[kind == 0] == v_win).float().mean() > 0.8


def test_learning_uses_no_autograd_and_top_rule():
    torch.manual_seed(0)
    x, y = _digits()
    x = F.interpolate(x, size=16, mode="bilinear", align_corners=False)
    net = get_model("neocognitron_fukushima", input_size=16, max_planes=[12, 16],
                    learn_limit=[600, 600], top_epochs=2)
    with torch.enable_grad():
        while not net.done_learning:
            for i in range(0, 1200, 200):
                net.learn(x[i:i + 200], y[i:i + 200])
            stats = net.learning_epoch_end()
            assert all(math.isfinite(v) for v in stats.values())
    assert list(net.parameters()) == []
    for name, b in net.named_buffers():
        assert not b.requires_grad and b.grad is None, name
    assert net.us2.planes > 0 and net.us3.planes > 0 and net.refs.shape[0] > 10
    acc = (net(x[1200:]).argmax(1) == y[1200:]).float().mean().item()
    assert acc > 0.85, acc
    # the top rule: a misclassified training pattern becomes a reference vector with its label
    n0 = net.refs.shape[0]
    net.phase = 2  # back to a top-learning pass
    pred = net(x[:200]).argmax(1)
    wrong_label = (pred + 1) % 10
    net.learn(x[:1], wrong_label[:1])
    assert net.refs.shape[0] == n0 + 1 and net.ref_labels[-1] == wrong_label[0]
    net.margin = 0.0  # the plain rule (the margined one has its own test)
    right = net(x[:1]).argmax(1)  # what the network answers now
    net.learn(x[:1], right)  # answered and correct: nothing new
    assert net.refs.shape[0] == n0 + 1
    # a checkpoint of the grown network loads into a fresh one
    fresh = get_model("neocognitron_fukushima", input_size=16, max_planes=[12, 16])
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh(x[1200:1250]), net(x[1200:1250]))


@pytest.mark.parametrize("margin, learned", [(0.0, False), (0.05, False), (0.1, True)])
def test_margined_top_rule_learns_a_pattern_won_by_less_than_the_margin(margin, learned):
    """Margined winner-take-all (Fukushima 2018): a training pattern that its own class wins, but
    by less than ``margin`` in similarity, becomes a reference vector as if it had lost."""
    net = get_model("neocognitron_fukushima", intvec_k=1, thetas_learn=[0.7, 0.7, 0.5], margin=margin)
    net.top_features = lambda x: x  # feed top-layer feature vectors directly
    e0, e1 = torch.eye(4)[:2]
    net.refs, net.ref_labels = torch.stack([e0, e1]), torch.tensor([0, 1])
    net.phase = 2
    f = F.normalize(e0 + 0.9 * e1, dim=0)  # class 0 wins by 0.743 - 0.669 = 0.074
    assert net.class_similarity(f[None]).argmax(1).item() == 0
    net.learn(f[None], torch.tensor([0]))
    assert net.refs.shape[0] == 2 + learned
    if learned:
        assert torch.equal(net.refs[-1], f) and net.ref_labels[-1] == 0
    stats = net.learning_epoch_end()
    assert stats["us4_train_err"] == 0 and stats["us4_margin_frac"] == float(learned)
    with pytest.raises(ConfigError, match="margin"):
        get_model("neocognitron_fukushima", margin=-0.1)


def test_edge_kernels_are_oriented():
    k = edge_kernels(4, 5)
    assert k.shape == (4, 2, 5, 5) and (k >= 0).all()
    # orientation 0 reads the on-plane on the right, the off-plane on the left
    assert k[0, 0, :, 3:].sum() > 0 and k[0, 0, :, :2].sum() == 0 and k[0, 1, :, :2].sum() > 0
    # opposite orientations swap the on and off planes
    assert torch.allclose(k[2, 0], k[0, 1])


@pytest.mark.parametrize("overrides", [
    ["model=neocognitron"], ["model=neocognitron_fukushima"], ["experiment=neocognitron_mnist"],
    ["experiment=neocognitron_fukushima_mnist"], ["experiment=neocognitron_cifar10"],
])
def test_configs_build_the_networks(overrides):
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    cfg_dir = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(version_base="1.3", config_dir=cfg_dir):
        cfg = compose("train", overrides=overrides)
    module = instantiate(cfg.model)
    size, cin = cfg.data.image_size, cfg.data.in_channels
    assert module.net(torch.rand(2, cin, size, size)).shape == (2, cfg.data.num_classes)
    backprop = cfg.model.model == "neocognitron"
    assert module.automatic_optimization is backprop


# ----------------------------------------------------------------------------- layout
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def _imported_modules(path: Path) -> set[str]:
    """The modules of the ``models`` package that ``path`` imports, by name (``from .x import``,
    ``from . import x``, ``from models.x import``, ``import models.x``), anywhere in the file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or node.module and node.module.split(".")[0] == "models":
                mod = (node.module or "").removeprefix("models").lstrip(".")
                if mod:
                    out.add(mod.split(".")[0])
                else:  # from . import x, y
                    out |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("models.")}
    return out


def test_the_two_neocognitrons_share_cells_and_do_not_import_each_other():
    imports = {name: _imported_modules(MODELS_DIR / f"{name}.py")
               for name in ("cells", "neocognitron", "neocognitron_fukushima")}
    assert "neocognitron_fukushima" not in imports["neocognitron"], imports["neocognitron"]
    assert "neocognitron" not in imports["neocognitron_fukushima"], imports["neocognitron_fukushima"]
    assert "cells" in imports["neocognitron"] and "cells" in imports["neocognitron_fukushima"]
    assert not imports["cells"] & {"neocognitron", "neocognitron_fukushima", "registry"}, imports["cells"]


def test_both_neocognitrons_are_registered_by_the_package_alone():
    """In a fresh interpreter: ``import models; models.list_models()`` names both networks, and
    importing one model file does not import the other."""
    codes = [
        "import sys, models.neocognitron; assert 'models.neocognitron_fukushima' not in sys.modules; "
        "import models; names = models.list_models(); "
        "assert {'neocognitron', 'neocognitron_fukushima'} <= set(names), names",
        "import sys, models.neocognitron_fukushima; assert 'models.neocognitron' not in sys.modules",
    ]
    for code in codes:
        r = subprocess.run([sys.executable, "-c", code], cwd=MODELS_DIR.parent, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]


def test_state_dict_keys_are_those_of_earlier_checkpoints():
    """Checkpoints written before the cells moved to models.cells still load: the same keys, and
    ``phase_counts`` and ``ref_mass`` (added later) may be missing (tests/test_neocognitron_fukushima.py)."""
    assert list(get_model("neocognitron_fukushima").state_dict()) == [
        "dog", "refs", "ref_labels", "ref_mass", "learned_phases", "phase_counts", "us1.c2d", "us1.acc", "us2.c2d",
        "us2.acc", "us3.c2d", "us3.acc", "uc.0.kernel", "uc.1.kernel", "uc.2.kernel"]
    net = get_model("neocognitron", stages=[{"planes": 4, "c_kind": "blur", "c_kernel": 3,
                                              "c_padding": 1, "c_stride": 2}])
    assert list(net.state_dict()) == ["stages.0.0.0.weight", "stages.0.0.0.bias", "stages.0.1.kernel",
                                      "decision.2.weight", "decision.2.bias", "decision.5.weight",
                                      "decision.5.bias"]


def test_one_shared_blur_kernel_equals_a_kernel_per_plane():
    """Fukushima's network blurs every plane of a growing layer with one kernel (``blur_all``):
    the same cells as a BlurCPlanes with a kernel per plane; no planes give an empty map of the
    right size."""
    x = torch.rand(2, 5, 11, 11) * 2
    one = BlurCPlanes(1, 3, 2, 1, gain=4.0)
    assert torch.equal(one.blur_all(x), BlurCPlanes(5, 3, 2, 1, gain=4.0)(x))
    assert one.blur_all(x).shape == (2, 5, 6, 6) and one.blur_all(x[:, :0]).shape == (2, 0, 6, 6)
