"""Issue 26: the pieces behind the LeNet papers' figures -- the papers' per-pattern updates
(vmapped over seeds), LeNet-1's 16x16-in-28x28 input, the 1989 paper's data sizes."""

from __future__ import annotations

import sys

import pytest
import torch

from models import get_model
from models.sdlm import SDLM, PiecewiseConstantLR
from tests.conftest import ROOT
from training.data.digits import fit_digits

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_lenet  # noqa: E402


@pytest.fixture
def float64():
    """The comparisons in float64: in float32 the two loops' different summation orders (vmap's
    batched kernels, one model's) differ by 1e-7, and per-pattern SDLM steps on random patterns
    amplify that to 1e-2 within two passes; in float64 they agree to 1e-10."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _digits(n: int, side: int = 28, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, side, side, generator=g) * 1.275 - 0.1)
    return x, torch.randint(0, 10, (n,), generator=g)


def _reference_per_sample(name: str, seed: int, epochs: int, x, y, **kwargs):
    """SDLM stepping after every pattern, one model at a time: the paper's loop, written plainly."""
    torch.manual_seed(seed)
    model = get_model(name, **kwargs)
    g = torch.Generator().manual_seed(seed)
    opt = SDLM(model.parameters(), step_scale=1)
    sched = PiecewiseConstantLR(SDLM([torch.zeros(1)]))
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = sched.lr_at(epoch)
        idx = torch.randperm(len(x), generator=g)[:500]
        opt.estimate_hessian(model, model.loss, x[idx], y[idx])
        for t in torch.randperm(len(x), generator=g):
            loss = model.loss(model(x[t:t + 1]), y[t:t + 1])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


@pytest.mark.parametrize("name", ["lenet1", "lenet5"])
def test_per_sample_training_of_several_seeds_at_once_equals_each_seed_trained_alone(name, float64):
    x, y = _digits(10)
    models, curves, _ = bench_lenet.train_per_sample(name, [0, 3], 2, x, y, x[:4], y[:4], log=lambda s: None,
                                                     compile=False)
    assert [len(c) for c in curves] == [2, 2] and "test_err" in curves[0][0]
    for seed, got in zip([0, 3], models):
        want = _reference_per_sample(name, seed, 2, x, y)
        for (k, a), (_, b) in zip(got.named_parameters(), want.named_parameters()):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8, msg=f"seed {seed} {k}")
    first = dict(models[0].named_parameters())
    assert any(not torch.equal(first[k], v) for k, v in models[1].named_parameters())  # the seeds differ


def test_a_per_sample_run_stopped_after_a_pass_resumes_as_if_never_stopped(tmp_path):
    """Pass 1 kept in a state file, then passes 2-3 resumed from it (with distortions, whose own
    generator must carry on too): the same weights and curves as three passes in one go."""
    x, y = _digits(12)
    distort = {"fraction": 0.5, "translate": 2.0, "scale": 0.1, "squeeze": 0.1, "shear": 0.2}
    run = lambda epochs, **kw: bench_lenet.train_per_sample("lenet1", [0, 2], epochs, x, y, x[:4], y[:4],  # noqa: E731
                                                            log=lambda s: None, compile=False, distort=distort, **kw)
    whole, whole_curves, _ = run(3)
    state = tmp_path / "passes.pt"
    run(1, state_file=state)
    resumed, curves, _ = run(3, state_file=state)
    for a, b in zip(whole, resumed):
        for (k, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            assert torch.equal(p, q), k
    assert curves == whole_curves
    with pytest.raises(SystemExit, match="holds a run of lenet1 seeds \\[0, 2\\]"):
        bench_lenet.train_per_sample("lenet1", [5], 3, x, y, x[:4], y[:4], log=lambda s: None, compile=False,
                                     state_file=state)


def test_per_sample_sgd_takes_plain_steps_in_the_stored_order(float64):
    x, y = _digits(6, side=16)
    (got,), _, _ = bench_lenet.train_per_sample("lenet1989", [1], 1, x, y, x, y, log=lambda s: None,
                                                optimizer="sgd", lr=0.01, shuffle=False, compile=False)
    torch.manual_seed(1)
    want = get_model("lenet1989", input_size=16)
    opt = torch.optim.SGD(want.parameters(), lr=0.01)
    for t in range(6):
        opt.zero_grad()
        want.loss(want(x[t:t + 1]), y[t:t + 1]).backward()
        opt.step()
    for (k, a), (_, b) in zip(got.named_parameters(), want.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8, msg=k)


def test_a_digit_is_fitted_to_16x16_and_centred_in_28x28():
    x = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    x[0, 0, 3:23, 15:25] = 255  # a 20 x 10 bar, off centre
    out = fit_digits(x, 16, 28)
    want = torch.zeros(1, 1, 28, 28)
    want[0, 0, 6:22, 10:18] = 255.0  # 16 x 8, its box centred
    torch.testing.assert_close(out, want)
    assert fit_digits(torch.zeros(2, 1, 28, 28), 16, 28).abs().sum() == 0  # an empty image stays empty


def test_lenet1s_paper_input_goes_through_the_benchmarks_preparation():
    x = torch.zeros(1, 28, 28, dtype=torch.uint8)
    x[0, 10:14, 4:24] = 255  # a 4 x 20 bar -> 3 x 16 (rounded), centred
    r = bench_lenet.RECIPES["lenet1_16in28"]
    out = bench_lenet.prepare(x, r["normalize"], r["resize"], r["center"])
    ink = (out[0, 0] > 0.5).nonzero()
    assert out.shape == (1, 1, 28, 28) and ink[:, 1].min() == 6 and ink[:, 1].max() == 21
    assert out.min() == pytest.approx(-0.1)  # the background as LeCun scales it
    assert bench_lenet.input_of(r) == "16x16 in 28x28" and bench_lenet.input_of(bench_lenet.RECIPES["lenet1"]) == "28x28"


def test_the_1989_sizes_are_drawn_from_each_split_and_fixed():
    data = (torch.arange(60000), torch.arange(60000) % 10, torch.arange(10000) + 60000, torch.arange(10000) % 10)
    a, b = bench_lenet.zip1989_subset(data), bench_lenet.zip1989_subset(data)
    assert [len(t) for t in a] == [7291, 7291, 2007, 2007]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert a[0].max() < 60000 and a[2].min() >= 60000 and len(a[0].unique()) == 7291


# --- [1998] III.C.7: the distortions ------------------------------------------------------

from training.perturbations import affine_each, random_affine, shift  # noqa: E402


def _dot(side: int, row: int, col: int) -> torch.Tensor:
    x = torch.zeros(1, 1, side, side, dtype=torch.uint8)
    x[0, 0, row, col] = 255
    return x


def test_the_affine_map_at_zero_is_the_identity_and_a_whole_translation_is_a_shift():
    x = (torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    assert torch.equal(affine_each(x, 0, 0, 1, 1, 0), x)
    assert torch.equal(random_affine(x, translate=0, scale=0, squeeze=0, shear=0), x)
    assert torch.equal(affine_each(x, 2, -1, 1, 1, 0), shift(x, 2, -1))  # 2 down, 1 left


@pytest.mark.parametrize("what, args, src, dst", [
    ("scale x2 about the centre (4, 4)", (0, 0, 2.0, 1, 0), (6, 4), (8, 4)),
    ("squeeze 0.5: half as wide, twice as tall", (0, 0, 1, 0.5, 0), (5, 6), (6, 5)),
    ("shear 1: a row 2 below the centre moves 2 right", (0, 0, 1, 1, 1.0), (6, 4), (6, 6)),
    ("shear -0.5: a row 2 above the centre moves 1 right", (0, 0, 1, 1, -0.5), (2, 4), (2, 5)),
])
def test_each_distortion_moves_a_pixel_where_its_name_says(what, args, src, dst):
    out = affine_each(_dot(9, *src), *args)
    assert out[0, 0, dst[0], dst[1]] == 255, what
    assert out[0, 0, src[0], src[1]] == 0 or src == dst, what


def test_random_distortions_differ_per_image_stay_in_range_and_repeat_with_the_generator():
    x = _dot(29, 14, 14).repeat(64, 1, 1, 1)  # the centre pixel: moved by the translation only
    out = random_affine(x, torch.Generator().manual_seed(1), translate=2.0, scale=0.1, squeeze=0.1, shear=0.2)
    again = random_affine(x, torch.Generator().manual_seed(1), translate=2.0, scale=0.1, squeeze=0.1, shear=0.2)
    assert torch.equal(out, again)
    ink = out[:, 0].float()
    rows = (ink.sum(2) * torch.arange(29.0)).sum(1) / ink.sum((1, 2))
    cols = (ink.sum(1) * torch.arange(29.0)).sum(1) / ink.sum((1, 2))
    assert (rows - 14).abs().max() <= 2.5 and (cols - 14).abs().max() <= 2.5  # the shift is at most 2 px
    assert len({(round(r, 2), round(c, 2)) for r, c in zip(rows.tolist(), cols.tolist())}) > 50


def test_a_pass_distorts_the_papers_fraction_of_the_patterns_and_leaves_the_rest_exact():
    assert bench_lenet.PAPER_DISTORTED_FRACTION == pytest.approx(0.45)  # 540,000 of 20 x 60,000
    x = torch.full((400, 1, 28, 28), -0.1)
    x[:, :, 8:20, 10:16] = 1.175  # a bar, LeCun's foreground on his background
    ranges = dict(translate=2.0, scale=0.1, squeeze=0.1, shear=0.2)
    out = bench_lenet.distorted_copy(x, 0.45, torch.Generator().manual_seed(0), ranges)
    changed = (out != x).flatten(1).any(1)
    assert 0.35 < changed.float().mean() < 0.55
    assert out.amin() >= -0.1 - 1e-6 and (out[:, :, 0, 0] + 0.1).abs().max() < 1e-6  # the background fills in
    assert torch.equal(bench_lenet.distorted_copy(x, 0.0, torch.Generator(), ranges), x)


def test_each_seed_can_train_on_its_own_set(float64):
    """Boosting trains each seed's second and third nets on that seed's filtered patterns."""
    (xa, ya), (xb, yb) = _digits(8, seed=1), _digits(8, seed=2)
    models, _, _ = bench_lenet.train_per_sample("lenet1", [0, 1], 1, torch.stack([xa, xb]), torch.stack([ya, yb]),
                                                xa, ya, log=lambda s: None, compile=False)
    for seed, (x, y), got in zip([0, 1], [(xa, ya), (xb, yb)], models):
        want = _reference_per_sample("lenet1", seed, 1, x, y)
        for (k, a), (_, b) in zip(got.named_parameters(), want.named_parameters()):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8, msg=f"seed {seed} {k}")


# --- [1998] III.C.9: boosting's filters ------------------------------------------------------

import bench_lenet_boost as boost  # noqa: E402


def test_the_second_nets_filter_takes_the_patterns_the_first_gets_wrong_or_right():
    pred, y = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([1, 0, 3, 0, 5])
    assert boost.half_wrong(pred, y, True).tolist() == [False, True, False, True, False]
    assert boost.half_wrong(pred, y, False).tolist() == [True, False, True, False, True]
    assert boost.disagree(torch.tensor([1, 2, 3]), torch.tensor([1, 0, 3])).tolist() == [False, True, False]


def test_gather_takes_the_first_kept_candidates_then_distorted_rounds():
    x = torch.full((6, 1, 9, 9), -0.1)
    x[:, :, 3:6, 3:6] = 1.175
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    ranges = dict(translate=2.0, scale=0.1, squeeze=0.1, shear=0.2)
    xs, ys, seen = boost.gather(x, y, lambda xc, yc: yc == 1, 2, 5, torch.Generator().manual_seed(0), ranges)
    assert ys.tolist() == [1, 1] and seen == 4 and torch.equal(xs, x[[1, 3]])  # round 0: patterns 1 and 3
    xs, ys, seen = boost.gather(x, y, lambda xc, yc: yc == 1, 5, 5, torch.Generator().manual_seed(0), ranges)
    assert ys.tolist() == [1] * 5 and seen == 6 + 4  # round 0's three, then two of round 1's distorted
    assert torch.equal(xs[:3], x[[1, 3, 5]]) and not torch.equal(xs[3], x[1])
    xs, ys, seen = boost.gather(x, y, lambda xc, yc: yc == 2, 5, 3, torch.Generator(), ranges)
    assert len(ys) == 0 and seen == 18  # nothing kept: gives up after max_rounds


def test_the_paper_benchmarks_run_end_to_end_on_generated_digits(mnist_root, tmp_path):
    """One pass of the per-pattern recipe with distortions, and a whole boosted LeNet-4, on the
    generated digits: the records carry what they claim, and a boosting run stopped after its
    nets were kept resumes to the same result without training again."""
    import json
    import subprocess

    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_lenet.py"), "--models", "lenet1", "--epochs", "1",
           "--per-sample", "--no-compile", "--distort", "--seeds", "0", "1", "--root", str(mnist_root), "--no-record"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    recs = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert [r["seed"] for r in recs] == [0, 1] and all(r["per_sample"] and r["batch_size"] == 1 for r in recs)
    assert recs[0]["distort"]["fraction"] == pytest.approx(0.45) and len(recs[0]["curve"]) == 1
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_lenet_boost.py"), "--epochs", "1", "--val", "300",
           "--patterns", "60", "--max-rounds", "2", "--no-compile", "--root", str(mnist_root), "--no-record",
           "--state", str(tmp_path / "boost.pt")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "net 2's set:" in out.stdout and "net 3's set:" in out.stdout and "'nets_err'" in out.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert all(f"[net {k}] resumed" in again.stdout for k in (1, 2, 3)) and "pass=" not in again.stdout
    assert again.stdout.splitlines()[-1] == out.stdout.splitlines()[-1]  # the same nets, sets and sum
    other = subprocess.run(cmd + ["--seeds", "1"], capture_output=True, text=True, timeout=300)
    assert other.returncode != 0 and "was kept for seeds [0]" in other.stderr


def test_fig5_is_drawn_from_the_records_that_hold_a_training_curve(tmp_path):
    import plot_lenet

    from training.records import append_record, read_records

    curve = [{"pass": p, "test_err": 2.0 / p, "train_err": 1.5 / p} for p in range(1, 21)]
    append_record("lenet", {"model": "lenet5", "recipe": "lenet5", "seed": 0, "test_err": 0.1, "curve": curve})
    append_record("lenet", {"model": "lenet5", "recipe": "lenet5", "seed": 1, "test_err": 0.1, "curve": curve,
                            "distort": {"fraction": 0.45}})
    append_record("lenet", {"model": "lenet5", "seed": 2, "split": "val", "val_err": 0.1, "curve": curve})  # validation
    append_record("lenet", {"model": "lenet4", "seed": 0, "test_err": 0.1, "curve": curve})  # another net
    groups = plot_lenet.fig5_groups(read_records("lenet"))
    assert {k: [r["_line"] for r in v] for k, v in groups.items()} == {"without distortions": [1],
                                                                      "with distortions": [2]}
    out = tmp_path / "fig5.png"
    assert plot_lenet.main(["--out", str(out), "--out6", str(tmp_path / "fig6.png")]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_fig6_is_drawn_from_lenet5_as_published_by_training_set_size(tmp_path):
    import plot_lenet

    from training.records import append_record, read_records

    base = {"model": "lenet5", "recipe": "lenet5", "batch_size": 16, "step_scale": 4, "epochs": 20, "model_kwargs": {},
            "test_err": 1.0, "train_err": 0.5}
    append_record("lenet", {**base, "seed": 0})                                  # 1: all 60,000
    append_record("lenet", {**base, "seed": 0, "train_size": 15_000})            # 2
    append_record("lenet", {**base, "seed": 1, "train_size": 15_000, "distort": {"fraction": 0.45}})  # 3
    append_record("lenet", {**base, "seed": 0, "train_size": 15_000, "split": "val"})  # 4: validation
    append_record("lenet", {**base, "seed": 0, "step_scale": 1})                 # 5: another recipe
    append_record("lenet", {**base, "seed": 0, "per_sample": True, "batch_size": 1})  # 6: per pattern
    groups = plot_lenet.fig6_groups(read_records("lenet"))
    assert {label: {n: [r["_line"] for r in rs] for n, rs in g.items()} for label, g in groups.items()} == {
        "without distortions": {60_000: [1], 15_000: [2]}, "with distortions": {15_000: [3]}}
    out = tmp_path / "fig6.png"
    plot_lenet.plot_fig6(groups, out)
    assert out.read_bytes()[:4] == b"\x89PNG"


# --- [1998] Fig. 6: runs on part of the training set -----------------------------------------
def test_a_run_on_part_of_the_training_set_counts_only_where_a_row_asks_for_it():
    """A LeNet-5 run on 15,000 digits (Fig. 6) must not join the row of LeNet-5 on all 60,000."""
    import report

    from training.records import append_record

    base = {"model": "lenet5", "recipe": "lenet5", "batch_size": 16, "step_scale": 4, "epochs": 20,
            "model_kwargs": {}}
    append_record("lenet", {**base, "seed": 0, "test_err": 1.0})
    append_record("lenet", {**base, "seed": 0, "test_err": 2.0, "train_size": 15_000})
    whole = next(r for r in report.TABLES["lenet"] if r.key == "lenet5_batch16")
    assert [r["test_err"] for r in report.select(whole)] == [1.0]
    part = report.Row("part", "MNIST", "lenet", {**base, "train_size": 15_000}, "test_err", "cmd")
    assert [r["test_err"] for r in report.select(part)] == [2.0]


def test_train_size_draws_that_many_training_digits(mnist_root):
    import json
    import subprocess

    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_lenet.py"), "--models", "lenet1", "--epochs", "1",
           "--train-size", "50", "--root", str(mnist_root), "--no-record"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (r,) = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    wrong = r["train_err"] * 50 / 100  # the training error counts the 50 digits it trained on
    assert r["train_size"] == 50 and abs(wrong - round(wrong)) < 1e-9
    bad = subprocess.run(cmd[:-3] + ["--train-size", "999999", "--root", str(mnist_root)], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "--train-size 999999: give 1 to" in bad.stderr
