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
