"""What the command-line entry points share: building the Trainer and its callbacks/loggers
from configs, and reporting a :class:`UserError` as one clear message instead of a traceback."""

from __future__ import annotations

import contextlib
import os
import sys

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from .errors import UserError


@contextlib.contextmanager
def friendly_errors():
    """Print a UserError's message (no traceback) and exit with status 2.
    ``HYDRA_FULL_ERROR=1`` (or ``NEOLENET_DEBUG=1``) re-raises it with its traceback."""
    try:
        yield
    except Exception as e:
        cause = user_error(e)
        if cause is None or os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("NEOLENET_DEBUG") == "1":
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)


def user_error(e: BaseException | None) -> UserError | None:
    """The UserError behind ``e`` (Hydra's instantiate and Lightning wrap exceptions), if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, UserError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def instantiate_group(cfg: DictConfig | None) -> list:
    """Instantiate every entry of a callbacks/logger group (a dict of ``_target_`` configs).
    Entries that are null or have ``enabled: false`` are skipped."""
    objects = []
    for entry in (cfg or {}).values():
        if entry is None or "_target_" not in entry:
            continue
        entry = dict(entry)
        if not entry.pop("enabled", True):
            continue
        objects.append(instantiate(entry))
    return objects


def instantiate_trainer(cfg: DictConfig, **kwargs):
    """The Lightning Trainer of a ``trainer`` config (``kwargs`` override it). Under
    ``deterministic: true`` (the CPU default) PyTorch would also fill every new tensor with NaN,
    an aid for finding reads of uninitialised memory (no op here makes one) that cost up to 9% of
    a training step on a CPU (``benchmarks/bench_harness.py --breakdown`` puts it back): it is
    turned off; the results stay deterministic."""
    trainer = instantiate(cfg, **kwargs)
    if torch.are_deterministic_algorithms_enabled():
        torch.utils.deterministic.fill_uninitialized_memory = False
    return trainer
