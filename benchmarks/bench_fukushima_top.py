"""Fukushima's top layer (US4): reference vectors against validation accuracy, and recognition time.

    nice -n 5 python benchmarks/bench_fukushima_top.py --seeds 0 1 2            # the curve (validation)
    python benchmarks/bench_fukushima_top.py --seeds 0 --settings '[{"margin": 0.0, "reinforce": true}]'
    python benchmarks/bench_fukushima_top.py --seeds 0 1 2 --lower '{"thetas": [0.5, 0.5, 0.5]}' --settings '[{}]'
    python benchmarks/bench_fukushima_top.py --speed '{"margin": 0.0, "reinforce": true}'  # 10,000 test digits

For each seed the network's lower layers learn as train.py's would (US2, US3 by Add-if-Silent from
the first 10,000 of the 55,000 training images left after holding out 5,000, train.py's
``data.val_size=5000`` split with ``data.split_seed=0``); UC3's output is computed once for the
training and the validation images; then each top-layer setting (``--settings``, model kwargs
over the defaults; default: the grid below) learns from those features through the network's own
``learn_top_layer`` / ``learning_epoch_end``, its passes in a new shuffled order each (seeded by
the seed), in batches of 250, as train.py drives it. Each setting prints one ``ROW {json}`` line:
vectors, checkpoint megabytes of the vectors, validation accuracy with ``intvec_k`` 1 and 4.
The test split is not read, except by ``--speed``, which times (never scores) the recognition of
the 10,000 test digits by the whole network with today's default top and with the given one, in
the same run, median of ``--repeats``. What it prints goes to benchmarks/results/fukushima_top.jsonl;
docs/neocognitron_fukushima.md's curve is generated from it by benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import models  # noqa: E402
from benchmarks.bench_neocognitron import load_mnist, unit  # noqa: E402

BS = 250
# The curve: the papers' means one at a time and together (margin: 2018; reinforce: SCL 2003;
# adjust_epochs: the adjusting phase of 2007, here LVQ2.1).
T5 = {"thetas_learn": [0.75, 0.7, 0.5]}  # a top cell is silent below cosine 0.5: few patterns are
GRID = [
    {}, {"margin": 0.02}, {"margin": 0.0}, {"margin": 0.0, **T5},
    {"margin": 0.0, "reinforce": True, **T5}, {"margin": 0.0, "reinforce": True, "top_epochs": 3, **T5},
    {"margin": 0.0, "reinforce": True, "adjust_epochs": 4, "adjust_rate": 0.1, **T5},
    {"margin": 0.0, "reinforce": True, "top_epochs": 3, "adjust_epochs": 4, "adjust_rate": 0.1, **T5},
    {"margin": 0.01, "reinforce": True, "adjust_epochs": 4, "adjust_rate": 0.1, **T5},
]


@torch.no_grad()
def lower_layers(xtr, ytr, seed: int, lower: dict | None = None):
    """The network with US2 and US3 learned (phases 0 and 1), as train.py's first two epochs;
    ``lower``: model kwargs over the defaults for these layers (``--lower``)."""
    torch.manual_seed(seed)
    net = models.get_model("neocognitron_fukushima", **(lower or {}))
    for _ in range(2):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), BS):
            idx = perm[i:i + BS]
            net.learn(unit(xtr[idx]), ytr[idx])
        net.learning_epoch_end()
    return net


@torch.no_grad()
def features(net, x_u8) -> torch.Tensor:
    return torch.cat([net.top_features(unit(x_u8[i:i + 500])) for i in range(0, len(x_u8), 500)])


@torch.no_grad()
def learn_top(lower, setting: dict, ftr, ytr, seed: int, lower_kwargs: dict | None = None):
    """A network with ``lower``'s US2/US3 and a top layer learned with ``setting`` from features."""
    net = models.get_model("neocognitron_fukushima", **{**(lower_kwargs or {}), **setting})
    net.load_state_dict(lower.state_dict())
    gen = torch.Generator().manual_seed(seed)
    while not net.done_learning:
        perm = torch.randperm(len(ftr), generator=gen)
        for i in range(0, len(ftr), BS):
            idx = perm[i:i + BS]
            net.learn_top_layer(ftr[idx], ytr[idx])
        net.learning_epoch_end()
    return net


@torch.no_grad()
def accuracy(net, f, y, k: int) -> float:
    net.intvec_k = k
    pred = torch.cat([net.class_similarity(f[i:i + 500]).argmax(1) for i in range(0, len(f), 500)])
    return (pred == y).float().mean().item()


def curve(args, log) -> None:
    xtr, ytr, _, _ = load_mnist(args.root)
    perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(0))  # train.py's split_seed 0
    val, rest = perm[:5000], perm[5000:]
    settings = json.loads(args.settings) if args.settings else GRID
    lower_kwargs = args.lower
    for seed in args.seeds:
        t0 = time.perf_counter()
        lower = lower_layers(xtr[rest], ytr[rest], seed, lower_kwargs)
        ftr, fva = features(lower, xtr[rest]), features(lower, xtr[val])
        log(f"seed {seed}: US2 {lower.us2.planes} planes, US3 {lower.us3.planes}, {ftr.shape[1]} values per "
            f"vector; lower layers and features {time.perf_counter() - t0:.0f} s")
        for setting in settings:
            t0 = time.perf_counter()
            net = learn_top(lower, setting, ftr, ytr[rest], seed, lower_kwargs)
            row = {"seed": seed, "setting": {**lower_kwargs, **setting}, "refs": net.refs.shape[0],
                   "refs_mb": round(net.refs.numel() * net.refs.element_size() / 2**20, 2),
                   "val_acc": {str(k): round(accuracy(net, fva, ytr[val], k), 4) for k in (1, 4)},
                   "learn_s": round(time.perf_counter() - t0, 1)}
            log("ROW " + json.dumps(row))


def speed(args, log) -> None:
    """Recognition of the test digits by the whole network, today's default top against ``--speed``'s."""
    xtr, ytr, xte, _ = load_mnist(args.root)
    perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(0))
    rest = perm[5000:]
    lower_kwargs = args.lower
    lower = lower_layers(xtr[rest], ytr[rest], 0, lower_kwargs)
    ftr = features(lower, xtr[rest])
    nets = {"today's default": learn_top(lower, {}, ftr, ytr[rest], 0, lower_kwargs),
            "compact": learn_top(lower, json.loads(args.speed), ftr, ytr[rest], 0, lower_kwargs)}
    x = unit(xte)
    times: dict[str, list[float]] = {name: [] for name in nets}
    top: dict[str, list[float]] = {name: [] for name in nets}
    fte = features(lower, xte)
    for _ in range(args.repeats):  # alternate, so that a slow spell of the machine hits both
        for name, net in nets.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                for i in range(0, len(x), 500):
                    net(x[i:i + 500])
            times[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with torch.no_grad():
                for i in range(0, len(fte), 500):
                    net.class_similarity(fte[i:i + 500])
            top[name].append(time.perf_counter() - t0)
    med = {n: statistics.median(t) for n, t in times.items()}
    med_top = {n: statistics.median(t) for n, t in top.items()}
    for name, net in nets.items():
        log(f"{name:16s} {net.refs.shape[0]:6d} vectors (k={net.intvec_k}): whole network {med[name]:6.2f} s, "
            f"top layer alone {med_top[name]:6.2f} s for {len(x)} test digits (median of {args.repeats})")
    a, b = nets
    log(f"speed-up: whole network {med[a] / med[b]:.2f}x, top layer {med_top[a] / med_top[b]:.2f}x "
        f"(load average {os.getloadavg()[0]:.2f})")


def _main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=os.environ.get("DATA_DIR", "/work/shared/data"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--settings", help="JSON list of top-layer settings (model kwargs); default: the grid")
    p.add_argument("--lower", metavar="KWARGS", type=json.loads, default={}, help="JSON model kwargs over the defaults for US1-US3 too "
                   "(e.g. '{\"thetas\": [0.5, 0.5, 0.5]}'); each row's setting then includes them")
    p.add_argument("--speed", metavar="SETTING", help="instead: time recognition, today's top against this one")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda s: print(s, flush=True)  # noqa: E731
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    (speed if args.speed else curve)(args, log)


def main(argv=None):
    from training.records import run_recorded

    return run_recorded("fukushima_top", _main, argv)


if __name__ == "__main__":
    main()
