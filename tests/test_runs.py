"""No run is lost (issue 25, part 3): a used run folder is refused and left byte for byte as it was,
a folder in use is locked, SIGTERM saves and says how to resume (exit 143), SLURM's requeue signal
goes through Lightning's handler, a sweep with a failed job still writes its summary and names the
failure, and the readers of run folders skip a run without a test figure.

The command-line tests run train.py as a subprocess on the small generated MNIST, as
tests/test_cli.py does."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.checkpoint import read_checkpoint
from tests.conftest import ROOT, compose_train
from tests.test_cli import TINY, default_sigint, env, error_line, run


def hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class SignalAtStep:
    """A callback that sends this process ``signal`` (by name) at global step ``step``: at the start
    of that training batch (``hook=start``: the signal arrives while the step runs) or at its end,
    after InterruptCheckpoint's own batch-end hook (``hook=end``)."""

    def __new__(cls, step: int, signal: str = "SIGTERM", hook: str = "start"):
        import signal as signals

        import lightning as L

        signum = signals.Signals[signal]

        class _Signal(L.Callback):
            def _maybe(self, trainer):
                if trainer.global_step == step and not getattr(self, "sent", False):
                    self.sent = True
                    os.kill(os.getpid(), signum)

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if hook == "start":
                    self._maybe(trainer)

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if hook == "end":
                    self._maybe(trainer)

        return _Signal()


class FailForSeed:
    """A callback that raises at the first training step of the run whose seed is ``seed``."""

    def __new__(cls, seed: int):
        import lightning as L

        class _Fail(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if int(os.environ.get("PL_GLOBAL_SEED", "-1")) == seed:
                    raise RuntimeError(f"injected failure for seed {seed}")

        return _Fail()


# --- 1. a used folder is refused; a folder in use is locked -------------------------------------


@pytest.fixture(scope="module")
def finished(mnist_root, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("first")
    r = run("train.py", [*TINY, f"data.root={mnist_root}", f"hydra.run.dir={folder}"], folder.parent / "logs")
    assert r.returncode == 0, r.stderr[-3000:]
    return folder


def test_a_second_run_in_a_used_folder_is_refused_and_the_first_run_is_unchanged(finished, mnist_root, tmp_path):
    before = hashes(finished)
    assert "checkpoints/last.ckpt" in before and ".hydra/config.yaml" in before
    r = run("train.py", [*TINY, f"data.root={mnist_root}", "seed=7", f"hydra.run.dir={finished}"], tmp_path / "logs")
    assert r.returncode == 2, r.stderr[-3000:]
    line = error_line(r)
    assert f"{finished} already holds a run" in line and "hydra.run.dir=<new folder>" in line
    assert f"ckpt_path={finished / 'checkpoints' / 'last.ckpt'}" in line
    assert hashes(finished) == before  # not one byte changed: not its checkpoints, its .hydra, its log
    assert not (finished / ".hydra" / "run.lock").exists()


def test_a_concurrent_process_in_a_locked_folder_is_refused(mnist_root, tmp_path):
    folder = tmp_path / "busy"
    (folder / ".hydra").mkdir(parents=True)
    import socket

    lock = folder / ".hydra" / "run.lock"
    lock.write_text(f"pid={os.getpid()} host={socket.gethostname()} slurm_job=\n")  # this (live) process
    r = run("train.py", [*TINY, f"data.root={mnist_root}", f"hydra.run.dir={folder}"], tmp_path / "logs",
            SLURM_JOB_ID="")
    assert r.returncode == 2, r.stderr[-3000:]
    assert f"{folder} is in use by another run (pid {os.getpid()}" in error_line(r)
    assert sorted(p.name for p in folder.rglob("*")) == [".hydra", "run.lock"]  # nothing written


def test_a_stale_lock_is_taken_over_with_a_note_and_released_at_exit(tmp_path, capsys, monkeypatch):
    import socket

    from training.runs import RunLock

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = RunLock(tmp_path)
    (tmp_path / ".hydra").mkdir()
    lock.path.write_text(f"pid={dead.pid} host={socket.gethostname()} slurm_job=\n")
    lock.acquire()
    assert f"taking over the lock of {tmp_path} (process {dead.pid} has ended)" in capsys.readouterr().err
    assert f"pid={os.getpid()} " in lock.path.read_text()
    with pytest.raises(SystemExit) as e:  # a second holder (this live process) is refused
        RunLock(tmp_path).acquire()
    assert e.value.code == 2 and "is in use by another run" in capsys.readouterr().err
    lock.release()
    assert not lock.path.exists()


def test_the_folder_checks_detect_results_not_hydras_files(tmp_path):
    from training.runs import previous_results

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("a: 1\n")
    (tmp_path / "train.log").write_text("")
    assert previous_results(tmp_path) == []
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"")
    assert [p.name for p in previous_results(tmp_path)] == ["events.out.tfevents.1.host"]


# --- 2. SIGTERM -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(mnist_root, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("full")
    import train as train_script

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_script.train(compose_train([*TINY, f"data.root={mnist_root}", "trainer.max_epochs=2"], folder))
    finally:
        torch.set_num_threads(n)
    return read_checkpoint(folder / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.mark.parametrize("hook, step", [("start", 3), ("end", 13)])
def test_sigterm_mid_epoch_saves_last_ckpt_exits_143_and_the_printed_command_resumes_it_exactly(
        hook, step, uninterrupted, mnist_root, tmp_path):
    """SIGTERM while a step runs (``start``: InterruptCheckpoint saves at that step's end) or just
    after InterruptCheckpoint's batch-end hook (``end``: Lightning stops, the checkpoint is written
    on its SIGTERMException), in epoch 0 or 1 of 2: exit 143, last.ckpt at the step after the signal,
    the resume command printed; that command, in the run's own folder, ends like an uninterrupted run."""
    folder, logs = tmp_path / "run", tmp_path / "logs"
    common = [*TINY, f"data.root={mnist_root}", "trainer.max_epochs=2"]
    fault = ["+callbacks.term._target_=tests.test_runs.SignalAtStep", f"+callbacks.term.step={step}",
             f"+callbacks.term.hook={hook}"]
    r = run("train.py", [*common, *fault, f"hydra.run.dir={folder}"], logs)
    assert r.returncode == 143, r.stderr[-3000:]
    last = folder / "checkpoints" / "last.ckpt"
    saved = read_checkpoint(last)
    expected = step + 1 if hook == "start" else step  # the step under way ends; at "end" it has ended
    assert saved["global_step"] == expected, (saved["global_step"], expected)
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches_done"] == expected % 10
    command = f"python train.py ckpt_path={last.resolve()}"
    assert f"terminated (SIGTERM) at global step {expected}; saved {last.resolve()}. Resume with:\n  {command}\n" \
        in r.stderr
    assert "Traceback" not in r.stderr and not (folder / "metrics.json").exists()
    assert not (folder / ".hydra" / "run.lock").exists()  # released at exit

    # resumed in its own folder (allowed: the checkpoint is inside it), the fault switched off
    r = run("train.py", [*command.split()[2:], "callbacks.term.step=-1", f"hydra.run.dir={folder}"], logs)
    assert r.returncode == 0, r.stderr[-3000:]
    final = read_checkpoint(last)
    assert final["global_step"] == 20
    assert all(torch.equal(uninterrupted[k], final["state_dict"][k]) for k in uninterrupted)


def test_a_sigterm_without_the_callback_still_exits_143(mnist_root, tmp_path):
    """Lightning's own SIGTERM handling (no InterruptCheckpoint): exit 143, not 0."""
    r = run("train.py", [*TINY, f"data.root={mnist_root}", "callbacks.interrupt_checkpoint.enabled=false",
                         "+callbacks.term._target_=tests.test_runs.SignalAtStep", "+callbacks.term.step=3",
                         f"hydra.run.dir={tmp_path / 'run'}"], tmp_path / "logs")
    assert r.returncode == 143, r.stderr[-3000:]


# --- 2b. SLURM: Lightning's requeue -------------------------------------------------------------


@pytest.mark.slow  # timing-dependent: on a loaded 2-core machine the resumed run once ended at step 19 of 20
def test_slurm_requeue_signal_saves_the_hpc_checkpoint_and_calls_scontrol_requeue(mnist_root, tmp_path):
    """With +requeue=slurm and SLURM's variables set, SIGUSR1 (what `#SBATCH --signal=SIGUSR1@90`
    sends) makes Lightning save hpc_ckpt_1.ckpt and call `scontrol requeue <job id>` (a fake
    scontrol on PATH records it); SLURM's SIGTERM then stops the run (143); the requeued job, the
    same command in the same folder, resumes from the HPC checkpoint."""
    bin_dir, record = tmp_path / "bin", tmp_path / "scontrol.args"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {record}\n")
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost",
             "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    folder, logs = tmp_path / "run", tmp_path / "logs"
    args = [*TINY, f"data.root={mnist_root}", "trainer.max_epochs=2", "+requeue=slurm",
            "callbacks.step_checkpoint.every_n_train_steps=2",
            "+callbacks.slow._target_=tests.faults.SlowDown", "+callbacks.slow.seconds=0.2", f"hydra.run.dir={folder}"]
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env={**env(logs), **slurm},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.time() + 240
    try:
        last = folder / "checkpoints" / "last.ckpt"
        while time.time() < deadline and proc.poll() is None and not last.exists():
            time.sleep(0.05)  # training is under way (Lightning's handlers are in place): a step checkpoint
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGUSR1)
        while time.time() < deadline and proc.poll() is None and not record.exists():
            time.sleep(0.05)
        assert record.exists(), f"scontrol was not called (exit {proc.poll()})"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert record.read_text().split() == ["requeue", "4242"]
    assert (folder / "hpc_ckpt_1.ckpt").is_file()
    assert proc.returncode == 143, err[-3000:]
    assert "terminated (SIGTERM) at global step" in err

    r = run("train.py", [*args[:-3], f"hydra.run.dir={folder}"], logs, **slurm)  # the requeued job
    assert r.returncode == 0, r.stderr[-3000:]
    assert "holds an HPC checkpoint of this SLURM job (requeued); Lightning resumes it" in r.stderr
    assert f"Restored all states from the checkpoint at {folder / 'hpc_ckpt_1.ckpt'}" in r.stdout + r.stderr
    assert read_checkpoint(folder / "checkpoints" / "last.ckpt")["global_step"] == 20


# --- 3. a sweep with a failed job -----------------------------------------------------------------


def test_a_sweep_with_a_failing_job_runs_the_others_writes_the_summary_and_exits_1(mnist_root, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=1,2,3", *TINY, f"data.root={mnist_root}", "data.train_subset=128", "data.val_size=64",
            "data.batch_size=32", "+callbacks.fail._target_=tests.test_runs.FailForSeed", "+callbacks.fail.seed=2",
            f"hydra.sweep.dir={sweep}"]
    r = run("train.py", args, tmp_path / "logs", timeout=600)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "RuntimeError: injected failure for seed 2" in r.stderr  # the traceback of the failure is shown
    assert "error: 1 of 3 sweep jobs failed: 1 (failed: RuntimeError: injected failure for seed 2)" in r.stderr
    assert (sweep / "0" / "metrics.json").is_file() and (sweep / "2" / "metrics.json").is_file()
    assert (sweep / "1" / "failed.txt").read_text() == "RuntimeError: injected failure for seed 2\n"
    rows = {row["job"]: row for row in csv.DictReader(open(sweep / "summary.csv"))}
    assert rows["0"]["status"] == "done" and rows["2"]["status"] == "done" and rows["0"]["test/acc"]
    assert rows["1"]["status"] == "failed: RuntimeError: injected failure for seed 2"
    md = (sweep / "summary.md").read_text()
    assert "1 of 3 jobs did not finish" in md and "- job 1 (seed=2" in md
    assert "| 1 | 2 | failed (failed.txt)" in md

    # the same sweep folder again is refused, and left as it was
    before = hashes(sweep)
    r = run("train.py", args, tmp_path / "logs")
    assert r.returncode == 2 and f"{sweep} already holds a sweep" in error_line(r)
    assert hashes(sweep) == before


def test_the_reason_of_a_user_error_is_its_message(monkeypatch):
    from models.errors import ConfigError
    from training.runs import failure_reason

    try:
        try:
            raise ConfigError("data.val_size must be smaller than the training split")
        except ConfigError:
            sys.exit(2)  # as training.cli.friendly_errors does
    except SystemExit as e:
        assert failure_reason(e) == "data.val_size must be smaller than the training split"


# --- 4. readers of run folders skip a run without a test figure -----------------------------------


def test_read_runs_skips_a_run_without_a_test_accuracy_with_a_note(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    from training.visualize import find_runs, read_runs

    for name, tags in (("done", {"val/acc": 0.5, "test/acc": 0.9}), ("failed", {"val/acc": 0.4})):
        w = SummaryWriter(str(tmp_path / name / "tensorboard"))
        for tag, value in tags.items():
            w.add_scalar(tag, value, 1)
        w.close()
    runs = find_runs(tmp_path)
    assert [r.name for r in runs] == ["done", "failed"]
    results = read_runs(runs)
    assert [r["run"].name for r in results] == ["done"] and results[0]["test_acc"] == pytest.approx(0.9)
    assert f"note: skipping {tmp_path / 'failed'}: no test/acc" in capsys.readouterr().out


def test_the_compare_notebook_reads_runs_through_the_skipping_reader():
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "04_compare.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "read_runs(runs)" in source and "every run has a test accuracy" not in source


# --- 4. one copy of the weights per run (issue 27 §2) --------------------------------------------


def test_a_finished_run_keeps_one_copy_of_its_weights_and_prints_its_disk_use(finished):
    """TINY trains one epoch, so its best checkpoint is its last: last.ckpt is a link to it, and
    metrics.json holds the folder's disk use, which counts the weights once."""
    import json

    from training.checkpoint import disk_use_mb

    ckpts = finished / "checkpoints"
    last, best = ckpts / "last.ckpt", ckpts / "epoch_000.ckpt"
    assert last.is_symlink() and last.resolve() == best.resolve()
    assert read_checkpoint(last)["global_step"] == read_checkpoint(best)["global_step"]
    metrics = json.loads((finished / "metrics.json").read_text())
    assert metrics["disk/last_ckpt_shared"] == 1.0
    assert abs(metrics["disk/run_mb"] - disk_use_mb(finished)) < 0.05  # metrics.json itself is written after
    assert disk_use_mb(ckpts) < 1.5 * best.stat().st_size / 2**20  # one copy, not two
    from training.runs import end_of_run_summary

    line = [ln for ln in end_of_run_summary(metrics, finished).splitlines() if ln.startswith("disk: ")]
    assert line == [f"disk: {metrics['disk/run_mb']:.1f} MB in the run folder (last.ckpt is a link to the best "
                    f"checkpoint: one copy of the weights)"]


def _ckpt(step: int, w: torch.Tensor) -> dict:
    return {"epoch": 0, "global_step": step, "state_dict": {"w": w}, "hyper_parameters": {"model": "x"}}


def test_last_is_shared_only_when_it_holds_the_best_state_and_a_later_save_replaces_the_link(tmp_path):
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    from training.checkpoint import share_last_checkpoint

    io = TorchCheckpointIO()
    best, last = tmp_path / "epoch_000.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(_ckpt(10, torch.ones(3)), best)
    io.save_checkpoint(_ckpt(20, torch.ones(3)), last)  # a later step: a different state
    assert not share_last_checkpoint(best) and not last.is_symlink()
    io.save_checkpoint(_ckpt(10, torch.zeros(3)), last)  # same step, other weights
    assert not share_last_checkpoint(best) and not last.is_symlink()
    io.save_checkpoint(_ckpt(10, torch.ones(3)), last)
    assert share_last_checkpoint(best) and last.is_symlink() and os.readlink(last) == best.name
    assert not share_last_checkpoint(best)  # already shared
    before = best.read_bytes()
    io.save_checkpoint(_ckpt(30, torch.full((3,), 2.0)), last)  # a resumed run saving last.ckpt again
    assert not last.is_symlink() and best.read_bytes() == before  # the link is replaced, the best untouched
    assert torch.load(last, weights_only=True)["global_step"] == 30
