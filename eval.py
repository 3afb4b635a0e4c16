"""Evaluate a saved checkpoint on a test split and print its metrics.

    python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt
    python eval.py ckpt_path=<file>.ckpt data=fashion_mnist      # another data set
    python eval.py ckpt_path=<file>.ckpt data_root=/data         # the same data elsewhere
"""

from __future__ import annotations

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
            raise CheckpointError(f"{cfg.ckpt_path} does not record its data set; name one, e.g. data=mnist")
        data_cfg = {"_target_": state["target"], **state["hparams"]}
        if cfg.get("data_root"):
            data_cfg["root"] = cfg.data_root
        return instantiate(data_cfg)
    for key, want in (("in_channels", hp.in_channels), ("num_classes", hp.num_classes), ("image_size", hp.input_size)):
        have = cfg.data.get(key)
        if have is not None and have != want:
            raise ConfigError(
                f"the checkpoint's model ({hp.model}) expects {key}={want}, but this data config gives {have}; "
                f"evaluate it on a data set like the one it was trained on"
            )
    return instantiate(cfg.data, **({"root": cfg.data_root} if cfg.get("data_root") else {}))


def evaluate(cfg: DictConfig) -> dict[str, float]:
    import lightning as L
    import torch

    from training.module import Classifier
    from training.cli import check_trainer_config, instantiate_trainer

    check_trainer_config(cfg.trainer)  # wrong types stop here, before the checkpoint and the data are read
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    model, ckpt = Classifier.load_with_checkpoint(cfg.ckpt_path)
    datamodule = build_datamodule(cfg, model, ckpt)
    trainer: L.Trainer = instantiate_trainer(cfg.trainer)
    trainer.test(model, datamodule=datamodule)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from training.cli import friendly_errors

    with friendly_errors():
        metrics = evaluate(cfg)
    print(f"test/acc: {metrics['test/acc']:.4f}  test/loss: {metrics['test/loss']:.4f}  ({cfg.ckpt_path})")


if __name__ == "__main__":
    from training.cli import run_main  # Hydra's own errors (an unknown data= name, a misspelled key) as one line

    run_main(main, config_name="eval")
