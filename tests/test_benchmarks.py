"""The benchmark scripts run end to end (on the generated digits; their figures come from real data)."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_bench_harness(mnist_root, *args: str) -> str:
    """bench_harness.py's output for LeNet-5 on the generated digits, a few steps of one repeat."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_harness.py"), *args, "--models", "lenet5", "--steps", "3",
           "--warmup", "1", "--repeats", "1", "--root", str(mnist_root), "--set", "data.val_size=100"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_bench_harness_prints_every_table_with_ratios(mnist_root):
    stdout = run_bench_harness(mnist_root)
    rows = [ln for ln in stdout.splitlines() if ln.startswith("| lenet5 |")]  # harness, data path
    assert len(rows) == 2 and "| MNIST 1x28x28" in stdout, stdout  # and the augmentation table
    harness, datapath = ([float(c) for c in re.findall(r"\| ([\d.]+)(?= )", row)] for row in rows)
    # No timing bounds (a shared machine's speed swings by 50x under load): each ratio is the one
    # its row's own rates give (one repeat: the medians are those rates), in the promised direction.
    hand, ours, ratio, bare, bare_ratio = harness
    assert ratio == pytest.approx(ours / hand, rel=0.02) and bare_ratio == pytest.approx(bare / hand, rel=0.02), rows
    tv0, tv2, tensors, time_ratio = datapath
    assert time_ratio == pytest.approx(max(tv0, tv2) / tensors, rel=0.02), rows


def test_bench_harness_breakdown_leaves_one_part_out_at_a_time(mnist_root):
    row = next(ln for ln in run_bench_harness(mnist_root, "--breakdown").splitlines() if ln.startswith("| lenet5 |"))
    assert row.count("x |") == 6 and "img/s" in row, row


def test_bench_lenet_names_the_classes_a_dead_output_unit_never_predicts(mnist_root):
    """A LeNet whose output unit for one class is stuck at its floor never predicts that class;
    bench_lenet.py records it (and warns), so a failed seed is told from a bad recipe."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_lenet

    from models.registry import get_model

    torch = pytest.importorskip("torch")
    model = get_model("lenet1")
    x = torch.randn(64, 1, 28, 28)
    assert bench_lenet.never_predicted(bench_lenet.predict(model, x)) == [
        c for c in range(10) if c not in set(model(x).argmax(1).tolist())]
    with torch.no_grad():
        model.stages[-1].op.bias[2] = -100.0  # the unit of class 2 saturates at the squashing floor
    assert 2 in bench_lenet.never_predicted(bench_lenet.predict(model, x))
    # end to end: one pass on the generated digits, the record carries the list
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_lenet.py"), "--models", "lenet1",
                          "--epochs", "1", "--root", str(mnist_root), "--no-record"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("{")))
    assert isinstance(record["never_predicted"], list) and 0 <= record["test_err"] <= 100


@pytest.mark.parametrize("name", ["lenet1", "lenet4", "lenet5", "lenet1989"])
def test_bench_lenet_and_train_py_use_the_same_sdlm_step_scale_and_init(name):
    """The step scale and initialisation chosen on validation (docs/results.md) are those both
    bench_lenet.py's recipe and the model's config use, so the README's figure and `train.py model=<name>` agree."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_lenet
    from omegaconf import OmegaConf

    from models import lenet

    config = OmegaConf.load(ROOT / "configs" / "model" / f"{name}.yaml")
    assert config.optimizer.step_scale == bench_lenet.RECIPES[name]["step_scale"]
    # and the same initialisation: the config's is the builder's default, which bench_lenet.py uses
    assert config.model_kwargs.init == inspect.signature(getattr(lenet, name)).parameters["init"].default
