"""Training on several GPUs or nodes: Lightning's DDP, made safe for Hydra and for every model.

* :class:`DDPStrategy` (``trainer=ddp``) is Lightning's DDP strategy, except that a model with
  no trainable parameter (Fukushima's self-organising Neocognitron) is not wrapped in
  ``DistributedDataParallel`` (which refuses such a module); its states are broadcast from
  rank 0 instead, and :class:`~training.module.Classifier` gathers every training batch
  from all ranks, so every rank makes the same unsupervised update and grows the same planes.
* :func:`hydra_child_command` replaces Lightning's command for the extra DDP processes under
  Hydra. Lightning re-runs ``sys.argv`` with ``hydra.run.dir=<this run's folder>``; under a
  multirun (``-m``) that argv is the whole sweep, so every child would start a sweep of its
  own. Here the child gets this job's own overrides and this job's folder instead, so every
  run or sweep job has exactly one folder, written by rank 0 (children get
  ``hydra.output_subdir=null`` and log as ``train_ddp_process_<rank>.log``).
* :func:`ddp_scope` undoes what a DDP run leaves in the launching process (the process group,
  ``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_PORT`` ...), so that the next job of a Hydra sweep,
  run in the same process, launches its own children instead of believing it is one.

Only rank 0 writes logs, checkpoints and ``metrics.json``: Lightning's loggers and
``ModelCheckpoint`` are rank-zero only, and ``train.py`` checks ``trainer.is_global_zero``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Sequence

import torch
from lightning.pytorch.strategies import DDPStrategy as _LightningDDPStrategy

# Hydra overrides that concern the launching process only (its mode, folders, sweeper, launcher)
_HYDRA_PARENT_ONLY = ("hydra.mode", "hydra.run.", "hydra.sweep.", "hydra.job.name", "hydra.output_subdir",
                      "hydra.launcher", "hydra/launcher", "hydra.sweeper", "hydra/sweeper")
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


class DDPStrategy(_LightningDDPStrategy):
    """Lightning's DDP; a module with no trainable parameter is kept unwrapped (see module docs)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        install_hydra_child_command()  # also when an entry point other than train.py uses it

    def setup_distributed(self) -> None:
        super().setup_distributed()
        # seed_everything seeded every rank alike; give each rank its own random stream (batch
        # augmentation, dropout), or ranks would draw the same random shifts for their different
        # images. The data order does not come from these generators (EpochShuffleSampler seeds
        # itself from PL_GLOBAL_SEED and the epoch), and the weights start from rank 0's (DDP).
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None and self.global_rank > 0:
            import random

            import numpy as np

            s = (int(seed) + 1_000_003 * self.global_rank) % 2**32
            random.seed(s)
            np.random.seed(s)
            torch.manual_seed(s)

    def setup(self, trainer) -> None:
        if self._layer_sync is not None and self.root_device.type == "cpu":
            # torch's SyncBatchNorm runs on GPUs only; on CPU processes DDP broadcasts rank 0's
            # batch-norm statistics (buffers) at every forward instead
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn("trainer.sync_batchnorm is ignored on CPU processes (SyncBatchNorm needs GPUs)")
            self._layer_sync = None
        super().setup(trainer)

    def configure_ddp(self) -> None:
        if any(p.requires_grad for p in self.model.parameters()):
            return super().configure_ddp()
        # nothing for DDP's gradient all-reduce to do; start every rank from rank 0's state
        from training.private_api import sync_module_states

        sync_module_states(self.model)


def hydra_child_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command line and working directory of DDP process ``local_rank`` under Hydra:
    this job's overrides (not the sweep's), in this job's run folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__
    from training.private_api import hydra_args_parser

    hc = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    args, _ = hydra_args_parser().parse_known_args(sys.argv[1:])
    for flag, value in (("--config-path", args.config_path), ("--config-name", args.config_name),
                        ("--config-dir", args.config_dir)):
        if value is not None:
            command.append(f"{flag}={value}")
    command += list(hc.overrides.task)
    command += [o for o in hc.overrides.hydra if not o.lstrip("+~").startswith(_HYDRA_PARENT_ONLY)]
    command += [f'hydra.run.dir="{hc.runtime.output_dir}"', f"hydra.job.name=train_ddp_process_{local_rank}",
                "hydra.output_subdir=null"]
    return command, get_original_cwd()


def install_hydra_child_command() -> None:
    """Make Lightning's subprocess launcher use :func:`hydra_child_command` (idempotent)."""
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as pytorch_launcher

    for module in (fabric_launcher, pytorch_launcher):
        if hasattr(module, "_hydra_subprocess_cmd"):
            module._hydra_subprocess_cmd = hydra_child_command


@contextlib.contextmanager
def ddp_scope():
    """Run one training job; afterwards destroy its process group and restore the launch
    environment variables that Lightning set in this process."""
    install_hydra_child_command()
    saved = {k: os.environ.get(k) for k in _LAUNCH_ENV}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def gather_batch(module, batch):
    """Every rank's training batch, concatenated in rank order (the same on every rank)."""
    x, y = batch
    if module.trainer.world_size == 1:
        return x, y
    return module.all_gather(x).flatten(0, 1), module.all_gather(y).flatten(0, 1)
