"""What reliability costs on this machine: deterministic algorithms, the divergence guard's weight
check, and write-then-rename checkpoints, each against its baseline measured in the same run
(interleaved repeats, median).

    OMP_NUM_THREADS=1 python benchmarks/bench_reliability.py [--model convnet] [--batch 128] [--repeats 7]

Prints one line per figure. Synthetic uint8 batches of MNIST's shape: no data set needed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from lightning.pytorch.plugins.io import TorchCheckpointIO  # noqa: E402

from training.callbacks import AtomicCheckpointIO, first_non_finite  # noqa: E402
from training.module import Classifier  # noqa: E402


def train_steps(module: Classifier, opt, x, y, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        loss = module.loss(module(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / steps


def _main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="convnet")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()

    torch.manual_seed(0)
    module = Classifier(model=args.model)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    train_steps(module, opt, x, y, 3)  # warm-up

    det = {True: [], False: []}
    for _ in range(args.repeats):
        for flag in (False, True):
            torch.use_deterministic_algorithms(flag)
            det[flag].append(train_steps(module, opt, x, y, args.steps))
    torch.use_deterministic_algorithms(False)
    base, on = statistics.median(det[False]), statistics.median(det[True])
    print(f"training step ({args.model}, batch {args.batch}, {torch.get_num_threads()} thread(s)): "
          f"{base * 1e3:.1f} ms; with deterministic algorithms {on * 1e3:.1f} ms (x{on / base:.3f})")

    guard = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        for _ in range(20):
            assert first_non_finite(module) is None
        guard.append((time.perf_counter() - t) / 20)
    g = statistics.median(guard)
    n = sum(p.numel() for p in module.parameters())
    print(f"divergence guard weight check ({n:,} parameters): {g * 1e3:.2f} ms per step "
          f"= {100 * g / base:.1f}% of a training step (check_weights_every_n_steps=1)")

    ckpt = {"state_dict": module.state_dict(), "optimizer_states": [opt.state_dict()], "global_step": 1}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "last.ckpt"
        times = {"lightning": [], "atomic": []}
        for _ in range(args.repeats):
            for name, io in (("lightning", TorchCheckpointIO()), ("atomic", AtomicCheckpointIO())):
                t = time.perf_counter()
                io.save_checkpoint(ckpt, path)
                times[name].append(time.perf_counter() - t)
        size = path.stat().st_size / 2**20
    a, b = statistics.median(times["lightning"]), statistics.median(times["atomic"])
    print(f"checkpoint save ({size:.1f} MiB): Lightning's TorchCheckpointIO {a * 1e3:.1f} ms, "
          f"AtomicCheckpointIO (same-folder temp file + fsync + rename) {b * 1e3:.1f} ms (x{b / a:.2f}); "
          f"every 200 steps that is {100 * b / (200 * base):.2f}% of training time")


def main():
    """Run the benchmark; what it prints also goes to benchmarks/results/reliability.jsonl."""
    from training.records import run_recorded

    return run_recorded("reliability", _main)


if __name__ == "__main__":
    main()
