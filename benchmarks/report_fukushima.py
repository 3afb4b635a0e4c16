"""The Fukushima tables, read from what the benchmarks printed: ``fukushima_table``
(``fukushima_tolerance``: his settings against shifts, on validation; the runs of
``bench_neocognitron.py --only fukushima --val N --shifts 2 4``, parsed by ``fukushima_run``, each
with its Pareto flag in ``fukushima_settings``) and ``fukushima_top_table`` (``fukushima_top``: his
top layer's reference vectors against validation accuracy; the ``ROW`` lines of
``bench_fukushima_top.py``, ``top_rows``). ``report.py`` registers both tables; this module imports
only ``report_core``.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the project (training.records) and benchmarks/ (report_core)

from report_core import _lines, summary  # noqa: E402
from training.records import read_records  # noqa: E402


# Fukushima's settings against tolerance, on validation (issue 17 §3; issue 16 §2): every record of
# bench_neocognitron.py --only fukushima --val N --shifts 2 4, its figures read from the table it printed.
FUKUSHIMA_ROW = re.compile(r"^neocognitron_fukushima \(self-organised\)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%\s+(\d+)\s",
                           re.MULTILINE)


def _arg(argv: list[str], flag: str, default: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv else default


def fukushima_run(r: dict) -> dict | None:
    """A validation run with shifts: settings, centred / 2 px / 4 px accuracy, US4's vectors (None: another run)."""
    argv = r.get("argv", [])
    m = FUKUSHIMA_ROW.search(r.get("output", ""))
    if "--val" not in argv or _arg(argv, "--shifts", "") != "2" or "4" not in argv or m is None:
        return None
    kw = _arg(argv, "--fukushima-kwargs", "{}")
    refs = re.findall(r"US4 (\d+) reference vectors", r["output"])
    return {"settings": ("defaults" if kw == "{}" else kw.strip("{}").replace('"', "")),
            "augment": int(_arg(argv, "--augment", "0")), "val": int(_arg(argv, "--val", "0")),
            "images": int(_arg(argv, "--test-limit", _arg(argv, "--val", "0"))),
            "acc": [float(m.group(i)) for i in (1, 2, 3)], "train_s": int(m.group(4)), "line": r["_line"],
            "refs": int(refs[-1]) if refs else None}


def fukushima_settings() -> list[dict]:
    """One entry per validation run with shifts (``fukushima_run``), with its Pareto flag."""
    runs = [run for run in map(fukushima_run, read_records("neocognitron")) if run]
    for a in runs:  # on the front: no other run at least as good on both axes and better on one
        a["pareto"] = not any(b["acc"][0] >= a["acc"][0] and b["acc"][1] >= a["acc"][1] and b["acc"][:2] != a["acc"][:2]
                              for b in runs)
    return runs


def fukushima_table() -> str:
    lines = ["| settings (changes from the defaults) | learns from shifts ≤ | centred % | 2 px % | 4 px % | cost at 2 px / "
             "4 px (points) | on the Pareto front | record |", "|" + " --- |" * 8]
    for a in sorted(fukushima_settings(), key=lambda a: (-a["acc"][0], -a["acc"][1])):
        c, s2, s4 = a["acc"]
        lines.append(f"| {a['settings']} | {a['augment']} px | {c:.2f} | {s2:.2f} | {s4:.2f} | {c - s2:.2f} / {c - s4:.2f} "
                     f"| {'**yes**' if a['pareto'] else ''} | `neocognitron.jsonl` {a['line']} |")
    return "\n".join(lines)


# Fukushima's top layer: reference vectors against validation accuracy (issue 27 §1), every ROW line of
# bench_fukushima_top.py's records, grouped by setting over seeds.
def top_rows(record: dict) -> list[dict]:
    """The ROW lines a bench_fukushima_top.py record printed: one setting of one seed each."""
    return [json.loads(line[4:]) for line in record.get("output", "").splitlines() if line.startswith("ROW ")]


def top_groups(records: list[dict]) -> dict[str, list[tuple[dict, int]]]:
    """Every ROW of ``records`` with its record's line, grouped by setting (its JSON, keys sorted)."""
    groups: dict[str, list[tuple[dict, int]]] = {}
    for r in records:
        for row in top_rows(r):
            groups.setdefault(json.dumps(row["setting"], sort_keys=True), []).append((row, r.get("_line")))
    return groups


def fukushima_top_table() -> str:
    groups = top_groups(read_records("fukushima_top"))
    lines = ["| top-layer setting (changes from the defaults) | seeds | reference vectors | MB of vectors | "
             "val % (k=1) | val % (k=4) | record |", "|" + " --- |" * 7]
    for key, rows in sorted(groups.items(), key=lambda kv: -statistics.fmean(r["refs"] for r, _ in kv[1])):
        refs = summary([r["refs"] for r, _ in rows])
        mb = statistics.fmean(r["refs_mb"] for r, _ in rows)
        accs = [summary([100 * r["val_acc"][k] for r, _ in rows]) for k in ("1", "4")]
        cells = [f"{a['mean']:.2f}" + (f" ± {a['std']:.2f}" if a["n"] > 1 else "") for a in accs]
        setting = key.strip("{}").replace('"', "") or "defaults"
        lines.append(f"| {setting} | {refs['n']} | {refs['mean']:,.0f} | {mb:.1f} | {cells[0]} | {cells[1]} | "
                     f"`fukushima_top.jsonl` {_lines([{'_line': ln} for _, ln in rows])} |")
    return "\n".join(lines)
