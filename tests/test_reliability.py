"""Reliability (issue 8): runs reproduce exactly, survive SIGKILL mid-epoch, never leave a
half-written or NaN checkpoint, stop clearly on divergence, and refuse bad input with a
message (the project's UserError, printed without a traceback by the entry points)."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

import models
import training.cli
import training.data
import train as train_script
from training.callbacks import AtomicCheckpointIO, atomic_torch_save
from training.module import Classifier, check_resume_checkpoint, read_checkpoint
from models.errors import CheckpointError, ConfigError, DataError, DivergenceError, UserError
from tests.conftest import FAST, ROOT, compose_train, with_model, write_idx

# A small convnet (one conv block, a 16-unit hidden layer with the config's dropout, so the
# random number generators matter) on 640 training images: 10 steps per epoch of 64.
TINY = ["model.model_kwargs.blocks=[{channels:4,kernel:3,pool:max}]", "model.model_kwargs.mlp=[16]",
        "data.train_subset=640", "data.download=false", "logger=csv"]


def overrides(mnist_root, *extra) -> list[str]:
    return FAST + TINY + [f"data.root={mnist_root}", *extra]


def weights(ckpt_path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def comparable(metrics: dict) -> dict:
    """The metrics that must repeat bit for bit (not the checkpoint path, not the stage times, not the disk use)."""
    return {k: v for k, v in metrics.items() if k != "test/ckpt_path" and not k.startswith(("time/", "disk/"))}


def env_one_thread() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run_train_cli(args: list[str], timeout: int = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *with_model(args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**env_one_thread(), **env})


@pytest.fixture
def one_thread():
    """Run in-process training on one thread, as the subprocesses do (the order of float
    additions, hence the last bits of the weights, can depend on the thread count)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- 1. determinism -------------------------------------------------------------------------


def test_same_seed_and_config_give_identical_weights_and_metrics(mnist_root, tmp_path, one_thread):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        cfg = compose_train(overrides(mnist_root, f"seed={seed}"), tmp_path / name)
        assert cfg.trainer.deterministic is True  # the CPU trainer's switch is on by default
        runs[name] = (comparable(train_script.train(cfg)), weights(tmp_path / name / "checkpoints" / "last.ckpt"))
    (ma, wa), (mb, wb), (mc, wc) = runs["a"], runs["b"], runs["c"]
    assert {"val/acc", "val/loss", "test/acc", "train/loss_epoch"} <= ma.keys()
    assert same_weights(wa, wb)
    assert ma == mb  # every metric, bit for bit
    assert not same_weights(wa, wc)  # another seed: other weights (the comparison can fail)


def test_deterministic_is_on_for_cpu_and_off_for_gpu(tmp_path):
    assert compose_train([], tmp_path).trainer.deterministic is True
    assert compose_train(["trainer=gpu"], tmp_path).trainer.deterministic is False


# --- 2./3. SIGKILL mid-epoch, step checkpoints, exact resume ------------------------------------


KILL = ["trainer.max_epochs=2", "test=true", "callbacks.step_checkpoint.every_n_train_steps=3"]


class one_thread_block:
    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


@pytest.fixture(scope="module")
def killed_run(mnist_root, tmp_path_factory) -> Path:
    """A run killed by SIGKILL (from inside, deterministically) during optimizer step 7 of 20,
    with step checkpoints every 3 steps; returns its last.ckpt."""
    killed = tmp_path_factory.mktemp("killed")
    result = run_train_cli(overrides(mnist_root, *KILL, f"hydra.run.dir={killed}",
                                     "+callbacks.kill._target_=tests.faults.KillAtStep", "+callbacks.kill.step=7"))
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    return killed / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def full_run(mnist_root, tmp_path_factory) -> tuple[dict, dict]:
    """The same run, uninterrupted: its final metrics and weights."""
    run = tmp_path_factory.mktemp("full")
    keep = ["+callbacks.keep._target_=tests.faults.KeepEpochEndCheckpoint"]  # epoch_end_0.ckpt, for a test below
    with one_thread_block():
        metrics = comparable(train_script.train(compose_train(overrides(mnist_root, *KILL, *keep), run)))
    return metrics, weights(run / "checkpoints" / "last.ckpt"), run / "checkpoints" / "epoch_end_0.ckpt"


def resume(mnist_root, ckpt: Path, run: Path) -> tuple[dict, dict]:
    with one_thread_block():
        metrics = comparable(train_script.train(compose_train(overrides(mnist_root, *KILL, f"ckpt_path={ckpt}"), run)))
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 20
    return metrics, weights(run / "checkpoints" / "last.ckpt")


def test_sigkill_mid_epoch_then_resume_ends_like_an_uninterrupted_run(killed_run, full_run, mnist_root, tmp_path):
    """Killed during step 7, the run loses only step 7 (N=3); resumed from its last.ckpt it ends
    with exactly the weights and metrics of the uninterrupted run."""
    ckpt = torch.load(killed_run, map_location="cpu", weights_only=True)
    # mid-epoch: epoch 0, 6 of its 10 batches done; at most N=3 steps were lost
    assert ckpt["global_step"] == 6 and ckpt["epoch"] == 0
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches_done"] == 6
    assert not list(killed_run.parent.rglob("*.partial"))

    m_resumed, w_resumed = resume(mnist_root, killed_run, tmp_path)
    m_full, w_full, _ = full_run
    assert same_weights(w_resumed, w_full)
    for key in ("val/acc", "val/loss", "val/acc_best", "test/acc", "test/loss", "train/loss_epoch", "train/acc"):
        assert m_resumed[key] == m_full[key], (key, m_resumed[key], m_full[key])


def _epoch_metrics(run: Path) -> dict[tuple[int, str], float]:
    """Every epoch-level training figure the CSV logger wrote in ``run``: (epoch, name) -> value."""
    import csv

    out = {}
    for path in run.rglob("metrics.csv"):
        for row in csv.DictReader(path.open()):
            for key, value in row.items():
                if key.startswith("train/") and key.endswith(("_epoch", "acc")) and value not in ("", None):
                    out[(int(row["epoch"]), key)] = float(value)
    return out


def test_a_resumed_epoch_reports_the_training_figures_of_the_uninterrupted_epoch(killed_run, full_run, mnist_root,
                                                                                  tmp_path):
    """Killed in epoch 0 and resumed, the run reports for epoch 0 (the one it resumed in the middle
    of) the same training loss and accuracy as the uninterrupted run, not those of its last batches:
    the running means are in the checkpoint."""
    _, _, epoch_end = full_run
    resume(mnist_root, killed_run, tmp_path)
    full, resumed = _epoch_metrics(epoch_end.parent.parent), _epoch_metrics(tmp_path)
    assert {e for e, _ in full} == {0, 1} and {k for e, k in full if e == 0} >= {"train/loss_epoch", "train/acc"}
    for key in sorted(k for k in full if k[0] == 0):
        assert resumed.get(key) == full[key], (key, resumed.get(key), full[key])
    # and epoch 1's figures are epoch 1's alone: its running accuracy counted as many patterns as
    # epoch 0's (the epoch-end checkpoint of epoch 0 holds those), not both epochs'
    seen = lambda w: int((w["train_acc.tp"] + w["train_acc.fn"]).sum())  # noqa: E731
    assert seen(weights(epoch_end.parent / "last.ckpt")) == seen(weights(epoch_end)) > 0


def test_resume_from_an_epoch_end_checkpoint_is_exact_too(full_run, mnist_root, tmp_path):
    m_full, w_full, epoch_end = full_run
    ckpt = torch.load(epoch_end, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 10 and ckpt["epoch"] == 0
    m_resumed, w_resumed = resume(mnist_root, epoch_end, tmp_path)
    assert same_weights(w_resumed, w_full)
    for key in ("val/acc", "val/loss", "val/acc_best", "test/acc", "train/loss_epoch"):
        assert m_resumed[key] == m_full[key], (key, m_resumed[key], m_full[key])


@pytest.mark.parametrize("drop", ["combined_loader", "rng"])
def test_resuming_without_the_loader_position_or_the_rng_state_would_differ(killed_run, full_run, mnist_root,
                                                                           tmp_path, drop):
    """The controls for the test above: the same mid-epoch checkpoint without the saved loader
    position (as a plain DataLoader would resume: the epoch starts again from its first batch),
    or without the random generators' states (other dropout masks), ends with other weights."""
    ckpt = torch.load(killed_run, map_location="cpu", weights_only=True)
    if drop == "combined_loader":
        ckpt["loops"]["fit_loop"]["state_dict"].pop("combined_loader")
    else:
        ckpt["callbacks"].pop("ExactResume")
    blind = tmp_path / "blind.ckpt"
    torch.save(ckpt, blind)
    _, w_blind = resume(mnist_root, blind, tmp_path / "run")
    assert not same_weights(w_blind, full_run[1])


@pytest.mark.slow
def test_external_sigkill_at_an_unknown_moment_then_resume_is_exact(mnist_root, tmp_path):
    """The parent kills the training process (SIGKILL) as soon as it sees a step checkpoint past
    step 4 appear: wherever the kill lands, the resumed run ends like an uninterrupted one."""
    common = overrides(mnist_root, *KILL, "callbacks.step_checkpoint.every_n_train_steps=2",
                       "+callbacks.slow._target_=tests.faults.SlowDown", "+callbacks.slow.seconds=0.3")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "train.py", *with_model(common), f"hydra.run.dir={killed}"], cwd=ROOT,
                            env=env_one_thread(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and read_checkpoint(last)["global_step"] >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    step = read_checkpoint(last)["global_step"]  # intact whatever the moment of the kill
    assert 4 <= step < 20
    for tag, extra in (("resumed", [f"ckpt_path={last}"]), ("full", [])):
        r = run_train_cli(common + extra + [f"hydra.run.dir={tmp_path / tag}"])
        assert r.returncode == 0, r.stderr[-3000:]
    assert same_weights(weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt"),
                        weights(tmp_path / "full" / "checkpoints" / "last.ckpt"))


def test_step_checkpoints_are_configured_by_default(tmp_path):
    cfg = compose_train([], tmp_path)
    step = cfg.callbacks.step_checkpoint
    assert step.every_n_train_steps > 0 and step.save_last and step.dirpath == cfg.callbacks.model_checkpoint.dirpath
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


# --- 3. write then rename -----------------------------------------------------------------------


class _Explodes:
    """Pickling this raises, in the middle of writing a checkpoint."""

    def __reduce__(self):
        raise KeyboardInterrupt("interrupted while writing")


def test_an_interrupted_checkpoint_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, target)
    before = target.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2, "x": _Explodes()}, target)
    assert target.read_bytes() == before  # the old checkpoint, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no temporary file left


KILL_WHILE_SAVING = """
import os, signal, sys, torch

class KillNow:
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "atomic":
    from training.callbacks import atomic_torch_save as save
else:
    save = torch.save
save({"state_dict": {"w": torch.zeros(1000)}, "oops": KillNow()}, sys.argv[1])
"""


def test_sigkill_while_writing_a_checkpoint_never_corrupts_it(tmp_path):
    """A process killed while it writes last.ckpt: with write-then-rename the previous file is
    intact and the next save cleans up; a plain torch.save (the control) destroys it."""
    script = tmp_path / "kill_while_saving.py"
    script.write_text(KILL_WHILE_SAVING)
    good = {"state_dict": {"w": torch.ones(1000)}, "hyper_parameters": {"model": "convnet"}, "global_step": 5}
    for mode in ("atomic", "plain"):
        target = tmp_path / mode / "last.ckpt"
        atomic_torch_save(good, target)
        before = target.read_bytes()
        r = subprocess.run([sys.executable, str(script), str(target), mode], cwd=ROOT, env=env_one_thread(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == -signal.SIGKILL, r.stderr
        if mode == "atomic":
            assert target.read_bytes() == before
            assert read_checkpoint(target)["global_step"] == 5
            leftovers = list(target.parent.glob(".*.partial"))
            assert len(leftovers) == 1  # the killed writer's temporary file, hidden, never read
            atomic_torch_save(good, target)  # the next save removes it
            assert not list(target.parent.glob(".*.partial"))
        else:
            assert target.read_bytes() != before
            with pytest.raises(CheckpointError, match="empty|corrupt"):
                read_checkpoint(target)


def test_a_reader_of_the_old_checkpoint_never_sees_it_overwritten(tmp_path):
    """Atomic means the old file is replaced, never written over: a reader that opened last.ckpt
    before a save (eval.py while training goes on) still reads the whole old checkpoint. Writing a
    temporary file and then copying it over the target (not atomic: a kill mid-copy tears it) fails this."""
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"w": torch.zeros(200_000)}, target)
    before = target.read_bytes()
    with open(target, "rb") as reader:
        atomic_torch_save({"w": torch.ones(200_000)}, target)
        assert reader.read() == before
    assert torch.load(target, weights_only=True)["w"].eq(1).all()


# --- 4. divergence ------------------------------------------------------------------------------


def test_nan_loss_stops_training_naming_the_step_and_keeps_the_last_good_checkpoint(mnist_root, tmp_path):
    cfg = compose_train(overrides(mnist_root, "callbacks.step_checkpoint.every_n_train_steps=2",
                                  "+callbacks.poison._target_=tests.faults.PoisonAtStep", "+callbacks.poison.step=5"),
                        tmp_path)
    with pytest.raises(DivergenceError, match=r"train/loss is nan at global step 5 \(epoch 0, batch 5\)"):
        train_script.train(cfg)
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point() and v.ndim)


def test_infinite_gradient_is_caught_before_a_checkpoint_saves_nan_weights(mnist_root, tmp_path):
    """The loss is finite, a gradient is infinite, the optimizer step turns the weights into NaN:
    the guard stops at that step, before the step checkpoint due at the same step."""
    cfg = compose_train(overrides(mnist_root, "callbacks.step_checkpoint.every_n_train_steps=2",
                                  "+callbacks.poison._target_=tests.faults.PoisonAtStep", "+callbacks.poison.step=5",
                                  "+callbacks.poison.what=grad",
                                  "callbacks.divergence_guard.check_weights_every_n_steps=1"), tmp_path)
    with pytest.raises(DivergenceError, match=r"weight 'net\..*' became NaN or infinite \(train/loss was \d.*\) "
                                              r"at global step 6"):
        train_script.train(cfg)
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point() and v.ndim)


def test_without_the_guard_the_checkpoint_callback_refuses_nan_weights(mnist_root, tmp_path):
    cfg = compose_train(overrides(mnist_root, "callbacks.step_checkpoint.every_n_train_steps=1",
                                  "callbacks.divergence_guard.enabled=false",
                                  "+callbacks.poison._target_=tests.faults.PoisonAtStep", "+callbacks.poison.step=5",
                                  "+callbacks.poison.what=grad"), tmp_path)
    with pytest.raises(DivergenceError, match=r"weight '.*' is NaN or infinite at global step 6 .*not saving last.ckpt"):
        train_script.train(cfg)
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 5
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point() and v.ndim)


def test_divergence_on_the_command_line_is_one_clear_message(mnist_root, tmp_path):
    r = run_train_cli(overrides(mnist_root, f"hydra.run.dir={tmp_path}",
                                "+callbacks.poison._target_=tests.faults.PoisonAtStep", "+callbacks.poison.step=3"))
    assert r.returncode == 2, r.stderr[-3000:]
    assert "error: training diverged: train/loss is nan at global step 3" in r.stderr
    assert "Traceback" not in r.stderr


# --- 5. bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, message", [
    ("batch_size", 0, "data.batch_size must be a positive integer, got 0"),
    ("batch_size", "64", "data.batch_size must be a positive integer, got '64'"),
    ("batch_size", True, "data.batch_size must be a positive integer, got True"),
    ("eval_batch_size", -1, "data.eval_batch_size must be a positive integer, got -1"),
    ("val_size", -5, "data.val_size must be an integer >= 0, got -5"),
    ("val_size", 0.5, "data.val_size must be an integer >= 0, got 0.5"),
    ("normalize", "zscore", "data.normalize must be one of standard, lecun, unit, got 'zscore'"),
    ("resize", 0, "data.resize must be null or a positive integer, got 0"),
    ("train_subset", 0, "data.train_subset must be null or a positive integer, got 0"),
    ("crop_padding", -2, "data.crop_padding must be an integer >= 0, got -2"),
    ("split_seed", "abc", "data.split_seed must be an integer, got 'abc'"),
    ("augment", "yes", "data.augment must be true or false, got 'yes'"),
    ("hflip", 1, "data.hflip must be true or false, got 1"),
    ("download", "no", "data.download must be true or false, got 'no'"),
    ("root", 5, "data.root must be a folder path, got 5"),
])
def test_bad_data_config_values_are_named(key, value, message, tmp_path):
    with pytest.raises(ConfigError) as info:
        training.data.MNISTDataModule(**{"root": str(tmp_path), key: value})
    assert str(info.value) == message


def test_bad_values_through_hydra_get_the_same_messages(tmp_path):
    cfg = compose_train(["data.batch_size=abc", "data.root=/nonexistent"], tmp_path)
    with pytest.raises(Exception) as info:
        instantiate(cfg.data)
    assert "data.batch_size must be a positive integer, got 'abc'" in str(info.value)
    cfg = compose_train(["model.optimizer.lr=-0.1"], tmp_path)
    with pytest.raises(Exception) as info:
        instantiate(cfg.model)
    assert "model.optimizer (torch.optim.AdamW): ValueError: Invalid learning rate: -0.1" in str(info.value)


def test_val_size_that_leaves_no_training_images(mnist_root):
    dm = training.data.MNISTDataModule(root=str(mnist_root), val_size=5000, download=False)
    with pytest.raises(ConfigError, match="data.val_size=5000 leaves no training images"):
        dm.setup()


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": -1}},
     r"model.optimizer \(torch.optim.AdamW\): ValueError: Invalid learning rate: -1"),
    ({"optimizer": {"_target_": "torch.optim.Adamm", "_partial_": True}},
     r"model.optimizer \(torch.optim.Adamm\): .*torch.optim.Adamm"),
    ({"optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1, "nesterov": True}},
     r"model.optimizer \(torch.optim.SGD\): ValueError: Nesterov momentum requires a momentum"),
    ({"scheduler_interval": "batch"}, "model.scheduler_interval must be 'epoch' or 'step', got 'batch'"),
    ({"compile": "yes"}, "model.compile must be true or false, got 'yes'"),
    ({"model": "lenet9"}, "unknown model 'lenet9'; registered models are: .*convnet"),
    ({"model_kwargs": {"widht": 3}}, "model 'convnet': got an unexpected keyword argument 'widht'"),
    ({"model_kwargs": {"blocks": [{"channels": 0}]}}, r"convnet block 0: channels must be a positive integer, got 0"),
    ({"model_kwargs": {"blocks": [{"channels": -4}]}}, r"convnet block 0: channels must be a positive integer, got -4"),
    ({"model_kwargs": {"blocks": [{"channels": "8"}]}}, r"convnet block 0: channels must be a positive integer, got '8'"),
    ({"model_kwargs": {"blocks": [{"channels": 8, "kernel": 29}]}},
     r"convnet block 0 \(conv 29x29\): a 29x29 kernel .* does not fit its 28x28 input map"),
    ({"model_kwargs": {"blocks": [{"channels": 8, "stride": 0}]}}, "convnet block 0: stride must be a positive integer, got 0"),
    ({"model_kwargs": {"blocks": [{"channels": 8, "pool": "median"}]}},
     "convnet block 0: unknown pool 'median'; choose one of max, avg, none"),
    ({"in_channels": 0}, "convnet: in_channels must be a positive integer, got 0"),
    ({"num_classes": 1.5}, "convnet: num_classes must be a positive integer, got 1.5"),
])
def test_bad_model_config_values_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Classifier(**kwargs)


@pytest.mark.parametrize("name, kwargs, message", [
    ("neocognitron", {"stages": [{"planes": 0}]}, r"neocognitron stage 0: planes must be an integer >= 1, got 0"),
    ("neocognitron", {"stages": [{"planes": 4, "s_stride": 0}]}, r"neocognitron stage 0: s_stride must be an integer >= 1"),
    ("neocognitron", {"stages": [{"planes": 4, "c_kind": "median"}]}, r"neocognitron stage 0: c_kind 'median' is unknown"),
    ("neocognitron", {"stages": [{"planes": 4, "s_kernel": 40, "s_padding": 0}]}, r"does not fit|input map"),
    ("neocognitron_fukushima", {"thetas": [0.6, 1.2, 0.55, 0.5]}, r"thetas\[1\] must be a number > 0.0 and < 1.0, got 1.2"),
    ("neocognitron_fukushima", {"thetas_learn": [0.0, 0.7, 0.8]}, r"thetas_learn\[0\] must be a number > 0.0 and < 1.0, got 0.0"),
    ("lenet5", {"c3_table": [[0, 1, 6]]}, r"lenet5 C3: table row 0 names input map 6, but the layer has only 6 input maps"),
    ("lenet5", {"c3_table": "lecunn"}, r"lenet5 C3: c3_table must be 'lecun', 'full' or a list of lists"),
    ("lenet5", {"pooling": "median"}, r"pooling"),
    ("lenet1989", {"input_size": 28}, r"lenet1989: the 1989 network takes 16x16 inputs"),
])
def test_bad_settings_of_the_other_models_are_named(name, kwargs, message):
    if name not in models.list_models():
        pytest.skip(f"{name} is not registered")
    with pytest.raises(ConfigError, match=message):
        models.get_model(name, **kwargs)


def test_unknown_model_or_data_config_names_list_the_options(tmp_path):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match=r"Could not find 'data/mnistt'") as info:
        compose_train(["data=mnistt"], tmp_path)
    assert "mnist" in str(info.value.options) or "fashion_mnist" in str(info.value)
    with pytest.raises(MissingConfigException, match=r"Could not find 'model/lenet9'"):
        compose_train(["model=lenet9"], tmp_path)


@pytest.mark.slow  # Hydra's error as one line (training.cli.run_main); more cases in tests/test_cli.py
def test_unknown_data_name_on_the_command_line_is_one_clear_message(tmp_path):
    r = run_train_cli(["data=mnistt", f"hydra.run.dir={tmp_path}"])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: no data 'mnistt'; choose one of: cifar10, fashion_mnist")
    assert "Traceback" not in r.stderr


def test_user_errors_print_one_line_and_the_debug_switches_show_the_traceback(monkeypatch, capsys):
    from training.cli import friendly_errors

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("NEOLENET_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        with friendly_errors():
            models.get_model("convnet", mlp=[0])
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: convnet mlp layer 0: width must be a positive integer, got 0\n"
    for switch in ("HYDRA_FULL_ERROR", "NEOLENET_DEBUG"):  # predict.py --debug sets NEOLENET_DEBUG
        monkeypatch.setenv(switch, "1")
        with pytest.raises(ConfigError, match="width must be a positive integer"):
            with friendly_errors():
                models.get_model("convnet", mlp=[0])
        monkeypatch.delenv(switch)
    with pytest.raises(ZeroDivisionError):  # a bug, not a user error: always the traceback
        with friendly_errors():
            1 / 0


def test_missing_dataset_when_the_download_fails(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DataError, match=r"(?s)MNIST not found in .* could not be downloaded \(OSError: network is "
                                        r"unreachable\).*train-images-idx3-ubyte"):
        training.data.MNISTDataModule(root=str(tmp_path), download=True).load_split(train=True)


@pytest.fixture
def mnist_copy(mnist_root, tmp_path) -> Path:
    shutil.copytree(mnist_root / "MNIST", tmp_path / "MNIST")
    return tmp_path


def test_idx_file_with_a_wrong_magic_number(mnist_copy):
    f = mnist_copy / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = f.read_bytes()
    f.write_bytes(b"\x1f\x8b\x08\x00" + data[4:])  # a gzip header: the file was not uncompressed
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte has the wrong magic number 0x1f8b0800; an IDX file "
                                        r"of unsigned bytes with 3 dimension\(s\) starts with 0x00000803"):
        training.data.MNISTDataModule(root=str(mnist_copy), download=False).load_split(train=True)
    f.write_bytes((0x801).to_bytes(4, "big") + data[4:])  # a labels header on the images file
    with pytest.raises(DataError, match="wrong magic number 0x00000801"):
        training.data.MNISTDataModule(root=str(mnist_copy), download=False).load_split(train=True)


def test_idx_file_shorter_or_longer_than_its_header_says(mnist_copy):
    f = mnist_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    data = f.read_bytes()
    f.write_bytes(data[:-10])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is truncated or corrupt: its header promises 297 bytes "
                                        r"of data \(305 bytes in all\), the file has 295"):
        training.data.MNISTDataModule(root=str(mnist_copy), download=False).load_split(train=False)
    f.write_bytes(data[:3])
    with pytest.raises(DataError, match="not even an IDX header"):
        training.data.MNISTDataModule(root=str(mnist_copy), download=False).load_split(train=False)


def test_idx_images_and_labels_of_different_lengths(mnist_copy):
    raw = mnist_copy / "MNIST" / "raw"
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(10, dtype=np.uint8))
    with pytest.raises(DataError, match=r"unexpected shapes: images \(297, 28, 28\), labels \(10,\)"):
        training.data.MNISTDataModule(root=str(mnist_copy), download=False).load_split(train=False)


@pytest.fixture
def cifar_copy(cifar_root, tmp_path) -> Path:
    shutil.copytree(cifar_root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    return tmp_path


def test_cifar_batch_of_the_wrong_shape(cifar_copy):
    path = cifar_copy / "cifar-10-batches-py" / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((20, 1024), dtype=np.uint8), "labels": [0] * 20}, f)
    with pytest.raises(DataError, match=r"test_batch has the wrong shape: data \(20, 1024\), labels \(20,\) "
                                        r"\(expected N x 3072 and N\)"):
        training.data.CIFAR10DataModule(root=str(cifar_copy), download=False).load_split(train=False)
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((20, 3072), dtype=np.uint8), "labels": [0] * 19}, f)
    with pytest.raises(DataError, match="wrong shape"):
        training.data.CIFAR10DataModule(root=str(cifar_copy), download=False).load_split(train=False)


def test_truncated_or_missing_cifar_batch(cifar_copy):
    path = cifar_copy / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_3 is truncated or corrupt"):
        training.data.CIFAR10DataModule(root=str(cifar_copy), download=False).load_split(train=True)
    path.unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        training.data.CIFAR10DataModule(root=str(cifar_copy), download=False).load_split(train=True)


def test_resuming_from_another_models_checkpoint_or_a_broken_file(tmp_path):
    lenet_like = Classifier(model_kwargs={"blocks": [{"channels": 4, "kernel": 3}], "mlp": [8]})
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": lenet_like.state_dict(), "hyper_parameters": dict(lenet_like.hparams)}, ckpt)
    with pytest.raises(CheckpointError, match=r"cannot resume from .*other.ckpt: it holds a 'convnet' model whose "
                                              r"weights do not fit the 'convnet' model this config builds \(.* weight\(s\) missing, e.g. net\.features"):
        check_resume_checkpoint(ckpt, Classifier())
    check_resume_checkpoint(ckpt, Classifier(model_kwargs={"blocks": [{"channels": 4, "kernel": 3}], "mlp": [8]}))
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    with pytest.raises(CheckpointError, match="is empty"):
        check_resume_checkpoint(empty, Classifier())
    with pytest.raises(CheckpointError, match="does not exist"):
        check_resume_checkpoint(tmp_path / "nope.ckpt", Classifier())


def test_every_user_error_is_a_userror():
    for cls in (ConfigError, DataError, CheckpointError, DivergenceError):
        assert issubclass(cls, UserError)
    assert issubclass(DivergenceError, FloatingPointError)


def test_finite_checks_read_the_device_every_step_on_cpu_but_only_at_the_logging_interval_on_a_gpu():
    from types import SimpleNamespace

    from training.callbacks import host_sync_due

    def due(device: str, every: int) -> list[int]:
        trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), log_every_n_steps=50)
        steps = []
        for step in range(1, 201):
            trainer.global_step = step
            if host_sync_due(trainer, every):
                steps.append(step)
        return steps

    assert due("cpu", 1) == list(range(1, 201))
    assert due("cpu", 10) == list(range(10, 201, 10))
    assert due("cuda", 1) == due("cuda", 10) == [50, 100, 150, 200]  # no GPU needed to build the device
    assert due("cuda", 80) == [80, 160]
    assert due("cpu", 0) == due("cuda", 0) == []


def test_the_per_step_training_metric_updates_never_read_the_device(monkeypatch):
    """A read of a tensor's value (``bool``, ``item``, ``tolist``) is a host synchronisation on a
    GPU; the training metrics are updated on every step, so their updates must make none (the
    torchmetrics defaults make two: MeanMetric's NaN check and the accuracy's argument checks)."""
    from training.module import Classifier

    module = Classifier(model="convnet")
    scores, y, loss = torch.randn(8, 10), torch.randint(0, 10, (8,)), torch.tensor(0.5)
    reads = []
    for name in ("__bool__", "item", "tolist"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _r=real, _n=name: reads.append(_n) or _r(self, *a))
    module.train_loss.update(loss)
    module.train_acc.update(scores, y)
    assert reads == []
    module.val_loss.update(loss)  # the check would catch a read: the evaluation metrics make them
    assert reads
    monkeypatch.undo()
    assert module.train_acc.compute() == (scores.argmax(1) == y).float().mean()
