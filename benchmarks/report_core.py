"""The machinery of the results tables, no table: ``Row`` (which records of which store, which
figure of each), the record tests (``_get``, ``traceable``, ``_tested_last_epoch``, ``select``), the
figures and their statistics (``figures``, ``summary``, ``gap_se``), the cited line ranges
(``_lines``) and one table line (``render_row``, under ``HEADER``). ``report.py`` builds its tables
from these, ``report_fukushima.py`` and ``report_prose.py`` their own; this module imports none of them.
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project: training.records

from training.records import read_records  # noqa: E402


@dataclass
class Row:
    """One line of a table: the records of ``store`` whose keys equal ``where``, and ``metric``."""

    label: str
    data: str
    store: str
    where: dict[str, Any]
    metric: str | Callable[[dict], float]
    command: str
    paper: float | None = None
    scale: float = 1.0  # e.g. 100 for a fraction shown as a percentage
    digits: int = 2
    note: str = ""
    stat: str = "mean"  # "median" for times: this machine is shared and noisy (median, min-max, n)
    keep: Callable[[dict], bool] | None = None  # a further test a record must pass (e.g. on its overrides)
    paper_n: int | None = None  # the paper's test-set size: its figure's own binomial error joins the gap's SE
    key: str = ""  # a name prose can cite the row's figures by: <!-- fig:KEY:mean -->1.09<!-- /fig -->


def _get(record: dict, key: str) -> Any:
    """``record[key]``, where ``key`` may be dotted (``metrics.test/acc``)."""
    value: Any = record
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def traceable(record: dict) -> bool:
    """Whether a record says what made it: the command, the commit and the date. The first records
    of ``lenet.jsonl`` (lines 1-14) predate the results store and say none of them: they stay in
    the store, and no generated table uses them (issue 30 §3)."""
    return bool(record.get("command") and _get(record, "git.commit") and record.get("date"))


def _tested_last_epoch(record: dict) -> bool:
    """A train.py run of the tolerant preset that tested the whole network (``last_epoch.ckpt``)."""
    return (record.get("source") == "train.py"
            and str(_get(record, "metrics.test/ckpt_path")).endswith("last_epoch.ckpt"))


def select(row: Row) -> list[dict]:
    """The records of the row: traceable, its keys have the row's values, and the row's figure is there.
    A run on part of the training set (``train_size``, Fig. 6) counts only in a row that asks for it."""
    return [r for r in read_records(row.store) if traceable(r) and all(_get(r, k) == v for k, v in row.where.items())
            and ("train_size" in r) <= ("train_size" in row.where)
            and (callable(row.metric) or _get(r, row.metric) is not None) and (row.keep is None or row.keep(r))]


def figures(row: Row, records: list[dict]) -> list[float]:
    """The row's figure from each record (a callable metric may give several: one per model a
    record holds)."""
    values = []
    for r in records:
        v = row.metric(r) if callable(row.metric) else _get(r, row.metric)
        values += v if isinstance(v, list) else [v]
    return [float(v) * row.scale for v in values if v is not None]


def summary(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = statistics.fmean(values) if n else math.nan
    std = statistics.stdev(values) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "se": std / math.sqrt(n) if n > 1 else math.nan}


def _lines(records: list[dict]) -> str:
    """Line numbers as ranges: 1-4, 7."""
    nums, spans = sorted({r["_line"] for r in records}), []  # a record holding several seeds counts once
    for x in nums:
        if spans and x == spans[-1][1] + 1:
            spans[-1][1] = x
        else:
            spans.append([x, x])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def gap_se(row: Row, se: float) -> float:
    """The standard error of the difference between our mean and the paper's figure: our seeds'
    SE, and, when the row knows the paper's test-set size, the paper's own binomial error on it
    (0.95% on 10,000 digits: +-0.10), both in the row's units (a percentage: ``row.scale`` 100 or
    a metric already in %)."""
    if not row.paper_n:
        return se
    p = row.paper / 100.0  # the paper's figures here are percentages
    return math.sqrt(se ** 2 + (100.0 * math.sqrt(p * (1 - p) / row.paper_n)) ** 2)


def render_row(row: Row) -> str:
    per_record = [(r, figures(row, [r])) for r in select(row)]
    records = [r for r, v in per_record if v]  # cited: those that give the row a figure
    values = [x for _, v in per_record for x in v]
    s = summary(values)
    d = row.digits
    if s["n"] == 0:
        ours = "no record yet"
    elif row.stat == "median":
        ours = (f"median **{statistics.median(values):.{d}f}** ({min(values):.{d}f}–{max(values):.{d}f}, "
                f"n = {s['n']})")
    elif s["n"] == 1:
        ours = f"{s['mean']:.{d}f} (n = 1)"
    else:
        ours = f"**{s['mean']:.{d}f}** ± {s['std']:.{d}f} (n = {s['n']}, SE {s['se']:.{d}f})"
    paper = row.note if row.paper is None else f"{row.paper:.{d}f}"
    gap = ""
    if row.paper is not None and s["n"] > 1 and s["se"] > 0:
        gap = f"{(s['mean'] - row.paper) / gap_se(row, s['se']):+.1f} SE"
    source = f"`{row.store}.jsonl` {_lines(records)}" if records else ""
    return f"| {row.label} | {row.data} | `{row.command}` | {ours} | {paper} | {gap} | {source} |"


HEADER = ("| model | data | command | ours: mean ± std over seeds | paper | gap | records |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
