"""Issue 16 §1: no validation split means no validation metrics; the training and validation
images are disjoint; the checkpoint tested is the one chosen on validation."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from hydra.utils import instantiate

import train as train_script
import training.data
from tests.conftest import FAST, compose_train

TINY = ["model.model_kwargs.blocks=[{channels:4,kernel:3,pool:max}]", "model.model_kwargs.mlp=[16]",
        "data.train_subset=640", "data.download=false", "logger=csv"]


def logged_metric_names(run: Path) -> set[str]:
    with open(run / "csv" / "metrics.csv") as f:
        return set(next(csv.reader(f)))


def test_no_validation_split_means_no_val_metric_and_the_last_weights_are_tested(mnist_root, tmp_path, capsys):
    cfg = compose_train(FAST + TINY + [f"data.root={mnist_root}", "data.val_size=0", "trainer.max_epochs=2",
                                       "callbacks.early_stopping.enabled=true"], tmp_path)
    metrics = train_script.train(cfg)
    names = set(metrics) | logged_metric_names(tmp_path)
    assert not [n for n in names if n.startswith(("val/", "hp/val"))], sorted(names)
    assert "test/acc" in metrics and "hp/test_acc" in logged_metric_names(tmp_path)
    assert Path(metrics["test/ckpt_path"]).name == "epoch_001.ckpt"  # the last of 2 epochs
    assert "no validation split (data.val_size=0)" in capsys.readouterr().err


def test_training_and_validation_images_are_disjoint_and_cover_the_training_split(mnist_root, tmp_path):
    cfg = compose_train([f"data.root={mnist_root}", "data.val_size=300", "data.download=false"], tmp_path)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    train_idx, val_idx = (set(dm.split_indices[k].tolist()) for k in ("train", "val"))
    n = len(dm.load_split(train=True)[1])
    assert len(val_idx) == 300 and not train_idx & val_idx and train_idx | val_idx == set(range(n))
    x_all, _ = dm.load_split(train=True)
    assert torch.equal(dm.data["val"][0], x_all[sorted(val_idx, key=dm.split_indices["val"].tolist().index)])


def test_the_checkpoint_tested_is_the_best_on_validation_not_the_last(mnist_root, tmp_path):
    """The last epoch's weights are scrambled before its validation pass (val/acc at chance): a
    train.py that tested last.ckpt would score chance on test; the best epoch's checkpoint does not."""
    cfg = compose_train(FAST + TINY + [f"data.root={mnist_root}", "trainer.max_epochs=3", "data.train_subset=1200",
                                       "+callbacks.scramble._target_=tests.faults.ScrambleBeforeValidation",
                                       "+callbacks.scramble.epoch=2"], tmp_path)
    metrics = train_script.train(cfg)
    with open(tmp_path / "csv" / "metrics.csv") as f:
        val = [(int(r["epoch"]), float(r["val/acc"])) for r in csv.DictReader(f) if r.get("val/acc")]
    best_epoch = max(val, key=lambda e: e[1])[0]
    assert best_epoch < 2 and val[-1][1] < 0.3, val
    assert Path(metrics["test/ckpt_path"]).name == f"epoch_{best_epoch:03d}.ckpt"
    assert metrics["test/acc"] > 0.3 and abs(metrics["val/acc_best"] - max(v for _, v in val)) < 1e-6


def test_the_paper_presets_log_the_per_pass_test_error_under_a_test_name(mnist_root, tmp_path):
    cfg = compose_train(["experiment=lenet5_paper", f"data.root={mnist_root}", "data.download=false",
                         "data.train_subset=320", "trainer.max_epochs=1", "logger=csv",
                         "callbacks.progress_bar.refresh_rate=0"], tmp_path)
    assert cfg.data.val_size == 0
    metrics = train_script.train(cfg)
    names = logged_metric_names(tmp_path)
    assert {"test_per_pass/error", "test_per_pass/acc"} <= names
    assert not [n for n in set(metrics) | names if n.startswith(("val/", "hp/val"))]
    with open(tmp_path / "csv" / "metrics.csv") as f:
        err = [float(r["test_per_pass/error"]) for r in csv.DictReader(f) if r.get("test_per_pass/error")]
    assert len(err) == 1 and abs(err[0] - (1 - metrics["test/acc"])) < 1e-6  # the last pass is the one tested
