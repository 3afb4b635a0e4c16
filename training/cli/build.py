"""Building the Trainer and its callbacks and loggers from their configs."""

from __future__ import annotations

from omegaconf import DictConfig


def instantiate_group(cfg: DictConfig | None) -> list:
    """Instantiate every entry of a callbacks/logger group (a dict of ``_target_`` configs).
    Entries that are null or have ``enabled: false`` are skipped."""
    from hydra.utils import instantiate  # here, not at the top: predict.py uses friendly_errors without Hydra

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
    import torch
    from hydra.utils import instantiate

    trainer = instantiate(cfg, **kwargs)
    if torch.are_deterministic_algorithms_enabled():
        torch.utils.deterministic.fill_uninitialized_memory = False
    return trainer
