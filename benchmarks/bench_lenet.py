"""Reproduce the LeNet papers' MNIST test errors and print them beside the papers' figures.

Plain PyTorch (no Lightning), so the figures measure the networks and the optimiser, not the
harness. MNIST is read once into tensors from torchvision's raw IDX files; batches are
normalised as whole tensors. Each run trains on the 60,000 training images and reports the
error on the 10,000 test images after the last pass (no model selection on the test set).

    # LeNet-5 as published (SDLM, the paper's 20-pass schedule), 3 seeds:
    nice -n 5 python benchmarks/bench_lenet.py --models lenet5 --seeds 0 1 2 --out runs/lenet.jsonl
    # the rest of the family, and the table from everything recorded so far:
    nice -n 5 python benchmarks/bench_lenet.py --models lenet1 lenet4 lenet1989 --out runs/lenet.jsonl
    python benchmarks/bench_lenet.py --summarize runs/lenet.jsonl

Recipes (``RECIPES``): the published networks use SDLM (mu = 0.02, Hessian diagonal
re-estimated on 500 training samples before every pass, eta schedule 0.0005 x2, 0.0002 x3,
0.0001 x3, 0.00005 x4, then 0.00001; 20 passes) with mini-batches of 16 and the step
multiplied by 4 (SDLM step_scale; see models/sdlm.py). ``lenet5_modern`` uses AdamW. The recipes,
the data, scoring and the per-pattern trainer are in ``lenet_paper.py`` (re-exported here).
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
import torch.nn.functional as F

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # models; lenet_paper

from models import get_model  # noqa: E402
from models.sdlm import PAPER_EPOCHS, PAPER_HESSIAN_SAMPLES, SDLM, PiecewiseConstantLR  # noqa: E402
from lenet_paper import (PAPER_DISTORTED_FRACTION, PAPER_ERROR, RECIPES, as_split,  # noqa: E402,F401
                         distorted_copy, error_rate, holdout, input_of, load_mnist, never_predicted,
                         per_sample_records, percent_wrong, predict, prepare, run_per_sample, scores,
                         train_per_sample, zip1989_subset)


def run(name: str, seed: int, epochs: int, data, log=print, batch_size: int | None = None,
        step_scale: float | None = None, model_kwargs: dict | None = None, eval_name: str = "test",
        distort: dict | None = None, train_curve: bool = False) -> dict:
    recipe = RECIPES[name]
    bs = batch_size or recipe["batch_size"]
    step_scale = step_scale or recipe.get("step_scale")
    xtr_u8, ytr, xte_u8, yte = data
    xtr = prepare(xtr_u8, recipe["normalize"], recipe["resize"], recipe.get("center"))
    xte = prepare(xte_u8, recipe["normalize"], recipe["resize"], recipe.get("center"))
    torch.manual_seed(seed)
    kwargs = {**recipe["kwargs"], **(model_kwargs or {})}
    model = get_model(recipe.get("model", name), **kwargs)
    loss_fn = getattr(model, "loss", F.cross_entropy)
    if recipe["optimizer"] == "sdlm":
        opt = SDLM(model.parameters(), step_scale=step_scale)
        sched = PiecewiseConstantLR(opt)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    g = torch.Generator().manual_seed(seed)
    distort_gen = torch.Generator().manual_seed(10_000 + seed)
    curve: list[dict] = []  # per pass: the paper's Fig. 5
    t0 = time.perf_counter()
    for epoch in range(epochs):
        if isinstance(opt, SDLM):
            idx = torch.randperm(len(xtr), generator=g)[:PAPER_HESSIAN_SAMPLES]
            opt.estimate_hessian(model, loss_fn, xtr[idx], ytr[idx])
        perm = torch.randperm(len(xtr), generator=g)
        xs = xtr
        if distort:  # as train_per_sample: fresh distortions each pass
            xs = distorted_copy(xtr, distort["fraction"], distort_gen, {k: v for k, v in distort.items() if k != "fraction"})
        total, n = 0.0, 0
        for i in range(0, len(xtr), bs):
            b = perm[i:i + bs]
            loss = loss_fn(model(xs[b]), ytr[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
            n += len(b)
        sched.step()
        if not torch.isfinite(torch.tensor(total)):
            raise RuntimeError(f"{name} seed {seed}: loss diverged at epoch {epoch}")
        point = {"pass": epoch + 1, "train_loss": total / n, f"{eval_name}_err": error_rate(model, xte, yte)}
        if train_curve:
            point["train_err"] = error_rate(model, xtr, ytr)
        curve.append(point)
        log(f"{name} seed={seed} epoch={epoch + 1}/{epochs} train_loss={total / n:.4f} "
            f"{eval_name}_err={point[f'{eval_name}_err']:.2f}%"
            + (f" train_err={point['train_err']:.2f}%" if train_curve else "")
            + f" elapsed={time.perf_counter() - t0:.0f}s")
    train_s = time.perf_counter() - t0
    pred_tr = predict(model, xtr)  # once, for the training error and the classes never predicted
    return dict(model=recipe.get("model", name), recipe=name, input=input_of(recipe), seed=seed, epochs=epochs,
                model_kwargs=model_kwargs or {}, batch_size=bs,
                optimizer=recipe["optimizer"], step_scale=step_scale,
                params=sum(p.numel() for p in model.parameters()),
                train_err=percent_wrong(pred_tr, ytr), test_err=error_rate(model, xte, yte), train_s=train_s,
                threads=torch.get_num_threads(), never_predicted=never_predicted(pred_tr), curve=curve,
                **({"distort": distort} if distort else {}))




def summarize(path: str) -> str:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by = {}
    for r in rows:
        by.setdefault((r["model"], r["epochs"], r["optimizer"], r["batch_size"], r.get("step_scale")), []).append(r)
    out = ["| model | params | paper test error | measured test error (mean ± std, seeds) | train error | "
           "epochs | optimiser (batch, step scale) | train time / run (CPU threads) |",
           "|---|---|---|---|---|---|---|---|"]
    for (m, ep, optn, bs, scale), rs in sorted(by.items(), key=lambda kv: str(kv[0])):
        errs = [r["test_err"] for r in rs]
        sd = statistics.stdev(errs) if len(errs) > 1 else 0.0
        paper = PAPER_ERROR.get(m)
        out.append(
            f"| {m} | {rs[0]['params']:,} | {'—' if paper is None else f'{paper:.2f}%'} | "
            f"{statistics.mean(errs):.2f}% ± {sd:.2f} (n={len(errs)}: {', '.join(f'{e:.2f}' for e in errs)}) | "
            f"{statistics.mean(r['train_err'] for r in rs):.2f}% | {ep} | {optn} ({bs}{f', x{scale:g}' if scale else ''}) | "
            f"{statistics.mean(r['train_s'] for r in rs) / 60:.1f} min ({rs[0]['threads']}) |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["lenet5"], choices=sorted(RECIPES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=PAPER_EPOCHS)
    ap.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    ap.add_argument("--step-scale", type=float, default=None, help="override the recipe's SDLM step_scale")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="model keyword arguments, e.g. --set init=lecun (values parsed as JSON when they can be)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--root", default=os.environ.get("DATA_DIR", "/work/shared/data"))
    ap.add_argument("--out", default=None, help="also append one JSON line per run to this file")
    ap.add_argument("--val", type=int, default=0, metavar="N",
                    help="hold out N training images (fixed split seed 0), train on the rest and score those "
                         "instead of the test split: for choosing a setting (recorded as val_err, split 'val')")
    ap.add_argument("--per-sample", action="store_true",
                    help="the papers' updates: one step per training pattern, all --seeds trained together "
                         "(run_per_sample; --step-scale multiplies the paper's eta); --batch-size does not apply")
    ap.add_argument("--optimizer", choices=["sdlm", "sgd"], default="sdlm", help="with --per-sample")
    ap.add_argument("--lr", type=float, default=None, help="the constant step of --optimizer sgd")
    ap.add_argument("--no-shuffle", action="store_true", help="with --per-sample: the same order every pass")
    ap.add_argument("--train-curve", action="store_true", help="the training error after each pass too (Fig. 5)")
    ap.add_argument("--no-compile", action="store_true", help="with --per-sample: do not torch.compile the step")
    ap.add_argument("--state", default=None, metavar="FILE", help="with --per-sample: keep the passes so far in FILE "
                    "and, run again with it, resume after the last pass kept (train_per_sample)")
    ap.add_argument("--distort", type=float, nargs="?", const=PAPER_DISTORTED_FRACTION, default=None,
                    metavar="FRACTION", help="train on LeCun's distortions [1998, III.C.7]: that fraction of each "
                    f"pass's patterns distorted afresh (alone: {PAPER_DISTORTED_FRACTION:g}, 540,000 over 20 passes)")
    ap.add_argument("--distort-range", nargs="*", default=[], metavar="KEY=VALUE",
                    help="random_affine's ranges: translate (px), scale, squeeze, shear (defaults 2, 0.1, 0.1, 0.2)")
    ap.add_argument("--split", choices=["mnist", "zip1989"], default="mnist",
                    help="mnist: 60,000 / 10,000; zip1989: 7,291 training / 2,007 test digits drawn from MNIST's "
                         "(the 1989 paper's sizes)")
    ap.add_argument("--train-size", type=int, default=None, metavar="N",
                    help="train on N training images drawn at random (split seed 1; after --val's hold-out): "
                         "the paper's Fig. 6, test error against training-set size (recorded as train_size)")
    ap.add_argument("--no-record", action="store_true",
                    help="do not append the runs to benchmarks/results/lenet.jsonl (the results store)")
    ap.add_argument("--summarize", default=None, help="print the table of a --out file and exit")
    args = ap.parse_args()
    from training.records import capture_git_state

    capture_git_state()  # the code as the runs start (training.records)
    if args.summarize:
        print(summarize(args.summarize))
        return
    torch.set_num_threads(args.threads)
    model_kwargs = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            model_kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            model_kwargs[key] = value
    data = load_mnist(args.root)
    if args.split == "zip1989":  # the 1989 paper's sizes, drawn from MNIST as karpathy/lecun1989-repro does
        data = zip1989_subset(data)
    if args.val:  # choose on validation: the test split is not read at all
        data = holdout(data, args.val)
    if args.train_size:  # [1998] Fig. 6: a smaller training set, the same passes
        if not 0 < args.train_size <= len(data[1]):
            ap.error(f"--train-size {args.train_size}: give 1 to {len(data[1])}, the training images there are")
        pick = torch.randperm(len(data[1]), generator=torch.Generator().manual_seed(1))[: args.train_size]
        data = (data[0][pick], data[1][pick], *data[2:])
    log = lambda text: print(text, flush=True)  # noqa: E731
    distort = None
    if args.distort is not None:
        import inspect

        from training.perturbations import random_affine

        defaults = {k: p.default for k, p in inspect.signature(random_affine).parameters.items()
                    if k in ("translate", "scale", "squeeze", "shear")}
        given = dict(item.partition("=")[::2] for item in args.distort_range)
        if set(given) - set(defaults):
            ap.error(f"--distort-range: unknown {sorted(set(given) - set(defaults))}; use {sorted(defaults)}")
        distort = {"fraction": args.distort, **defaults, **{k: float(v) for k, v in given.items()}}
    eval_name = "val" if args.val else "test"

    def runs(name: str):
        if args.per_sample:  # all the seeds in one vmapped, compiled loop
            yield from run_per_sample(name, args.seeds, args.epochs, data, log=log, model_kwargs=model_kwargs,
                                      eval_name=eval_name, optimizer=args.optimizer, lr=args.lr,
                                      shuffle=not args.no_shuffle, train_curve=args.train_curve,
                                      compile=not args.no_compile, distort=distort,
                                      step_scale=args.step_scale or 1.0, state_file=args.state)
            return
        for seed in args.seeds:
            yield run(name, seed, args.epochs, data, log=log, batch_size=args.batch_size, step_scale=args.step_scale,
                      model_kwargs=model_kwargs, eval_name=eval_name, distort=distort, train_curve=args.train_curve)

    for name in args.models:
        for r in runs(name):
            seed = r["seed"]
            r = as_split(r, args.val, args.split)
            if args.train_size:
                r["train_size"] = args.train_size
            print(json.dumps(r), flush=True)
            if r["never_predicted"]:
                print(f"warning: {name} seed {seed} never predicts class(es) {r['never_predicted']} on its training "
                      "images: a dead output unit", flush=True)
            if not args.no_record:  # with the command, commit, date and machine (training.records)
                from training.records import append_record

                append_record("lenet", r)
            if args.out:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(r) + "\n")
    if args.out:
        print(summarize(args.out))


if __name__ == "__main__":
    main()
