"""The command line's rough edges (issue 15, sections 3 and 4): wrong trainer settings and Hydra's
own errors as one line with exit status 2, a finished one-cycle run that cannot be extended,
Ctrl-C that saves and says how to resume, resuming a run with its own config, and no run folders
left by eval.py or by runs that failed before their first training step.

The command-line tests run train.py / eval.py as subprocesses on the small generated MNIST, with
``LOG_DIR`` pointing at a temporary folder (the default run folders go there)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.checkpoint import read_checkpoint
from models.errors import ConfigError
from tests.conftest import ROOT, compose_train

# a small convnet on 640 training images: 10 steps of 64 per epoch, OneCycleLR (the convnet's schedule)
TINY = ["model=convnet", "model.model_kwargs.blocks=[{channels:4,kernel:3,pool:max}]", "model.model_kwargs.mlp=[16]",
        "data.train_subset=640", "data.val_size=200", "data.batch_size=64", "data.download=false",
        "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "trainer.enable_model_summary=false",
        "callbacks.progress_bar.refresh_rate=0", "logger=csv"]


def env(log_dir: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
            "LOG_DIR": str(log_dir), "HYDRA_FULL_ERROR": "0", "NEOLENET_DEBUG": "0"}


def default_sigint() -> None:
    """In the child, before Python starts: Ctrl-C's default action. A shell without job control
    starts background commands (`nohup ... &`, some CI runners) with SIGINT ignored, which children
    inherit, and Python then installs no KeyboardInterrupt handler: the Ctrl-C tests would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(script: str, args: list[str], log_dir: Path, cwd: Path = ROOT, timeout: int = 300,
        **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**env(log_dir), **extra_env}, preexec_fn=default_sigint)


def error_line(r: subprocess.CompletedProcess) -> str:
    """The one line a mistake prints (the last of stderr), checked to be the only error line."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines and lines[-1].startswith("error: "), r.stderr[-3000:]
    assert sum(ln.startswith("error: ") for ln in lines) == 1, r.stderr[-3000:]
    return lines[-1]


def run_folders(log_dir: Path) -> list[Path]:
    return sorted(p for p in (log_dir / "train" / "runs").glob("*") if p.is_dir()) if log_dir.exists() else []


@pytest.fixture(scope="module")
def finished_run(mnist_root, tmp_path_factory) -> Path:
    """A finished one-epoch run (OneCycleLR planned for its 10 steps), started from the command
    line so that its folder holds Hydra's .hydra/overrides.yaml; returns its folder."""
    folder = tmp_path_factory.mktemp("finished")
    r = run("train.py", [*TINY, f"data.root={mnist_root}", f"hydra.run.dir={folder}"], folder.parent / "logs")
    assert r.returncode == 0, r.stderr[-3000:]
    assert read_checkpoint(folder / "checkpoints" / "last.ckpt")["global_step"] == 10
    return folder


# --- 1. trainer settings of the wrong type ----------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epochs=abc", "trainer.max_epochs must be an integer >= 0 (-1: no limit) or null, got 'abc'"),
    ("trainer.max_epochs=1.5", "trainer.max_epochs must be an integer >= 0 (-1: no limit) or null, got 1.5"),
    ("trainer.max_steps=ten", "trainer.max_steps must be an integer >= 0 (-1: no limit), got 'ten'"),
    ("trainer.min_epochs=-1", "trainer.min_epochs must be an integer >= 0 or null, got -1"),
    ("trainer.devices=0", "trainer.devices must be a positive integer, -1 (all), auto, or a list of device indices"),
    ("trainer.accelerator=[cpu]", "trainer.accelerator must be a name such as cpu, gpu, mps or auto, got ['cpu']"),
    ("trainer.precision=33", "trainer.precision must be one of 32-true, 16-mixed, bf16-mixed"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps must be a positive integer, got 0"),
    ("trainer.check_val_every_n_epoch=0.5", "trainer.check_val_every_n_epoch must be a positive integer or null"),
    ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches must be a number of batches (an integer >= 0), "
                                        "a fraction of them (a float from 0.0 to 1.0) or null, got 1.5"),
    ("trainer.limit_val_batches=all", "trainer.limit_val_batches must be a number of batches"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val must be a number >= 0 or null, got -1"),
    ("trainer.max_time=10", 'trainer.max_time must be a duration "DD:HH:MM:SS"'),
    ("trainer.deterministic=maybe", "trainer.deterministic must be true, false, warn or null, got 'maybe'"),
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be a positive integer, got 0"),
    ("trainer.val_check_interval=1.5", "trainer.val_check_interval must be a number of training batches"),
    ("+trainer.max_epoch=3", "trainer.max_epoch is not a setting of Lightning's Trainer (did you mean trainer.max_epochs?)"),
])
def test_wrong_trainer_settings_are_named_before_anything_is_built(override, message, tmp_path):
    cfg = compose_train([override], tmp_path)
    import train as train_script

    with pytest.raises(ConfigError) as info:
        train_script.train(cfg)  # data.root is the default ./data: it is never looked at
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("override", ["trainer.max_epochs=2", "trainer.devices=auto", "trainer.devices=[0]",
                                      'trainer.max_time="00:00:10:00"', "trainer.max_time={minutes:5}",
                                      "trainer.val_check_interval=0.5", "trainer.val_check_interval=20",
                                      "trainer.precision=bf16-mixed", "trainer.precision=16", "trainer.deterministic=warn",
                                      "trainer.limit_train_batches=5", "trainer.gradient_clip_val=0.5",
                                      "trainer=gpu", "trainer=ddp"])
def test_right_trainer_settings_pass(override, tmp_path):
    from training.cli import check_trainer_config

    check_trainer_config(compose_train([override], tmp_path).trainer)


def test_a_wrong_trainer_setting_on_the_command_line_is_one_line_and_leaves_no_run_folder(tmp_path):
    logs = tmp_path / "logs"
    r = run("train.py", ["trainer.max_epochs=abc", f"data.root={tmp_path / 'nowhere'}"], logs)
    assert r.returncode == 2
    assert error_line(r) == "error: trainer.max_epochs must be an integer >= 0 (-1: no limit) or null, got 'abc'"
    assert "MNIST not found" not in r.stderr  # stopped before the data set was looked at
    assert run_folders(logs) == []  # the run failed before its first step: its folder is gone (item 6)


# --- 2. continuing a finished one-cycle run with more epochs -------------------------------------


def test_extending_a_finished_one_cycle_run_is_refused_with_what_to_do(finished_run, tmp_path):
    """The issue's command, on the small data: `trainer.max_epochs=2 ckpt_path=<finished>/last.ckpt`
    ended in OneCycleLR's `Tried to step 11 times`. One cycle cannot be extended (its learning rate
    has annealed to ~0); the run is refused before its first step, and leaves no run folder."""
    logs = tmp_path / "logs"
    last = finished_run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    r = run("train.py", ["trainer.max_epochs=2", f"ckpt_path={last}"], logs)
    assert r.returncode == 2, r.stderr[-3000:]
    line = error_line(r)
    assert line.startswith(f"error: cannot continue {last} to 20 steps: its learning-rate schedule (OneCycleLR) was "
                           f"planned for 10 steps when the run started and cannot be extended (it has ended")
    assert "train a new run of the length you want (without ckpt_path)" in line
    assert "Tried to step" not in r.stderr
    assert run_folders(logs) == []
    assert last.read_bytes() == before  # the finished run is left as it was


# --- 3. Hydra's own errors -------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["model=lenet9"], "error: no model 'lenet9'; choose one of: convnet, lenet1, lenet1989, lenet4, lenet5, "
                       "lenet5_modern, mlp, neocognitron"),
    (["data=mnistt"], "error: no data 'mnistt'; choose one of: cifar10, fashion_mnist, image_folder, kmnist, mnist"),
    (["experiment=speedrun"], "error: no experiment 'speedrun'; choose one of: cifar10_fast, "),
    (["model.optimzer.lr=0.1"], "error: model.optimzer.lr is not a config key (did you mean model.optimizer.lr? "
                                "use +model.optimzer.lr=0.1 to add a new key)"),
    (["model=convnet", "model.model_kwargs.mpl=[8]"],
     "error: model.model_kwargs.mpl is not a config key (did you mean model.model_kwargs.mlp? "
     "use +model.model_kwargs.mpl=[8] to add a new key)"),
    (["trainer.max_epoch=3"], "error: trainer.max_epoch is not a config key (did you mean trainer.max_epochs? "),
    (["modle=convnet"], "error: modle is not a config key (did you mean model? use +modle=convnet to add a new key)"),
    (["trainer.max_epochs=[1"], "error: cannot read the override 'trainer.max_epochs=[1': "),
])
def test_hydra_errors_are_one_line_with_status_2(args, message, tmp_path):
    r = run("train.py", args, tmp_path / "logs")
    assert r.returncode == 2, r.stderr[-3000:]
    assert error_line(r).startswith(message)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "logs").exists()  # composition failed: no folder was made


def test_hydra_errors_of_eval_sweeps_and_cfg_are_one_line_too(tmp_path):
    r = run("eval.py", ["data=fashion", "ckpt_path=x.ckpt"], tmp_path / "logs")
    assert r.returncode == 2 and error_line(r).startswith("error: no data 'fashion'; choose one of: cifar10, fashion_mnist")
    r = run("train.py", ["-m", "model=lenet9"], tmp_path / "logs")
    assert r.returncode == 2 and error_line(r).startswith("error: no model 'lenet9'; choose one of: convnet")
    r = run("train.py", ["model.optimzer.lr=0.1", "--cfg", "job"], tmp_path / "logs")
    assert r.returncode == 2 and "did you mean model.optimizer.lr?" in error_line(r)


def test_hydra_full_error_shows_hydras_own_report_and_good_commands_still_work(tmp_path):
    r = run("train.py", ["model=lenet9"], tmp_path / "logs", HYDRA_FULL_ERROR="1")
    assert r.returncode == 1 and "Traceback" in r.stderr and "Could not find 'model/lenet9'" in r.stderr
    r = run("train.py", ["model=convnet", "trainer.max_epochs=3", "--cfg", "job"], tmp_path / "logs")
    assert r.returncode == 0 and "max_epochs: 3" in r.stdout, r.stderr[-2000:]
    r = run("train.py", ["--help"], tmp_path / "logs")
    assert r.returncode == 0 and "model" in r.stdout, r.stderr[-2000:]


def test_hydra_error_messages_in_process(tmp_path):
    """The message builder itself, for errors the subprocess tests above do not make."""
    from hydra.errors import ConfigCompositionException

    from training.cli import hydra_error_message

    configs = ROOT / "configs"
    e = ConfigCompositionException("Could not delete from config. 'foo' does not exist.")
    assert hydra_error_message(e, configs, "train", ["~foo"]) == "Could not delete from config. 'foo' does not exist."
    e = ConfigCompositionException("Could not override 'data.batch_sise'.\nTo append to your config use +data.batch_sise=8")
    assert hydra_error_message(e, configs, "train", ["data.batch_sise=8"]) == (
        "data.batch_sise is not a config key (did you mean data.batch_size? use +data.batch_sise=8 to add a new key)")


# --- 4. Ctrl-C -------------------------------------------------------------------------------------


def test_ctrl_c_saves_last_ckpt_at_that_step_and_the_printed_command_resumes_it_exactly(mnist_root, tmp_path):
    """SIGINT to a real `python train.py` in the middle of epoch 0 of 2: it stops after the step
    under way, writes last.ckpt at that step, prints the command that resumes it and exits with
    130; that command (no other override but switching the slow-down off) resumes from that step and
    ends with the weights of an uninterrupted run."""
    logs, folder = tmp_path / "logs", tmp_path / "interrupted"
    common = [*TINY, f"data.root={mnist_root}", "trainer.max_epochs=2", "callbacks.step_checkpoint.every_n_train_steps=2"]
    slow = ["+callbacks.slow._target_=tests.faults.SlowDown", "+callbacks.slow.seconds=0.3"]
    proc = subprocess.Popen([sys.executable, "train.py", *common, *slow, f"hydra.run.dir={folder}"], cwd=ROOT,
                            env=env(logs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    last = folder / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # training is under way: a step checkpoint exists
        if last.exists() and read_checkpoint(last)["global_step"] >= 2:
            break
        time.sleep(0.05)
    seen = read_checkpoint(last)["global_step"]
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert time.time() - sent < 30  # at once (the step under way, then the save)
    saved = read_checkpoint(last)
    step = saved["global_step"]
    assert seen < step < 10, (seen, step)  # after the last step checkpoint, mid-epoch 0
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches_done"] == step
    command = f"python train.py ckpt_path={last.resolve()}"
    assert f"interrupted at global step {step}; saved {last.resolve()}. Resume with:\n  {command}\n" in err
    assert "Traceback" not in err and not list(last.parent.glob(".*.partial"))
    assert run_folders(logs) == []

    # the printed command, with the slow-down switched off (an override on top of the run's own)
    r = run("train.py", [*command.split()[2:], "callbacks.slow.seconds=0"], logs)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {folder.resolve()} with its own overrides: model=convnet" in r.stderr
    (resumed,) = run_folders(logs)  # a new run folder; the interrupted one is left as it was
    final = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert final["global_step"] == 20 and final["epoch"] == 1
    with open(next((resumed / "csv").rglob("metrics.csv"))) as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss_step")]
    assert min(steps) == step  # the resumed run's first step is the one after the interrupt

    import train as train_script

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_script.train(compose_train(common, tmp_path / "full"))
    finally:
        torch.set_num_threads(n)
    full = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")["state_dict"]
    assert full.keys() == final["state_dict"].keys()
    assert all(torch.equal(full[k], final["state_dict"][k]) for k in full)


def test_ctrl_c_during_validation_lets_it_end_and_stops_at_its_checkpoint(mnist_root, tmp_path):
    """SIGINT in the middle of epoch 0's validation: the pass ends (the epoch's metrics and its
    last.ckpt are complete) and training stops before epoch 1's first step."""
    folder = tmp_path / "run"
    r = run("train.py", [*TINY, f"data.root={mnist_root}", "trainer.max_epochs=2", "data.eval_batch_size=50",
                         "+callbacks.sigint._target_=tests.test_cli.SigintDuringValidation", f"hydra.run.dir={folder}"],
            tmp_path / "logs")
    assert r.returncode == 130, r.stderr[-3000:]
    last = folder / "checkpoints" / "last.ckpt"
    ckpt = read_checkpoint(last)
    assert ckpt["global_step"] == 10 and ckpt["epoch"] == 0
    assert f"interrupted at global step 10; saved {last.resolve()}." in r.stderr


class SigintDuringValidation:
    """A callback that sends this process SIGINT after the second validation batch of epoch 0."""

    def __new__(cls):
        import lightning as L

        class _Sigint(L.Callback):
            def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
                if trainer.current_epoch == 0 and batch_idx == 1 and not trainer.sanity_checking:
                    os.kill(os.getpid(), signal.SIGINT)

        return _Sigint()


# --- 5. resuming with the run's own config ---------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("model.optimizer.lr=0.1", "model.optimizer.lr is 0.1 here but 0.003 in the checkpoint"),
    ("model.model_kwargs.mlp=[32]", "model.model_kwargs.mlp is [32] here but [16] in the checkpoint"),
    ("data.val_size=100", "data.val_size is 100 here but 200 in the checkpoint"),
    ("data=fashion_mnist", "the data set is FashionMNISTDataModule here but MNISTDataModule in the checkpoint"),
])
def test_resuming_with_another_model_or_data_split_is_refused(override, message, finished_run, tmp_path):
    last = finished_run / "checkpoints" / "last.ckpt"
    r = run("train.py", [f"ckpt_path={last}", override], tmp_path / "logs")
    assert r.returncode == 2, r.stderr[-3000:]
    line = error_line(r)
    assert line.startswith(f"error: cannot resume {last} with another model or data split: ")
    assert message in line and "start a new run without ckpt_path" in line
    assert run_folders(tmp_path / "logs") == []


def test_resume_overrides_put_the_run_s_own_first_and_the_command_line_on_top():
    from training.cli import resume_overrides

    saved = ["model=convnet", "model.model_kwargs.mlp=[16]", "trainer.max_epochs=1", "+callbacks.slow.seconds=0.3",
             "+x=1", "ckpt_path=/old/last.ckpt"]
    given = ["ckpt_path=/new/last.ckpt", "trainer.max_epochs=3", "callbacks.slow.seconds=0", "+x=2"]
    assert resume_overrides(saved, given, {"model", "data"}) == [
        "model=convnet", "model.model_kwargs.mlp=[16]", "+callbacks.slow.seconds=0.3", *given]
    # choosing another model drops the run's settings of the old one (and check_resume_config refuses it)
    assert resume_overrides(saved[:2], ["model=lenet5"], {"model"}) == ["model=lenet5"]


def test_check_resume_config_ignores_speed_only_settings(finished_run, tmp_path):
    from training.cli import check_resume_config

    ckpt = read_checkpoint(finished_run / "checkpoints" / "last.ckpt")
    cfg = compose_train([*TINY, "data.root=/elsewhere", "model.channels_last=false", "trainer.max_epochs=5",
                         "data.batch_size=32"], tmp_path)
    check_resume_config(cfg, ckpt, "last.ckpt")  # the data folder, the memory format, the length: allowed


# --- 6. no run folder from eval.py, nor from a run that failed before its first step ---------------


def test_eval_leaves_no_run_folder_or_log_file(finished_run, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = run("eval.py", [f"ckpt_path={finished_run / 'checkpoints' / 'last.ckpt'}", "trainer.enable_progress_bar=false"],
            tmp_path / "logs", cwd=cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "test/acc:" in r.stdout
    assert list(cwd.iterdir()) == [] and not (tmp_path / "logs").exists()


def test_a_failed_run_s_folder_is_removed_only_when_it_holds_nothing_else(tmp_path):
    from training.cli import discard_failed_run

    def fail(folder: Path, progress: dict) -> None:
        with pytest.raises(SystemExit):
            with discard_failed_run(folder, progress):
                sys.exit(2)

    fresh = tmp_path / "fresh"
    (fresh / ".hydra").mkdir(parents=True)
    (fresh / "train.log").write_text("")
    fail(fresh, {})
    assert not fresh.exists()

    kept = tmp_path / "kept"  # a folder that held other files before the run (hydra.run.dir=<somewhere>)
    (kept / ".hydra").mkdir(parents=True)
    (kept / "notes.txt").write_text("mine")
    fail(kept, {})
    assert (kept / "notes.txt").exists()

    trained = tmp_path / "trained"  # the run made training steps before failing: its folder stays

    class Trainer:
        global_step = 7

    (trained / ".hydra").mkdir(parents=True)
    fail(trained, {"trainer": Trainer(), "start_step": 0})
    assert trained.exists()

    ok = tmp_path / "ok"
    (ok / ".hydra").mkdir(parents=True)
    with discard_failed_run(ok, {}):
        pass
    assert ok.exists()
