"""Reading checkpoints safely.

A checkpoint is a pickle, and unpickling an untrusted file can run any code it names. Every
checkpoint and cache this project opens is read here with ``torch.load(..., weights_only=True)``
(PyTorch's restricted unpickler: tensors, numbers, strings, lists, tuples, dicts and a few other
plain types, nothing that can run code). The checkpoints ``train.py`` writes contain only those,
so they load; a file that carries any other object is refused with a :class:`CheckpointError`
before anything in it runs. There is no switch to load such a file: a checkpoint of this project
never needs one.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from models.errors import CheckpointError


class UnsafeCheckpointError(CheckpointError):
    """A file that contains objects other than tensors and plain values (which could run code)."""


def safe_load(path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with one clear :class:`CheckpointError` for a file
    that is missing, empty, corrupt, or that contains objects which could run code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty; use another checkpoint (e.g. last.ckpt)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if any(s in str(e) for s in ("GLOBAL", "Unsupported class", "Can only build")):  # an object, not bytes gone bad
            raise UnsafeCheckpointError(
                f"{path} was refused: it contains objects that could run code when loaded "
                f"({_blocked(e)}), and this project only loads tensors and plain values. Checkpoints "
                f"written by this project's train.py never contain such objects: ask for one of those, "
                f"and do not open this file with an unrestricted torch.load unless you trust its source."
            ) from None
        raise _corrupt(path, e) from None
    except Exception as e:
        raise _corrupt(path, e) from None


def read_checkpoint(path) -> dict:
    """Load a checkpoint file safely (on the CPU), checking that it is one of this project's:
    a dict with ``hyper_parameters`` (naming a ``model``) and a ``state_dict``."""
    ckpt = safe_load(path)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "model" not in hp or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this project's Classifier (it names no model)")
    return ckpt


# Where classes named in checkpoints written before the layout split (issue 18) live now.
MOVED_TARGETS = {"models.data.": "training.data."}


def checkpoint_data_state(ckpt: dict) -> dict | None:
    """The data module description (target, hparams, classes, mean, std) saved in a checkpoint,
    its target updated if the checkpoint predates the move of the data modules to ``training``."""
    for value in ckpt.values():
        if isinstance(value, dict) and {"target", "hparams"} <= value.keys():
            target = str(value["target"])
            for old, new in MOVED_TARGETS.items():
                if target.startswith(old):
                    value = {**value, "target": new + target[len(old):]}
            return value
    return None


def _blocked(e: Exception) -> str:
    """The global that PyTorch's restricted unpickler refused, e.g. 'posix.system'."""
    for line in str(e).splitlines():
        if "GLOBAL" in line or "Unsupported class" in line or "Can only build" in line:
            return line.strip().rstrip(".")
    return "an object that is not a tensor or a plain value"


def _corrupt(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} cannot be read: {_why_unreadable(e, path)}. Use another checkpoint "
                           f"(e.g. the run's last.ckpt or an epoch_*.ckpt), or copy this one again")


def _cut_archive(path: Path) -> bool:
    """A file that starts as torch's zip archive but is not a whole one (cut short, or damaged)."""
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(4)
        return head == b"PK\x03\x04" and not zipfile.is_zipfile(path)
    except OSError:
        return False


def _why_unreadable(e: Exception, path: Path | None = None) -> str:
    """What is wrong with a file torch.load refused, in whole sentences of our own (torch's own
    advice to load with ``weights_only=False`` is never repeated: that would run the file's code)."""
    text = str(e)
    if path is not None and _cut_archive(path):
        return "it is truncated or damaged (its archive is incomplete: an interrupted copy or download?)"
    if "central directory" in text or "PytorchStreamReader" in text or "unexpected EOF" in text \
            or isinstance(e, EOFError):
        return "it is truncated or damaged (its archive is incomplete: an interrupted copy or download?)"
    if isinstance(e, (KeyError, pickle.UnpicklingError, UnicodeDecodeError)) or "invalid load key" in text:
        return "it is not a PyTorch checkpoint"
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s.strip()]
    kept = [s for s in sentences if "weights_only" not in s and "arbitrary code" not in s and "trusted source" not in s]
    reason = " ".join(kept[:2]).rstrip(".") or "it is not a readable PyTorch checkpoint"
    return f"{type(e).__name__}: {reason}"
