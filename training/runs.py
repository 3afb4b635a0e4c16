"""No run is lost (issue 25): a run folder holds one run, a folder in use is not shared, and a
failed job of a sweep is noted while the sweep goes on.

===========================  ======================================================================
``RunFolderGuard``           a Hydra callback (``configs/hydra/default.yaml``). Before Hydra writes
                             anything into ``hydra.run.dir`` (``on_run_start``), it refuses, with one
                             line and exit status 2, a folder that already holds the results of an
                             earlier run (a checkpoint, ``metrics.json``, TensorBoard events or a CSV
                             log), unless this run resumes a checkpoint inside it (``ckpt_path``) or
                             Lightning will (a SLURM requeue: ``hpc_ckpt_<n>.ckpt``); and it locks the
                             folder (:class:`RunLock`) so that a second process is refused. A sweep
                             folder (``hydra.sweep.dir``) is checked and locked the same way.
``RunLock``                  ``<folder>/.hydra/run.lock``, created with ``O_EXCL``, holding the pid,
                             host and SLURM job id of its owner; removed at exit. A lock whose process
                             is gone (same host, dead pid; or the same SLURM job, requeued) is taken
                             over with a note.
``record_sweep_failure``     train.py's ``main``: in a ``-m`` sweep, a job that fails (an error, a
                             non-zero exit other than an interrupt) writes ``<job>/failed.txt`` and
                             returns, so that the next jobs run; :class:`training.sweep.SweepSummary`
                             names it and the sweep exits with status 1.
``signal_named``             ``signal.SIGUSR1`` from its name, for configs (``configs/requeue/slurm.yaml``).
===========================  ======================================================================

The lock lives in ``.hydra/`` (which Hydra creates in every run folder anyway) so that a run that
fails before its first step still leaves a folder that :func:`training.cli.discard_failed_run`
recognises as its own and removes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

LOCK_NAME = ".hydra/run.lock"
FAILED_NAME = "failed.txt"
INTERRUPTED = (130, 143)  # 128 + SIGINT, 128 + SIGTERM: a sweep stops there (the user asked it to)


def signal_named(name: str) -> signal.Signals:
    """The signal called ``name`` (``"SIGUSR1"``): its number differs between systems."""
    return signal.Signals[name]


# --- what an earlier run leaves ---------------------------------------------------------------


def previous_results(folder: str | os.PathLike) -> list[Path]:
    """The files in ``folder`` that only a run writes (not Hydra's ``.hydra/`` nor its log file):
    checkpoints, ``metrics.json``, TensorBoard event files, CSV logs; sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = set()
    for pattern in ("*.ckpt", "metrics.json", "events.out.tfevents.*", "metrics.csv"):
        found.update(p for p in folder.rglob(pattern) if ".hydra" not in p.relative_to(folder).parts)
    return sorted(found)


def _inside(path: str | os.PathLike, folder: Path) -> bool:
    try:
        Path(path).expanduser().resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def _lightning_resumes_hpc(folder: Path) -> bool:
    """Whether Lightning will resume this run from ``<folder>/hpc_ckpt_<n>.ckpt`` by itself: it
    does so under SLURM (a requeued job) when no ``ckpt_path`` is given."""
    if not any(folder.glob("hpc_ckpt_*.ckpt")):
        return False
    try:
        from lightning.fabric.plugins.environments import SLURMEnvironment

        return bool(SLURMEnvironment.detect())
    except Exception:  # pragma: no cover
        return False


def refuse_used_folder(folder: Path, ckpt_path: str | None, what: str = "run") -> None:
    """Exit with status 2 and one line if ``folder`` holds an earlier run's results and this run
    neither resumes a checkpoint inside it nor is a SLURM requeue that Lightning resumes."""
    found = previous_results(folder)
    if not found:
        return
    if ckpt_path and _inside(ckpt_path, folder):
        return
    if what == "run" and not ckpt_path and _lightning_resumes_hpc(folder):
        print(f"note: {folder} holds an HPC checkpoint of this SLURM job (requeued); Lightning resumes it",
              file=sys.stderr)
        return
    shown = ", ".join(str(p.relative_to(folder)) for p in found[:3]) + (f" and {len(found) - 3} more"
                                                                         if len(found) > 3 else "")
    if what == "sweep":
        hint = "choose another folder (hydra.sweep.dir=<new folder>)"
    else:
        last = folder / "checkpoints" / "last.ckpt"
        resume = last if last.is_file() else next((p for p in found if p.suffix == ".ckpt"), None)
        hint = "choose another folder (hydra.run.dir=<new folder>)"
        if resume is not None:
            hint += f", or resume that run: ckpt_path={resume}"
    print(f"error: {folder} already holds a {what} ({shown}); it is not replaced: {hint}", file=sys.stderr)
    sys.exit(2)


# --- the lock ---------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunLock:
    """A lock on a run folder: ``<folder>/.hydra/run.lock`` (``O_EXCL``) with the owner's pid, host
    and SLURM job id. :meth:`acquire` exits with status 2 and one line if a live process holds it."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False

    def _mine(self) -> str:
        return f"pid={os.getpid()} host={socket.gethostname()} slurm_job={os.environ.get('SLURM_JOB_ID', '')}\n"

    @staticmethod
    def _parse(text: str) -> dict[str, str]:
        return dict(part.split("=", 1) for part in text.split() if "=" in part)

    def _stale(self, owner: dict[str, str]) -> str | None:
        """Why the lock's owner is gone (None: it may be alive)."""
        job = os.environ.get("SLURM_JOB_ID", "")
        if job and owner.get("slurm_job") == job:
            return f"SLURM job {job} was requeued"
        if owner.get("host") == socket.gethostname():
            try:
                pid = int(owner.get("pid", ""))
            except ValueError:
                return "it names no process"
            if pid != os.getpid() and not _alive(pid):
                return f"process {pid} has ended"
        return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    text = self.path.read_text()
                except FileNotFoundError:  # released meanwhile: try again
                    continue
                owner = self._parse(text)
                why = self._stale(owner)
                if why is None:
                    print(f"error: {self.folder} is in use by another run (pid {owner.get('pid', '?')} on "
                          f"{owner.get('host', '?')}; lock {self.path}); choose another folder, or wait for it to "
                          f"end (if no run uses it, delete the lock)", file=sys.stderr)
                    sys.exit(2)
                with contextlib.suppress(FileNotFoundError):
                    if self.path.read_text() == text:  # still the stale one (not a lock just taken over)
                        self.path.unlink()
                print(f"note: taking over the lock of {self.folder} ({why})", file=sys.stderr)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self._mine())
            self.held = True
            atexit.register(self.release)
            return
        print(f"error: could not lock {self.folder} ({self.path} keeps changing); is another run starting there?",
              file=sys.stderr)
        sys.exit(2)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(OSError):
            if self.path.read_text() == self._mine():
                self.path.unlink()


# --- the Hydra callback -----------------------------------------------------------------------


def _rank_zero() -> bool:
    """Not a rank > 0 that srun or torchrun started (rank 0 checks and locks the shared folder)."""
    return all(os.environ.get(v, "0") in ("", "0") for v in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK"))


class RunFolderGuard(Callback):
    """Hydra callback: a run folder (or sweep folder) that holds an earlier run is refused before
    Hydra writes into it, and the folder is locked while this process uses it (module docs)."""

    def __init__(self) -> None:
        self.lock: RunLock | None = None

    def _guard(self, config: DictConfig, folder: str, what: str) -> None:
        hydra_cfg = config.hydra
        # no folder of its own (eval.py; DDP children, which reuse rank 0's); ranks > 0 share rank 0's
        if hydra_cfg.get("output_subdir") is None or not _rank_zero():
            return
        out = Path(folder).expanduser()
        out = out if out.is_absolute() else Path.cwd() / out
        try:
            (out / ".hydra").mkdir(parents=True, exist_ok=True)
        except OSError as e:  # /proc/..., a drive not mounted, a read-only or full disk, a file in the way
            # printed and exited here: Hydra turns a callback's exception into a warning and goes on to fail
            # in its own mkdir with a traceback
            from training.cli import translate_error

            cause = translate_error(e)
            print(f"error: {cause}" if cause is not None else
                  f"error: cannot create the {what} folder {out}: {e.strerror} ({e.filename}); choose a folder you "
                  f"can write (LOG_DIR=<folder>, or hydra.{what}.dir=<folder>)", file=sys.stderr)
            sys.exit(2)
        lock = RunLock(out)
        lock.acquire()  # first: a folder in use is named as such, even before it holds results
        try:
            refuse_used_folder(out, config.get("ckpt_path") if what == "run" else None, what)
        except SystemExit:
            lock.release()
            raise
        self.lock = lock

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(config, str(config.hydra.run.dir), "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(config, str(config.hydra.sweep.dir), "sweep")

    def _release(self, **kwargs: Any) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    on_run_end = _release
    on_multirun_end = _release


# --- a failed job of a sweep --------------------------------------------------------------------


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def failure_reason(e: BaseException) -> str:
    """One line for why a job failed: the project's error message (which the entry points turn
    into exit status 2), else the exception's type and message."""
    from training.cli import user_error

    cause = user_error(e)
    if cause is not None:
        return str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    if isinstance(e, SystemExit):
        inner = e.__context__
        if inner is not None and not isinstance(inner, SystemExit):
            return failure_reason(inner)
        return f"exit status {e.code}"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def record_sweep_failure(output_dir: str | os.PathLike, e: BaseException) -> bool:
    """In a ``-m`` sweep, note the failure ``e`` of this job in ``<job>/failed.txt`` (and print it:
    the traceback of an unexpected error, the one line of a user error is printed already) and
    return True, so that the job returns and the sweep goes on. False (re-raise) outside a sweep,
    and for an interrupt (Ctrl-C, SIGTERM: the sweep stops) or a clean exit."""
    if not _in_multirun() or isinstance(e, KeyboardInterrupt):
        return False
    if isinstance(e, SystemExit) and (e.code in (0, None) or e.code in INTERRUPTED):
        return False
    reason = failure_reason(e)
    if not isinstance(e, SystemExit):
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    out = Path(output_dir)
    with contextlib.suppress(OSError):
        out.mkdir(parents=True, exist_ok=True)
        (out / FAILED_NAME).write_text(reason + "\n")
    print(f"error: sweep job {out.name} failed: {reason} (the sweep goes on)", file=sys.stderr)
    return True


def end_of_run_summary(metrics: dict, out: Path) -> str:
    """What train.py prints when a run ends: the test figure and its checkpoint, the stage times,
    the run folder's disk use (``disk/*``, :func:`training.checkpoint.keep_one_copy`) and where the
    logs are."""
    lines = []
    if "test/acc" in metrics:
        lines.append(f"test/acc: {metrics['test/acc']:.4f}  (test/loss {metrics.get('test/loss', float('nan')):.4f}, "
                     f"checkpoint {metrics.get('test/ckpt_path') or 'last weights'})")
    if "time/train_s" in metrics:
        lines.append(f"time: start-up {metrics['time/startup_s']:.1f} s (imports, config, data), training "
                     f"{metrics['time/train_s']:.1f} s (validation included), test {metrics.get('time/test_s', 0.0):.1f} s")
    if "disk/run_mb" in metrics:
        shared = " (last.ckpt is a link to the best checkpoint: one copy of the weights)" \
            if metrics.get("disk/last_ckpt_shared") else ""
        lines.append(f"disk: {metrics['disk/run_mb']:.1f} MB in the run folder{shared}")
    lines.append(f"logs and checkpoints: {out.resolve()}   (tensorboard --logdir {out.parent.resolve()})")
    return "\n".join(lines)
