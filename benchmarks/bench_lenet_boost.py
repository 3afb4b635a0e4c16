"""Boosted LeNet-4 [LeCun et al. 1998, III.C.9, after Drucker, Schapire & Simard 1993]: three
LeNet-4s whose outputs are summed. The first is trained the usual way; the second on patterns
filtered by the first, half of them ones the first gets wrong and half ones it gets right; the
third on new patterns on which the first two disagree. LeNet-4 errs too rarely on the 60,000
training digits to fill those sets, so, as the paper did, distortions supply more candidates:
round 0 is the training set itself, each later round the whole set distorted afresh
(``training.perturbations.random_affine``), until a set holds ``--patterns`` patterns.

    nice -n 5 python benchmarks/bench_lenet_boost.py --seeds 0 1 2 3 4          # test figures
    nice -n 5 python benchmarks/bench_lenet_boost.py --seeds 0 1 2 --val 5000    # on validation

All the seeds train together, per pattern (``lenet_paper.train_per_sample``). One record per seed
in ``benchmarks/results/lenet.jsonl`` (recipe ``lenet4_boosted``): each net's error, the sum's, and
how many candidates each filtered set took.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lenet_paper import (RECIPES, as_split, distorted_copy, holdout, load_mnist, never_predicted,  # noqa: E402
                         per_sample_records, percent_wrong, prepare, scores, train_per_sample)
from models.sdlm import PAPER_EPOCHS  # noqa: E402


def gather(x: torch.Tensor, y: torch.Tensor, keep, n: int, max_rounds: int, generator: torch.Generator,
           ranges: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The first ``n`` candidates for which ``keep(images, labels)`` (a bool mask) holds, taken in
    order from round 0 (``x`` itself), then rounds of ``x`` wholly distorted afresh; at most
    ``max_rounds`` rounds. Returns (images, labels, candidates examined)."""
    got_x, got_y, have, seen = [], [], 0, 0
    for r in range(max_rounds):
        xc = x if r == 0 else distorted_copy(x, 1.0, generator, ranges)
        idx = keep(xc, y).nonzero().flatten()[: n - have]
        done = have + len(idx) == n
        seen += int(idx[-1]) + 1 if done and len(idx) else len(x)  # this round's candidates looked at
        got_x.append(xc[idx])
        got_y.append(y[idx])
        have += len(idx)
        if have == n:
            break
    return torch.cat(got_x), torch.cat(got_y), seen


def half_wrong(pred: torch.Tensor, y: torch.Tensor, want_wrong: bool) -> torch.Tensor:
    """The filter of the second net: the patterns the first net gets wrong (or right)."""
    return (pred != y) if want_wrong else (pred == y)


def disagree(pred1: torch.Tensor, pred2: torch.Tensor) -> torch.Tensor:
    """The filter of the third net: the patterns on which the first two nets disagree."""
    return pred1 != pred2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=PAPER_EPOCHS)
    ap.add_argument("--patterns", type=int, default=60_000, help="the size of the second and third nets' sets")
    ap.add_argument("--max-rounds", type=int, default=60, help="distorted rounds of the training set, at most")
    ap.add_argument("--set", nargs="*", default=["init=pytorch"], metavar="KEY=VALUE", help="LeNet-4's arguments")
    ap.add_argument("--val", type=int, default=0, metavar="N", help="hold out N training images and score them")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--root", default=os.environ.get("DATA_DIR", "/work/shared/data"))
    ap.add_argument("--no-compile", action="store_true", help="do not torch.compile the per-pattern step")
    ap.add_argument("--state", default=None, metavar="FILE",
                    help="keep each trained net's weights here (and the net in training's passes in FILE.netK) "
                         "and, run again, resume after the last pass kept (the filtered sets are drawn again, "
                         "identically)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    from training.records import append_record, capture_git_state

    capture_git_state()
    torch.set_num_threads(args.threads)
    kwargs = dict(item.partition("=")[::2] for item in args.set)
    recipe = RECIPES["lenet4"]
    data = load_mnist(args.root)
    if args.val:  # the split of bench_lenet.py --val
        data = holdout(data, args.val)
    xtr_u8, ytr, xte_u8, yte = data
    xtr, xte = prepare(xtr_u8, recipe["normalize"], None), prepare(xte_u8, recipe["normalize"], None)
    eval_name = "val" if args.val else "test"
    log = lambda text: print(text, flush=True)  # noqa: E731
    ranges = dict(translate=2.0, scale=0.1, squeeze=0.1, shear=0.2)  # random_affine's defaults
    options = dict(model_kwargs=kwargs, compile=not args.no_compile)
    kept = load_state(args.state, args.seeds, kwargs)

    def train(x, y, tag):
        """The next net of every seed: trained, or as --state kept it."""
        stage = int(tag[-1]) - 1
        if stage < len(kept["nets"]):
            log(f"[{tag}] resumed from {args.state}")
            return [restore(sd, kwargs) for sd in kept["nets"][stage]], None
        passes = f"{args.state}.net{stage + 1}" if args.state else None  # this net's passes so far
        models, curves, train_s = train_per_sample("lenet4", args.seeds, args.epochs, x, y, xte, yte,
                                                   log=lambda s: log(f"[{tag}] {s}"), eval_name=eval_name,
                                                   state_file=passes, **options)
        kept["nets"].append([{k: v.clone() for k, v in m.state_dict().items()} for m in models])
        if args.state:
            torch.save(kept, args.state)
            Path(passes).unlink()
        return models, (curves, train_s)

    gens = [torch.Generator().manual_seed(20_000 + s) for s in args.seeds]
    first, done = train(xtr, ytr, "net 1")
    if done and not args.no_record:  # the first net is LeNet-4 as bench_lenet.py --per-sample trains it
        for r in per_sample_records("lenet4", args.seeds, args.epochs, first, *done, xtr, ytr, xte, yte, options):
            append_record("lenet", as_split(r, args.val, "mnist"))
    half = args.patterns // 2
    sets2 = []
    for net1, g in zip(first, gens):
        pred1 = lambda xc: scores(net1, xc).argmax(1)  # noqa: E731
        xw, yw, seen_w = gather(xtr, ytr, lambda xc, yc: half_wrong(pred1(xc), yc, True), half, args.max_rounds, g, ranges)
        xr, yr, seen_r = gather(xtr, ytr, lambda xc, yc: half_wrong(pred1(xc), yc, False), half, 1, g, ranges)
        sets2.append((torch.cat([xw, xr]), torch.cat([yw, yr]), {"wrong": len(yw), "right": len(yr),
                                                                 "candidates": seen_w}))
        log(f"net 2's set: {len(yw)} the first net gets wrong (of {seen_w:,} candidates), {len(yr)} it gets right")
    m = min(len(s[1]) for s in sets2)  # the seeds train together: equal sets
    second, _ = train(torch.stack([s[0][:m] for s in sets2]), torch.stack([s[1][:m] for s in sets2]), "net 2")
    sets3 = []
    for net1, net2, g in zip(first, second, gens):
        keep = lambda xc, yc: disagree(scores(net1, xc).argmax(1), scores(net2, xc).argmax(1))  # noqa: E731
        x3, y3, seen3 = gather(xtr, ytr, keep, args.patterns, args.max_rounds, g, ranges)
        sets3.append((x3, y3, {"patterns": len(y3), "candidates": seen3}))
        log(f"net 3's set: {len(y3)} patterns the first two disagree on (of {seen3:,} candidates)")
    m3 = min(len(s[1]) for s in sets3)
    third, _ = train(torch.stack([s[0][:m3] for s in sets3]), torch.stack([s[1][:m3] for s in sets3]), "net 3")

    for i, seed in enumerate(args.seeds):
        nets = (first[i], second[i], third[i])
        outs = [scores(net, xte) for net in nets]
        summed = sum(outs).argmax(1)
        r = {"model": "lenet4", "recipe": "lenet4_boosted", "input": "28x28", "seed": seed, "epochs": args.epochs,
             "model_kwargs": kwargs, "batch_size": 1, "per_sample": True, "optimizer": "sdlm", "boosted": True,
             "nets_err": [percent_wrong(o.argmax(1), yte) for o in outs], f"{eval_name}_err": percent_wrong(summed, yte),
             "set2": {**sets2[i][2], "used": m}, "set3": {**sets3[i][2], "used": m3}, "distort_ranges": ranges,
             "never_predicted": never_predicted(summed)}
        if args.val:
            r.update(split="val", val_size=args.val)
        log(str(r))
        if not args.no_record:
            append_record("lenet", r)


def load_state(path: str | None, seeds: list[int], kwargs: dict) -> dict:
    """What ``--state`` kept of an earlier run with the same seeds and arguments (weights only: loaded
    with ``weights_only=True``), else a fresh state."""
    fresh = {"seeds": list(seeds), "model_kwargs": dict(kwargs), "nets": []}
    if not path or not Path(path).exists():
        return fresh
    kept = torch.load(path, map_location="cpu", weights_only=True)
    if kept.get("seeds") != fresh["seeds"] or kept.get("model_kwargs") != fresh["model_kwargs"]:
        raise SystemExit(f"--state {path} was kept for seeds {kept.get('seeds')} and {kept.get('model_kwargs')}, "
                         f"not {seeds} and {kwargs}: give another file, or delete that one")
    return kept


def restore(state_dict: dict, kwargs: dict):
    from models import get_model

    model = get_model("lenet4", **{**RECIPES["lenet4"]["kwargs"], **kwargs})
    model.load_state_dict(state_dict)
    return model

if __name__ == "__main__":
    main()
