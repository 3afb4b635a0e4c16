"""The LeNet papers' recipes and the pieces every LeNet benchmark shares, in plain PyTorch: the
paper's figures (``PAPER_ERROR``), the recipes (``RECIPES``), MNIST read once into tensors, the
inputs as the papers made them (``prepare``: LeCun's scaling, 16x16 in 28x28, the 1989 net's
[-1, 1]), the 1989 split (``zip1989_subset``), LeCun's distortions (``distorted_copy``), scoring
(``scores``, ``predict``, ``error_rate``, ``never_predicted``), the validation hold-out
(``holdout``, ``as_split``), and the paper's per-pattern updates for all seeds at once
(``train_per_sample``, ``run_per_sample``, ``per_sample_records``).

``bench_lenet.py`` (the paper figures, batches or per pattern) and ``bench_lenet_boost.py``
(boosted LeNet-4) are built from these; ``bench_lenet.py`` re-exports every name.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import get_model  # noqa: E402
from models.sdlm import PAPER_HESSIAN_SAMPLES, PAPER_MU, SDLM, PiecewiseConstantLR  # noqa: E402

# Paper test errors on MNIST (%): [1998] Fig. 9 / III.C. lenet1989 was published on zip codes only
# (5.0% on its own 2,007-image test set), so it has no MNIST figure.
PAPER_ERROR = {"lenet1": 1.7, "lenet4": 1.1, "lenet5": 0.95, "lenet1989": None, "lenet5_modern": None}

RECIPES = {
    "lenet5": dict(kwargs={}, normalize="lecun", resize=None, optimizer="sdlm", batch_size=16, step_scale=4),
    # x2, chosen on validation (x4's mean was lost to a dead output unit in one seed): docs/results.md
    "lenet4": dict(kwargs={}, normalize="lecun", resize=None, optimizer="sdlm", batch_size=16, step_scale=2),
    "lenet1": dict(kwargs={}, normalize="lecun", resize=None, optimizer="sdlm", batch_size=16, step_scale=4),
    # [1998] III.C: the digit "downsampled to 16x16 pixels and centered in the 28x28 input layer"
    "lenet1_16in28": dict(model="lenet1", kwargs={}, normalize="lecun", resize=16, center=28, optimizer="sdlm",
                          batch_size=16, step_scale=4),
    # [1989]: 16x16 inputs scaled to [-1, 1], padded with -1.
    "lenet1989": dict(kwargs={"input_size": 16}, normalize="symmetric", resize=16, optimizer="sdlm", batch_size=16, step_scale=4),
    "lenet5_modern": dict(kwargs={}, normalize="standard", resize=None, optimizer="adamw", batch_size=64),
}


def load_mnist(root: str):
    from torchvision.datasets import MNIST

    tr, te = MNIST(root, train=True, download=False), MNIST(root, train=False, download=False)
    return tr.data, tr.targets, te.data, te.targets


ZIP1989_SIZES = (7291, 2007)  # [1989]: training and test digits


def zip1989_subset(data, seed: int = 1337):
    """7,291 training digits drawn from MNIST's training split and 2,007 from its test split
    (random, fixed ``seed``), as karpathy/lecun1989-repro builds the 1989 paper's sizes from MNIST."""
    xtr, ytr, xte, yte = data
    g = torch.Generator().manual_seed(seed)
    tr = torch.randperm(len(ytr), generator=g)[:ZIP1989_SIZES[0]]
    te = torch.randperm(len(yte), generator=g)[:ZIP1989_SIZES[1]]
    return xtr[tr], ytr[tr], xte[te], yte[te]


def prepare(x_u8: torch.Tensor, normalize: str, resize: int | None, center: int | None = None) -> torch.Tensor:
    x = x_u8.unsqueeze(1).float() / 255.0
    if center is not None:  # LeNet-1's input: each digit fitted to resize x resize, centred in center x center
        from training.data.digits import fit_digits

        x = fit_digits(x, resize, center)
    elif resize is not None:
        x = F.interpolate(x, size=(resize, resize), mode="bilinear", antialias=True, align_corners=False)
    if normalize == "lecun":  # background -0.1, foreground 1.175 [1998, II.B]
        return x * 1.275 - 0.1
    if normalize == "symmetric":  # [-1, 1] [1989]
        return x * 2.0 - 1.0
    if normalize == "standard":
        return (x - 0.1307) / 0.3081
    raise ValueError(normalize)


def input_of(recipe: dict) -> str:
    """What the network is shown, for the record: '28x28', '16x16' (resized) or '16x16 in 28x28'."""
    if recipe.get("center"):
        return f"{recipe['resize']}x{recipe['resize']} in {recipe['center']}x{recipe['center']}"
    side = recipe["resize"] or 28
    return f"{side}x{side}"


# [1998] III.C.7: 540,000 distorted patterns over 20 passes of 60,000, i.e. 45% of the patterns of
# each pass. UNCERTAIN: the paper gives neither that mix nor the ranges (random_affine's defaults).
PAPER_DISTORTED_FRACTION = 540_000 / (20 * 60_000)


def distorted_copy(x: torch.Tensor, fraction: float, generator: torch.Generator, ranges: dict) -> torch.Tensor:
    """``x`` (prepared images) with a random ``fraction`` of them replaced by LeCun's random planar
    affine distortions (``training.perturbations.random_affine``), the background filling in."""
    from training.perturbations import random_affine

    out = x.clone()
    pick = (torch.rand(len(x), generator=generator) < fraction).nonzero().flatten()
    if len(pick):
        fill = float(x.amin())  # the background (-0.1 as LeCun scales the digits, -1 for [-1, 1])
        out[pick] = random_affine(x[pick], generator, fill=fill, **ranges)
    return out


@torch.no_grad()
def scores(model, x: torch.Tensor, bs: int = 2000) -> torch.Tensor:
    """The network's outputs for ``x``, in eval mode, ``bs`` images at a time."""
    model.eval()
    out = torch.cat([model(x[i:i + bs]) for i in range(0, len(x), bs)])
    model.train()
    return out


def predict(model, x, bs=2000) -> torch.Tensor:
    return scores(model, x, bs).argmax(1)


def holdout(data, n: int):
    """Choose on validation: ``n`` training images held out (split seed 0) as the evaluation set,
    the rest to train on; the test split is not read at all."""
    xtr, ytr = data[0], data[1]
    perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(0))
    val, rest = perm[:n], perm[n:]
    return xtr[rest], ytr[rest], xtr[val], ytr[val]


def as_split(r: dict, val: int, split: str) -> dict:
    """A run's record as the split it was scored on: with ``val`` held out, what the runs call the
    test split is the validation split (``val_err``, split ``val``)."""
    if val:
        r = {**{k: v for k, v in r.items() if k != "test_err"}, "val_err": r["test_err"], "split": "val",
             "val_size": val}
    if split != "mnist":  # "zip1989", or "zip1989-val"
        r["split"] = split + ("-val" if val else "")
    return r


def percent_wrong(pred: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * (pred != y).sum().item() / len(y)


def error_rate(model, x, y) -> float:
    return percent_wrong(predict(model, x), y)


def never_predicted(pred: torch.Tensor, num_classes: int = 10) -> list[int]:
    """The classes no prediction in ``pred`` names: a dead output unit (a squashed unit stuck at its
    floor, whose gradient vanishes) shows as one, and costs about a tenth of the accuracy."""
    seen = set(pred.unique().tolist())
    return [c for c in range(num_classes) if c not in seen]


def train_per_sample(name: str, seeds: list[int], epochs: int, xtr, ytr, xev, yev, log=print,
                     model_kwargs: dict | None = None, eval_name: str = "test", optimizer: str = "sdlm",
                     lr: float | None = None, shuffle: bool = True, train_curve: bool = False, compile: bool = True,
                     distort: dict | None = None, step_scale: float = 1.0, state_file: str | Path | None = None):
    """The papers' own updates: one step per training pattern [1998, II.B; 1989], for all ``seeds``
    at once. Their parameters are stacked and the step is vmapped over the seeds
    (``torch.func``), then compiled; the first step is checked against the uncompiled one.

    ``optimizer``: ``sdlm`` -- w -= eta / (mu + h) * g, eta by the paper's schedule, h re-estimated
    on 500 training patterns before each pass (``LeNet.second_derivatives``), as ``SDLM`` with
    batches of one (``step_scale`` multiplies eta: 1 is the paper's); ``sgd`` -- w -= lr * g with a constant ``lr`` (the 1989 net as
    karpathy/lecun1989-repro trains it). ``shuffle``: a fresh order per pass and seed, else the
    stored order every pass. ``distort``: ``{"fraction": f, **ranges}`` -- each pass, a fraction f
    of each seed's patterns replaced by fresh distortions (:func:`distorted_copy`; the Hessian is
    estimated on undistorted ones). ``xtr``/``xev``: prepared images; ``xtr`` (S, N, C, H, W) and
    ``ytr`` (S, N) give each seed its own training set (boosting's filtered sets). ``state_file``: after
    every pass, the parameters, the random generators' states and the curves are kept there, and a
    run given the same file resumes after the last pass kept, continuing exactly as if never stopped
    (a job killed by its scheduler, or a session's end, loses at most one pass). Returns (the trained
    models, their per-pass curves -- the evaluation error, and the training error if asked --, seconds)."""
    import copy

    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    if optimizer == "sgd" and not (lr and lr > 0):
        raise SystemExit("--optimizer sgd needs --lr > 0 (karpathy/lecun1989-repro: 0.03 on the mean over outputs)")
    recipe = RECIPES[name]
    if xtr.dim() == 4:  # one training set for every seed: a view, no copy
        xtr, ytr = xtr.expand(len(seeds), *xtr.shape), ytr.expand(len(seeds), *ytr.shape)
    n = xtr.shape[1]
    kwargs = {**recipe["kwargs"], **(model_kwargs or {})}
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(get_model(recipe.get("model", name), **kwargs))
    gens = [torch.Generator().manual_seed(seed) for seed in seeds]
    distort_gens = [torch.Generator().manual_seed(10_000 + seed) for seed in seeds]  # leaves gens' draws as they were
    params, buffers = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    skeleton = copy.deepcopy(models[0]).to("meta")
    loss_of = models[0].loss  # reads only the criterion

    def one(p, b, x, y):
        return loss_of(functional_call(skeleton, (p, b), (x.unsqueeze(0),)), y.unsqueeze(0))

    per_seed = vmap(grad_and_value(one))

    def step(p, b, x, y, rate):
        g, loss = per_seed(p, b, x, y)
        return {k: p[k] - rate[k] * g[k] for k in p}, loss

    fast = torch.compile(step) if compile else step

    def sync(i: int):  # seed i's stacked parameters into its module
        with torch.no_grad():
            for k, v in models[i].named_parameters():
                v.copy_(params[k][i])
        return models[i]

    sched = PiecewiseConstantLR(SDLM([torch.zeros(1)]))  # the paper's eta per pass
    curves: list[list[dict]] = [[] for _ in seeds]
    t0 = time.perf_counter()
    checked = not compile
    start = 0
    if state_file and Path(state_file).exists():  # resume after the last pass kept
        kept = torch.load(state_file, map_location="cpu", weights_only=True)
        if kept["seeds"] != list(seeds) or kept["n"] != n or kept["name"] != name:
            raise SystemExit(f"{state_file} holds a run of {kept['name']} seeds {kept['seeds']} on {kept['n']} "
                             f"patterns, not {name} seeds {list(seeds)} on {n}: give another file, or delete it")
        start, params, curves = kept["epoch"], kept["params"], kept["curves"]
        for g, st in zip(gens + distort_gens, kept["gens"] + kept["distort_gens"]):
            g.set_state(st)
        t0 -= kept["elapsed"]
        log(f"{name} seeds {list(seeds)}: resumed after pass {start}/{epochs} from {state_file}")
    for epoch in range(start, epochs):
        if optimizer == "sdlm":
            eta, hs = sched.lr_at(epoch), []
            for i in range(len(seeds)):
                idx = torch.randperm(n, generator=gens[i])[:PAPER_HESSIAN_SAMPLES]
                hs.append(sync(i).second_derivatives(xtr[i, idx], ytr[i, idx]))
            rate = {k: step_scale * eta / (PAPER_MU + torch.stack([h[k] for h in hs]).clamp_min(0)) for k in params}
        else:
            rate = {k: torch.full_like(v, lr) for k, v in params.items()}
        order = torch.stack([torch.randperm(n, generator=g) if shuffle else torch.arange(n) for g in gens])
        xs = None
        if distort:
            ranges = {k: v for k, v in distort.items() if k != "fraction"}
            xs = torch.stack([distorted_copy(xtr[i], distort["fraction"], g, ranges) for i, g in enumerate(distort_gens)])
        seat = torch.arange(len(seeds))
        total = torch.zeros(len(seeds))
        for t in range(n):
            idx = order[:, t]
            x, y = (xtr if xs is None else xs)[seat, idx], ytr[seat, idx]
            if not checked:  # the compiled step against the plain one, once
                want, _ = step(params, buffers, x, y, rate)
                got, _ = fast(params, buffers, x, y, rate)
                bad = [k for k in want if not torch.allclose(want[k], got[k], rtol=1e-4, atol=1e-6)]
                if bad:
                    raise RuntimeError(f"the compiled per-sample step differs from the plain one in {bad}")
                checked = True
            params, loss = fast(params, buffers, x, y, rate)
            total += loss.detach()
        if not torch.isfinite(total).all():
            raise RuntimeError(f"{name} seeds {seeds}: loss diverged at pass {epoch + 1}")
        for i, seed in enumerate(seeds):
            point = {"pass": epoch + 1, "train_loss": total[i].item() / n,
                     f"{eval_name}_err": error_rate(sync(i), xev, yev)}
            if train_curve:
                point["train_err"] = error_rate(models[i], xtr[i], ytr[i])
            curves[i].append(point)
            log(f"{name} seed={seed} pass={epoch + 1}/{epochs} " + " ".join(
                f"{k}={v:.4f}" if k == "train_loss" else f"{k}={v:.2f}%" for k, v in point.items() if k != "pass")
                + f" elapsed={time.perf_counter() - t0:.0f}s")
        if state_file:  # written whole, then moved into place: a kill mid-write leaves the last one
            tmp = Path(f"{state_file}.tmp")
            torch.save({"name": name, "seeds": list(seeds), "n": n, "epoch": epoch + 1, "params": params,
                        "curves": curves, "gens": [g.get_state() for g in gens],
                        "distort_gens": [g.get_state() for g in distort_gens],
                        "elapsed": time.perf_counter() - t0}, tmp)
            os.replace(tmp, state_file)
    for i in range(len(seeds)):
        sync(i)
    return models, curves, time.perf_counter() - t0


def run_per_sample(name: str, seeds: list[int], epochs: int, data, log=print, eval_name: str = "test",
                   **options) -> list[dict]:
    """:func:`train_per_sample` on MNIST tensors ``data``; one record per seed."""
    recipe = RECIPES[name]
    xtr_u8, ytr, xte_u8, yte = data
    xtr = prepare(xtr_u8, recipe["normalize"], recipe["resize"], recipe.get("center"))
    xte = prepare(xte_u8, recipe["normalize"], recipe["resize"], recipe.get("center"))
    models, curves, train_s = train_per_sample(name, seeds, epochs, xtr, ytr, xte, yte, log=log,
                                               eval_name=eval_name, **options)
    return per_sample_records(name, seeds, epochs, models, curves, train_s, xtr, ytr, xte, yte, options)


def per_sample_records(name: str, seeds: list[int], epochs: int, models, curves, train_s: float, xtr, ytr, xte, yte,
                       options: dict) -> list[dict]:
    """One record per seed of :func:`train_per_sample`'s ``models`` (``options``: its keywords)."""
    recipe = RECIPES[name]
    out = []
    for seed, model, curve in zip(seeds, models, curves):
        pred_tr = predict(model, xtr)
        out.append(dict(model=recipe.get("model", name), recipe=name, input=input_of(recipe), seed=seed, epochs=epochs,
                        model_kwargs=options.get("model_kwargs") or {}, batch_size=1, per_sample=True,
                        optimizer=options.get("optimizer", "sdlm"), step_scale=options.get("step_scale", 1.0),
                        lr=options.get("lr"),
                        shuffle=options.get("shuffle", True), distort=options.get("distort"),
                        params=sum(p.numel() for p in model.parameters()),
                        train_err=percent_wrong(pred_tr, ytr), test_err=error_rate(model, xte, yte),
                        train_s=train_s, seeds_together=len(seeds), threads=torch.get_num_threads(),
                        never_predicted=never_predicted(pred_tr), curve=curve))
    return out
