"""Start-up: how long each command takes before it does any work (issue 15, section 7), as medians.

1. ``python train.py --help``, ``python eval.py --help``, ``python predict.py --help``: the whole
   process, ``--repeats`` times each (interleaved, so that a drift of the machine's speed touches
   all alike); and for reference the floor any command that trains pays: ``python -c "import
   torch"`` and ``python -c "import lightning"``.
2. The speedrun's start-up: ``python train.py experiment=mnist_speedrun`` per seed (as
   benchmarks/bench_speedrun.py runs it), its ``time/startup_s`` from the run's metrics.json
   (process start to the first training step: imports, config, reading MNIST, building the model
   and the Trainer).

    python benchmarks/bench_startup.py                                   # 5 repeats; speedrun on $DATA_DIR, 3 seeds
    python benchmarks/bench_startup.py --repeats 9 --seeds 1 2 3 4 5
    python benchmarks/bench_startup.py --skip-speedrun
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "train.py --help": [str(ROOT / "train.py"), "--help"],
    "eval.py --help": [str(ROOT / "eval.py"), "--help"],
    "predict.py --help": [str(ROOT / "predict.py"), "--help"],
    'python -c "import torch"': ["-c", "import torch"],
    'python -c "import lightning"': ["-c", "import lightning"],
}


def wall(args: list[str]) -> float:
    """Seconds of one ``python <args>`` process (it must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"python {' '.join(args)} failed:\n{proc.stdout[-1000:]}\n{proc.stderr[-2000:]}")
    return seconds


def speedrun_startups(seeds: list[int], root: str, overrides: list[str]) -> list[float]:
    """``time/startup_s`` of ``train.py experiment=mnist_speedrun`` for each seed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_speedrun import ours

    with tempfile.TemporaryDirectory(prefix="startup_") as tmp:
        return [ours(seed, root, Path(tmp), overrides)["startup"] for seed in seeds]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="runs of each command (the median is printed)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="speedrun seeds")
    p.add_argument("--root", default=os.environ.get("DATA_DIR", "./data"), help="MNIST for the speedrun")
    p.add_argument("--skip-speedrun", action="store_true")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results/startup.jsonl")
    p.add_argument("overrides", nargs="*", help="extra train.py overrides for the speedrun runs")
    args = p.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} (start-up times grow with the load)", flush=True)

    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            times[name].append(wall(cmd))
    print("\n| command | median s | min s | max s | runs |")
    print("| --- | --- | --- | --- | --- |")
    for name, ts in times.items():
        print(f"| `{name}` | {statistics.median(ts):.2f} | {min(ts):.2f} | {max(ts):.2f} | {len(ts)} |")
    startups = [] if args.skip_speedrun else speedrun_startups(args.seeds, str(Path(args.root).resolve()),
                                                              args.overrides)
    if not args.no_record:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from training.records import append_record

        append_record("startup", {"load_average": load, "repeats": args.repeats, "commands_s": times,
                                  "medians_s": {k: statistics.median(v) for k, v in times.items()},
                                  "speedrun_startup_s": startups, "seeds": args.seeds if startups else []})
    if not startups:
        return
    print(f"\nspeedrun start-up (train.py experiment=mnist_speedrun, time/startup_s): median "
          f"{statistics.median(startups):.2f} s over {len(startups)} seeds "
          f"({', '.join(f'{s:.2f}' for s in startups)})")


if __name__ == "__main__":
    main()
