"""The OmegaConf resolvers the configs use, registered on import (no torch, no Lightning: the
entry points import this first, so that ``--help`` and ``--cfg`` compose the config in a fraction
of a second).

* ``${coalesce:a,b,...}``: the first argument that is not null (e.g. the image size after an
  optional resize).
* ``${run_stamp:}``: the name of a run's folder (``configs/hydra/default.yaml``).
* ``${about:train}``: the first lines of ``train.py --help`` (``configs/hydra/default.yaml``).
"""

from __future__ import annotations

import os
import time

from omegaconf import OmegaConf


def coalesce(*args):
    """The first of ``args`` that is not None (None if all are)."""
    return next((a for a in args if a is not None), None)


def run_stamp() -> str:
    """The name of a run's folder: its start time; but ranks that srun or torchrun started (each runs
    train.py itself, so each would stamp its own time) get the id of their launch, which they share."""
    env = os.environ
    if env.get("TORCHELASTIC_RUN_ID", "none") not in ("", "none"):
        return f"torchrun-{env['TORCHELASTIC_RUN_ID']}"
    if "SLURM_STEP_ID" in env and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return f"slurm-{env.get('SLURM_JOB_ID', '0')}.{env['SLURM_STEP_ID']}"
    return time.strftime("%Y-%m-%d_%H-%M-%S")


# what `python <command>.py --help` says first (configs/hydra/default.yaml: help)
ABOUT = {
    "train": (
        "train.py: train a model (by default the supervised Neocognitron on MNIST), test its best checkpoint\n"
        "on the test split and print test/acc; TensorBoard logs and checkpoints go to logs/train/runs/<time>.\n"
        "\n"
        "  python train.py [group=option ...] [key=value ...]\n"
        "  python train.py model=lenet5 data=fashion_mnist trainer.max_epochs=5 model.optimizer.lr=0.01 seed=1\n"
        "  python train.py experiment=mnist_speedrun            (a preset: configs/experiment/)\n"
        "  python train.py -m model=convnet,lenet5 seed=1,2     (a sweep)\n"
        "  python train.py ckpt_path=<run>/checkpoints/last.ckpt   (resume)\n"
        "  python train.py model=lenet5 --cfg job               (print the composed config, run nothing)"
    ),
    "eval": (
        "eval.py: test a saved checkpoint on a test split (by default that of the data set it was trained on)\n"
        "and print test/acc and test/loss.\n"
        "\n"
        "  python eval.py ckpt_path=<run>/checkpoints/last.ckpt [data=<name>] [data_root=<folder>]"
    ),
}


def about(command: str) -> str:
    """The first lines of ``<command>.py --help``."""
    return ABOUT.get(command, f"{command}.py (see README.md)")


def register() -> None:
    """Register the resolvers (once; importing this module does it)."""
    if not OmegaConf.has_resolver("coalesce"):
        OmegaConf.register_new_resolver("coalesce", coalesce)
    if not OmegaConf.has_resolver("about"):
        OmegaConf.register_new_resolver("about", about)
    if not OmegaConf.has_resolver("run_stamp"):
        OmegaConf.register_new_resolver("run_stamp", run_stamp, use_cache=True)


register()
