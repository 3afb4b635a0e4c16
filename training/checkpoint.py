"""Reading checkpoints safely.

A checkpoint is a pickle, and unpickling an untrusted file can run any code it names. Every
checkpoint and cache this project opens is read here with ``torch.load(..., weights_only=True)``
(PyTorch's restricted unpickler: tensors, numbers, strings, lists, tuples, dicts and a few other
plain types, nothing that can run code). The checkpoints ``train.py`` writes contain only those,
so they load; a file that carries any other object is refused with a :class:`CheckpointError`
before anything in it runs. There is no switch to load such a file: a checkpoint of this project
never needs one.

The network a checkpoint names is rebuilt from its hyperparameters by :func:`build_network`, and
evaluated as it was in training by :func:`mirror_averaged` (``model.tta_flip``), the same for the
Classifier, predict.py and the run reports; neither needs Lightning.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from models.errors import CheckpointError
from models.weights import build_network, is_weights_name, load_weights, network_weights  # noqa: F401 (re-exported)


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
    a dict with ``hyper_parameters`` (naming a ``model``) and a ``state_dict``. A name of shipped
    weights (``lenet5:mnist``, :mod:`models.weights`) where no such file exists reads that set."""
    if is_weights_name(path) and not Path(path).exists():  # a shipped set by name (models.weights)
        return load_weights(str(path))
    ckpt = safe_load(path)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "model" not in hp or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this project's Classifier (it names no model)")
    return ckpt


def mirror_averaged(forward, x: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation (``model.tta_flip``): the mean of ``forward``'s scores for the
    images ``x`` and for their mirror images (flipped left to right)."""
    return (forward(x) + forward(x.flip(3))) / 2


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


def share_last_checkpoint(best: str | Path) -> bool:
    """Make the run's ``last.ckpt`` a link to the best checkpoint ``best`` when both hold the same
    training state (the same epoch, step and weights: the run's best epoch was its last), so that
    a run keeps one copy of its weights, not two. Returns whether it did.

    The best checkpoint is a whole one (weights, optimiser, loops), so resuming from the link is
    resuming from the same state. Lightning writes a checkpoint to a temporary file and moves it
    into place, so a resumed run that saves ``last.ckpt`` again replaces the link, never the file
    it points to. Where links cannot be made (some Windows setups) both copies stay."""
    import os

    best = Path(best) if best else None
    last = best.with_name("last.ckpt") if best else None
    if best is None or best.name == "last.ckpt" or not best.is_file() or last.is_symlink() or not last.is_file():
        return False
    try:
        a = torch.load(best, map_location="cpu", weights_only=True, mmap=True)
        b = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file is left as it is
        return False
    if (a.get("epoch"), a.get("global_step")) != (b.get("epoch"), b.get("global_step")):
        return False
    sa, sb = a.get("state_dict", {}), b.get("state_dict", {})
    if sa.keys() != sb.keys() or any(not torch.equal(sa[k], sb[k]) for k in sa):
        return False
    link = last.with_name(".last.ckpt.link")
    try:
        link.unlink(missing_ok=True)
        link.symlink_to(best.name)
        os.replace(link, last)
    except OSError:
        link.unlink(missing_ok=True)
        return False
    return True


def disk_use_mb(folder: str | Path) -> float:
    """MiB the files under ``folder`` take (a link counts as itself, not as the file it names)."""
    total = 0
    for p in Path(folder).rglob("*"):
        try:
            if p.is_symlink() or p.is_file():
                total += p.lstat().st_size
        except OSError:
            pass
    return total / 2**20


def keep_one_copy(trainer, folder: str | Path) -> dict[str, float]:
    """At the end of a run: :func:`share_last_checkpoint` for the trainer's best checkpoint, and the
    run folder's disk use, as the metrics ``disk/last_ckpt_shared`` (1.0 when shared) and
    ``disk/run_mb``."""
    cb = trainer.checkpoint_callback
    best = cb.best_model_path if cb is not None else ""
    out = {"disk/last_ckpt_shared": 1.0} if best and share_last_checkpoint(best) else {}
    out["disk/run_mb"] = disk_use_mb(folder)
    return out

