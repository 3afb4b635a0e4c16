"""MNIST test accuracy and training time of both Neocognitrons, side by side.

    nice -n 5 python benchmarks/bench_neocognitron.py                 # both networks
    nice -n 5 python benchmarks/bench_neocognitron.py --only fukushima --train-limit 10000
    python benchmarks/bench_neocognitron.py --train-limit 10000 --probe 2 3   # what UC2, UC3 keep
    python benchmarks/bench_neocognitron.py --only fukushima --val 5000 --train-limit 20000 \
        --fukushima-kwargs '{"frozen_ais": false}'     # choose settings on validation, not on test
    python benchmarks/bench_neocognitron.py --only fukushima --val 5000 --test-limit 2000 \
        --augment 2 --shifts 2 4 --json out.json       # + tolerance to shifts, learning from shifted digits

A plain PyTorch loop (no Lightning), so the figures do not depend on the harness: MNIST is read
once with torchvision's reader into uint8 tensors (``--root``, default ``$DATA_DIR`` or
``/work/shared/data``) and normalised by whole batches. The supervised network is trained by
AdamW + OneCycle; the self-organising one by its own ``learn`` / ``learning_epoch_end``
protocol, exactly as the Lightning Classifier drives it (one pass per learning phase).
``--val N`` holds out N training images, the validation split train.py makes with
``data.val_size=N`` (``data.split_seed``: ``--split-seed``, default 0), learns from the rest
(the first ``--train-limit`` of them) and scores the held-out images instead of the test split,
which is then not read. ``--augment P`` lets the network learn from training images shifted at
random by up to P pixels (train.py's ``data.augment=true data.crop_padding=P``: a new draw per
pass, seeded by ``--seed``); ``--shifts D ...`` also scores the evaluation images shifted by D
pixels (the mean over the 8 directions, as ``bench_tolerance.py`` does); ``--json FILE`` writes
the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import models  # noqa: E402

MEAN, STD = 0.1307, 0.3081


def load_mnist(root: str):
    from torchvision.datasets import MNIST

    tr, te = MNIST(root, train=True, download=False), MNIST(root, train=False, download=False)
    return tr.data, tr.targets, te.data, te.targets


def standard(x_u8: torch.Tensor) -> torch.Tensor:
    return (x_u8.float().unsqueeze(1) / 255.0 - MEAN) / STD


def unit(x_u8: torch.Tensor) -> torch.Tensor:
    return x_u8.float().unsqueeze(1) / 255.0


@torch.no_grad()
def accuracy(net, x_u8, y, norm, bs=1000) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(x_u8), bs):
        correct += (net(norm(x_u8[i:i + bs])).argmax(1) == y[i:i + bs]).sum().item()
    return correct / len(x_u8)


def bench_supervised(xtr, ytr, xte, yte, epochs: int, bs: int, lr: float, seed: int, log):
    torch.manual_seed(seed)
    net = models.get_model("neocognitron")
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(xtr) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.perf_counter()
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(net(standard(xtr[idx])), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log(f"  supervised epoch {ep + 1}/{epochs}: last loss {loss.item():.4f}, "
            f"{time.perf_counter() - t0:.0f} s")
    train_s = time.perf_counter() - t0
    return accuracy(net, xte, yte, standard), train_s, net


@torch.no_grad()
def shifted_accuracy(net, x_u8, y, norm, d: int) -> float:
    """Mean accuracy over the 8 shifts by ``d`` pixels (background 0 coming in)."""
    from training.perturbations import mean_over_shifts

    return mean_over_shifts(lambda x: accuracy(net, x[:, 0], y, norm, bs=500), x_u8.unsqueeze(1), d)


def bench_fukushima(xtr, ytr, xte, yte, bs: int, log, split: str = "test", augment: int = 0, seed: int = 0, **kw):
    from training.data import random_crop_flip

    net = models.get_model("neocognitron_fukushima", **kw)
    torch.manual_seed(seed)
    t0, spent = time.perf_counter(), 0.0
    while not net.done_learning:
        phase = net.phase_name
        for i in range(0, len(xtr), bs):
            x = unit(xtr[i:i + bs])
            net.learn(random_crop_flip(x, augment, False) if augment else x, ytr[i:i + bs])
        stats = net.learning_epoch_end()
        spent += time.perf_counter() - t0
        log(f"  fukushima phase {phase}: { {k: round(v, 4) for k, v in stats.items()} } "
            f"(training time so far {spent:.0f} s)")
        if phase.startswith("US4"):  # accuracy after each top pass (not counted as training)
            acc = accuracy(net, xte, yte, unit, bs=500)
            k = net.intvec_k
            net.intvec_k = 1
            acc1 = accuracy(net, xte, yte, unit, bs=500)
            net.intvec_k = k
            log(f"  {split} accuracy after {phase}: {100 * acc:.2f}% (interpolating vectors, k={k}), "
                f"{100 * acc1:.2f}% (plain winner-take-all)")
        t0 = time.perf_counter()
    return acc, spent, net


@torch.no_grad()
def probe_layers(xtr, ytr, xte, yte, layers, bs: int, log, split: str = "test", **kw):
    """What each layer's output is worth, apart from the top rule: US2 and US3 learn as usual,
    then every training image's UC1/UC2/UC3 output (flattened, unit length) is stored as a
    labelled reference vector and the test images are classified by the interpolating-vector
    rule (k = 1: nearest vector; k = 4: the default)."""
    net = models.get_model("neocognitron_fukushima", **kw)
    for _ in range(max(0, min(2, max(layers) - 1))):
        for i in range(0, len(xtr), bs):
            net.learn(unit(xtr[i:i + bs]), ytr[i:i + bs])
        net.learning_epoch_end()

    def feats(x, layer):  # layer 0: the raw pixels (U0), a nearest-neighbour memory with no S/C stage
        out = [(net.preprocess(unit(x[i:i + 500])) if layer == 0 else net.layers_upto(unit(x[i:i + 500]), layer))
               .flatten(1) for i in range(0, len(x), 500)]
        return F.normalize(torch.cat(out), dim=1)

    for layer in layers:
        net.refs, net.ref_labels = feats(xtr, layer), ytr
        fte = feats(xte, layer)
        accs = []
        for k in (1, 4):
            net.intvec_k = k
            pred = torch.cat([net.class_similarity(fte[i:i + 500]).argmax(1) for i in range(0, len(fte), 500)])
            accs.append(100 * (pred == yte).float().mean().item())
        log(f"  {f'UC{layer}' if layer else 'U0 (pixels)'} ({net.refs.shape[1]} values; US2 {net.us2.planes} planes, US3 {net.us3.planes}): "
            f"all {len(ytr)} training images stored, {split} {accs[0]:.2f}% (k=1), {accs[1]:.2f}% (k=4)")


def _main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=os.environ.get("DATA_DIR", "/work/shared/data"))
    p.add_argument("--only", choices=["supervised", "fukushima"], default=None)
    p.add_argument("--epochs", type=int, default=4, help="supervised epochs")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--train-limit", type=int, default=None, help="use the first N training images")
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--val", type=int, default=0, metavar="N",
                   help="hold out N training images (train.py's split with data.val_size=N, data.split_seed), "
                        "learn from the rest and score those instead of the test split")
    p.add_argument("--split-seed", type=int, default=0, help="with --val: train.py's data.split_seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 is faster on a busy machine)")
    p.add_argument("--fukushima-kwargs", default="{}", help="JSON overrides of the Fukushima builder's kwargs")
    p.add_argument("--augment", type=int, default=0, metavar="P",
                   help="Fukushima: learn from training images shifted at random by up to P px (default 0)")
    p.add_argument("--shifts", type=int, nargs="+", default=[], metavar="D",
                   help="also score the evaluation images shifted by D px (mean of 8 directions)")
    p.add_argument("--json", help="write the figures (accuracies as fractions) to this file")
    p.add_argument("--probe", type=int, nargs="+", choices=[0, 1, 2, 3], default=None,
                   help="instead: store every training image's UC<n> output (0: the raw pixels) and score the "
                        "evaluation set with the top rule (a layer probe)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda s: print(s, flush=True)  # noqa: E731
    xtr, ytr, xte, yte = load_mnist(args.root)
    split = "val" if args.val else "test"
    if args.val:  # the validation split of training.data: the test split is not read
        perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(args.split_seed))
        val, rest = perm[:args.val], perm[args.val:]
        xtr, ytr, xte, yte = xtr[rest], ytr[rest], xtr[val], ytr[val]
    if args.train_limit:
        xtr, ytr = xtr[:args.train_limit], ytr[:args.train_limit]
    if args.test_limit:
        xte, yte = xte[:args.test_limit], yte[:args.test_limit]
    log(f"MNIST: {len(xtr)} train / {len(xte)} {split} images; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    if args.probe:
        probe_layers(xtr, ytr, xte, yte, args.probe, 250, log, split, **json.loads(args.fukushima_kwargs))
        return
    rows, figures = [], {}
    if args.only in (None, "supervised"):
        acc, t, net = bench_supervised(xtr, ytr, xte, yte, args.epochs, args.bs, args.lr, args.seed, log)
        n_par = sum(p.numel() for p in net.parameters())
        rows.append(("neocognitron (backprop)", acc, t, f"{n_par} params, {args.epochs} epochs", net, standard))
    if args.only in (None, "fukushima"):
        acc, t, net = bench_fukushima(xtr, ytr, xte, yte, 250, log, split, args.augment, args.seed,
                                      **json.loads(args.fukushima_kwargs))
        note = net.describe() + (f"; learned from shifts of up to {args.augment} px" if args.augment else "")
        rows.append(("neocognitron_fukushima (self-organised)", acc, t, note, net, unit))
    for name, acc, t, note, net, norm in rows:
        shifted = {d: shifted_accuracy(net, xte, yte, norm, d) for d in args.shifts}
        figures[name.split()[0]] = {"split": split, "images": len(yte), "train_s": t, "notes": note,
                                    "shift": {"0": acc, **{str(d): a for d, a in shifted.items()}}}
    log(f"load average at the end {os.getloadavg()[0]:.2f}")
    cols = "".join(f" {f'{d} px':>8s}" for d in args.shifts)
    log(f"{'model':42s} {split + ' acc':>9s}{cols} {'train s':>8s}  notes")
    for (name, acc, t, note, _, _), fig in zip(rows, figures.values()):
        cells = "".join(f" {100 * fig['shift'][str(d)]:7.2f}%" for d in args.shifts)
        log(f"{name:42s} {100 * acc:8.2f}%{cells} {t:8.0f}  {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


def main(argv=None):
    """Run the benchmark; what it prints also goes to benchmarks/results/neocognitron.jsonl."""
    from training.records import run_recorded

    return run_recorded("neocognitron", _main, argv)


if __name__ == "__main__":
    main()
