"""Figures that show what a network learned: filters, feature maps, mistakes, a confusion matrix.

Used by the TensorBoard callbacks (:mod:`training.tb_callbacks`) and by the notebooks. A network
says what to draw by defining methods named as the functions below; a plain ``nn.Module``
without them gets the generic answer:

* **Filters** (:func:`conv_filters`): the network's ``conv_filters() -> {name: (out, in, k, k)}``
  (LeNet: its table convolutions as full kernels, zeros where a map is not connected; the
  self-organised Neocognitron: its S-layers' weights); else the 4-D weights of every
  ``nn.Conv2d`` / ``ops.Conv2d``, named after the feature layer holding it.
* **Feature maps** (:func:`feature_maps`): the network's ``feature_maps(x) -> {name: maps}``
  (the self-organised Neocognitron's U0, UG, US1, UC1, ..., UC3); else the outputs of the
  layers :func:`feature_layers` names, captured with forward hooks.
* **Feature layers** (:func:`feature_layers`): the network's ``feature_layers() -> {name: module}``
  (LeNet's stages C1, S2, ...; the supervised Neocognitron's S1, C1, S2, ...; ConvNet's convs and
  poolings); else every conv / pooling module.
* **Planes per layer** (:func:`planes_per_layer`): the network's ``planes_per_layer()`` (the
  self-organised Neocognitron, whose layers grow while it learns); else None.

matplotlib is imported only by the functions that draw figures, and they build
``matplotlib.figure.Figure`` objects without pyplot: no backend is touched, nothing is left
open, and a notebook shows a returned figure inline.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

POOL_TYPES: tuple[type, ...] = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d)


def _project_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(conv-like, pool-like) module classes of this project, as far as they exist."""
    conv, pool = [nn.Conv2d], list(POOL_TYPES)
    try:
        from models import ops

        conv += [getattr(ops, n) for n in ("Conv2d",) if hasattr(ops, n)]
        pool += [getattr(ops, n) for n in ("MaxPool2d", "AvgPool2d", "LearnedPool2d") if hasattr(ops, n)]
    except ImportError:  # pragma: no cover
        pass
    try:
        from models.neocognitron import BlurCPlanes, PoolCPlanes

        pool += [BlurCPlanes, PoolCPlanes]
    except ImportError:  # pragma: no cover
        pass
    return tuple(conv), tuple(pool)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain network inside a :class:`~training.module.Classifier` (or the model itself)."""
    return getattr(model, "net", model)


def _hook(net: nn.Module, name: str):
    """The network's own method ``name`` (the figure data it defines for itself), or None."""
    own = getattr(net, name, None)
    return own if callable(own) else None


# ----------------------------------------------------------------------------- filters
def conv_filters(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{layer name: weights (out, in, k, k)}`` of every convolution-like layer, in order."""
    net = unwrap(model)
    own = _hook(net, "conv_filters")
    if own is not None:
        return {name: w.detach().float().cpu() for name, w in own().items() if w.dim() == 4}
    conv_types, _ = _project_types()
    # a conv inside a named feature layer (the Neocognitron's S1, ...) takes its name
    qualified = {id(m): q for q, m in net.named_modules()}
    layer_of = {qualified[id(m)]: label for label, m in feature_layers(net).items() if id(m) in qualified}
    out: dict[str, torch.Tensor] = {}
    for name, m in net.named_modules():
        w = getattr(m, "weight", None) if isinstance(m, conv_types) else None
        if isinstance(w, torch.Tensor) and w.dim() == 4:
            label = getattr(m, "name", None) if isinstance(getattr(m, "name", None), str) else None
            for q, lbl in layer_of.items():
                if name == q or name.startswith(q + "."):
                    label = lbl
            label = label or name or type(m).__name__
            if label in out:
                label = f"{label}.{name}"
            out[label] = w.detach().float().cpu()
    return out


def _normalise_each(t: torch.Tensor, symmetric: bool = False) -> torch.Tensor:
    """Scale each tile (first dim) to [0, 1]; ``symmetric``: 0 -> 0.5 (signed weights)."""
    flat = t.flatten(1)
    if symmetric:
        m = flat.abs().amax(1).clamp_min(1e-12).view(-1, *[1] * (t.dim() - 1))
        return (t / m + 1) / 2
    lo = flat.amin(1).view(-1, *[1] * (t.dim() - 1))
    hi = flat.amax(1).view(-1, *[1] * (t.dim() - 1))
    return (t - lo) / (hi - lo).clamp_min(1e-12)


def filter_grid(w: torch.Tensor, max_out: int = 64, max_in: int = 32, upscale: int | None = None) -> torch.Tensor:
    """An image ``(3, H, W)`` of the filters ``w`` (``(out, in, k, k)``), for ``add_image``.

    A first layer (1 or 3 input maps) is shown as images: one tile per filter, RGB for 3 inputs.
    A deeper layer is shown per input map: row ``o`` holds output map ``o``'s kernel on each of
    its input maps (grey, 0.5 = zero weight, each kernel scaled to its own largest magnitude,
    so an unconnected map of a connection table is flat grey).
    """
    from torchvision.utils import make_grid

    w = w.detach().float().cpu()[:max_out]
    o, c, k, _ = w.shape
    scale = upscale or max(1, 24 // k)
    if c in (1, 3):
        tiles = _normalise_each(w)  # (o, c, k, k)
        nrow = int(np.ceil(np.sqrt(o)))
    else:
        w = w[:, :max_in]
        c = w.shape[1]
        tiles = _normalise_each(w.reshape(o * c, 1, k, k), symmetric=True)
        nrow = c
    tiles = F.interpolate(tiles, scale_factor=scale, mode="nearest")
    return make_grid(tiles, nrow=nrow, padding=1, pad_value=1.0)


# ----------------------------------------------------------------------------- feature maps
def feature_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers whose outputs :func:`feature_maps` shows, ``{name: module}``."""
    net = unwrap(model)
    own = _hook(net, "feature_layers")
    if own is not None:
        return dict(own())
    conv_types, pool_types = _project_types()
    return {name: m for name, m in net.named_modules() if name and isinstance(m, conv_types + pool_types)}


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{layer name: output (B, C, H, W)}`` for the images ``x``, in forward order.

    Layers whose output is not a 4-D map (a fully connected stage) are left out."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    try:
        own = _hook(net, "feature_maps")
        if own is not None:
            return {k: v.detach().float().cpu() for k, v in own(x).items()}
        maps: dict[str, torch.Tensor] = {}

        def hook(name):
            def fn(_module, _inp, out):
                out = out[0] if isinstance(out, (tuple, list)) else out
                if isinstance(out, torch.Tensor) and out.dim() == 4 and name not in maps:
                    maps[name] = out.detach().float().cpu()
            return fn

        handles = [m.register_forward_hook(hook(n)) for n, m in feature_layers(net).items()]
        try:
            net(x)
        finally:
            for h in handles:
                h.remove()
        return maps
    finally:
        net.train(was_training)


def feature_map_grid(maps: torch.Tensor, max_maps: int = 16, size: int = 48) -> torch.Tensor:
    """An image ``(3, H, W)``: one row per input image, its first ``max_maps`` feature maps,
    each scaled to [0, 1] on its own and resized to ``size`` pixels."""
    from torchvision.utils import make_grid

    b, c, h, w = maps.shape
    c = min(c, max_maps)
    tiles = maps[:, :c].reshape(b * c, 1, h, w).float()
    tiles = _normalise_each(tiles)
    if h != size:
        tiles = F.interpolate(tiles, size=(size, size), mode="nearest" if h < size else "area")
    return make_grid(tiles, nrow=c, padding=2, pad_value=1.0)


def planes_per_layer(model: nn.Module) -> dict[str, int] | None:
    """The number of planes each layer of a growing network has (None for a fixed network): the
    self-organised Neocognitron's US1..US3 cell-planes and US4 reference vectors."""
    own = _hook(unwrap(model), "planes_per_layer")
    return dict(own()) if own is not None else None


# ----------------------------------------------------------------------------- mistakes
def to_display(x: torch.Tensor) -> torch.Tensor:
    """Normalised images ``(B, C, H, W)`` -> [0, 1] per image, for display."""
    return _normalise_each(x.detach().float().cpu())


def worst_mistakes(scores: torch.Tensor, targets: torch.Tensor, k: int = 16) -> torch.Tensor:
    """Indices of the ``k`` misclassified samples whose true class got the lowest probability
    (softmax of the scores), worst first."""
    p = scores.float().softmax(1)
    wrong = (p.argmax(1) != targets).nonzero().squeeze(1)
    p_true = p[wrong, targets[wrong]]
    return wrong[p_true.argsort()[:k]]


def mistakes_figure(images: torch.Tensor, targets, preds, p_true=None, classes=None, ncols: int = 8,
                    tile: int = 64):
    """A matplotlib figure of the images in a grid, each labelled 'true→predicted (p(true))'.

    One axes and one image (the tiles put together by ``make_grid``) with a text per tile:
    a figure of many small axes takes seconds to lay out, this one a fraction of that."""
    from matplotlib.figure import Figure
    from torchvision.utils import make_grid

    images = to_display(images)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    if n:
        tiles = F.interpolate(images, size=(tile, tile), mode="nearest")
        if tiles.shape[1] == 1:
            tiles = tiles.expand(-1, 3, -1, -1)
        grid = make_grid(tiles, nrow=ncols, padding=2, pad_value=1.0).permute(1, 2, 0).numpy()
    else:
        grid = np.ones((tile, tile, 3))
    fig = Figure(figsize=(1.1 * ncols, 1.1 * nrows + 0.35))
    ax = fig.add_axes((0, 0, 1, 1 - 0.35 / (1.1 * nrows + 0.35)))
    ax.imshow(grid, interpolation="nearest")
    ax.axis("off")
    name = (lambda i: str(classes[i])) if classes is not None else str
    for i in range(n):
        r, c = divmod(i, ncols)
        label = f"{name(int(targets[i]))}→{name(int(preds[i]))}"
        if p_true is not None:
            label += f" ({float(p_true[i]):.2f})"
        ax.text(c * (tile + 2) + 4, r * (tile + 2) + 4, label, fontsize=7, color="tab:red", va="top", ha="left",
                bbox=dict(facecolor="white", alpha=0.7, pad=1, linewidth=0))
    fig.suptitle("worst mistakes: true→predicted (p(true))" if n else "no mistakes", fontsize=9)
    return fig


def confusion_figure(cm: torch.Tensor | np.ndarray, classes=None, normalize: bool = False):
    """A matplotlib figure of a confusion matrix (rows: true class, columns: predicted)."""
    from matplotlib.figure import Figure

    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=float)
    n = cm.shape[0]
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    labels = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n)]
    side = 1.0 + 0.45 * n
    fig = Figure(figsize=(side, side))
    ax = fig.subplots()
    ax.imshow(shown, cmap="Blues")
    if n <= 20:
        top = shown.max() or 1
        for i in range(n):
            for j in range(n):
                v = shown[i, j]
                ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                        fontsize=7, color="white" if v > top / 2 else "black")
    ax.set_xticks(range(n), labels, rotation=90 if max(map(len, labels)) > 2 else 0, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"confusion matrix (accuracy {acc:.3f})", fontsize=9)
    fig.subplots_adjust(left=0.9 / side + 0.05, bottom=0.9 / side + 0.05, right=0.97, top=0.93)
    return fig


# ----------------------------------------------------------------------------- norms
def weight_norms(model: nn.Module) -> dict[str, float]:
    """``{parameter name: L2 norm}`` of every trainable parameter of the network."""
    net = unwrap(model)
    return {n: float(p.detach().norm()) for n, p in net.named_parameters() if p.requires_grad}


def grad_norms(model: nn.Module) -> dict[str, float]:
    """``{parameter name: L2 norm of its gradient}`` (parameters with a gradient only)."""
    net = unwrap(model)
    return {n: float(p.grad.detach().norm()) for n, p in net.named_parameters() if p.grad is not None}


# ----------------------------------------------------------------------------- small data
def sklearn_digits_28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 handwritten digits as 28x28 uint8 images (white on black, the
    digit in a 20x20 box centred in the frame, like MNIST), and their labels. Needs scikit-learn,
    which the ``notebooks`` and ``dev`` extras install (not the runtime install)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError('the small digits need scikit-learn: pip install -e ".[notebooks]" '
                          '(or pip install scikit-learn), or set DATA_DIR to a folder with MNIST') from None

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4))
    return (x[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).numpy(), d.target.astype(np.uint8)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (MNIST's format): magic 0x0000 08 <ndim>, big-endian sizes,
    uint8 data."""
    import struct

    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    Path(path).write_bytes(header + array.astype(np.uint8).tobytes())


def write_small_mnist(root: str | Path, n_test: int = 297, name: str = "MNIST") -> Path:
    """Write :func:`sklearn_digits_28` to ``root/<name>/raw`` in MNIST's IDX layout (1,500 train,
    297 test), so that ``MNISTDataModule(root=root)`` reads it; returns ``root``. The test
    suite's data (``tests/conftest.py``) is this too."""
    root = Path(root)
    x, y = sklearn_digits_28()
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    write_idx(raw / "train-images-idx3-ubyte", x[n_test:])
    write_idx(raw / "train-labels-idx1-ubyte", y[n_test:])
    write_idx(raw / "t10k-images-idx3-ubyte", x[:n_test])
    write_idx(raw / "t10k-labels-idx1-ubyte", y[:n_test])
    return root


def mnist_root_or_small() -> tuple[str, bool]:
    """``(root, small)`` for notebooks: ``$DATA_DIR`` when it holds MNIST (``small=False``);
    otherwise, or when ``NOTEBOOK_SMALL=1`` (as the test suite sets), a temporary folder
    with :func:`write_small_mnist`'s digits (``small=True``)."""
    root = os.environ.get("DATA_DIR")
    forced = os.environ.get("NOTEBOOK_SMALL", "0") == "1"
    if root and not forced and (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        return root, False
    return str(write_small_mnist(tempfile.mkdtemp(prefix="small_mnist_"))), True


# ----------------------------------------------------------------------------- runs
def find_runs(root: str | Path) -> list[Path]:
    """Every run folder under ``root`` (train.py's layout: ``<run>/tensorboard/events.*``)."""
    root = Path(root)
    return sorted({p.parent.parent for p in root.rglob("tensorboard/events.out.tfevents.*")})


def read_runs(runs, out=None) -> list[dict]:
    """:func:`read_run` of every run folder in ``runs`` that has a test figure; a folder without
    one (a failed, interrupted or still running run: no ``test/acc`` in its events) or that cannot
    be read is skipped with a note on ``out`` (stdout), so that one failed job of a sweep does not
    stop a comparison of the others."""
    import math
    import sys

    out = out or sys.stdout
    results = []
    for run in runs:
        try:
            info = read_run(run)
        except Exception as e:  # e.g. a checkpoint cut short by a kill
            print(f"note: skipping {run}: it cannot be read ({type(e).__name__}: {e})", file=out)
            continue
        if not math.isfinite(info["test_acc"]):
            print(f"note: skipping {run}: no test/acc (the run failed, was interrupted or has not finished)",
                  file=out)
            continue
        results.append(info)
    return results


def read_run(run: str | Path) -> dict:
    """What a train.py run folder says about itself, read from its TensorBoard events and
    checkpoint: ``model`` (the registry name), ``params`` (trainable), ``test_acc``,
    ``val_acc_best``, ``train_time_s`` (wall time from the start of the run, when train.py
    logs its hyperparameters, to the last validation), ``val_acc`` (a list of
    ``(step, value)``) and ``run`` (the folder)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = Path(run)
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    scalars = {t: acc.Scalars(t) for t in tags}
    last = lambda t: float(scalars[t][-1].value) if t in scalars else float("nan")  # noqa: E731
    starts = [ev[0].wall_time for ev in scalars.values() if ev]
    try:  # the events file's first record: written when train.py logs the hyperparameters, at the start
        start = acc.FirstEventTimestamp()
    except ValueError:  # no events at all
        start = min(starts, default=0.0)
    end = scalars["val/acc"][-1].wall_time if "val/acc" in scalars else max(starts, default=start)
    info = {"run": run, "model": run.name, "params": None, "test_acc": last("test/acc"),
            "val_acc_best": last("val/acc_best"), "train_time_s": end - start,
            "val_acc": [(e.step, float(e.value)) for e in scalars.get("val/acc", [])]}
    ckpts = sorted((run / "checkpoints").glob("*.ckpt")) if (run / "checkpoints").is_dir() else []
    if ckpts:
        from .checkpoint import build_network, read_checkpoint  # weights_only: a run folder may come from anyone

        hp = read_checkpoint(ckpts[-1])["hyper_parameters"]
        info["model"] = hp.get("model", info["model"])
        net = build_network(**hp)
        info["params"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return info
