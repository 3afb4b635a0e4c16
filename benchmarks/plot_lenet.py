"""The LeNet paper's Figs. 5 and 6 redrawn from the records: LeNet-5's training and test error
after each pass [LeCun et al. 1998, Fig. 5], and against the size of the training set (Fig. 6), the
mean over seeds with the range, with and without distortions.

    python benchmarks/plot_lenet.py     # docs/lenet_fig5.png, docs/lenet_fig6.png from benchmarks/results/lenet.jsonl

It reads the test runs of ``bench_lenet.py --models lenet5 --train-curve`` (the records whose
per-pass ``curve`` holds the training error) and prints which lines it drew. The paper quotes
0.95% test error after 20 passes (0.8% with distortions); its curves are not tabulated, so only
those end points are drawn beside ours. Fig. 6 reads the test runs of LeNet-5 as published (batches
of 16, SDLM x4, 20 passes) on all 60,000 digits and on part of them (``bench_lenet.py --train-size N``,
the same 20 passes), with and without ``--distort``; the paper's own points besides 60,000 are not
tabulated either.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.records import read_records  # noqa: E402

PAPER_END = {"without distortions": 0.95, "with distortions": 0.8}  # [1998] III.C, test error % after 20 passes


def fig5_groups(records: list[dict]) -> dict[str, list[dict]]:
    """LeNet-5's traceable test records with a per-pass training error, by distortion."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        curve = r.get("curve") or []
        if (r.get("model") == "lenet5" and r.get("recipe", "lenet5") == "lenet5" and "split" not in r
                and r.get("command") and curve and all("train_err" in p and "test_err" in p for p in curve)):
            groups.setdefault("with distortions" if r.get("distort") else "without distortions", []).append(r)
    return groups


FULL_SIZE = 60_000


def fig6_groups(records: list[dict]) -> dict[str, dict[int, list[dict]]]:
    """LeNet-5 as published, traceable test records, by distortion and training-set size."""
    groups: dict[str, dict[int, list[dict]]] = {}
    for r in records:
        if (r.get("model") == "lenet5" and r.get("recipe", "lenet5") == "lenet5" and "split" not in r
                and r.get("command") and r.get("batch_size") == 16 and r.get("step_scale") == 4
                and r.get("epochs") == 20 and r.get("model_kwargs") == {} and not r.get("per_sample")
                and "test_err" in r and "train_err" in r):
            label = "with distortions" if r.get("distort") else "without distortions"
            groups.setdefault(label, {}).setdefault(r.get("train_size", FULL_SIZE), []).append(r)
    return groups


def plot_fig6(groups: dict[str, dict[int, list[dict]]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    for (label, by_size), colour in zip(sorted(groups.items(), reverse=True), ("C0", "C3")):
        sizes = sorted(by_size)
        for what, style in (("test_err", "-o"), ("train_err", "--s")):
            ys = [[r[what] for r in by_size[n]] for n in sizes]
            mean = [statistics.fmean(y) for y in ys]
            ax.errorbar([n / 1000 for n in sizes], mean, yerr=[[m - min(y) for m, y in zip(mean, ys)],
                                                                [max(y) - m for m, y in zip(mean, ys)]],
                        fmt=style, color=colour, capsize=3, markersize=4,
                        label=f"{what.split('_')[0]}, {label} (n = {'/'.join(str(len(y)) for y in ys)})")
        ax.plot([FULL_SIZE / 1000], [PAPER_END[label]], "*", color=colour, markersize=12,
                label=f"the paper's test error, {label}")
    ax.set_xlabel("training-set size (thousands of digits), 20 passes each")
    ax.set_ylabel("error (%)")
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("LeNet-5: error against training-set size (the paper's Fig. 6)", fontsize=10)
    fig.savefig(path, dpi=100)


def plot_fig5(groups: dict[str, list[dict]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    for (label, rs), colour in zip(sorted(groups.items(), reverse=True), ("C0", "C3")):
        passes = range(1, min(len(r["curve"]) for r in rs) + 1)
        for what, style in (("test_err", "-"), ("train_err", "--")):
            ys = [[r["curve"][p - 1][what] for r in rs] for p in passes]
            ax.plot(list(passes), [statistics.fmean(y) for y in ys], style, color=colour,
                    label=f"{what.split('_')[0]}, {label} (n = {len(rs)})")
            ax.fill_between(list(passes), [min(y) for y in ys], [max(y) for y in ys], color=colour, alpha=0.12)
        ax.plot([20], [PAPER_END[label]], "*", color=colour, markersize=12, label=f"the paper's test error, {label}")
    ax.set_xlabel("passes through the 60,000 training digits")
    ax.set_ylabel("error (%)")
    ax.set_ylim(0, 3)
    ax.set_xticks(range(0, 21, 2))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("LeNet-5: training and test error against passes (the paper's Fig. 5)", fontsize=10)
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "lenet_fig5.png"))
    ap.add_argument("--out6", default=str(ROOT / "docs" / "lenet_fig6.png"))
    args = ap.parse_args(argv)
    records = read_records("lenet")
    groups, groups6 = fig5_groups(records), fig6_groups(records)
    if not groups:
        print("no LeNet-5 test record with a per-pass training error yet: run bench_lenet.py --models lenet5 "
              "--train-curve", file=sys.stderr)
        return 1
    plot_fig5(groups, Path(args.out))
    for label, rs in sorted(groups.items()):
        print(f"Fig. 5, {label}: lenet.jsonl lines {', '.join(str(r['_line']) for r in rs)}")
    print(f"wrote {args.out}")
    if any(len(by_size) > 1 for by_size in groups6.values()):
        plot_fig6(groups6, Path(args.out6))
        for label, by_size in sorted(groups6.items()):
            for n, rs in sorted(by_size.items()):
                print(f"Fig. 6, {label}, {n:,} digits: lenet.jsonl lines {', '.join(str(r['_line']) for r in rs)}")
        print(f"wrote {args.out6}")
    else:
        print("Fig. 6: no LeNet-5 test record on part of the training set yet (bench_lenet.py --train-size N)",
              file=sys.stderr)
    return 0

if __name__ == "__main__":
    sys.exit(main())
