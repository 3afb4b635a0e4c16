"""What the command-line entry points share: building the Trainer and its callbacks/loggers
from configs, checking the trainer settings, and reporting a mistake as one clear message
instead of a traceback.

=============================  ====================================================================
``friendly_errors``            a :class:`UserError` (or Ctrl-C) as one line on stderr, exit status 2
                               (130); ``HYDRA_FULL_ERROR=1`` / ``NEOLENET_DEBUG=1``: the traceback
``run_main``                   the entry points' ``__main__``: Hydra's own errors (an unknown
                               ``model=`` name, a misspelled key) as one line, exit status 2; and
                               ``ckpt_path=<run>/checkpoints/last.ckpt`` resumes with that run's own
                               overrides (``resume_overrides``)
``check_trainer_config``       the types and ranges of the ``trainer.*`` settings, before any data
                               is read
``check_resume_config``        a resumed run keeps its model and data split
``discard_failed_run``         a run folder whose run failed before its first training step is removed
=============================  ====================================================================
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from models.errors import ConfigError, UserError


@contextlib.contextmanager
def friendly_errors(writing_to: str | os.PathLike | None = None):
    """Print a UserError's message (no traceback) and exit with status 2.
    ``HYDRA_FULL_ERROR=1`` (or ``NEOLENET_DEBUG=1``) re-raises it with its traceback.
    ``writing_to``: the folder the command writes (the run folder), named when a write fails
    without saying which file (TensorBoard's writer thread on a full disk)."""
    import threading

    original_hook = threading.excepthook

    def thread_hook(args):  # a write error in a writer thread: reported once, by the main thread
        if _debug() or user_error(args.exc_value) is None:
            original_hook(args)

    threading.excepthook = thread_hook
    try:
        yield
    except KeyboardInterrupt:  # Ctrl-C outside training (Lightning handles it during fit: InterruptCheckpoint)
        if _debug():
            raise
        print("interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        cause = user_error(e, writing_to)
        if cause is None or _debug():
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    finally:
        threading.excepthook = original_hook


def argument_parser(**kwargs):
    """An ``argparse.ArgumentParser`` whose mistakes (a missing or misspelled option, a value of the
    wrong type) are one line, ``error: <what> (see <prog> --help)``, exit status 2, as every other
    mistake (argparse's own prints its usage first and ``<prog>: error: ...``)."""
    import argparse

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    return OneLineParser(**kwargs)


def _debug() -> bool:
    """Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1``, ``NEOLENET_DEBUG=1``)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("NEOLENET_DEBUG") == "1"


def user_error(e: BaseException | None, writing_to: str | os.PathLike | None = None) -> UserError | None:
    """The UserError behind ``e`` (Hydra's instantiate and Lightning wrap exceptions), if any; a
    known third-party error that is the user's to fix (:func:`translate_error`) becomes one."""
    seen = set()
    chain = []
    while e is not None and id(e) not in seen:
        if isinstance(e, UserError):
            return e
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    for link in chain:
        translated = translate_error(link, writing_to)
        if translated is not None:
            return translated
    return None


# errno: what it means for a file the project writes
_WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EISDIR: "a folder stands where a file should be",
    errno.EEXIST: "a file stands where a folder should be",
}


def translate_error(e: BaseException, writing_to: str | os.PathLike | None = None) -> UserError | None:
    """A clear :class:`UserError` for a third-party error that the user can fix (None otherwise):

    * a write that failed (a full disk, a read-only or unwritable folder, a file where the run
      folder goes): :class:`StorageError` naming the path, why, and what to do;
    * a mandatory config value left out (``???``: ``ckpt_path`` of eval.py, ``data.root`` of
      ``data=image_folder``): which key to set;
    * ``trainer.accelerator`` naming hardware this machine lacks (Lightning's "No supported gpu backend");
    * a tensor torch's allocator cannot make (a network built for ``data.resize=100000``): which settings
      make things large.
    """
    from models.errors import StorageError

    if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
        where = e.filename or (f"to {writing_to}" if writing_to else "a file")
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        return StorageError(f"cannot write {where}: {_WRITE_ERRNOS[e.errno]}{_free_space(where, e.errno)}. "
                            f"Nothing already written was removed; {'free some space there, or ' if full else ''}"
                            f"choose a folder you can write (LOG_DIR=<folder>, or hydra.run.dir=<folder>)")
    if type(e).__name__ == "MissingMandatoryValue":
        key = getattr(e, "full_key", None) or "a config value"
        hint = {"ckpt_path": "ckpt_path=<run>/checkpoints/last.ckpt (the checkpoint to evaluate)",
                "data.root": "data.root=<folder> (it holds train/<class>/* and test/<class>/* images)",
                "data.num_classes": "data.num_classes=<the number of class folders in train/>"}.get(key, f"{key}=<value>")
        return ConfigError(f"{key} must be given (the config leaves it open, ???): add {hint} to the command line")
    memory = _ALLOC_FAILED.search(str(e)) if isinstance(e, (RuntimeError, MemoryError)) else None
    if memory is not None:  # torch's allocator (CPU or CUDA) refused a tensor: a setting asks for too much
        size = memory.group(1) or memory.group(2)
        asked = f"{int(size) / 2**30:.1f} GiB" if size.isdigit() else size
        where = "GPU" if "CUDA" in str(e) else "CPU"
        return ConfigError(f"not enough memory: a tensor of {asked} could not be allocated on the {where}; a setting "
                           f"makes the network or its batches too large for this machine (data.resize, data.batch_size, "
                           f"data.eval_batch_size, the layer widths in model.model_kwargs): make it smaller")
    lightning = _lightning_setting_error(e)
    if lightning is not None:
        return lightning
    if type(e).__name__ == "MisconfigurationException" and "No supported gpu backend" in str(e):
        return ConfigError("trainer=gpu (trainer.accelerator=gpu) but this machine has no GPU that PyTorch can use "
                           "(torch.cuda.is_available() is False): use trainer=cpu, the default")
    return None


def _lightning_setting_error(e: BaseException) -> ConfigError | None:
    """Lightning's refusals of a trainer setting it checks only when the Trainer is built or fitting:
    an accelerator it does not know or this machine lacks, a val_check_interval beyond an epoch."""
    text = str(e)
    if isinstance(e, ValueError) and "You selected an invalid accelerator name" in text:
        return ConfigError(f"trainer.accelerator: {text.strip()} (trainer=cpu, trainer=gpu choose one)")
    if type(e).__name__ == "MisconfigurationException" and "can not run on your system" in text:
        name = re.search(r"`(\w+)Accelerator`", text)
        return ConfigError(f"trainer.accelerator={(name.group(1).lower() if name else '...')}: this machine has no such "
                           f"device; use trainer=cpu (or trainer=gpu on a machine with a GPU)")
    if isinstance(e, ModuleNotFoundError) and "Requirement 'torch_xla" in text:
        return ConfigError("trainer.accelerator=tpu needs torch_xla, which is not installed (and a TPU): use trainer=cpu "
                           "or trainer=gpu")
    bad = re.search(r"`val_check_interval` \((\d+)\) must be less than or equal to the number of the training batches "
                    r"\((\d+)\)", text) if isinstance(e, ValueError) else None
    if bad:
        n, batches = bad.groups()
        return ConfigError(f"trainer.val_check_interval={n} is more than the {batches} training batches of an epoch: use "
                           f"at most {batches}, a fraction of an epoch (e.g. 0.5), or trainer.check_val_every_n_epoch=null "
                           f"to count batches across epochs")
    return None


# torch's allocators: "DefaultCPUAllocator: can't allocate memory: you tried to allocate 639974400256 bytes"
# (or "not enough memory: ..."), "CUDA out of memory. Tried to allocate 20.00 GiB"
_ALLOC_FAILED = re.compile(r"DefaultCPUAllocator: .*?you tried to allocate (\d+) bytes|"
                           r"CUDA out of memory\. Tried to allocate ([\d.]+ [KMGT]?i?B)")


def _free_space(path: str, code: int) -> str:
    if code not in (errno.ENOSPC, errno.EDQUOT):
        return ""
    folder = Path(path.removeprefix("to "))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f" ({shutil.disk_usage(folder).free / 2**20:.0f} MiB free in {folder})"
    except OSError:
        return ""


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


# --- the trainer settings, checked before any data is read -------------------------------------


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_at_least(lo: int, null: bool = False):
    return lambda v: (null and v is None) or (_is_int(v) and v >= lo)


def _time_ok(v) -> bool:
    """A duration as Lightning takes it: "DD:HH:MM:SS" or {days:, hours:, minutes:, seconds:}."""
    if isinstance(v, str):
        return re.fullmatch(r"\s*\d+:\d+:\d+:\d+\s*", v) is not None
    if isinstance(v, (dict, DictConfig)):
        units = {"weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds"}
        return bool(v) and all(k in units and _is_number(x) and x >= 0 for k, x in v.items())
    return False


def _limit_ok(v) -> bool:  # a count of batches (int) or a fraction (float in [0, 1])
    return v is None or (_is_int(v) and v >= 0) or (isinstance(v, float) and 0.0 <= v <= 1.0)


def _devices_ok(v) -> bool:
    if _is_int(v):
        return v >= 1 or v == -1
    if isinstance(v, str):
        return v == "auto" or re.fullmatch(r"\s*-?\d+\s*(,\s*\d+\s*)*,?\s*", v) is not None and v.strip() not in ("0", "")
    if isinstance(v, (list, tuple, ListConfig)):
        return bool(v) and all(_is_int(i) and i >= 0 for i in v)
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
    "val_check_interval": (lambda v: v is None or (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1)
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
    "fast_dev_run": (lambda v: isinstance(v, bool) or (_is_int(v) and v >= 0),
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
    if not _is_int(seed) or not 0 <= seed < 2**32:
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
    """A self-organised network (one learning phase an epoch, ``net.top_epochs`` passes of its top
    layer last) given too few epochs would be tested before its top layer has learnt anything: its
    answer would be uniform (chance). Refused, naming the number of epochs it needs."""
    top = getattr(net, "top_epochs", None)
    epochs = cfg.trainer.get("max_epochs")
    if not _is_int(top) or not hasattr(net, "done_learning") or not _is_int(epochs) or epochs < 0 \
            or not cfg.get("test", True):  # not tested: training only its first phases is a fine thing to do
        return
    need = 2 + top
    if epochs < need:
        raise ConfigError(
            f"{cfg.model.get('model')} learns in phases, one epoch each (US2, US3, then {top} pass(es) of its top "
            f"layer): trainer.max_epochs={epochs} stops before its top layer has learnt (it would answer at chance); "
            f"use trainer.max_epochs={need} (or test=false to train its first phases only)"
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
    if _is_int(cfg.get("min_epochs")) and _is_int(cfg.get("max_epochs")) and cfg["max_epochs"] >= 0 \
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
    if not _is_int(devices) or devices <= 1 or accelerator not in ("cpu", "auto"):
        return
    if accelerator == "auto":
        import torch

        if torch.cuda.is_available():
            return
    cores = _cpu_count()
    nodes = cfg.get("num_nodes") if _is_int(cfg.get("num_nodes")) else 1
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


# --- the entry points' __main__: Hydra's own errors, and resuming a run with its own config ----


class _ComposeFailed(BaseException):
    """Carries Hydra's composition error out of Hydra's reporting (a BaseException, so that
    Hydra's ``run_and_report``, which catches Exception, lets it through)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _hydra_errors_to_us():
    """While Hydra runs, its composition errors (an unknown config name, a key that is not in the
    config, an override it cannot parse) come to :func:`run_main` instead of being printed by
    Hydra in 6-10 lines with exit status 1. Hydra reports them from its private ``run_and_report``
    (which prints and calls ``sys.exit(1)``; see :mod:`training.private_api`); everything else (an
    error raised by the job itself) is still reported by Hydra as before."""
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from training.private_api import hydra_run_and_report_wrapped

    def guard(func):
        def guarded():
            try:
                return func()
            except (ConfigCompositionException, OverrideParseException) as e:
                raise _ComposeFailed(e) from e
            except ValueError as e:  # an override without a key ("=3"): Hydra's parser lets it through
                if not str(e).startswith("Config group override must be"):
                    raise
                raise _ComposeFailed(e) from e
            except Exception as e:  # e.g. Hydra cannot create the run folder (a file in the way, a full disk)
                if user_error(e) is None:
                    raise
                raise _ComposeFailed(e) from e

        return guarded

    return hydra_run_and_report_wrapped(guard)


def run_main(main: Callable[[], Any], config_name: str, resume: bool = False) -> None:
    """Run a ``@hydra.main`` entry point (``main``) from the command line.

    * Hydra's composition errors are reported as one line and exit status 2, like every other
      mistake (:func:`hydra_error_message`); ``HYDRA_FULL_ERROR=1`` shows Hydra's own report.
    * ``resume``: ``ckpt_path=<run>/checkpoints/last.ckpt`` (not in a ``-m`` sweep) composes the run's
      config from the overrides it was started with (``<run>/.hydra/overrides.yaml``), with the
      command line's on top (:func:`resume_overrides`)."""
    import inspect

    config_dir = Path(inspect.getfile(inspect.unwrap(main))).resolve().parent / "configs"
    if resume:
        _resume_argv(sys.argv, config_dir)
    if _debug():
        main()
        return
    try:
        with _hydra_errors_to_us():
            main()
    except _ComposeFailed as failed:
        cause = user_error(failed.error)
        if cause is not None:
            print(f"error: {cause}", file=sys.stderr)
            sys.exit(2)
        overrides = _argv_overrides(sys.argv) or []
        print(f"error: {hydra_error_message(failed.error, config_dir, config_name, overrides)}", file=sys.stderr)
        sys.exit(2)


def _parse_args(argv: list[str]):
    from training.private_api import hydra_args_parser

    try:
        return hydra_args_parser().parse_args(argv[1:])
    except SystemExit:  # argparse's own error: Hydra reports it again when it parses
        return None


def _argv_overrides(argv: list[str]) -> list[str] | None:
    args = _parse_args(argv)
    return list(args.overrides) if args is not None else None


def hydra_error_message(error: Exception, config_dir: Path, config_name: str, overrides: list[str]) -> str:
    """One line for a Hydra composition error: the options of an unknown config name, the closest
    key for one that is not in the config, the reason an override cannot be parsed."""
    from hydra.errors import MissingConfigException, OverrideParseException

    text = str(error)
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, name = str(error.missing_cfg_file).rpartition("/")
        where = re.match(r"In '([^']+)'", text)
        inside = f" (named in {where.group(1)})" if where and where.group(1) not in (config_name, "hydra/config") else ""
        if group:
            return f"no {group} '{name}'{inside}; choose one of: {', '.join(error.options)}"
    if text.startswith("Config group override must be"):  # "=3": no key before the "="
        return f"cannot read an override: {text} (an override is key=value, e.g. seed=3)"
    if isinstance(error, OverrideParseException):
        first = text.strip().splitlines()[0] if text.strip() else "syntax error"
        return (f"cannot read the override {error.override!r}: {first} (quote a value with spaces or commas: "
                f"key='a,b'; a list: key=[a,b]; a sweep needs -m)")
    bad = re.match(r"Could not override '([^']+)'", text)
    if bad and config_name == "eval" and bad.group(1).split(".")[0] in ("model", "data"):
        if bad.group(1).split(".")[0] == "model":
            return ("eval.py evaluates the network saved in the checkpoint; a model setting would not change it: drop "
                    f"{bad.group(1)}=..., and to evaluate another network pass its own checkpoint (ckpt_path=...)")
        return (f"{bad.group(1)}: eval.py reads the checkpoint's own data set unless one is chosen: choose one "
                f"(data=mnist, data=fashion_mnist, ...) to change its settings, or use data_root=<folder> for the "
                f"checkpoint's data set in another folder")
    if bad:
        key = bad.group(1)
        tried = next((o for o in overrides if o.split("=", 1)[0] == key), f"{key}=<value>")
        close = _closest_key(key, config_dir, config_name, [o for o in overrides if o != tried])
        hint = f"did you mean {close}? " if close else ""
        return f"{key} is not a config key ({hint}use +{tried} to add a new key)"
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(error).__name__


def _closest_key(key: str, config_dir: Path, config_name: str, overrides: list[str]) -> str | None:
    """The key of the composed config (with the other overrides, else without any) closest to ``key``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    for attempt in (overrides, []):
        try:
            GlobalHydra.instance().clear()
            with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
                cfg = compose(config_name, overrides=attempt, return_hydra_config=True)
            break
        except Exception:
            continue
    else:
        return None
    keys = set(_key_paths(OmegaConf.to_container(cfg, resolve=False)))
    parent, _, last = key.rpartition(".")
    if parent in keys or not parent:  # a misspelled last part: the closest key beside it
        siblings = sorted(k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent)
        close = difflib.get_close_matches(last, siblings, n=1, cutoff=0.6)
        return f"{parent + '.' if parent else ''}{close[0]}" if close else None
    same_depth = sorted(k for k in keys if k.count(".") == key.count("."))  # a misspelled parent
    close = difflib.get_close_matches(key, same_depth, n=1, cutoff=0.85)
    return close[0] if close else None


def _key_paths(node, prefix: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}{k}"
            yield path
            yield from _key_paths(v, path + ".")


def run_folder_of(ckpt_path: str | os.PathLike) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/<file>.ckpt`` with
    ``<run>/.hydra/overrides.yaml``), or None."""
    path = Path(ckpt_path).expanduser()
    run = path.parent.parent
    if path.parent.name == "checkpoints" and (run / ".hydra" / "overrides.yaml").is_file():
        return run.resolve()
    return None


def resume_overrides(saved: list[str], given: list[str], groups: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The overrides of a resumed run: the run's own (``saved``, as in its ``.hydra/overrides.yaml``)
    without its old ``ckpt_path``, then the command line's (``given``), which Hydra applies later,
    so they win. A saved override of a key the command line sets again is dropped, unless it added
    the key (``+key=...``) and the command line only changes it; one under a config group the
    command line chooses anew (``groups``: e.g. the run's ``model.model_kwargs...`` when the command
    line says ``model=...``) is dropped too."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    parser = OverridesParser.create()
    new = {o.key_or_group: o for o in parser.parse_overrides(list(given))}
    chosen = [k for k, o in new.items() if k in groups and o.type == OverrideType.CHANGE]
    kept = []
    for text, o in zip(saved, parser.parse_overrides(list(saved))):
        key = o.key_or_group
        if key == "ckpt_path" or any(key.startswith(g + ".") for g in chosen):
            continue
        if key in new and not (o.type == OverrideType.ADD and new[key].type == OverrideType.CHANGE):
            continue
        kept.append(text)
    return kept + list(given)


def _quote(value: str) -> str:
    """A string as a quoted value of Hydra's override grammar."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _resume_argv(argv: list[str], config_dir: Path) -> None:
    """``python train.py ckpt_path=<run>/checkpoints/last.ckpt [overrides]``: put the run's own
    overrides before the command line's in ``argv`` (in place), and say so. Sweeps, ``--help`` and
    checkpoints outside a run folder are left alone."""
    args = _parse_args(argv)
    if args is None or not args.overrides or args.multirun or args.help or args.hydra_help or args.info \
            or args.shell_completion or getattr(args, "experimental_rerun", None):
        return
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        given = OverridesParser.create().parse_overrides(list(args.overrides))
    except Exception:  # Hydra reports the override it cannot parse
        return
    ckpt = next((o.value() for o in given if o.key_or_group == "ckpt_path" and not o.is_delete()), None)
    if not isinstance(ckpt, str) or not ckpt:
        return
    run = run_folder_of(ckpt)
    if run is None:
        return
    try:
        saved = [str(s) for s in OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "overrides.yaml")) or []]
        groups = {d.name for d in config_dir.iterdir() if d.is_dir()} if config_dir.is_dir() else set()
        merged = resume_overrides(saved, list(args.overrides), groups)
    except Exception as e:  # an unreadable overrides.yaml: resume with the command line only
        print(f"note: {run / '.hydra' / 'overrides.yaml'} could not be read ({type(e).__name__}); "
              f"resuming with the command line's overrides only", file=sys.stderr)
        return
    n = len(args.overrides)
    start = next((i for i in range(1, len(argv) - n + 1) if argv[i:i + n] == list(args.overrides)), None)
    if start is None:  # pragma: no cover  (argparse keeps the overrides together, in order)
        return
    argv[start:start + n] = merged
    kept = [s for s in saved if s in merged[: len(merged) - n]]
    print(f"resuming {run} with its own overrides{': ' + ' '.join(kept) if kept else ' (none)'}; "
          f"the command line's apply on top", file=sys.stderr)


# --- a resumed run keeps its model and data split ----------------------------------------------

# settings of the model that change nothing it computes (speed only): may change on resume
RESUME_FREE_MODEL_KEYS = ("compile", "channels_last")
RESUME_DATA_KEYS = ("val_size", "split_seed", "train_subset")


def check_resume_config(cfg: DictConfig, ckpt: dict, ckpt_path: str | os.PathLike) -> None:
    """Refuse to resume ``ckpt`` with a config whose model (``model.*``: the network, its settings,
    the optimizer and the schedule) or data split (the data set, ``data.val_size``,
    ``data.split_seed``, ``data.train_subset``) differs from the checkpoint's: a
    :class:`ConfigError` naming each difference and what to do."""
    diffs = []
    hp = _plain(ckpt.get("hyper_parameters") or {})
    model_cfg = _plain(cfg.get("model")) or {}
    for key, value in model_cfg.items():
        if key.startswith("_") or key in RESUME_FREE_MODEL_KEYS or key not in hp:
            continue
        diffs += _differences(f"model.{key}", value, hp[key])
    state = next((v for v in ckpt.values() if isinstance(v, dict) and {"target", "hparams"} <= v.keys()), None)
    data_cfg = _plain(cfg.get("data")) or {}
    if state is not None and data_cfg:
        if data_cfg.get("_target_") and data_cfg["_target_"] != state["target"]:
            diffs.append(f"the data set is {data_cfg['_target_'].rsplit('.', 1)[-1]} here but "
                         f"{state['target'].rsplit('.', 1)[-1]} in the checkpoint")
        for key in RESUME_DATA_KEYS:
            if key in data_cfg and key in state["hparams"]:
                diffs += _differences(f"data.{key}", data_cfg[key], state["hparams"][key])
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise ConfigError(
            f"cannot resume {ckpt_path} with another model or data split: {shown}. A resumed run keeps the model, "
            f"optimizer and data split it was trained with: drop those overrides, or start a new run without ckpt_path"
        )


def _plain(value):
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _differences(name: str, here, there) -> list[str]:
    here, there = _plain(here), _plain(there)
    if isinstance(here, dict) and isinstance(there, dict):
        out = []
        for k in sorted(set(here) | set(there), key=str):
            if k in here and k in there:
                out += _differences(f"{name}.{k}", here[k], there[k])
            elif here.get(k) is not None or there.get(k) is not None:  # an added or dropped setting
                out.append(f"{name}.{k} is {here.get(k)!r} here but {there.get(k)!r} in the checkpoint")
        return out
    if here == there and type(here) is type(there) or (_is_number(here) and _is_number(there) and here == there):
        return []
    return [f"{name} is {here!r} here but {there!r} in the checkpoint"]


# --- a run that failed before its first training step leaves no run folder ----------------------


@contextlib.contextmanager
def discard_failed_run(output_dir: str | os.PathLike, progress: dict):
    """Remove the run folder ``output_dir`` when the run fails (an error, Ctrl-C, a non-zero exit)
    before its first training step, so that ``logs/train/runs`` holds only real runs. Only a
    folder this run created is removed: one that held nothing but Hydra's ``.hydra/`` and log file
    when the run started (not a resumed run's, not a ``hydra.run.dir`` that held other files), and
    that has no checkpoint (``*.ckpt``) or ``metrics.json`` at the end; never a job of a ``-m``
    sweep (its summary lists the failure), never from a DDP child process. ``progress``: filled by
    train.py's ``train`` with the ``trainer`` and the global step it started at (``start_step``)."""
    out = Path(output_dir)
    fresh = _fresh_run_folder(out)
    try:
        yield
    except BaseException as e:
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        trainer = progress.get("trainer")
        steps = (trainer.global_step - progress.get("start_step", 0)) if trainer is not None else 0
        if fresh and steps <= 0 and _is_rank_zero() and not _in_sweep() and not _has_results(out):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _fresh_run_folder(out: Path) -> bool:
    try:
        names = {p.name for p in out.iterdir()}
    except OSError:
        return False
    return ".hydra" in names and all(n == ".hydra" or n.endswith(".log") for n in names)


def _has_results(out: Path) -> bool:
    return (out / "metrics.json").exists() or next(out.rglob("*.ckpt"), None) is not None


def _is_rank_zero() -> bool:
    return all(os.environ.get(v, "0") in ("", "0") for v in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK"))


def _in_sweep() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False
