"""Fidelity of Fukushima's Neocognitron (issue 17 s.4): Add-if-Silent as the papers define it
(``frozen_ais``), no US4 recognition selectivity (a 4th ``thetas`` value is ignored), the counts
of a learning phase in checkpoints (exact mid-epoch resume; checkpoints without them still load),
and the geometry of the interpolating-vector classifier for k > 1 against brute force."""

from __future__ import annotations

import shutil
import warnings
from itertools import product
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import ConfigError, get_model
from models.cells import SLayer
from tests.conftest import ROOT, bar_image, compose_train, digits_28

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- 1. frozen AiS
@pytest.mark.parametrize("frozen", [False, True])
def test_frozen_add_if_silent_never_changes_a_generated_plane(frozen):
    """The papers' AiS: a generated plane keeps the input it was made from; with competition
    (``frozen=False``) a plane that answers a pattern learns from it."""
    layer = SLayer("US", 1, 5, theta=0.5, theta_learn=0.7, max_planes=4)
    layer.learn(bar_image(True, 4), q=1.0, active=0.5, frozen=frozen)
    assert layer.planes == 1
    made = layer.acc.clone()
    shifted = bar_image(True, 4) + 0.5 * bar_image(True, 5)  # answered by the plane, but not its input
    st = layer.learn(shifted, q=1.0, active=0.5, frozen=frozen)
    assert st["grown"] == 0 and layer.planes == 1
    assert torch.equal(layer.acc, made) is frozen
    assert st["seeds"] == (0 if frozen else 1)
    st = layer.learn(bar_image(False, 4), q=1.0, active=0.5, frozen=frozen)  # silent: still grows
    assert st["grown"] == 1 and layer.planes == 2
    assert torch.equal(layer.acc[:1], made) is frozen


def test_frozen_ais_network_keeps_every_plane_as_it_was_generated():
    x, _ = _digits16()
    net = get_model("neocognitron_fukushima", input_size=16, max_planes=[12, 16])  # frozen: the default
    assert net.frozen_ais and "frozen AiS" in net.describe()
    for phase, layer in enumerate((net.us2, net.us3)):
        for i in range(0, 600, 100):
            before = layer.acc.clone()
            net.learn(x[i:i + 100], None)
            if len(before):  # rows are only ever appended
                assert torch.equal(layer.acc[:len(before)], before), (phase, i)
        assert layer.planes > 0
        net.learning_epoch_end()
    competing = get_model("neocognitron_fukushima", input_size=16, max_planes=[12, 16], frozen_ais=False)
    made = None
    for i in range(0, 600, 100):
        competing.learn(x[i:i + 100], None)
        made = competing.us2.acc.clone() if made is None else made
    assert not torch.equal(competing.us2.acc[:len(made)], made)  # competition moved the planes
    with pytest.raises(ConfigError, match="frozen_ais must be true or false"):
        get_model("neocognitron_fukushima", frozen_ais="yes")


def _digits16():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return F.interpolate(x, size=16, mode="bilinear", align_corners=False), torch.tensor(d.target)


# ----------------------------------------------------------------------------- 2. thetas
def test_thetas_are_those_of_us1_to_us3_and_a_4th_is_checked_and_ignored():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # three values: no warning
        three = get_model("neocognitron_fukushima", thetas=[0.6, 0.55, 0.5])
    with pytest.warns(FutureWarning, match=r"thetas has a 4th value, 0.99 .*ignored"):
        four = get_model("neocognitron_fukushima", thetas=[0.6, 0.55, 0.5, 0.99])
    assert four.describe() == three.describe() and "0.99" not in four.describe()
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(four(x), three(x))
    with pytest.raises(ConfigError, match=r"thetas\[3\] must be a number > 0.0 and < 1.0, got 1.5"):
        get_model("neocognitron_fukushima", thetas=[0.6, 0.55, 0.5, 1.5])
    for bad in ([0.6, 0.55], [0.6, 0.55, 0.5, 0.5, 0.5]):
        with pytest.raises(ConfigError, match="thetas must be a list of 3 values"):
            get_model("neocognitron_fukushima", thetas=bad)


# ----------------------------------------------------------------------------- 3. counts in checkpoints
OLD = ROOT / "tests" / "fixtures" / "neocognitron_fukushima_before_counts.ckpt"


def test_a_checkpoint_without_the_counts_and_with_4_thetas_loads_and_scores_as_before():
    """Written by the code before the counts were saved (thetas of 4 values, no ``phase_counts``):
    a tiny network trained by train.py on the generated MNIST of tests/conftest.py, which then
    classified 268 of its 297 test digits, with scores summing to 2055.976."""
    from training.module import Classifier, check_resume_checkpoint, read_checkpoint

    saved = read_checkpoint(OLD)
    assert "net.phase_counts" not in saved["state_dict"] and len(saved["hyper_parameters"]["model_kwargs"]["thetas"]) == 4
    with pytest.warns(FutureWarning, match="thetas has a 4th value"):
        module = Classifier.load_from_checkpoint(OLD, map_location="cpu")  # strict
    assert module.net.done_learning and module.net.count("patterns") == 0
    # written before reinforcement: each of its vectors is one pattern
    assert "net.ref_mass" not in saved["state_dict"] and module.net.refs.shape[0] > 0
    assert torch.equal(module.net.ref_mass, torch.ones(module.net.refs.shape[0]))
    check_resume_checkpoint(OLD, module)  # strict too
    module, _ = Classifier.load_with_checkpoint(OLD)
    x, y = digits_28()
    x, y = torch.tensor(x[:297]).float().unsqueeze(1) / 255, torch.tensor(y[:297]).long()
    with torch.no_grad():
        scores = module(x)
    assert (scores.argmax(1) == y).sum().item() == 268
    assert scores.double().sum().item() == pytest.approx(2055.976252, abs=1e-4)
    # a state dict from today without the counts loads the same way
    net = get_model("neocognitron_fukushima")
    net.phase_counts.fill_(7)
    state = {k: v for k, v in net.state_dict().items() if k != "phase_counts"}
    net.load_state_dict(state)
    assert net.phase_counts.tolist() == [0] * 5


TINY = ["model=neocognitron_fukushima", "model.model_kwargs.n_orient=4", "model.model_kwargs.max_planes=[4,6]",
        "model.model_kwargs.learn_limit=[300,300]", "model.model_kwargs.max_refs=60", "data.download=false",
        "data.train_subset=640", "data.val_size=200", "data.batch_size=64", "data.augment=false",
        "data.normalize=unit", "trainer.max_epochs=3", "trainer.log_every_n_steps=1", "logger=csv",
        "callbacks.progress_bar.refresh_rate=0", "trainer.enable_model_summary=false", "test=true",
        "callbacks.step_checkpoint.every_n_train_steps=3",
        "+callbacks.copy._target_=tests.test_neocognitron_fukushima.CopyLastAtSteps",
        "+callbacks.copy.steps=[4,13,25]"]
# 10 batches of 64 per epoch; US2 and US3 learn from 300 patterns (batch 4 is cut), so a resume
# that forgot the count would let them learn from up to 300 more


class CopyLastAtSteps(L.Callback):
    """Copy ``last.ckpt`` to ``at_<step>.ckpt`` at the start of each step in ``steps``: the
    checkpoint a run killed during that step would resume from (written 1 to 3 steps before)."""

    def __init__(self, steps):
        self.steps = list(steps)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        if trainer.global_step in self.steps and last.exists():  # a resumed run may have none yet
            shutil.copyfile(last, last.with_name(f"at_{trainer.global_step}.ckpt"))


def _train(mnist_root, run: Path, *extra):
    import train as train_script

    metrics = train_script.train(compose_train([*TINY, f"data.root={mnist_root}", *extra], run))
    metrics = {k: v for k, v in metrics.items() if k != "test/ckpt_path" and not k.startswith(("time/", "disk/"))}
    return metrics, torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module", params=[True, False], ids=["frozen_ais", "competition"])
def fukushima_full_run(mnist_root, tmp_path_factory, request):
    """The uninterrupted run, with frozen AiS (room for 40 planes, so that US2 and US3 are still
    growing when the count is saved) and with competition."""
    run = tmp_path_factory.mktemp("fukushima_full")
    setting = [f"model.model_kwargs.frozen_ais={str(request.param).lower()}"]
    setting += ["model.model_kwargs.max_planes=[40,40]"] if request.param else []
    metrics, weights = _train(mnist_root, run, *setting)
    return metrics, weights, run / "checkpoints", setting


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("step, phase, done", [(4, 0, 3), (13, 1, 12), (25, 2, 24)])
def test_a_run_resumed_mid_epoch_learns_what_an_uninterrupted_run_learns(fukushima_full_run, mnist_root, tmp_path,
                                                                         step, phase, done):
    """Resumed from the step checkpoint a run killed during ``step`` would leave (mid-epoch of
    US2's, US3's and the top layer's phase), train.py ends with the weights and metrics of the
    run that was never interrupted; the same checkpoint without the counts (as written before
    they were saved) ends with other weights where the patterns learned beyond the count change
    the layer."""
    m_full, w_full, ckpts, setting = fukushima_full_run
    ckpt = torch.load(ckpts / f"at_{step}.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == done and ckpt["epoch"] == phase
    assert int(ckpt["state_dict"]["net.learned_phases"]) == phase
    assert int(ckpt["state_dict"]["net.phase_counts"][0]) == min(64 * (done - 10 * phase), 300 if phase < 2 else 640)
    m_resumed, w_resumed = _train(mnist_root, tmp_path / "resumed", *setting, f"ckpt_path={ckpts / f'at_{step}.ckpt'}")
    assert _same(w_resumed, w_full)
    # every figure the resumed run reports (not those of the epochs it did not run) is the same
    assert {"test/acc", "val/acc", "train/us4_train_err", "train/us4_refs"} <= m_resumed.keys()
    assert m_resumed == {k: m_full[k] for k in m_resumed}
    assert phase > 0 or m_resumed == m_full
    # the control: forgetting the count changes what US2 / US3 learn (but frozen US2 of this tiny
    # run grows its last plane before its 300th pattern, and more patterns change nothing)
    if phase == 1 or phase == 0 and "frozen_ais=false" in setting[0]:
        del ckpt["state_dict"]["net.phase_counts"]
        blind = tmp_path / "blind.ckpt"
        torch.save(ckpt, blind)
        _, w_blind = _train(mnist_root, tmp_path / "blind", *setting, f"ckpt_path={blind}")
        assert not _same(w_blind, w_full)


# ----------------------------------------------------------------------------- 4. interpolating vectors
def _cone_cosine_nnls(f: np.ndarray, vecs: np.ndarray) -> float:
    """The largest cosine between unit ``f`` and the cone of ``vecs`` (rows), when positive: the
    length of ``f``'s projection on the cone, by non-negative least squares."""
    from scipy.optimize import nnls

    alpha, _ = nnls(vecs.T, f)
    return float(np.linalg.norm(vecs.T @ alpha))


def _cone_cosine_sampled(f: np.ndarray, vecs: np.ndarray, steps: int = 36) -> float:
    """The largest cosine between ``f`` and ``sum alpha_i v_i`` over a grid of the simplex
    ``alpha >= 0, sum alpha = 1`` (every direction of the cone, up to length)."""
    k = len(vecs)
    grid = np.array([a for a in product(range(steps + 1), repeat=k - 1) if sum(a) <= steps], dtype=float)
    alpha = np.concatenate([grid, steps - grid.sum(1, keepdims=True)], 1) / steps
    p = alpha @ vecs
    return float(((p @ f) / np.linalg.norm(p, axis=1).clip(1e-12)).max())


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("kind", ["non-negative", "gaussian"])
def test_interpolating_vectors_score_the_cone_of_the_k_most_similar(k, kind):
    """Per class, the score is the largest cosine between ``f`` and the cone of the class's k
    reference vectors most similar to ``f``: as non-negative least squares finds it, and as
    dense sampling of the cone finds it up to the grid's resolution."""
    g = torch.Generator().manual_seed(10 * k + len(kind))
    D, classes = 6, 3
    refs = torch.randn(30, D, generator=g, dtype=torch.float64)
    f = torch.randn(40, D, generator=g, dtype=torch.float64)
    if kind == "non-negative":  # like UC3's outputs
        refs, f = refs.abs(), f.abs()
    refs, f = F.normalize(refs, dim=1).float(), F.normalize(f, dim=1).float()
    labels = torch.arange(30) % classes  # 10 vectors per class
    net = get_model("neocognitron_fukushima", num_classes=classes, intvec_k=k)
    net.refs, net.ref_labels = refs, labels
    got = net.class_similarity(f)
    assert got.shape == (40, classes)
    r64, f64 = refs.double().numpy(), f.double().numpy()
    used_a_cone = 0
    for i in range(len(f)):
        for c in range(classes):
            mine = r64[labels.numpy() == c]
            near = mine[np.argsort(-(mine @ f64[i]))[:k]]  # the k most similar
            single = float((near @ f64[i]).max())
            sampled = _cone_cosine_sampled(f64[i], near)
            if single > 0:
                exact = _cone_cosine_nnls(f64[i], near)
                assert got[i, c].item() == pytest.approx(exact, abs=2e-5), (i, c)
                used_a_cone += exact > single + 1e-3
            else:  # nothing in the cone points towards f: the best is a single vector
                assert got[i, c].item() == pytest.approx(single, abs=2e-5), (i, c)
            assert sampled <= got[i, c].item() + 2e-5  # nothing in the cone beats it ...
            assert got[i, c].item() - sampled < 0.01  # ... and the grid comes close
    assert used_a_cone > 10  # the cases exercise interpolation, not only the nearest vector


def test_interpolating_vectors_with_fewer_vectors_than_k_and_k_1():
    e = torch.eye(4)
    net = get_model("neocognitron_fukushima", num_classes=3, intvec_k=4)
    net.refs, net.ref_labels = torch.stack([e[0], e[1], e[2]]), torch.tensor([0, 0, 1])
    f = F.normalize(torch.tensor([[1.0, 1.0, 0.5, 0.0]]), dim=1)
    got = net.class_similarity(f)[0]
    # class 0: f's projection on the quarter-plane of e0, e1; class 1: one vector; class 2: none
    assert got.tolist() == pytest.approx([float(f[0, :2].norm()), float(f[0, 2]), -1.0], abs=1e-5)
    net.intvec_k = 1  # plain winner-take-all: the nearest vector
    assert net.class_similarity(f)[0].tolist() == pytest.approx([float(f[0, 0]), float(f[0, 2]), -1.0], abs=1e-6)
