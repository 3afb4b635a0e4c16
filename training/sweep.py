"""A summary of a Hydra sweep: one row of final metrics per job, written when the sweep ends.

``python train.py -m model=neocognitron,lenet5,convnet seed=1,2,3`` runs nine jobs, each in its
own folder ``<sweep>/<job number>/`` (config in ``.hydra/``, TensorBoard run with its
hyperparameters in ``tensorboard/``, final metrics in ``metrics.json``, written by train.py).
:class:`SweepSummary`, a Hydra callback (``configs/hydra/default.yaml``), then writes
``<sweep>/summary.csv`` (every job, every override, every numeric metric) and
``<sweep>/summary.md`` (the overrides that vary, the chosen metrics, and their mean and
standard deviation over seeds when the sweep has several), after every job and at the end.

A job that fails does not stop the sweep: train.py notes it in ``<job>/failed.txt``
(:func:`training.runs.record_sweep_failure`) and the next jobs run; the summary lists the jobs
that finished, names those that failed (with the reason), and the sweep exits with status 1.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("val/acc_best", "test/acc", "test/loss")


def read_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job folder under ``sweep_dir`` (found by its ``.hydra/overrides.yaml``), in job order:
    ``{"job": <folder relative to the sweep>, "overrides": {key: value}, "metrics": {...} or None,
    "failed": <the reason in failed.txt> or None}``."""
    jobs = []
    for overrides_file in sweep_dir.rglob(".hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        overrides = {}
        for item in OmegaConf.to_container(OmegaConf.load(overrides_file)) or []:
            key, _, value = str(item).partition("=")
            overrides[key.lstrip("+~")] = value
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        failed_file = job_dir / "failed.txt"
        failed = failed_file.read_text().strip() or "failed" if failed_file.is_file() else None
        jobs.append({"job": job_dir.relative_to(sweep_dir).as_posix(), "overrides": overrides, "metrics": metrics,
                     "failed": failed})
    jobs.sort(key=lambda j: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in j["job"].split("/")])
    return jobs


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def summarize(sweep_dir: Path, metrics: Sequence[str] = DEFAULT_METRICS, group_out: str = "seed") -> str:
    """Write ``summary.csv`` and ``summary.md`` in ``sweep_dir``; returns the Markdown."""
    sweep_dir = Path(sweep_dir)
    jobs = read_jobs(sweep_dir)
    keys = list(dict.fromkeys(k for j in jobs for k in j["overrides"]))
    varying = [k for k in keys if len({j["overrides"].get(k) for j in jobs}) > 1]
    fixed = {k: jobs[0]["overrides"].get(k) for k in keys if k not in varying}
    numeric = sorted({k for j in jobs for k, v in (j["metrics"] or {}).items() if isinstance(v, (int, float))})

    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(["job", *keys, "status", *numeric])
    for j in jobs:
        m = j["metrics"] or {}
        w.writerow([j["job"], *(j["overrides"].get(k, "") for k in keys), _status(j), *(m.get(k, "") for k in numeric)])
    _write(sweep_dir / "summary.csv", f.getvalue())

    shown = [k for k in metrics if any(k in (j["metrics"] or {}) for j in jobs)] or list(metrics)
    lines = [f"# Sweep summary: {sweep_dir}", "",
             f"{len(jobs)} jobs; `tensorboard --logdir {sweep_dir}` shows each as its own run "
             f"(HPARAMS tab: their hyperparameters).", ""]
    if fixed:
        lines += ["Common overrides: " + " ".join(f"`{k}={v}`" for k, v in fixed.items()), ""]
    header = ["job", *varying, *shown]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for j in jobs:
        m = j["metrics"] or {}
        missing = "failed (failed.txt)" if j["failed"] else "failed (no metrics.json)"
        cells = [j["job"], *(j["overrides"].get(k, "") for k in varying),
                 *(_fmt(m.get(k)) if j["metrics"] is not None else missing for k in shown)]
        lines.append("| " + " | ".join(cells) + " |")
    unfinished = [j for j in jobs if j["metrics"] is None]
    if unfinished:
        lines += ["", f"{len(unfinished)} of {len(jobs)} jobs did not finish (not in the means below):", ""]
        lines += [f"- job {j['job']} ({' '.join(f'{k}={v}' for k, v in j['overrides'].items())}): {_status(j)}"
                  for j in unfinished]

    rest = [k for k in varying if k != group_out]
    if group_out in varying:  # mean +- standard deviation over the seeds of each configuration
        groups: dict[tuple, list[dict]] = {}
        for j in jobs:
            if j["metrics"] is not None:
                groups.setdefault(tuple(j["overrides"].get(k) for k in rest), []).append(j["metrics"])
        lines += ["", f"Mean ± standard deviation over `{group_out}`:", "",
                  "| " + " | ".join([*rest, "runs", *shown]) + " |", "|" + "---|" * (len(rest) + 1 + len(shown))]
        for values, ms in groups.items():
            cells = list(values) + [str(len(ms))]
            for k in shown:
                xs = [float(m[k]) for m in ms if isinstance(m.get(k), (int, float)) and math.isfinite(m[k])]
                sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
                cells.append(f"{statistics.fmean(xs):.4f} ± {sd:.4f}" if xs else "")
            lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    _write(sweep_dir / "summary.md", text)
    return text


def _status(job: dict) -> str:
    if job["metrics"] is not None:
        return "done"
    return f"failed: {job['failed']}" if job["failed"] else "no metrics.json"


def _write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a reader
    (or a job of a launcher that runs jobs at once) never sees half a summary."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def failed_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """The jobs of the sweep that left no ``metrics.json`` (failed, or stopped)."""
    return [j for j in read_jobs(Path(sweep_dir)) if j["metrics"] is None]


class SweepSummary(Callback):
    """Hydra callback: after each job and at the end of a multirun, :func:`summarize` the sweep
    folder; at the end, if a job did not finish, name it and exit with status 1."""

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, group_out: str = "seed"):
        self.metrics = list(metrics)
        self.group_out = group_out

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():  # e.g. a launcher that ran the jobs elsewhere
            log.warning("sweep summary: %s does not exist; nothing summarised", sweep_dir)
            return
        text = summarize(sweep_dir, self.metrics, self.group_out)
        print(text)
        log.info("sweep summary: %s and %s", sweep_dir / "summary.md", sweep_dir / "summary.csv")
        failed = failed_jobs(sweep_dir)
        if failed:
            names = "; ".join(f"{j['job']} ({_status(j)})" for j in failed)
            print(f"error: {len(failed)} of {len(read_jobs(sweep_dir))} sweep jobs failed: {names}; the others are "
                  f"in {sweep_dir / 'summary.md'}", file=sys.stderr)
            sys.exit(1)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        """The summary so far (a sweep stopped later still has one for the jobs that finished)."""
        try:
            sweep_dir = Path(config.hydra.sweep.dir)
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            if HydraConfig.get().mode != RunMode.MULTIRUN or not sweep_dir.is_dir():
                return
            summarize(sweep_dir, self.metrics, self.group_out)
        except Exception as e:  # a summary so far is a convenience; never fail a job over it
            log.warning("sweep summary after a job: %s", e)
