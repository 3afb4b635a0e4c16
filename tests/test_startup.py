"""A new user's first commands (issue 15): --help answers at once with what the command does, a
default run prints no third-party tips or deprecation warnings, TensorBoard's HPARAMS shows what a
person compares, the trainer keys people override need no '+', CI's generated digits are
readable, and the start-up benchmark runs (its figures come from a quiet machine, not from here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, compose_train
import training.data

# what a default run printed before (issue 15, section 5); none of it may come back
NOISE = ("litlogger", "LeafSpec", "torch.jit.trace", "limit_val_batches=1.0", "INFO: ")


def _python(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_help_says_what_the_command_does_lists_the_groups_and_imports_no_torch(script):
    code = ("import runpy, sys\n"
            f"sys.argv = [{script!r}, '--help']\n"
            "try:\n"
            f"    runpy.run_path({script!r}, run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('imported:', sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules))\n")
    out = _python("-c", code)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"{script}: "), lines[:3]
    groups = out.stdout.index("== Config groups")
    assert groups < out.stdout.index("== Config (")
    assert "model: convnet, lenet1, " in out.stdout and "trainer: cpu, ddp, gpu" in out.stdout
    assert lines[-1] == "imported: []", lines[-1]  # Hydra answers --help before torch is imported


def test_importing_the_package_is_cheap_and_registers_everything_on_use():
    out = _python("-c", "import sys, models, training\n"
                        "assert 'torch' not in sys.modules\n"
                        "print(models.list_models())\n"
                        "from models import get_model\n"
                        "print(type(get_model('lenet5')).__name__, models.ops.__name__)")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'neocognitron'" in out.stdout and "LeNet models.ops" in out.stdout, out.stdout


@pytest.fixture(scope="module")
def default_run(mnist_root, tmp_path_factory):
    """A short train.py run with the default callbacks and logger (figures, model graph, HPARAMS)."""
    run = tmp_path_factory.mktemp("quiet") / "run"
    out = _python("train.py", "model=convnet", f"data.root={mnist_root}", "data.download=false",
                  "data.train_subset=128", "data.val_size=100", "data.batch_size=32", "trainer.max_epochs=1",
                  f"hydra.run.dir={run}", env={"OMP_NUM_THREADS": "1", "LOG_DIR": str(run.parent / "logs")},
                  timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return run, out.stdout + out.stderr


def test_a_default_run_prints_no_third_party_tips_or_deprecations(default_run):
    _, output = default_run
    assert "\ntest/acc: " in output
    found = [s for s in NOISE if s in output]
    assert not found, f"{found} in:\n{output[-4000:]}"


def test_hparams_are_what_a_person_compares_and_the_final_metrics_are_logged_once(default_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    run, _ = default_run
    hparams, metric_tags = {}, []
    for events in sorted((run / "tensorboard").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag.startswith("_hparams_/"):
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    if value.tag == "_hparams_/session_start_info":
                        hp = data.session_start_info.hparams
                        hparams = {k: getattr(hp[k], hp[k].WhichOneof("kind")) for k in hp}
                    elif value.tag == "_hparams_/experiment":
                        metric_tags = [m.name.tag for m in data.experiment.metric_infos]
    assert set(hparams) == {"model/model", "model/model_kwargs/blocks", "model/model_kwargs/mlp",
                            "model/model_kwargs/mlp_dropout", "data", "data/batch_size", "data/augment",
                            "data/train_subset", "model/optimizer", "model/optimizer/lr",
                            "model/optimizer/weight_decay", "model/scheduler", "trainer/max_epochs", "seed"}, hparams
    assert hparams["model/model"] == "convnet" and hparams["data"] == "MNIST" and hparams["seed"] == 42
    assert hparams["data/batch_size"] == 32 and hparams["data/augment"] in ("true", "false")
    assert hparams["model/optimizer"] == "AdamW" and hparams["model/scheduler"] == "OneCycleLR"
    assert metric_tags == ["hp/val_acc_best", "hp/test_acc"]
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    for tag in metric_tags:  # one value, the real one: no line rising from a placeholder 0
        values = [e.value for e in acc.Scalars(tag)]
        assert len(values) == 1 and values[0] > 0, (tag, values)


def test_hparams_for_tensorboard_of_the_paper_lenet(tmp_path):
    from training.tb_callbacks import hparams_for_tensorboard

    cfg = compose_train(["experiment=lenet5_paper", "seed=3"], tmp_path)
    hp = hparams_for_tensorboard(cfg)
    assert hp["model/model"] == "lenet5" and hp["model/optimizer"] == "SDLM" and hp["seed"] == 3
    assert hp["model/scheduler"] == "PiecewiseConstantLR" and hp["model/model_kwargs/c3_table"] == "lecun"
    assert all(isinstance(v, (int, float, str)) for v in hp.values()), hp
    assert len(hp) < 30 and not any(k.startswith(("callbacks", "paths", "hydra")) for k in hp)


def test_the_trainer_keys_people_override_need_no_plus(tmp_path):
    overrides = ["trainer.limit_train_batches=5", "trainer.limit_val_batches=2", "trainer.limit_test_batches=0.5",
                 "trainer.max_steps=100", "trainer.max_time=00:00:01:00", "trainer.accumulate_grad_batches=2",
                 "trainer.val_check_interval=0.5", "trainer.overfit_batches=0"]
    cfg = compose_train(overrides, tmp_path)
    assert cfg.trainer.limit_train_batches == 5 and cfg.trainer.accumulate_grad_batches == 2
    defaults = compose_train([], tmp_path).trainer
    assert defaults.limit_train_batches is None and defaults.max_steps == -1 and defaults.val_check_interval is None


def test_validation_errors_says_once_when_matplotlib_is_missing(monkeypatch, capsys):
    import importlib.util

    from training import tb_callbacks as tbc

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    monkeypatch.setattr(tbc, "_FIGURE_NOTICE_GIVEN", False)
    assert not tbc._can_draw_figures() and not tbc._can_draw_figures()
    err = capsys.readouterr().err
    assert err.count("matplotlib is not installed") == 1 and len(err.strip().splitlines()) == 1, err


def test_ci_digits_are_readable_mnist(tmp_path):
    out = _python(str(ROOT / ".ci" / "make_digits.py"), str(tmp_path), "--train", "50", "--test", "20")
    assert out.returncode == 0, out.stderr
    from training.data import MNISTDataModule

    dm = MNISTDataModule(root=str(tmp_path), val_size=10, batch_size=8, download=False)
    dm.setup("fit")
    dm.setup("test")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (1, 28, 28) and 0 <= int(y.min()) and int(y.max()) <= 9


def test_bench_startup_prints_medians(mnist_root):
    out = _python(str(ROOT / "benchmarks" / "bench_startup.py"), "--repeats", "1", "--seeds", "1", "--root",
                  str(mnist_root), "data.download=false", "callbacks.progress_bar.refresh_rate=0", timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    for name in ("train.py --help", "eval.py --help", "predict.py --help"):
        assert f"| `{name}` | " in out.stdout, out.stdout
    assert "speedrun start-up (train.py experiment=mnist_speedrun, time/startup_s): median " in out.stdout
