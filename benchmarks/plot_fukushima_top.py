"""Fukushima's top layer drawn from the records: validation accuracy against the number of
reference vectors, one point per top-layer setting (mean over its seeds, bars from the lowest to
the highest seed), with ``intvec_k`` 1 and 4, and issue 27's goal marked (3,000 vectors, 99.0%).

    python benchmarks/plot_fukushima_top.py     # docs/fukushima_top.png from benchmarks/results/fukushima_top.jsonl

It reads the ``ROW`` lines that ``bench_fukushima_top.py`` printed with ``report_fukushima.top_groups``
(``report.py`` generates the table in docs/neocognitron_fukushima.md from the same lines). Every point
is a validation figure: the test split is never read by that benchmark's curve.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # the project (training) and report_fukushima

from report_fukushima import top_groups  # noqa: E402
from training.records import read_records  # noqa: E402

GOAL_REFS, GOAL_ACC = 3000, 99.0  # issue 27 §1 (its accuracy goal is a test figure; drawn for scale)


def points(records: list[dict]) -> list[dict]:
    """One point per setting: its seeds' mean vector count and validation accuracy (%) at k = 1 and
    4, each with the lowest and highest seed; sorted by vector count."""
    out = []
    for key, pairs in top_groups(records).items():
        rows = [row for row, _ in pairs]
        p = {"setting": json.loads(key), "n": len(rows), "refs": statistics.fmean(r["refs"] for r in rows)}
        for k in ("1", "4"):
            accs = [100 * r["val_acc"][k] for r in rows]
            p[k] = (statistics.fmean(accs), min(accs), max(accs))
        out.append(p)
    return sorted(out, key=lambda p: p["refs"])


def plot(pts: list[dict], out: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, marker in (("1", "o"), ("4", "s")):
        xs = [p["refs"] for p in pts]
        ys = [p[k][0] for p in pts]
        err = [[p[k][0] - p[k][1] for p in pts], [p[k][2] - p[k][0] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, fmt=marker, capsize=3, label=f"intvec_k = {k}")
    ax.axvline(GOAL_REFS, color="grey", ls=":", lw=1)
    ax.axhline(GOAL_ACC, color="grey", ls=":", lw=1)
    ax.text(GOAL_REFS, ax.get_ylim()[0], " 3,000 vectors", color="grey", va="bottom", fontsize=8)
    ax.set_xscale("log")
    commas = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}")
    ax.xaxis.set_major_formatter(commas)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(  # 2, 3, 5 of each decade, room for them
        lambda v, _: f"{v:,.0f}" if f"{v:.0e}"[0] in "235" else ""))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("reference vectors in the top layer (mean over seeds)")
    ax.set_ylabel("validation accuracy % (5,000 held out)")
    ax.set_title("Fukushima's top layer: accuracy against size, one point per setting")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "fukushima_top.png"))
    args = ap.parse_args(argv)
    pts = points(read_records("fukushima_top"))
    if not pts:
        raise SystemExit("error: benchmarks/results/fukushima_top.jsonl holds no ROW lines: run "
                         "benchmarks/bench_fukushima_top.py first")
    plot(pts, Path(args.out))
    for p in pts:
        print(f"{p['refs']:8,.0f} vectors  k=1 {p['1'][0]:.2f}%  k=4 {p['4'][0]:.2f}%  (n = {p['n']})  "
              f"{json.dumps(p['setting'], sort_keys=True)}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
