"""Shared fixtures: small data sets written to disk in torchvision's layouts, offline.

The digits come from scikit-learn's bundled 8x8 handwritten digits (1,797 images),
upscaled to 28x28, so that "does it learn" tests run on real handwriting; they are the
notebooks' small MNIST, written by the same functions (:mod:`training.visualize`)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import models  # noqa: F401
import training  # noqa: F401  (registers the config resolvers)
from training.visualize import sklearn_digits_28 as digits_28  # noqa: F401  (the tests import it from here)
from training.visualize import write_idx, write_small_mnist  # noqa: F401  (write_idx: likewise)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def make_mnist(root: Path, name: str = "MNIST", n_test: int = 297) -> Path:
    """The digits in ``root/<name>/raw`` in MNIST's IDX layout (1,500 train, ``n_test`` test)."""
    return write_small_mnist(root, n_test=n_test, name=name)


def make_cifar_batches(root: Path, n_per_batch: int = 20) -> Path:
    """A tiny CIFAR-10 in the official cifar-10-batches-py layout (random pixels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n_per_batch).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}, f)
    return root


def bar_image(horizontal: bool, pos: int, size: int = 9) -> torch.Tensor:
    """A ``(1, 1, size, size)`` image of one horizontal (row ``pos``) or vertical (column ``pos``) bar."""
    img = torch.zeros(1, 1, size, size)
    if horizontal:
        img[0, 0, pos, 2:size - 2] = 1.0
    else:
        img[0, 0, 2:size - 2, pos] = 1.0
    return img


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    return make_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    return make_cifar_batches(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Caches go to a temporary folder; tests never touch the user's."""
    monkeypatch.setenv("NEOLENET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NEOLENET_RESULTS_DIR", str(tmp_path / "results"))  # records never reach benchmarks/results


def with_model(args: list[str], model: str = "convnet") -> list[str]:
    """``args`` with ``model=<model>`` first unless they choose a model or experiment: the tests
    were written against the small convnet, whatever train.py's default model is."""
    chosen = any(a.lstrip("+~").startswith(("model=", "experiment=")) for a in args)
    return list(args) if chosen else [f"model={model}", *args]


def compose_train(overrides: list[str], run_dir: Path):
    """The composed train.py config, as Hydra would build it, with the run folder set."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    overrides = with_model(overrides)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        del cfg.hydra
    return cfg


FAST = ["trainer.max_epochs=1", "trainer.log_every_n_steps=1", "callbacks.progress_bar.refresh_rate=0",
        "trainer.enable_model_summary=false", "data.val_size=200", "data.batch_size=64"]


class StopAfterEpochs:
    """A callback that interrupts training after ``epochs`` epochs, as a killed run would be."""

    def __new__(cls, epochs: int):
        import lightning as L

        class _Stop(L.Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                if trainer.current_epoch + 1 >= epochs:
                    trainer.should_stop = True

        return _Stop()
