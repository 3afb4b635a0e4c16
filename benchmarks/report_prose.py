"""The prose figures: ``<!-- fig:KEY:WHAT -->...<!-- /fig -->`` in a doc holds one figure of the
keyed row KEY (a table's, or one of ``PROSE_ROWS``: the figures prose cites that no table shows), or
of a comparison-table cell ``cmp.MODEL.TRAINING.PERTURBATION.LEVEL``. ``figure`` computes one and
``update_figures`` rewrites every marker of a text. The tables are not imported: the caller passes
the keyed rows (``keyed_rows(tables, prose_rows)``) and the comparison table's cells, as
``report.py`` does; this module imports only ``report_core`` and ``report_fukushima``.
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: report_core, report_fukushima

from report_core import Row, _tested_last_epoch, figures, gap_se, select, summary  # noqa: E402
from report_fukushima import fukushima_run, top_rows  # noqa: E402


# Figures the docs' prose cites that no table shows (issue 30 §3): keyed rows like the tables', in no
# table; a doc's <!-- fig:KEY:WHAT --> marker is where each is written.
def _printed(pattern: str, group: int = 1) -> Callable[[dict], list[float]]:
    """A metric: what a benchmark printed, group ``group`` of each match of ``pattern`` in a record's
    output (a record it does not match gives the row no figure)."""
    return lambda r: [float(m.group(group)) for m in re.finditer(pattern, r.get("output", ""), re.MULTILINE)]


def _prose(key: str, store: str, metric: str | Callable[[dict], Any], where: dict | None = None, **kw: Any) -> Row:
    return Row(key, "", store, where or {}, metric, "", key=key, **kw)


def _fukushima_setting(settings: str, augment: int, column: str) -> Callable[[dict], float | None]:
    """A metric: one figure of the fukushima_tolerance table's run with these settings, learning from
    shifts of up to ``augment`` px: its ``centred``, ``2px`` or ``4px`` validation accuracy %, or
    ``refs``, US4's reference vectors."""
    def metric(r: dict) -> float | None:
        run = fukushima_run(r)
        if run is None or (run["settings"], run["augment"]) != (settings, augment):
            return None
        return run["refs"] if column == "refs" else run["acc"][("centred", "2px", "4px").index(column)]
    return metric


def _top(setting: dict, field: str) -> Callable[[dict], list[float]]:
    """A metric: one field of the fukushima_top table's setting, one value per seed."""
    def value(row: dict) -> float:
        return row["val_acc"][field[1:]] * 100 if field in ("k1", "k4") else row[field]
    return lambda r: [value(row) for row in top_rows(r) if row["setting"] == setting]


FUKUSHIMA_PROSE = (  # (key, the settings as the fukushima_tolerance table shows them, learns from shifts <= px)
    ("defaults", "defaults", 0), ("s_kernels5", "s_kernels: [5, 5, 5]", 0), ("c_gains2", "c_gains: [2.0, 2.0, 2.0]", 0),
    ("c_gains4", "c_gains: [4.0, 4.0, 4.0]", 0), ("c_gains8", "c_gains: [8.0, 16.0, 16.0]", 0),
    ("c_kernels5", "c_kernels: [5, 5, 5]", 0), ("c_kernels557", "c_kernels: [5, 5, 7]", 0),
    ("c_strides2", "c_strides: [2, 2, 2]", 0), ("thetas_learn08", "thetas_learn: [0.75, 0.7, 0.8]", 0),
    ("thetas07", "thetas: [0.7, 0.55, 0.5]", 0), ("thetas05", "thetas: [0.5, 0.5, 0.5]", 0),
    ("top_epochs2", "top_epochs: 2", 3), ("top_epochs3", "top_epochs: 3", 3),
    ("compact", "thetas_learn: [0.75, 0.7, 0.5], margin: 0.0, reinforce: true, top_epochs: 3, adjust_epochs: 4, "
     "adjust_rate: 0.1, intvec_k: 1", 3),
)
COMPACT_TOP = {"margin": 0.0, "reinforce": True, "thetas_learn": [0.75, 0.7, 0.5]}
TOP_SETTINGS = {"defaults": {}, "plain": {"margin": 0.0, "thetas_learn": [0.75, 0.7, 0.5]}, "reinforced": COMPACT_TOP,
                "adjusted": {**COMPACT_TOP, "adjust_epochs": 4, "adjust_rate": 0.1},
                "adjusted3": {**COMPACT_TOP, "top_epochs": 3, "adjust_epochs": 4, "adjust_rate": 0.1}}
VAL5000 = "bench_neocognitron.py --only fukushima --val 5000 --split-seed {split} --threads 1 --fukushima-kwargs {kw}"
PROBE = "bench_neocognitron.py --root ../shared/data --val 5000 --train-limit 10000 --probe 0 1 2 3"
PROSE_ROWS: list[Row] = [
    # LeNet-1 and LeNet-4 under lecun_sqrt, before init=pytorch (docs/results.md); the first seeds are untraceable
    *(_prose(f"{m}_lecun_x{sc}", "lenet", "test_err",
             {"model": m, "batch_size": 16, "step_scale": sc, "model_kwargs": {}})
      for m, sc in (("lenet1", 4), ("lenet4", 2), ("lenet4", 4))),
    # Fukushima's settings on validation: the fukushima_tolerance table's runs, and four on all 5,000 images
    *(_prose(f"fs.{key}.{augment}px.{column}", "neocognitron", _fukushima_setting(settings, augment, column),
             digits=0 if column == "refs" else 2)
      for key, settings, augment in FUKUSHIMA_PROSE for column in ("centred", "2px", "4px", "refs")),
    *(_prose(f"fs5000.{key}.split{split}", "neocognitron",
             _printed(r"^neocognitron_fukushima \(self-organised\)\s+([\d.]+)%"),
             {"command": VAL5000.format(split=split, kw=kw)})
      for key, kw in (("defaults", "{}"), ("thetas05", '{"thetas": [0.5, 0.5, 0.5]}')) for split in (0, 1)),
    # the layers against a nearest-neighbour memory (bench_neocognitron.py --probe): vector length, k=1, k=4
    *(_prose(f"probe.{layer}.{what}", "neocognitron",
             _printed(rf"^\s*{layer} .*?\((\d+) values.*?val ([\d.]+)% \(k=1\), ([\d.]+)% \(k=4\)", group),
             {"command": PROBE}, digits=0 if what == "values" else 2)
      for layer in ("U0", "UC1", "UC2", "UC3") for what, group in (("values", 1), ("k1", 2), ("k4", 3))),
    # Fukushima's top layer (docs/neocognitron_fukushima.md): the fukushima_top table's settings, its speed run
    *(_prose(f"top.{key}.{field}", "fukushima_top", _top(setting, field),
             digits={"refs": 0, "refs_mb": 1}.get(field, 2))
      for key, setting in TOP_SETTINGS.items() for field in ("refs", "refs_mb", "k1", "k4")),
    _prose("top.values", "fukushima_top", _printed(r"(\d+) values per vector"), digits=0),
    _prose("top.speedup.network", "fukushima_top", _printed(r"speed-up: whole network ([\d.]+)x"), digits=1),
    _prose("top.speedup.top", "fukushima_top", _printed(r"speed-up: .*top layer ([\d.]+)x"), digits=1),
    _prose("weights_mlp_train_s", "weights_mlp", "metrics.time/train_s", {"model": "mlp"}, digits=0),
    _prose("tolerant.refs", "fukushima_tolerant", "metrics.train/us4_refs", digits=0, keep=_tested_last_epoch),
]


# Figures in prose (issue 30 §3): ``<!-- fig:KEY:WHAT -->…<!-- /fig -->`` holds a figure of the row
# whose ``key`` is KEY (a table's or PROSE_ROWS'), written by report.py like the tables and checked by
# ``--check``. WHAT: mean, std, n, se, mean_std ("1.09 ± 0.15"), gap ("+1.2"), min, max, median, or
# seedN (the figure of seed N's record alone).
FIG = re.compile(r"<!-- fig:([A-Za-z0-9_.-]+):([a-z0-9_]+) -->(.*?)<!-- /fig -->", re.DOTALL)


def keyed_rows(tables: dict[str, list[Row] | Callable[[], str]], prose_rows: list[Row]) -> dict[str, Row]:
    """The rows prose can cite by key: those of ``tables`` (a table that is a function has none) and
    ``prose_rows``; the first row of a key wins."""
    rows: dict[str, Row] = {}
    for table in [*tables.values(), prose_rows]:
        for row in table if isinstance(table, list) else []:
            if row.key:
                rows.setdefault(row.key, row)
    return rows


# A comparison-table cell as its values: (model, training, perturbation, level) -> one figure per seed
Cells = Callable[[str, str, str, str], list[float]]


def figure(key: str, what: str, rows: dict[str, Row], cells: Cells) -> str:
    """``what`` of the figures of the keyed row ``key`` (one of ``rows``), or of a comparison cell
    (``cmp.``: ``cells`` gives its values)."""
    seed = re.fullmatch(r"seed(\d+)", what)
    if key.startswith("cmp."):  # a cell of the comparison table
        parts = key.split(".")
        if len(parts) != 5:
            raise SystemExit(f"error: a prose figure cites {key!r}; a comparison cell is cmp.MODEL.TRAINING.PERTURBATION.LEVEL")
        row = Row(key, "", "tolerance_compare", {}, "", "", digits=2 if parts[3] == "test" else 1)
        values = cells(*parts[1:])
    else:
        row = rows.get(key)
        if row is None:
            raise SystemExit(f"error: a prose figure cites row key {key!r}; the keyed rows are {sorted(rows)}")
        records = select(row)
        if seed:
            records = [r for r in records if r.get("seed") == int(seed.group(1))]
        values = figures(row, records)
    s, d = summary(values), row.digits
    if not values:
        return "no record yet"

    def fmt(x: float) -> str:
        return f"{x:,.{d}f}"

    out = {"mean": fmt(s["mean"]), "std": fmt(s["std"]), "se": fmt(s["se"]), "n": f"{s['n']}",
           "mean_std": f"{fmt(s['mean'])} ± {fmt(s['std'])}", "min": fmt(min(values)), "max": fmt(max(values)),
           "median": fmt(statistics.median(values)),
           "gap": f"{(s['mean'] - row.paper) / gap_se(row, s['se']):+.1f}" if row.paper is not None and s["n"] > 1 else "—"}
    if seed and not key.startswith("cmp."):
        out[what] = out["mean"]  # that seed's figure (the mean, should a run have been recorded twice)
    if what not in out:
        raise SystemExit(f"error: a prose figure asks for {what!r} of row {key!r}; use one of {sorted(out)}")
    return out[what]


def update_figures(text: str, rows: dict[str, Row], cells: Cells) -> str:
    """``text`` with every prose figure rewritten from the records (``figure``'s ``rows`` and ``cells``)."""
    return FIG.sub(lambda m: f"<!-- fig:{m.group(1)}:{m.group(2)} -->"
                             f"{figure(m.group(1), m.group(2), rows, cells)}<!-- /fig -->", text)
