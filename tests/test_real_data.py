"""Accuracy floors on the real data sets (slow; skipped where no copy is found).

    DATA_DIR=../shared/data python -m pytest -m slow tests/test_real_data.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from models import get_model

ROOT = Path(__file__).resolve().parents[1]


def _mnist_root() -> Path | None:
    for root in (os.environ.get("DATA_DIR"), ROOT.parent / "shared" / "data"):
        if root and (Path(root) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
            return Path(root)
    return None


def unit(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 digits (N, H, W) -> floats in [0, 1], (N, 1, H, W)."""
    return x_u8.float().unsqueeze(1) / 255.0


def learn_fukushima(net, train, shift: int = 0):
    """Fukushima's network learned one pass per learning phase over all 60k training images in order,
    in batches of 250 (each image shifted at random by up to ``shift`` px, as data.crop_padding does)."""
    from training.data import random_crop_flip

    while not net.done_learning:
        for i in range(0, 60000, 250):
            x = unit(train.data[i:i + 250])
            net.learn(random_crop_flip(x, shift, False) if shift else x, train.targets[i:i + 250])
        net.learning_epoch_end()
    return net


@pytest.mark.slow
def test_fukushima_neocognitron_reaches_98_percent_on_mnist():
    """The self-organised network with its default settings, all 60k training images, one pass
    per learning phase (about a minute on 2 cores): the issue's goal is >= 98% test accuracy."""
    root = _mnist_root()
    if root is None:
        pytest.skip("no MNIST copy (set DATA_DIR)")
    from torchvision.datasets import MNIST

    tr, te = MNIST(str(root), train=True, download=False), MNIST(str(root), train=False, download=False)
    net = learn_fukushima(get_model("neocognitron_fukushima"), tr)
    with torch.no_grad():
        pred = torch.cat([net(unit(te.data[i:i + 1000])).argmax(1) for i in range(0, 10000, 1000)])
    acc = (pred == te.targets).float().mean().item()
    assert acc >= 0.98, acc


@pytest.mark.slow
def test_fukushima_tolerant_preset_keeps_its_accuracy_under_2px_shifts(tmp_path):
    """experiment=neocognitron_fukushima_tolerant (issue 17 §3), learned as train.py learns it (all
    60k training images, each pass shifted at random by up to data.crop_padding px), scored on the
    first 2,000 test digits shifted by 2 px in each of the 8 directions: a floor below what the
    preset's three recorded seeds reached (README, Tolerance to shifts)."""
    root = _mnist_root()
    if root is None:
        pytest.skip("no MNIST copy (set DATA_DIR)")
    from torchvision.datasets import MNIST

    from tests.conftest import compose_train
    from training.perturbations import mean_over_shifts

    cfg = compose_train(["experiment=neocognitron_fukushima_tolerant", f"data.root={root}"], tmp_path)
    assert cfg.data.augment and cfg.data.crop_padding > 0
    tr, te = MNIST(str(root), train=True, download=False), MNIST(str(root), train=False, download=False)
    torch.manual_seed(0)
    net = learn_fukushima(get_model("neocognitron_fukushima", **cfg.model.model_kwargs), tr, cfg.data.crop_padding)
    x, y = unit(te.data[:2000]), te.targets[:2000]
    with torch.no_grad():
        acc = lambda xs: (torch.cat([net(xs[i:i + 500]).argmax(1) for i in range(0, 2000, 500)]) == y).float().mean().item()  # noqa: E731
        centred = acc(x)
        shifted = mean_over_shifts(acc, x, 2)
    assert centred >= 0.97 and shifted >= 0.965, (centred, shifted)  # recorded (first 1,000): 97.8% and 97.9%


COMPACT = {"thetas_learn": [0.75, 0.7, 0.5], "margin": 0.0, "reinforce": True, "top_epochs": 3, "adjust_epochs": 4,
           "adjust_rate": 0.1, "intvec_k": 1}  # configs/experiment/neocognitron_fukushima_compact.yaml


@pytest.mark.slow
def test_the_compact_top_stays_small_on_mnist(tmp_path):
    """The compact preset's top layer (issue 27) on all 60k training images: at most 3,000 reference
    vectors, a state dict of at most 30 MB as saved, and >= 98.5% test accuracy (its validation figure
    is 98.87 ± 0.05%; today's top keeps ~23,000 vectors); the preset's config is these settings."""
    from omegaconf import OmegaConf

    root = _mnist_root()
    if root is None:
        pytest.skip("no MNIST copy (set DATA_DIR)")
    preset = OmegaConf.load(ROOT / "configs" / "experiment" / "neocognitron_fukushima_compact.yaml")
    assert OmegaConf.to_container(preset.model.model_kwargs) == COMPACT
    from torchvision.datasets import MNIST

    tr, te = MNIST(str(root), train=True, download=False), MNIST(str(root), train=False, download=False)
    net = learn_fukushima(get_model("neocognitron_fukushima", **COMPACT), tr)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    with torch.no_grad():
        pred = torch.cat([net(unit(te.data[i:i + 1000])).argmax(1) for i in range(0, 10000, 1000)])
    acc = (pred == te.targets).float().mean().item()
    assert net.refs.shape[0] <= 3000 and (tmp_path / "net.pt").stat().st_size <= 30 * 2**20, net.refs.shape
    assert acc >= 0.985, acc


from models.weights import find, list_weights  # noqa: E402

_SHIPPED = [w.name for w in list_weights(shipped=True)]


@pytest.mark.slow
@pytest.mark.parametrize("name", _SHIPPED)
def test_each_shipped_set_reproduces_its_recorded_test_figure(name):
    """eval.py weights=NAME on the real test split gives the test accuracy its run recorded."""
    import subprocess
    import sys

    root = _mnist_root()
    if root is None:
        pytest.skip("no MNIST copy (DATA_DIR)")
    out = subprocess.run([sys.executable, "eval.py", f"weights={name}", "trainer.enable_progress_bar=false"], cwd=ROOT,
                         capture_output=True, text=True, timeout=1800, env={**os.environ, "DATA_DIR": str(root)})
    assert out.returncode == 0, out.stderr[-1500:]
    acc = float(out.stdout.split("test/acc: ")[1].split()[0])
    assert acc == pytest.approx(find(name).meta["test_acc"], abs=1e-4)  # eval prints 4 decimals
