"""Trained weights by name, in the style of torchvision's weights enums.

    from models import get_model, list_weights
    net = get_model("lenet5", weights="mnist")         # the trained network, in eval mode
    prep = find("lenet5:mnist").transforms()            # uint8 images -> the input it was trained on
    [w.name for w in list_weights()]                    # "lenet5:mnist", ...
    python -m models.weights                            # the table: each set, its figures, where it came from

A shipped set is one file in ``weights/`` at the project root: a checkpoint written by ``train.py``
cut down to what recognition needs (the hyperparameters that rebuild the network, the network's
``state_dict``, the data module's state: its classes, mean, std and input scaling) and a ``meta``
dict. ``weights/registry.json`` names every set with its file's sha256 and its meta: the data set,
the input it expects, its test figure, the figure over all the seeds recorded, the command,
commit and record that made it. ``benchmarks/export_weights.py`` writes both; nothing else does.

A file is read only after its sha256 matches the registry's, and then with
``torch.load(weights_only=True)`` (tensors and plain values only: nothing in it can run code).
A set the registry lists as not shipped (too large) says why, and how to make it.
Plain PyTorch, like the rest of ``models``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .errors import CheckpointError, ConfigError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def weights_dir() -> Path:
    """``weights/`` at the project root (``NEOLENET_WEIGHTS_DIR`` moves it: the tests use their own)."""
    return Path(os.environ.get("NEOLENET_WEIGHTS_DIR") or WEIGHTS_DIR)


NAME = re.compile(r"[a-z][a-z0-9_]*:[a-z][a-z0-9_]*")  # model:data, e.g. lenet5:mnist


def transform_batch(
    x: torch.Tensor,
    mean: list[float],
    std: list[float],
    normalize: str = "standard",
    resize: int | None = None,
) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> normalised float batch, on whatever device ``x`` is.

    ``standard``: (x/255 - mean) / std, as torchvision's ToTensor + Normalize.
    ``lecun``: background (0) -> -0.1, foreground (255) -> 1.175 (LeCun et al. 1998, II.B).
    ``unit``: x / 255.
    """
    x = x.float().div_(255.0)
    if resize is not None and x.shape[-1] != resize:
        x = F.interpolate(x, size=(resize, resize), mode="bilinear", antialias=True, align_corners=False)
    if normalize == "standard":
        m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
        x = (x - m) / s
    elif normalize == "lecun":
        x = x * 1.275 - 0.1
    return x


@dataclass(frozen=True)
class Weights:
    """One named set of weights: ``model:data``. ``file`` is None for a set not shipped."""

    name: str
    model: str
    data: str
    file: str | None = None
    sha256: str | None = None
    bytes: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    not_shipped: str = ""  # why not, and how to make it

    @property
    def path(self) -> Path | None:
        return weights_dir() / self.file if self.file else None

    def transforms(self):
        """uint8 images ``(B, C, H, W)`` -> the float batch this set's network was trained on (its
        input size, normalisation, mean and std), as torchvision's ``weights.transforms()``. The
        polarity is the set's own (``meta["input"]["polarity"]``: MNIST's light strokes on dark)."""
        inp = self.meta["input"]
        return functools.partial(transform_batch, mean=inp["mean"], std=inp["std"], normalize=inp["normalize"],
                                 resize=inp["size"])


def registry() -> dict[str, Weights]:
    """Every set ``weights/registry.json`` names, shipped or not, by name."""
    path = weights_dir() / "registry.json"
    if not path.is_file():
        return {}
    entries = json.loads(path.read_text())
    return {name: Weights(name=name, **entry) for name, entry in sorted(entries.items())}


def list_weights(model: str | None = None, shipped: bool | None = None) -> list[Weights]:
    """The sets of weights (of ``model`` only, when given; only the shipped ones with
    ``shipped=True``), sorted by name."""
    return [w for w in registry().values()
            if (model is None or w.model == model) and (shipped is None or bool(w.file) == shipped)]


def is_weights_name(text: str) -> bool:
    """Whether ``text`` has the form of a weights name (``model:data``) rather than a path."""
    return bool(NAME.fullmatch(str(text)))


def find(name: str) -> Weights:
    """The set called ``name``; a name that is not there gets the list of those that are."""
    sets = registry()
    if name not in sets:
        known = ", ".join(w.name for w in sets.values() if w.file) or "none"
        raise CheckpointError(f"no weights named {name!r}; the shipped weights are: {known} "
                              "(python -m models.weights lists them with their figures)")
    return sets[name]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_weights(name: str) -> dict:
    """The checkpoint-like dict of the shipped set ``name`` (hyper_parameters, state_dict, the data
    module's state, meta), after its file's sha256 is checked against the registry's."""
    return _read(find(name))


def _read(w: Weights) -> dict:
    name = w.name
    if not w.file:
        raise CheckpointError(f"weights {name} are not shipped: {w.not_shipped}")
    if not w.path.is_file():
        raise CheckpointError(f"weights {name}: {w.path} is missing; restore it (git checkout -- weights/)")
    if sha256_of(w.path) != w.sha256:
        raise CheckpointError(f"weights {name}: {w.path} does not match its sha256 in weights/registry.json (the "
                              "file is damaged or was changed); restore it (git checkout -- weights/)")
    ckpt = torch.load(w.path, map_location="cpu", weights_only=True)
    return {**ckpt, "weights_name": name}


def build_network(model: str, model_kwargs: dict | None = None, in_channels: int = 1, num_classes: int = 10,
                  input_size: int = 28, channels_last: bool = False, **other_hparams: Any) -> torch.nn.Module:
    """The registered network ``model``, built from a Classifier's hyperparameters
    (``build_network(**ckpt["hyper_parameters"])``; the optimizer and the other training settings
    are ignored), in the channels-last memory format when it was trained so. Its weights are the
    caller's to load."""
    from . import get_model

    net = get_model(model, in_channels=in_channels, num_classes=num_classes, input_size=input_size,
                    **dict(model_kwargs or {}))
    return net.to(memory_format=torch.channels_last) if channels_last else net


def network_weights(state_dict: dict) -> dict:
    """The network's own entries of a Classifier's ``state_dict`` (its ``net.`` prefix removed)."""
    return {k[len("net."):]: v for k, v in state_dict.items() if k.startswith("net.")}


def pretrained(model: str, weights: str, **kwargs: Any) -> torch.nn.Module:
    """``get_model(model, weights=...)``: the network of the set ``model:weights`` (or ``weights``
    given whole, ``"lenet5:mnist"``) with its trained weights, in eval mode. The set fixes the
    architecture: keyword arguments are accepted only where they equal the set's own."""
    name = weights if ":" in weights else f"{model}:{weights}"
    w = find(name)
    if w.model != model:
        raise ConfigError(f"weights {name} are for {w.model}, not {model}: get_model({w.model!r}, weights={w.data!r})")
    ckpt = _read(w)
    hp = ckpt["hyper_parameters"]
    have = {"in_channels": hp.get("in_channels", 1), "num_classes": hp.get("num_classes", 10),
            "input_size": hp.get("input_size", 28), **(hp.get("model_kwargs") or {})}
    differ = {k: v for k, v in kwargs.items() if k not in have or have[k] != v}
    if differ:
        raise ConfigError(f"weights {name} were trained with {', '.join(f'{k}={have.get(k)!r}' for k in differ)}; "
                          f"their architecture is fixed: drop {', '.join(differ)} (or build without weights)")
    net = build_network(**hp)
    net.load_state_dict(network_weights(ckpt["state_dict"]))
    return net.eval()


def table() -> str:
    """The sets, one line each (``python -m models.weights``)."""
    lines = []
    for w in registry().values():
        if w.file:
            m, s = w.meta, w.meta.get("seeds", {})
            lines.append(f"{w.name:28s} test acc {100 * m['test_acc']:.2f}% (seed {m.get('seed')}; "
                         f"{s.get('n')} seeds {100 * s.get('test_acc_mean', 0):.2f} ± {100 * s.get('test_acc_std', 0):.2f})"
                         f"  {w.bytes / 2**20:.2f} MB  {m.get('record')}")
        else:
            lines.append(f"{w.name:28s} not shipped: {w.not_shipped}")
    return "\n".join(lines) or "no weights are shipped"


if __name__ == "__main__":
    print(table())
