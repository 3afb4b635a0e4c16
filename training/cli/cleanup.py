"""A run that fails before its first training step leaves no run folder (:func:`discard_failed_run`),
so that ``logs/train/runs`` holds only real runs."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


@contextlib.contextmanager
def discard_failed_run(output_dir: str | os.PathLike, progress: dict):
    """Remove the run folder ``output_dir`` when the run fails (an error, Ctrl-C, a non-zero exit)
    before its first training step, so that ``logs/train/runs`` holds only real runs. Only a
    folder this run created is removed: one that held nothing but Hydra's ``.hydra/`` and log file
    when the run started (not a resumed run's, not a ``hydra.run.dir`` that held other files), and
    that has no checkpoint (``*.ckpt``) or ``metrics.json`` at the end; never a job of a ``-m``
    sweep (its summary lists the failure), never from a DDP child process. ``progress``: filled by
    train.py's ``train`` with the ``trainer`` and the global step it started at (``start_step``)."""
    out = Path(output_dir)
    fresh = _fresh_run_folder(out)
    try:
        yield
    except BaseException as e:
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        trainer = progress.get("trainer")
        steps = (trainer.global_step - progress.get("start_step", 0)) if trainer is not None else 0
        if fresh and steps <= 0 and _is_rank_zero() and not _in_sweep() and not _has_results(out):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _fresh_run_folder(out: Path) -> bool:
    try:
        names = {p.name for p in out.iterdir()}
    except OSError:
        return False
    return ".hydra" in names and all(n == ".hydra" or n.endswith(".log") for n in names)


def _has_results(out: Path) -> bool:
    return (out / "metrics.json").exists() or next(out.rglob("*.ckpt"), None) is not None


def _is_rank_zero() -> bool:
    return all(os.environ.get(v, "0") in ("", "0") for v in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK"))


def _in_sweep() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False
