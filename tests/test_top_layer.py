"""US4's rules (models/top_layer.py) against hand-worked examples, and the compact top on digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models import get_model
from models.top_layer import adjust, margin_misses, reinforce

E = torch.eye(3)


@pytest.mark.parametrize("y, margin, wrong, close", [
    (0, 0.1, False, True),    # class 0 wins 0.90 to 0.85: by 0.05, less than 0.1
    (0, 0.01, False, False),  # ... more than 0.01
    (0, 0.0, False, False),   # no margin: a win is a win
    (1, 0.1, True, False),    # class 1 loses: wrong, not close
])
def test_the_margin_rule_by_hand(y, margin, wrong, close):
    scores = torch.tensor([[0.90, 0.85, 0.10]])
    w, c = margin_misses(scores, torch.tensor([y]), margin)
    assert (bool(w), bool(c)) == (wrong, close)


def test_reinforcement_makes_the_vector_the_normalised_sum_of_its_patterns():
    refs, mass, labels = E[:2].clone(), torch.ones(2), torch.tensor([0, 1])
    f = F.normalize(torch.tensor([[1.0, 1.0, 0.0]]), dim=1)  # class 0; nearer e1 (a class-1 vector) too
    reinforce(refs, mass, labels, f, torch.tensor([0]), f @ refs.t())
    s = 1 + 1 / math.sqrt(2)
    norm = math.sqrt(s * s + 0.5)  # |e0 + f| = 1.8478
    assert refs[0].tolist() == pytest.approx([s / norm, (1 / math.sqrt(2)) / norm, 0.0], abs=1e-6)
    assert mass.tolist() == pytest.approx([norm, 1.0], abs=1e-6)
    assert torch.equal(refs[1], E[1])  # the other class's vector is not touched
    # a second pattern adds to the sum, not to the normalised vector: e0 + f + e0
    reinforce(refs, mass, labels, E[:1], torch.tensor([0]), E[:1] @ refs.t())
    total = torch.tensor([2 + 1 / math.sqrt(2), 1 / math.sqrt(2), 0.0])
    assert refs[0].tolist() == pytest.approx((total / total.norm()).tolist(), abs=1e-6)
    assert mass[0].item() == pytest.approx(total.norm().item(), abs=1e-5)


def test_an_adjusting_step_by_hand():
    """f = (0.6, 0.8) of class 0: its class's vector e0 (cosine 0.6) is pulled, class 1's e1
    (cosine 0.8) pushed, by rate * (f - r), then both are normalised again."""
    refs, labels = E[:2].clone(), torch.tensor([0, 1])
    f = torch.tensor([[0.6, 0.8, 0.0]])
    assert adjust(refs, labels, f, torch.tensor([0]), rate=0.5, window=0.1) == 1
    pulled, pushed = torch.tensor([0.8, 0.4, 0.0]), torch.tensor([-0.3, 1.1, 0.0])
    assert refs[0].tolist() == pytest.approx((pulled / pulled.norm()).tolist(), abs=1e-6)
    assert refs[1].tolist() == pytest.approx((pushed / pushed.norm()).tolist(), abs=1e-6)
    # a pattern far from the border moves nothing: own cosine 1, other 0, window 0.1
    before = refs.clone()
    assert adjust(refs, labels, E[:1], torch.tensor([0]), rate=0.5, window=0.1) == 0
    assert torch.equal(refs, before)
    # within the window although right: own 0.8, other 0.6 > 0.8 - 0.3
    f2 = torch.tensor([[0.8, 0.6, 0.0]])
    refs2 = E[:2].clone()
    assert adjust(refs2, labels, f2, torch.tensor([0]), rate=0.5, window=0.3) == 1
    assert adjust(E[:2].clone(), labels, f2, torch.tensor([0]), rate=0.5, window=0.1) == 0


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return F.interpolate(x, size=16, mode="bilinear", align_corners=False), torch.tensor(d.target)


def _train(**kw):
    torch.manual_seed(0)
    x, y = _digits()
    net = get_model("neocognitron_fukushima", input_size=16, max_planes=[12, 16], learn_limit=[600, 600], **kw)
    while not net.done_learning:
        for i in range(0, 1200, 100):
            net.learn(x[i:i + 100], y[i:i + 100])
        net.learning_epoch_end()
    return net, (net(x[1200:]).argmax(1) == y[1200:]).float().mean().item()


def test_the_compact_top_keeps_few_vectors_and_its_accuracy():
    """On 1,200 small digits, today's rule (margin 0.05, silent below cosine 0.9) keeps a vector
    for most patterns; the compact one (no margin, silent below 0.5, SCL reinforcement, adjusting
    passes) stays under a bound today's exceeds, and recognises the 597 held-out digits as well
    (within 2 points) or better."""
    old, acc_old = _train()
    new, acc_new = _train(margin=0.0, thetas_learn=[0.75, 0.7, 0.5], reinforce=True, adjust_epochs=2,
                          adjust_rate=0.1)
    bound = 300
    assert old.refs.shape[0] > bound and new.refs.shape[0] < bound, (old.refs.shape[0], new.refs.shape[0])
    assert acc_new > acc_old - 0.02 and acc_new > 0.85, (acc_old, acc_new)
    assert new.done_learning and new.phase == new.learning_epochs == 2 + 1 + 2
    assert torch.allclose(new.refs.norm(dim=1), torch.ones(new.refs.shape[0]), atol=1e-5)


def test_the_curve_plot_groups_rows_by_setting_over_seeds(tmp_path):
    """benchmarks/plot_fukushima_top.py: one point per setting, the mean of its seeds with their
    range, sorted by size; the PNG is written."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import plot_fukushima_top

    def row(seed, setting, refs, a1, a4):
        return "ROW " + json.dumps({"seed": seed, "setting": setting, "refs": refs, "refs_mb": 1.0,
                                    "val_acc": {"1": a1, "4": a4}})
    records = [{"output": "\n".join(["torch ...", row(0, {}, 20000, 0.98, 0.99), row(0, {"margin": 0.0}, 3000, 0.96, 0.97)])},
               {"output": "\n".join([row(1, {"margin": 0.0}, 1000, 0.94, 0.95), row(1, {}, 22000, 0.982, 0.992)])}]
    pts = plot_fukushima_top.points(records)
    assert [p["setting"] for p in pts] == [{"margin": 0.0}, {}]
    assert pts[0]["refs"] == 2000 and pts[0]["n"] == 2
    assert pts[0]["1"] == pytest.approx((95.0, 94.0, 96.0)) and pts[1]["4"] == pytest.approx((99.1, 99.0, 99.2))
    out = tmp_path / "curve.png"
    plot_fukushima_top.plot(pts, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
