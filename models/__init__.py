"""Neocognitron and LeNet-style networks in PyTorch.

``get_model(name, **kwargs)`` builds a registered network; ``list_models()`` names them.
Importing the architecture modules below registers their builders.
"""

from omegaconf import OmegaConf

from . import convnet, lenet, neocognitron, ops  # noqa: F401  (registers the models)
from .errors import CheckpointError, ConfigError, DataError, ImageError, UserError
from .registry import get_model, list_models, register_model

# ${coalesce:a,b}: the first of its arguments that is not null (e.g. image size after an optional resize)
if not OmegaConf.has_resolver("coalesce"):
    OmegaConf.register_new_resolver("coalesce", lambda *args: next((a for a in args if a is not None), None))


def _run_stamp() -> str:
    """The name of a run's folder: its start time; but ranks that srun or torchrun started (each runs
    train.py itself, so each would stamp its own time) get the id of their launch, which they share."""
    import os
    import time

    env = os.environ
    if env.get("TORCHELASTIC_RUN_ID", "none") not in ("", "none"):
        return f"torchrun-{env['TORCHELASTIC_RUN_ID']}"
    if "SLURM_STEP_ID" in env and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return f"slurm-{env.get('SLURM_JOB_ID', '0')}.{env['SLURM_STEP_ID']}"
    return time.strftime("%Y-%m-%d_%H-%M-%S")


# ${run_stamp:} names run folders (configs/hydra/default.yaml)
if not OmegaConf.has_resolver("run_stamp"):
    OmegaConf.register_new_resolver("run_stamp", _run_stamp, use_cache=True)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ImageError",
    "UserError",
    "get_model",
    "list_models",
    "register_model",
]
