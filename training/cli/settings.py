"""The settings of a run, checked before any data is read: the ``trainer.*`` keys (their types
and ranges, a key Lightning's Trainer does not take, more CPU processes than cores), the top-level
``seed``, ``matmul_precision``, ``test`` and ``record``, and enough epochs for a network that
learns in phases. Each mistake is a :class:`ConfigError` naming the key, the value and what is
expected.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from models.checks import is_int
from models.errors import ConfigError


def _is_number(v) -> bool:  # infinity too (gradient_clip_val=inf: no clipping), unlike models.checks.is_number
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_at_least(lo: int, null: bool = False):
    return lambda v: (null and v is None) or (is_int(v) and v >= lo)


def _time_ok(v) -> bool:
    """A duration as Lightning takes it: "DD:HH:MM:SS" or {days:, hours:, minutes:, seconds:}."""
    if isinstance(v, str):
        return re.fullmatch(r"\s*\d+:\d+:\d+:\d+\s*", v) is not None
    if isinstance(v, (dict, DictConfig)):
        units = {"weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds"}
        return bool(v) and all(k in units and _is_number(x) and x >= 0 for k, x in v.items())
    return False


def _limit_ok(v) -> bool:  # a count of batches (int) or a fraction (float in [0, 1])
    return v is None or (is_int(v) and v >= 0) or (isinstance(v, float) and 0.0 <= v <= 1.0)


def _devices_ok(v) -> bool:
    if is_int(v):
        return v >= 1 or v == -1
    if isinstance(v, str):
        return v == "auto" or re.fullmatch(r"\s*-?\d+\s*(,\s*\d+\s*)*,?\s*", v) is not None and v.strip() not in ("0", "")
    if isinstance(v, (list, tuple, ListConfig)):
        return bool(v) and all(is_int(i) and i >= 0 for i in v)
    return False


_PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "64-true", "16-true", "bf16-true", "transformer-engine",
               "transformer-engine-float16", "32", "16", "bf16", "64", 32, 16, 64)
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_BOOL_OR_NULL = (lambda v: v is None or isinstance(v, bool), "true, false or null")
_LIMIT = (_limit_ok, "a number of batches (an integer >= 0), a fraction of them (a float from 0.0 to 1.0) or null")

# trainer.<key>: (check, what is expected). Keys not listed (strategy, plugins, profiler, ...) are
# left to Lightning.
TRAINER_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "accelerator": (lambda v: isinstance(v, str) and v.strip() != "", "a name such as cpu, gpu, mps or auto"),
    "devices": (_devices_ok, "a positive integer, -1 (all), auto, or a list of device indices such as [0,1]"),
    "num_nodes": (_int_at_least(1), "a positive integer"),
    "precision": (lambda v: not isinstance(v, bool) and v in _PRECISIONS,
                  "one of 32-true, 16-mixed, bf16-mixed, 16-true, bf16-true, 64-true"),
    "max_epochs": (_int_at_least(-1, null=True), "an integer >= 0 (-1: no limit) or null"),
    "min_epochs": (_int_at_least(0, null=True), "an integer >= 0 or null"),
    "max_steps": (_int_at_least(-1), "an integer >= 0 (-1: no limit)"),
    "min_steps": (_int_at_least(0, null=True), "an integer >= 0 or null"),
    "max_time": (lambda v: v is None or _time_ok(v), 'a duration "DD:HH:MM:SS" (e.g. "00:01:30:00"), '
                 "{days: .., hours: .., minutes: .., seconds: ..} or null"),
    "limit_train_batches": _LIMIT,
    "limit_val_batches": _LIMIT,
    "limit_test_batches": _LIMIT,
    "limit_predict_batches": _LIMIT,
    "overfit_batches": (lambda v: v is not None and _limit_ok(v),
                        "a number of batches (an integer >= 0) or a fraction of them (a float from 0.0 to 1.0)"),
    "val_check_interval": (lambda v: v is None or (is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1)
                           or _time_ok(v), 'a number of training batches (an integer >= 1), a fraction of an epoch '
                           '(a float in (0, 1]), a duration "DD:HH:MM:SS" or null'),
    "check_val_every_n_epoch": (_int_at_least(1, null=True), "a positive integer or null"),
    "num_sanity_val_steps": (_int_at_least(-1), "an integer >= 0 (-1: all validation batches)"),
    "log_every_n_steps": (_int_at_least(1), "a positive integer"),
    "accumulate_grad_batches": (_int_at_least(1), "a positive integer"),
    "gradient_clip_val": (lambda v: v is None or (_is_number(v) and v >= 0), "a number >= 0 or null"),
    "gradient_clip_algorithm": (lambda v: v in (None, "norm", "value"), "norm, value or null"),
    "deterministic": (lambda v: v is None or isinstance(v, bool) or v == "warn", "true, false, warn or null"),
    "benchmark": _BOOL_OR_NULL,
    "fast_dev_run": (lambda v: isinstance(v, bool) or (is_int(v) and v >= 0),
                     "true, false or a number of batches (an integer >= 0)"),
    "reload_dataloaders_every_n_epochs": (_int_at_least(0), "an integer >= 0"),
    "enable_checkpointing": _BOOL_OR_NULL,
    "enable_progress_bar": _BOOL_OR_NULL,
    "enable_model_summary": _BOOL_OR_NULL,
    "inference_mode": _BOOL,
    "use_distributed_sampler": _BOOL,
    "sync_batchnorm": _BOOL,
    "detect_anomaly": _BOOL,
    "barebones": _BOOL,
    "default_root_dir": (lambda v: v is None or isinstance(v, str), "a folder path or null"),
}


MATMUL_PRECISIONS = ("highest", "high", "medium")


def check_run_config(cfg: DictConfig) -> None:
    """The top-level settings of a run (``seed``, ``matmul_precision``), before anything is built:
    a :class:`ConfigError` naming the key, the value and what is expected."""
    seed = cfg.get("seed")
    if not is_int(seed) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be an integer from 0 to {2**32 - 1}, got {_show(seed)}")
    precision = cfg.get("matmul_precision", "high")
    if precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"matmul_precision must be one of {', '.join(MATMUL_PRECISIONS)}, got {_show(precision)}")
    if "test" in cfg and not isinstance(cfg.get("test"), bool):  # train.py's: test after fitting
        raise ConfigError(f"test must be true or false (test the best checkpoint after fitting), got {_show(cfg.get('test'))}")
    record = cfg.get("record")  # train.py's: checked now, not after the run has trained
    if record is not None and not (isinstance(record, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", record)):
        raise ConfigError(f"record must be null or a name of letters, digits, '_', '-' or '.' (it names "
                          f"benchmarks/results/<name>.jsonl), got {_show(record)}")


def check_learning_phases(cfg: DictConfig, net) -> None:
    """A self-organised network (one learning phase an epoch: ``net.learning_epochs``, its top
    layer's ``top_epochs`` passes and ``adjust_epochs`` adjusting passes last) given too few epochs
    would be tested before its top layer has learnt anything (its answer would be at chance) or
    before the adjusting its settings ask for. Refused, naming the number of epochs it needs."""
    top = getattr(net, "top_epochs", None)
    epochs = cfg.trainer.get("max_epochs")
    if not is_int(top) or not hasattr(net, "done_learning") or not is_int(epochs) or epochs < 0 \
            or not cfg.get("test", True):  # not tested: training only its first phases is a fine thing to do
        return
    need = getattr(net, "learning_epochs", 2 + top)
    adjust = need - 2 - top
    if epochs < need:
        what = "its top layer has learnt (it would answer at chance)" if epochs < 2 + top else \
            "its top layer's adjusting passes"
        raise ConfigError(
            f"{cfg.model.get('model')} learns in phases, one epoch each (US2, US3, then {top} pass(es) of its top "
            f"layer{f' and {adjust} adjusting pass(es)' if adjust else ''}): trainer.max_epochs={epochs} stops "
            f"before {what}; use trainer.max_epochs={need} (or test=false to train its first phases only)"
        )


def check_trainer_config(cfg: DictConfig | dict | None) -> None:
    """Check the ``trainer`` config's settings (types and ranges) before anything is built or read,
    so that ``trainer.max_epochs=abc`` stops at once with a :class:`ConfigError` naming the key, the
    value and what is expected (Lightning would raise a TypeError only after the data are loaded).
    A key that is not an argument of Lightning's Trainer (``+trainer.max_epoch=3``) is named too."""
    if cfg is None:
        return
    if not isinstance(cfg, (dict, DictConfig)):
        raise ConfigError(f"trainer must be a group of Trainer settings (trainer=cpu|gpu|ddp), got {cfg!r}")
    for key in list(cfg.keys()):
        if not isinstance(key, str) or key.startswith("_"):
            continue
        try:
            value = cfg[key]
        except Exception:  # an interpolation that cannot be resolved here (e.g. ${hydra:...} outside Hydra)
            continue
        if key in TRAINER_CHECKS:
            ok, expected = TRAINER_CHECKS[key]
            if not ok(value):
                raise ConfigError(f"trainer.{key} must be {expected}, got {_show(value)}")
        else:
            known = _trainer_arguments()
            if known and key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean trainer.{close[0]}?)" if close else ""
                raise ConfigError(f"trainer.{key} is not a setting of Lightning's Trainer{hint}")
    if is_int(cfg.get("min_epochs")) and is_int(cfg.get("max_epochs")) and cfg["max_epochs"] >= 0 \
            and cfg["min_epochs"] > cfg["max_epochs"]:
        raise ConfigError(f"trainer.min_epochs ({cfg['min_epochs']}) must not exceed trainer.max_epochs "
                          f"({cfg['max_epochs']})")
    _check_cpu_processes(cfg)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check_cpu_processes(cfg) -> None:
    """On the CPU each of ``trainer.devices`` is a training process (DDP over gloo): more of them
    than twice the machine's cores (and more than 4: ``trainer.devices=64`` on 2) start dozens of copies of the run
    that fill the memory until the kernel kills them. Refused, naming the cores."""
    devices, accelerator = cfg.get("devices"), cfg.get("accelerator")
    if not is_int(devices) or devices <= 1 or accelerator not in ("cpu", "auto"):
        return
    if accelerator == "auto":
        import torch

        if torch.cuda.is_available():
            return
    cores = _cpu_count()
    nodes = cfg.get("num_nodes") if is_int(cfg.get("num_nodes")) else 1
    if devices > max(4, 2 * cores) and nodes == 1:  # a few more than the cores still work (2 on 1 core: the tests)
        raise ConfigError(f"trainer.devices={devices} starts {devices} training processes on the CPU, but this machine "
                          f"has {cores} core(s): use trainer.devices={cores} or less (or trainer.devices=1)")


def _show(value) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    return repr(value)


def _trainer_arguments() -> set[str]:
    import inspect

    try:
        from lightning.pytorch import Trainer
    except ImportError:  # pragma: no cover
        return set()
    return {p for p in inspect.signature(Trainer.__init__).parameters if p != "self"}
