"""Harness overhead and data path, measured in one run (issue 7, targets 1 and 2).

1. Harness overhead: images/s of the training loop train.py runs (the Trainer that
   train.py's ``build_trainer`` makes from the config, with all its callbacks, its TensorBoard
   logger and progress bar, and our data module) against a minimal hand-written PyTorch loop
   over the same in-memory uint8 tensors, same model, batch size, optimizer, augmentation and
   memory format. Ratio = ours / hand loop (goal >= 0.95). A bare Lightning Trainer (no
   callbacks, logger or progress bar) is timed as well, to tell Lightning's own per-step cost
   from that of train.py's callbacks.
2. Data path: the same model trained through the usual torchvision pipeline
   (datasets.MNIST + ToTensor + Normalize in a DataLoader, num_workers 0 and 2) against our
   tensor pipeline, both in the same plain loop. Ratio = our time / best torchvision time
   (goal <= 0.5).

Each figure is the median over --repeats interleaved repeats (in alternating order) of --steps
training steps (after a warm-up); each ratio the median of the repeats' ratios. Short runs,
many of them: on a shared machine the speed drifts by up to 20% within minutes, and neighbouring
runs see about the same speed. (train.py also writes last.ckpt every 200 steps, outside
these windows: for LeNet-5 a 0.5 MB file written and fsync'ed in about 3 ms, 0.1% of 200 steps.) Usage:

    DATA_DIR=../shared/data python benchmarks/bench_harness.py --models convnet lenet5 neocognitron
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

import models  # noqa: E402,F401
import training  # noqa: E402,F401  (the config resolvers)
from training.data import random_crop_flip  # noqa: E402
from train import build_trainer  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


EXTRA_OVERRIDES: list[str] = []  # --set key=value ...: for every config composed here


def compose_cfg(model_name: str, root: str, overrides: tuple[str, ...] = ()):
    """train.py's config for ``model_name`` on MNIST, with ``overrides``."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        return compose("train", overrides=[f"model={model_name}", f"data.root={root}", *EXTRA_OVERRIDES, *overrides])


def build(model_name: str, root: str):
    """train.py's config for ``model_name`` on MNIST and its (set up) data module."""
    cfg = compose_cfg(model_name, root)
    dm = instantiate(cfg.data)
    dm.setup()
    return cfg, dm


def make_optimizer(cfg, net):
    """The model config's optimizer (the LR scheduler, a per-step scalar update, is left out)."""
    return instantiate(cfg.model.optimizer)([q for q in net.parameters() if q.requires_grad])


def fresh_module(cfg):
    torch.manual_seed(0)
    return instantiate(cfg.model)


class _Timer(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1, self.n = warmup, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.n += len(batch[1])
            self.t1 = time.perf_counter()


def train_py_rate(model_name: str, dm, steps: int, warmup: int, overrides: tuple[str, ...] = (),
                  nan_fill: bool = False) -> float:
    """Images/s of the Trainer train.py builds (all its callbacks, logger and progress bar; run
    folder in a temporary directory), fitting one epoch cut to ``steps + warmup`` batches;
    ``overrides``: command-line overrides (to leave parts out, --breakdown); ``nan_fill``: put
    back PyTorch's NaN fill of new tensors under deterministic=true (which training.cli.instantiate_trainer turns off)."""
    with tempfile.TemporaryDirectory() as run:
        cfg = compose_cfg(model_name, str(dm.root), ("trainer.max_epochs=1", f"trainer.limit_train_batches={steps + warmup}",
                                                     "trainer.limit_val_batches=0", f"paths.output_dir={run}", *overrides))
        module = fresh_module(cfg)
        timer = _Timer(warmup)
        with _quiet():  # the progress bar and Lightning's banners go to /dev/null; their cost is counted
            trainer, _ = build_trainer(cfg, (timer,))
            torch.utils.deterministic.fill_uninitialized_memory = nan_fill
            trainer.fit(module, datamodule=dm)
    torch.use_deterministic_algorithms(False)  # trainer.deterministic=true sets it for the whole process
    return timer.n / (timer.t1 - timer.t0)


# --breakdown: train.py's Trainer with one part left out (or put back) at a time
NAN_FILL = "deterministic with NaN fill"
BREAKDOWN = {
    "as train.py runs it": (),
    "no progress bar": ("trainer.enable_progress_bar=false",),
    "no callbacks": ("callbacks=none",),
    "no logger": ("logger=none",),
    "deterministic=false": ("trainer.deterministic=false",),
    "none of these": ("trainer.enable_progress_bar=false", "callbacks=none", "logger=none", "trainer.deterministic=false"),
    NAN_FILL: (),
}


def breakdown(names: list[str], root: str, steps: int, warmup: int, repeats: int) -> None:
    print("\n| model | " + " | ".join(BREAKDOWN) + " |")
    print("| --- " * (len(BREAKDOWN) + 1) + "|")
    for name in names:
        _, dm = build(name, root)
        rates = interleaved({k: (lambda k=k: train_py_rate(name, dm, steps, warmup, BREAKDOWN[k], nan_fill=k == NAN_FILL))
                             for k in BREAKDOWN}, repeats)
        base = rates["as train.py runs it"]
        cells = [f"{statistics.median(rates[k]):.0f} img/s" if i == 0 else
                 f"{statistics.median(a / b for a, b in zip(rates[k], base)):.3f}x" for i, k in enumerate(BREAKDOWN)]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def bare_lightning_rate(cfg, dm, steps: int, warmup: int) -> float:
    """Images/s of a bare Lightning Trainer (no callbacks, logger or progress bar) with our
    data module: Lightning's own per-step cost."""
    module = fresh_module(cfg)
    timer = _Timer(warmup)
    with _quiet():
        trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=steps + warmup, limit_val_batches=0,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0)
        trainer.fit(module, datamodule=dm)
    return timer.n / (timer.t1 - timer.t0)


def interleaved(runs: dict, repeats: int) -> dict[str, list[float]]:
    """Call each of ``runs`` (name -> function returning img/s) ``repeats`` times, interleaved and
    in alternating order, so that drifts in the machine's speed hit all of them alike."""
    rates = {key: [] for key in runs}
    for r in range(repeats):
        for key in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            rates[key].append(runs[key]())
    return rates


class _quiet:
    """stdout/stderr to /dev/null and Lightning's info logs off, for the duration."""

    def __enter__(self):
        self.devnull = open(os.devnull, "w")
        self.saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self.devnull
        logging.disable(logging.WARNING)

    def __exit__(self, *exc):
        sys.stdout, sys.stderr = self.saved
        logging.disable(logging.NOTSET)
        self.devnull.close()


def plain_loop_rate(cfg, batches, steps: int, warmup: int, transform=None) -> float:
    """Images/s of a minimal PyTorch training loop over ``batches`` (an iterable of (x, y)),
    timed after ``warmup`` steps; ``transform`` (if given) is applied to each x first, then the
    memory format the model config asks for."""
    module = fresh_module(cfg)
    net, loss_fn = module.net, module.loss
    opt = make_optimizer(cfg, net)
    memory_format = torch.channels_last if module.hparams.channels_last else torch.contiguous_format
    net.train()
    t0, n = None, 0
    for step, (x, y) in enumerate(batches):
        if step == warmup:
            t0 = time.perf_counter()
        if step == steps + warmup:
            break
        if transform is not None:
            x = transform(x)
        x = x.contiguous(memory_format=memory_format)  # as the Classifier does (model.channels_last)
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= warmup:
            n += len(y)
    return n / (time.perf_counter() - t0)


def train_transform(dm):
    """What the data module does to a uint8 training batch: the random shifts (when the data
    config augments, as train.py's MNIST default does), then normalisation."""
    if not dm.hparams.augment:
        return dm.transform
    return lambda x: dm.transform(random_crop_flip(x, dm.hparams.crop_padding, dm.hparams.hflip))


def hand_rate(cfg, dm, steps: int, warmup: int) -> float:
    """The hand-written loop: slices of one random permutation of the same uint8 tensors, with
    the same augmentation and normalisation."""
    x_all, y_all = dm.data["train"]
    bs = dm.hparams.batch_size
    perm = torch.randperm(len(y_all))
    batches = ((x_all[idx], y_all[idx]) for idx in perm.split(bs))
    return plain_loop_rate(cfg, batches, steps, warmup, train_transform(dm))


def torchvision_rate(cfg, dm, steps: int, warmup: int, workers: int) -> float:
    """The usual pipeline: datasets.MNIST + ToTensor + Normalize in a DataLoader."""
    import torchvision
    from torchvision import transforms as T

    ds = torchvision.datasets.MNIST(str(dm.root), train=True, download=False,
                                    transform=T.Compose([T.ToTensor(), T.Normalize(dm.mean, dm.std)]))
    loader = torch.utils.data.DataLoader(ds, batch_size=dm.hparams.batch_size, shuffle=True, num_workers=workers)
    return plain_loop_rate(cfg, loader, steps, warmup)


def tensor_pipeline_rate(cfg, dm, steps: int, warmup: int) -> float:
    """The same plain loop fed by our data module's loader and batch transform (normalisation
    only, like the torchvision pipeline it is compared with)."""
    return plain_loop_rate(cfg, dm.train_dataloader(), steps, warmup, dm.transform)


def augmentation_times(repeats: int) -> list[str]:
    """Table rows: ms to augment a batch of 128 uint8 images with random shifts (and flips), per
    image with torchvision's RandomCrop (+ RandomHorizontalFlip), as a Dataset's transform does,
    and batched with ours (training.data.random_crop_flip)."""
    from torchvision.transforms import v2 as T

    rows = []
    for label, shape, pad, flip in (("MNIST 1x28x28, pad 2", (128, 1, 28, 28), 2, False),
                                    ("CIFAR-10 3x32x32, pad 4, flip", (128, 3, 32, 32), 4, True)):
        x = torch.randint(0, 256, shape, dtype=torch.uint8)
        per_image = T.Compose([T.RandomCrop(shape[-1], padding=pad), *([T.RandomHorizontalFlip()] if flip else [])])
        timings = {}
        for name, fn in (("torchvision", lambda: torch.stack([per_image(img) for img in x])),
                         ("ours", lambda: random_crop_flip(x, pad, flip))):
            fn()
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(20):
                    fn()
                runs.append((time.perf_counter() - t0) / 20 * 1e3)
            timings[name] = statistics.median(runs)
        rows.append(f"| {label} | {timings['torchvision']:.2f} | {timings['ours']:.2f} | "
                    f"{timings['torchvision'] / timings['ours']:.0f}x |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["convnet", "lenet5", "neocognitron"])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=15)  # short runs, many: this machine's speed drifts by 20%
    p.add_argument("--root", default=os.environ.get("DATA_DIR", "./data"))
    p.add_argument("--skip-datapath", action="store_true")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results/harness.jsonl")
    p.add_argument("--breakdown", action="store_true",
                   help="only: the speed of train.py's Trainer with its progress bar, callbacks, logger or determinism "
                        "left out, or with PyTorch's NaN fill of new tensors put back")
    args = p.parse_args()
    from training.records import capture_git_state

    capture_git_state()  # the code as the runs start (training.records)
    EXTRA_OVERRIDES.extend(args.set)
    warnings.filterwarnings("ignore")
    L.seed_everything(0, verbose=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
          f"{args.steps} steps after {args.warmup}, median of {args.repeats} repeats")
    if args.breakdown:
        return breakdown(args.models, args.root, args.steps, args.warmup, args.repeats)
    print("\n| model | hand loop img/s | train.py's Trainer img/s | ratio (goal >= 0.95) | bare Lightning img/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        cfg, dm = build(name, args.root)
        rates = interleaved({"hand": lambda: hand_rate(cfg, dm, args.steps, args.warmup),
                             "ours": lambda: train_py_rate(name, dm, args.steps, args.warmup),
                             "bare": lambda: bare_lightning_rate(cfg, dm, args.steps, args.warmup)}, args.repeats)
        hand, ours, bare = rates["hand"], rates["ours"], rates["bare"]
        med = statistics.median
        if not args.no_record:
            from training.records import append_record

            append_record("harness", {"what": "train.py's Trainer / hand loop", "model": name, "steps": args.steps,
                                      "repeats": args.repeats, "overrides": args.set, "img_per_s": rates,
                                      "ratio_median": med(o / h for o, h in zip(ours, hand)),
                                      "bare_ratio_median": med(b / h for b, h in zip(bare, hand))})
        print(f"| {name} | {med(hand):.0f} | {med(ours):.0f} | {med(o / h for o, h in zip(ours, hand)):.3f} | "
              f"{med(bare):.0f} | {med(b / h for b, h in zip(bare, hand)):.3f} |", flush=True)
    if args.skip_datapath:
        return
    print("\n| random shifts of a batch of 128 | torchvision per image ms | ours batched ms | speed-up |")
    print("| --- | --- | --- | --- |")
    print("\n".join(augmentation_times(args.repeats)), flush=True)
    print("\n| model | torchvision workers=0 img/s | workers=2 img/s | tensor pipeline img/s | time ratio ours/best (goal <= 0.5) |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.models:
        cfg, dm = build(name, args.root)
        rates = interleaved({"tv0": lambda: torchvision_rate(cfg, dm, args.steps, args.warmup, 0),
                             "tv2": lambda: torchvision_rate(cfg, dm, args.steps, args.warmup, 2),
                             "ours": lambda: tensor_pipeline_rate(cfg, dm, args.steps, args.warmup)}, args.repeats)
        tv0, tv2, ours = rates["tv0"], rates["tv2"], rates["ours"]
        best = max(statistics.median(tv0), statistics.median(tv2))
        if not args.no_record:
            from training.records import append_record

            append_record("harness", {"what": "data path: our epoch time / best torchvision DataLoader", "model": name,
                                      "steps": args.steps, "repeats": args.repeats, "img_per_s": rates,
                                      "time_ratio": best / statistics.median(ours)})
        print(f"| {name} | {statistics.median(tv0):.0f} | {statistics.median(tv2):.0f} | {statistics.median(ours):.0f} | "
              f"{best / statistics.median(ours):.3f} |", flush=True)


if __name__ == "__main__":
    main()
