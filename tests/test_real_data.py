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


@pytest.mark.slow
def test_fukushima_neocognitron_reaches_98_percent_on_mnist():
    """The self-organised network with its default settings, all 60k training images, one pass
    per learning phase (about a minute on 2 cores): the issue's goal is >= 98% test accuracy."""
    root = _mnist_root()
    if root is None:
        pytest.skip("no MNIST copy (set DATA_DIR)")
    from torchvision.datasets import MNIST

    tr, te = MNIST(str(root), train=True, download=False), MNIST(str(root), train=False, download=False)
    unit = lambda x: x.float().unsqueeze(1) / 255.0  # noqa: E731
    net = get_model("neocognitron_fukushima")
    while not net.done_learning:
        for i in range(0, 60000, 250):
            net.learn(unit(tr.data[i:i + 250]), tr.targets[i:i + 250])
        net.learning_epoch_end()
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
    from training.data import random_crop_flip
    from training.perturbations import directions, shift

    cfg = compose_train(["experiment=neocognitron_fukushima_tolerant", f"data.root={root}"], tmp_path)
    assert cfg.data.augment and cfg.data.crop_padding > 0
    tr, te = MNIST(str(root), train=True, download=False), MNIST(str(root), train=False, download=False)
    unit = lambda x: x.float().unsqueeze(1) / 255.0  # noqa: E731
    torch.manual_seed(0)
    net = get_model("neocognitron_fukushima", **cfg.model.model_kwargs)
    while not net.done_learning:
        for i in range(0, 60000, 250):
            net.learn(random_crop_flip(unit(tr.data[i:i + 250]), cfg.data.crop_padding, False), tr.targets[i:i + 250])
        net.learning_epoch_end()
    x, y = unit(te.data[:2000]), te.targets[:2000]
    with torch.no_grad():
        acc = lambda xs: (torch.cat([net(xs[i:i + 500]).argmax(1) for i in range(0, 2000, 500)]) == y).float().mean().item()  # noqa: E731
        centred = acc(x)
        shifted = sum(acc(shift(x, dy, dx)) for dy, dx in directions(2)) / 8
    assert centred >= 0.97 and shifted >= 0.965, (centred, shifted)  # recorded (first 1,000): 97.8% and 97.9%
