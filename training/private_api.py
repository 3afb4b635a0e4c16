"""Every use the project makes of Hydra's and Lightning's private (underscored) API, in one place.

These names are not promised by the libraries' public API and may change in any release, which is
why ``pyproject.toml`` bounds both ranges below the next release that could move them (Hydra
``<1.4``, Lightning ``<3``). Each one is wrapped here, and ``tests/test_private_api.py`` checks
that every name still exists in the installed versions, so a release that moves one fails that
test with the name, not a run somewhere deep in training.

=========================================================  ===========================================
private name                                               used for
=========================================================  ===========================================
``hydra._internal.utils.get_args_parser``                  reading ``sys.argv`` as Hydra will (resume
                                                           with a run's overrides; DDP child commands)
``hydra._internal.utils.run_and_report``                   Hydra's composition errors as one line
                                                           (:func:`training.cli.run_main`)
``Trainer._accelerator_connector.use_distributed_sampler``  whether Lightning would wrap our sampler
``lightning.pytorch.strategies.ddp._sync_module_states``   a DDP model with nothing to train
``DDPStrategy._layer_sync``                                SyncBatchNorm refused on CPU processes
``ModelCheckpoint._save_checkpoint``                       never saving non-finite weights
``ModelCheckpoint._last_global_step_saved``                no second ``last.ckpt`` of one step
=========================================================  ===========================================

The last three are attributes our subclasses override or read (``training.distributed.DDPStrategy``,
``training.callbacks.SafeModelCheckpoint``); they are listed in :data:`OVERRIDDEN` for the test.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

#: (module or class path, attribute): what our subclasses override or read
OVERRIDDEN = (
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_save_checkpoint"),
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_last_global_step_saved"),
    ("lightning.pytorch.strategies.DDPStrategy", "_layer_sync"),
)


def hydra_args_parser():
    """Hydra's own command-line parser (``--multirun``, ``--config-name``, the overrides, ...)."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser()


@contextlib.contextmanager
def hydra_run_and_report_wrapped(wrap: Callable[[Callable[[], Any]], Callable[[], Any]]):
    """While inside, Hydra's ``run_and_report(func)`` (which prints an error and exits 1) runs
    ``wrap(func)`` instead of ``func``. Does nothing with a Hydra that has no such function."""
    try:
        import hydra._internal.utils as hydra_utils
    except ImportError:  # pragma: no cover
        yield
        return
    original = getattr(hydra_utils, "run_and_report", None)
    if original is None:  # pragma: no cover
        yield
        return
    hydra_utils.run_and_report = lambda func: original(wrap(func))
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def uses_distributed_sampler(trainer) -> bool:
    """Whether Lightning will replace the loaders' samplers by its DistributedSampler
    (``Trainer(use_distributed_sampler=...)``, kept only by the accelerator connector)."""
    return bool(getattr(getattr(trainer, "_accelerator_connector", None), "use_distributed_sampler", False))


def sync_module_states(module) -> None:
    """Broadcast rank 0's parameters and buffers to every rank (what DDP does when it wraps a module)."""
    from lightning.pytorch.strategies.ddp import _sync_module_states

    _sync_module_states(module)
