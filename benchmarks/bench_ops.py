"""Time the three convolution algorithms of ``models.ops`` and the ``auto`` choice.

For every image side N (32-256) and kernel side M (3-31) it times a forward pass of an
``ops.Conv2d`` layer with ``algorithm`` = ``direct`` (``F.conv2d``), ``scan`` (unfold + one
matrix product), ``fft`` (transform domain) and ``auto`` (picks by the calibrated cost
model), all four sharing one weight, on a batch of B images with C maps in and C maps out,
no padding, stride 1.
Prints a Markdown table (median milliseconds), the crossover kernel side per image side
(the smallest M from which fft beats direct), how far ``auto`` is from the fastest, and
the 128x128 / 31x31 direct-vs-fft ratio.

    python benchmarks/bench_ops.py                    # the full table (a few minutes)
    python benchmarks/bench_ops.py --sides 32 64 --kernels 3 7 --repeats 3
    python benchmarks/bench_ops.py --threads 1 --recalibrate

Timings are medians of interleaved repeats (direct, scan, fft, auto, then scan, fft, auto,
direct, ...) so that load from other processes hits all four alike; big cells get fewer repeats. With
``--threads 1`` (the default here: on a shared 2-core machine a second OpenMP thread mostly
waits for a core) they are the thread's CPU time, which other processes cannot inflate;
``--threads 2 --clock wall`` gives wall-clock times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import ops  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_cell(fns: dict, device: torch.device, budget_s: float, max_repeats: int,
              clock=time.perf_counter) -> dict[str, float]:
    """Median seconds per function.

    Each function first runs once untimed (warm-up; its time sizes its repeats: as many as
    fit in ``budget_s``, at most ``max_repeats``). The repeats are interleaved in an order that
    rotates every round (the first in a round runs measurably faster), and a function
    faster than 20 ms runs once untimed right before each timed run, so that every timed run
    finds the caches as its own previous run left them, whatever ran before it.
    """
    first = {}
    for name, fn in fns.items():
        t0 = clock()
        fn()
        _sync(device)
        first[name] = clock() - t0
    reps = {name: max(1, min(max_repeats, int(budget_s / max(t, 1e-9)))) for name, t in first.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(max(reps.values())):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order
            fn = fns[name]
            if r >= reps[name]:
                continue
            if first[name] < 0.02:
                fn()
                _sync(device)
            t0 = clock()
            fn()
            _sync(device)
            times[name].append(clock() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 7, 11, 15, 21, 31])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--maps", type=int, default=16, help="maps in = maps out")
    parser.add_argument("--repeats", type=int, default=15, help="most repeats per cell")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of repeats per function and cell")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: leave)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--recalibrate", action="store_true", help="re-measure auto's constants")
    parser.add_argument("--clock", choices=["auto", "wall", "cpu"], default="auto",
                        help="cpu: the thread's CPU time (one torch thread only); auto: cpu when "
                             "torch runs one thread on the CPU, else wall")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "cpu" and (device.type != "cpu" or torch.get_num_threads() != 1):
        parser.error("--clock cpu needs --threads 1 on the CPU")
    clock = {"auto": ops.clock_for(device), "wall": time.perf_counter, "cpu": time.thread_time}[args.clock]
    clock_name = "thread CPU time" if clock is time.thread_time else "wall-clock time"
    t0 = time.perf_counter()
    cal = ops.calibrate(device, force=args.recalibrate)
    print(f"device {device} ({ops.auto._device_key(device)}), threads {torch.get_num_threads()}, "
          f"calibration {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k}={['%.3g' % v for v in c]}" for k, c in cal.items()))
    print(f"batch {args.batch}, {args.maps} maps in and out, stride 1, no padding, forward pass, "
          f"median ms of {clock_name}\n")
    print("| N | M | direct | scan | fft | auto (pick) | fastest | auto / fastest | pick / fastest "
          "| model alone (/ fastest) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n in args.sides:
            for m in args.kernels:
                if m > n:
                    continue
                x = torch.randn(args.batch, args.maps, n, n, generator=gen).to(device)
                # four layers sharing one weight and bias, so all four columns take the same path
                layer = ops.Conv2d(args.maps, args.maps, m, algorithm="auto").to(device)
                w = layer.weight
                fns = {}
                for alg in (*ops.ALGORITHMS, "auto"):
                    lay = ops.Conv2d(args.maps, args.maps, m, algorithm=alg).to(device)
                    lay.weight, lay.bias = layer.weight, layer.bias
                    fns[alg] = lay
                layer = fns["auto"]
                layer(x)  # auto's one-off choice (maybe a timing) happens here, not in the table
                t = time_cell({alg: (lambda lay=lay: lay(x)) for alg, lay in fns.items()},
                              device, args.budget, args.repeats, clock)
                pick = layer.chosen_algorithm(x)
                if len(ops.auto_candidates(x.shape, w.shape, calibration=cal)) > 1:
                    pick += ", timed"  # in the crossover band: decided by one timing
                model = ops.choose_algorithm(x.shape, w.shape, calibration=cal)  # the model alone
                best = min(("direct", "scan", "fft"), key=t.get)
                ratio = t["auto"] / t[best]
                pick_ratio = t[pick.split(",")[0]] / t[best]
                model_ratio = t[model] / t[best]
                rows.append((n, m, t, pick, best, ratio, pick_ratio, model, model_ratio))
                print(f"| {n} | {m} | {t['direct'] * 1e3:.2f} | {t['scan'] * 1e3:.2f} | "
                      f"{t['fft'] * 1e3:.2f} | {t['auto'] * 1e3:.2f} ({pick}) | {best} | {ratio:.2f} | "
                      f"{pick_ratio:.2f} | {model} ({model_ratio:.2f}) |", flush=True)
    print()
    for n in args.sides:
        cells = [(m, t) for nn_, m, t, *_ in rows if nn_ == n]
        wins = [m for m, tt in cells if tt["fft"] < tt["direct"]]
        print(f"crossover N={n}: fft beats direct from M = {wins[0] if wins else 'never (in this range)'}"
              f" (fft faster for M in {wins})")
    worst = max(rows, key=lambda r: r[5])
    within = sum(r[5] <= 1.10 for r in rows)
    print(f"auto (as timed) within 10% of the fastest in {within}/{len(rows)} cells "
          f"(worst {worst[5]:.2f} at N={worst[0]}, M={worst[1]}: picked {worst[3]}, fastest {worst[4]})")
    worst = max(rows, key=lambda r: r[6])
    within = sum(r[6] <= 1.10 for r in rows)
    print(f"auto's pick (its column's time) within 10% of the fastest in {within}/{len(rows)} cells "
          f"(worst {worst[6]:.2f} at N={worst[0]}, M={worst[1]}: picked {worst[3]}, fastest {worst[4]})")
    within = sum(r[8] <= 1.10 for r in rows)
    print(f"the cost model alone (AUTO_MARGIN = 1) within 10% of the fastest in {within}/{len(rows)} cells")
    goal = [r for r in rows if r[0] == 128 and r[1] == 31]
    if goal and args.batch == 8 and args.maps == 16:
        t = goal[0][2]
        print(f"128x128 image, 31x31 kernel, batch 8, 16->16 maps: direct {t['direct'] * 1e3:.1f} ms, "
              f"fft {t['fft'] * 1e3:.1f} ms, fft is {t['direct'] / t['fft']:.1f}x faster")


def main(argv: list[str] | None = None):
    """Run the benchmark; what it prints also goes to benchmarks/results/ops.jsonl."""
    from training.records import run_recorded

    return run_recorded("ops", _main, argv)


if __name__ == "__main__":
    main()
