"""Tolerance of trained models to shifts and deformations: test accuracy against each perturbation.

    python benchmarks/bench_tolerance.py --ckpt A.ckpt [B.ckpt ...] [--limit N] [--json FILE] [--png FILE]
                                         [--data-root DIR] [--seed S] [--labels a b ...] [--record [NAME]]

Each checkpoint is evaluated on its own test split (rebuilt from the data module saved in it, as
``eval.py`` does; ``--data-root`` points it at another folder), or with ``--split val`` on the
validation split its run held out of the training split (to choose without the test split). The uint8 test images are perturbed
(``training/perturbations.py``) before the normalisation of training, with the training images'
background filling in (0, black, for the MNIST family), and classified in batches of 1,000 on the CPU:

    shift              1..6 px in each of the 8 directions; accuracy per distance = mean of the 8
    rotation           +-5, 10, 15, 20, 30 degrees about the centre (mean of + and -), bilinear
    scale              0.7, 0.8, 0.9, 1.1, 1.2, 1.3 about the centre, bilinear
    elastic            Simard et al. (2003), sigma = 4 (--elastic-sigma), alpha = 8, 16, 34
    noise              Gaussian, std 25, 50, 75, 100 grey levels (of 0..255), clipped
    occlusion          one random square of side 4, 8, 12 set to the background
    shift_consistency  Zhang (2019): the fraction of images with the same predicted class under two
                       random shifts of up to k = 1..6 px (an agreement, not an accuracy)

Each perturbation also has its identity level ("0"; "1" for scale; shift_consistency's "0" is 1.0 by
definition): the transform at that level returns the images unchanged, so its figure is the
unperturbed accuracy. Random draws (noise, occlusion, elastic fields, consistency offsets) come from
generators seeded by ``--seed`` and the perturbation, so the figures repeat, and every model sees the
same perturbed images. A model whose checkpoint asks for test-time flipping (``tta_flip``) is scored
as the Classifier scores it: the mean of the scores of the image and its mirror image.

Output: a table per model; ``--json FILE``: always keyed by model label, also for one checkpoint,

    {"<model label>": {"<perturbation>": {"<level>": accuracy, ...}, ...}, ...}

plus ``"none": {"0": <unperturbed accuracy>}`` in each model's entry (accuracies as fractions in
[0, 1], exact counts over the images; levels as strings: pixels, degrees, factors, alpha, grey levels,
side); ``--png FILE``: one subplot per perturbation, one line per model; ``--record [NAME]``: appends
one JSON line (command, git commit and dirty flag, date, machine, checkpoints, settings, every
figure) to ``benchmarks/results/NAME.jsonl`` (default ``tolerance``; :mod:`training.records`). Labels are the models' names (with the
checkpoint's path when two share one, and a number when the path is repeated), or ``--labels``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from training import perturbations as P  # noqa: E402

SHIFTS = [1, 2, 3, 4, 5, 6]
ROTATIONS = [5, 10, 15, 20, 30]
SCALES = [0.7, 0.8, 0.9, 1.1, 1.2, 1.3]
ALPHAS = [8, 16, 34]
NOISE = [25, 50, 75, 100]
OCCLUSION = [4, 8, 12]
TITLES = {"shift": "shift (px, mean of 8 directions)", "rotation": "rotation (degrees, mean of +-)",
          "scale": "scale (factor)", "elastic": "elastic (alpha, sigma = {sigma:g})",
          "noise": "Gaussian noise (std, of 0..255)", "occlusion": "occluding square (side, px)",
          "shift_consistency": "shift consistency (max shift k, px)"}


def level(v: float) -> str:
    """A level as a JSON key: 2 -> "2", 0.7 -> "0.7", 1.0 -> "1"."""
    return f"{v:g}"


def background(state: dict, channels: int) -> list[int]:
    """The training images' background grey level per channel, as predict.py fills with it
    (:func:`training.images.training_background`: 0 for the MNIST family, else from the saved mean)."""
    from training.images import training_background

    return [training_background(state, channels)[0]] * channels


def load(path: str, data_root: str | None, limit: int | None, split: str = "test"):
    """``(model, hparams, images uint8, labels, state)`` of a checkpoint and its test split, or
    with ``split="val"`` the validation split its run carved from the training split."""
    from omegaconf import OmegaConf

    from eval import build_datamodule
    from training.checkpoint import checkpoint_data_state
    from training.module import Classifier

    model, ckpt = Classifier.load_with_checkpoint(path)
    cfg = OmegaConf.create({"ckpt_path": str(path), "data": None, "data_root": data_root})
    dm = build_datamodule(cfg, model, ckpt)
    if split == "val":
        if not dm.hparams.val_size:
            raise SystemExit(f"error: {path} was trained with data.val_size=0: it has no validation split; "
                             "use --split test, or a run with a validation split")
        dm.setup()
        x, y = dm.data["val"]
    else:
        x, y = dm.load_split(train=False)
    if limit:
        x, y = x[:limit], y[:limit]
    return model, ckpt["hyper_parameters"], x.contiguous(), y, checkpoint_data_state(ckpt)


def make_predict(model, hp: dict, state: dict, batch: int = 1000):
    """uint8 images -> predicted classes, normalised as in training, in batches, as the Classifier
    evaluates (channels-last when trained so, mean with the mirror image when ``tta_flip``)."""
    from training.data import transform_batch

    channels = hp.get("in_channels", 1)
    mean, std = state.get("mean") or [0.5] * channels, state.get("std") or [0.5] * channels
    hpd = state.get("hparams", {})

    @torch.no_grad()
    def predict(x_u8: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(x_u8), batch):
            x = transform_batch(x_u8[i: i + batch], mean, std, hpd.get("normalize", "standard"), hpd.get("resize"))
            if hp.get("channels_last"):
                x = x.contiguous(memory_format=torch.channels_last)
            scores = model(x)
            if hp.get("tta_flip"):
                scores = (scores + model(x.flip(3))) / 2
            out.append(scores.float().argmax(1))
        return torch.cat(out)

    return predict


def measure(predict, x: torch.Tensor, y: torch.Tensor, fill: list[int], seed: int, sigma: float,
            progress=None) -> dict[str, dict[str, float]]:
    """Every perturbation's accuracy (shift_consistency: agreement) at every level."""
    def correct(xp: torch.Tensor) -> float:
        return int((predict(xp) == y).sum()) / len(y)

    clean = correct(x)

    def acc(xp: torch.Tensor) -> float:  # a transform at its identity level returns x: no need to run it again
        return clean if torch.equal(xp, x) else correct(xp)

    def gen(name: str, lv: float) -> torch.Generator:  # one stream per (perturbation, level), same for every model
        digest = hashlib.sha256(f"{seed}/{name}/{lv:g}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") % 2**63)

    plan = {
        "shift": [0] + SHIFTS,
        "rotation": [0] + ROTATIONS,
        "scale": sorted(SCALES + [1.0]),
        "elastic": [0] + ALPHAS,
        "noise": [0] + NOISE,
        "occlusion": [0] + OCCLUSION,
        "shift_consistency": [0] + SHIFTS,
    }
    res: dict[str, dict[str, float]] = {}
    for name, levels in plan.items():
        res[name] = {}
        for lv in levels:
            if name == "shift":  # the mean over the 8 directions (level 0: the one null shift)
                v = P.mean_over_shifts(acc, x, lv, fill)
            elif name == "rotation":
                v = (acc(P.rotate(x, lv, fill)) + acc(P.rotate(x, -lv, fill))) / 2
            elif name == "scale":
                v = acc(P.scale(x, lv, fill))
            elif name == "elastic":
                v = acc(P.elastic(x, lv, sigma, gen(name, lv), fill))
            elif name == "noise":
                v = acc(P.gaussian_noise(x, lv, gen(name, lv)))
            elif name == "occlusion":
                v = acc(P.occlude(x, lv, gen(name, lv), fill))
            else:
                v = P.shift_consistency(predict, x, lv, gen(name, lv), fill) if lv else 1.0
            res[name][level(lv)] = v
            if progress:
                progress(name, lv, v)
    res["none"] = {"0": clean}
    return res


def table(label: str, n: int, res: dict, split: str = "test") -> str:
    lines = [f"{label}: {n} {split} images, unperturbed accuracy {100 * res['none']['0']:.2f}%"]
    for name, vals in res.items():
        if name != "none":
            unit = "agree" if name == "shift_consistency" else "acc"
            lines.append(f"  {name:<18} {unit:<5} " + "  ".join(f"{k:>4}: {100 * v:5.1f}" for k, v in vals.items()))
    return "\n".join(lines)


def plot(results: dict, path: str, sigma: float) -> None:
    from matplotlib.figure import Figure

    names = [n for n in next(iter(results.values())) if n != "none"]
    cols = 4
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4 * cols, 3.3 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        for label, res in results.items():
            pts = sorted((float(k), 100 * v) for k, v in res[name].items())
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_title(TITLES.get(name, name).format(sigma=sigma), fontsize=10)
        ax.set_ylabel("agreement (%)" if name == "shift_consistency" else "test accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    (axes[len(names)] if len(names) < len(axes) else fig).legend(handles, labels, loc="center", fontsize=8)
    fig.suptitle("tolerance: test accuracy against each perturbation")
    fig.savefig(path, dpi=100)


def labels_for(args, model_names: list[str]) -> list[str]:
    if args.labels:
        if len(args.labels) != len(args.ckpt) or len(set(args.labels)) != len(args.labels):
            from models.errors import ConfigError

            raise ConfigError(f"give {len(args.ckpt)} distinct --labels, one per --ckpt (got {len(args.labels)})")
        return list(args.labels)
    labels = [f"{m} ({p})" if model_names.count(m) > 1 else m for m, p in zip(model_names, args.ckpt)]
    return [f"{lb} #{labels[:i].count(lb) + 1}" if labels.count(lb) > 1 else lb for i, lb in enumerate(labels)]


def main(argv: list[str] | None = None) -> None:
    from training.cli import argument_parser  # argparse's mistakes as one line (no torch imported)

    p = argument_parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", nargs="+", required=True,
                   help="checkpoints written by train.py, or names of shipped weights (neocognitron:mnist)")
    p.add_argument("--labels", nargs="+", help="a name per checkpoint (default: the model's name)")
    p.add_argument("--limit", type=int, help="use the first N images of the split")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="score the test split (default) or the validation split each run held out, "
                        "for choices made without the test split")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--png", help="draw accuracy against each perturbation to this file")
    p.add_argument("--data-root", help="the data folder (default: the one saved in each checkpoint)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random perturbations (default 0)")
    p.add_argument("--elastic-sigma", type=float, default=4.0, help="sigma of the elastic field (default 4)")
    p.add_argument("--record", nargs="?", const="tolerance", metavar="NAME",
                   help="append a JSON line to benchmarks/results/NAME.jsonl (default NAME: tolerance)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.record:
        from training.records import capture_git_state

        capture_git_state()  # the code as the run starts (training.records)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    if not args.elastic_sigma > 0:
        p.error(f"--elastic-sigma must be > 0 (the smoothing of the elastic field, in pixels), got {args.elastic_sigma:g}")
    for option, path in (("--json", args.json), ("--png", args.png)):  # before the minutes of measuring
        if path and not Path(path).resolve().parent.is_dir():
            p.error(f"{option} {path}: the folder {Path(path).resolve().parent} does not exist")

    from training.cli import friendly_errors

    torch.manual_seed(args.seed)
    results, info = {}, []
    with friendly_errors():
        loaded = [load(c, args.data_root, args.limit, args.split) for c in args.ckpt]
        labels = labels_for(args, [hp["model"] for _, hp, *_ in loaded])
        for label, path, (model, hp, x, y, state) in zip(labels, args.ckpt, loaded):
            fill = background(state, x.shape[1])
            prog = None if args.quiet else (
                lambda n, lv, v, label=label: print(f"  {label}: {n} {lv:g}: {100 * v:.2f}%", file=sys.stderr))
            res = measure(make_predict(model, hp, state), x, y, fill, args.seed, args.elastic_sigma, prog)
            results[label] = res
            info.append({"label": label, "path": str(path), "model": hp["model"], "data": state.get("target"),
                         "split": args.split, "images": len(y), "background": fill})
            print(table(label, len(y), res, args.split), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.png:
        plot(results, args.png, args.elastic_sigma)
    if args.record:  # the results store adds the command, commit, dirty flag, date and machine
        from training.records import append_record

        append_record(args.record, {"checkpoints": info, "results": results,
                                    "settings": {"limit": args.limit, "seed": args.seed, "split": args.split,
                                                 "elastic_sigma": args.elastic_sigma}})


if __name__ == "__main__":
    main()
