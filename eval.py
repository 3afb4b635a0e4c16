"""Evaluate a saved checkpoint on a test split and print its metrics.

    python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt
    python eval.py ckpt_path=<file>.ckpt data=fashion_mnist      # another data set
    python eval.py ckpt_path=<file>.ckpt data_root=/data         # the same data elsewhere
    python eval.py weights=lenet5:mnist                          # shipped weights (python -m models.weights)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

import training  # noqa: F401  (cheap, no torch: registers the ${coalesce:}, ${run_stamp:} and ${about:} resolvers)
from models.errors import CheckpointError, ConfigError
from training.quiet import quiet_third_party

if TYPE_CHECKING:
    from training.module import Classifier

# torch, Lightning and the models are imported in the functions that use them: --help and --cfg
# (answered by Hydra before main runs) take a fraction of a second (benchmarks/bench_startup.py).
quiet_third_party()  # the known third-party tips and deprecation warnings (training/quiet.py)


def build_datamodule(cfg: DictConfig, model: Classifier, ckpt: dict):
    """The data module named on the command line, else the one the checkpoint was trained on."""
    from training.module import checkpoint_data_state

    hp = model.hparams
    if cfg.get("data") is None:
        state = checkpoint_data_state(ckpt)
        if state is None:
            raise CheckpointError(f"{source_of(cfg)} does not record its data set; name one, e.g. data=mnist")
        data_cfg = {"_target_": state["target"], **state["hparams"]}
        root = cfg.get("data_root") or (os.environ.get("DATA_DIR") if "weights_name" in ckpt else None)
        if root:  # shipped weights read their data where this machine keeps it
            data_cfg["root"] = root
        return instantiate(data_cfg)
    for key, want in (("in_channels", hp.in_channels), ("num_classes", hp.num_classes), ("image_size", hp.input_size)):
        have = cfg.data.get(key)
        if have is not None and have != want:
            raise ConfigError(
                f"the checkpoint's model ({hp.model}) expects {key}={want}, but this data config gives {have}; "
                f"evaluate it on a data set like the one it was trained on"
            )
    return instantiate(cfg.data, **({"root": cfg.data_root} if cfg.get("data_root") else {}))


def source_of(cfg: DictConfig) -> str:
    """What is evaluated: the shipped weights' name (``weights=``), else the checkpoint file; both
    are read by training.checkpoint.read_checkpoint."""
    return str(cfg.weights) if cfg.get("weights") else cfg.ckpt_path


def check_eval_config(cfg: DictConfig) -> None:
    """What eval.py cannot honour is refused rather than ignored: neither ``ckpt_path`` nor
    ``weights``, or both; a ``model`` (the checkpoint's own network is evaluated, never another one
    under its name); a ``data`` setting without a data set (``+data.root=...``: the checkpoint's
    data set in another folder is ``data_root=...``)."""
    from omegaconf import OmegaConf

    no_path = OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path")
    if cfg.get("weights"):
        if not no_path:
            raise ConfigError(f"give ckpt_path or weights, not both (got ckpt_path={cfg.ckpt_path}, "
                              f"weights={cfg.weights})")
    elif no_path:
        raise ConfigError("ckpt_path must be given: python eval.py ckpt_path=<run>/checkpoints/last.ckpt "
                          "(or shipped weights: python eval.py weights=lenet5:mnist)")
    elif not isinstance(cfg.get("ckpt_path"), str):
        raise ConfigError(f"ckpt_path must be one file, ckpt_path=<run>/checkpoints/last.ckpt, got {cfg.get('ckpt_path')!r}")
    if "model" in cfg:
        raise ConfigError(
            "eval.py evaluates the network saved in the checkpoint; a model setting would not change it (and must "
            "not evaluate that network under another name): drop model=..., and to evaluate another network pass its "
            "own checkpoint, ckpt_path=<its run>/checkpoints/last.ckpt"
        )
    data = cfg.get("data")
    if data is not None and "_target_" not in data:
        keys = ", ".join(f"data.{k}" for k in data)
        raise ConfigError(
            f"{keys} without a data set: choose one (data=mnist, data=fashion_mnist, ...), or, for the "
            f"checkpoint's own data set in another folder, data_root=<folder>"
        )


def evaluate(cfg: DictConfig) -> dict[str, float]:
    import lightning as L
    import torch

    from training.module import Classifier
    from training.cli import check_run_config, check_trainer_config, instantiate_trainer

    check_eval_config(cfg)  # mistakes stop here, before the checkpoint and the data are read
    check_run_config(cfg)
    check_trainer_config(cfg.trainer)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    model, ckpt = Classifier.load_with_checkpoint(source_of(cfg))
    datamodule = build_datamodule(cfg, model, ckpt)
    trainer: L.Trainer = instantiate_trainer(cfg.trainer)
    trainer.test(model, datamodule=datamodule)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from training.cli import friendly_errors

    with friendly_errors():
        metrics = evaluate(cfg)
    print(f"test/acc: {metrics['test/acc']:.4f}  test/loss: {metrics['test/loss']:.4f}  ({source_of(cfg)})")


if __name__ == "__main__":
    from training.cli import run_main  # Hydra's own errors (an unknown data= name, a misspelled key) as one line

    run_main(main, config_name="eval")
