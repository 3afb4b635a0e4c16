"""Train a model: compose the config, instantiate, fit, test the best checkpoint.

    python train.py                                   # the default model on MNIST
    python train.py model=convnet data=cifar10 trainer.max_epochs=30 model.optimizer.lr=0.01 seed=1
    python train.py -m model=convnet data=mnist,fashion_mnist          # a Hydra sweep
    python train.py ckpt_path=<run>/checkpoints/last.ckpt              # resume
    python train.py experiment=lenet5_paper                            # a preset
"""

from __future__ import annotations

import sys
import time

PROCESS_START = time.monotonic()  # start-up is timed from here (imports, config, data, model)

import json
import logging
from pathlib import Path

from typing import TYPE_CHECKING

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

import training  # noqa: F401  (cheap, no torch: registers the ${coalesce:}, ${run_stamp:} and ${about:} resolvers)
from training.quiet import quiet_third_party

if TYPE_CHECKING:
    import lightning as L
    from lightning.pytorch.callbacks import Timer

# torch, Lightning and the models are imported in the functions that use them: --help and --cfg
# (answered by Hydra before main runs) take a fraction of a second (benchmarks/bench_startup.py).
quiet_third_party()  # the known third-party tips and deprecation warnings (training/quiet.py)
log = logging.getLogger("train")


def train(cfg: DictConfig, progress: dict | None = None) -> dict[str, float]:
    """Fit (and test) the model described by ``cfg``; returns the final metrics. ``progress`` (if
    given) gets the ``trainer`` and the global step training starts at (``start_step``), for
    :func:`training.cli.discard_failed_run`."""
    import lightning as L
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger

    from training.cli import (check_learning_phases, check_resume_checkpoint, check_resume_config, check_run_config,
                              check_trainer_config)
    from training.tb_callbacks import log_hparams

    progress = {} if progress is None else progress
    check_run_config(cfg)  # wrong types stop here, before any data is read
    check_trainer_config(cfg.trainer)
    resumed = None
    if cfg.get("ckpt_path"):  # a resumed run keeps its model and data split
        from training.checkpoint import read_checkpoint

        resumed = read_checkpoint(cfg.ckpt_path)  # read once here for both checks (Lightning reads it again)
        check_resume_config(cfg, resumed, cfg.ckpt_path)
        progress["start_step"] = int(resumed.get("global_step") or 0)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    check_learning_phases(cfg, model.net)
    trainer, timer = build_trainer(cfg)
    if not validates(cfg):
        print("note: no validation split (data.val_size=0): no val/* metrics, no checkpoint chosen on them; "
              "the last weights are tested", file=sys.stderr)
    progress["trainer"] = trainer
    loggers = trainer.loggers
    for lg in loggers:  # each run's hyperparameters with its final metrics (TensorBoard's HPARAMS tab)
        if isinstance(lg, TensorBoardLogger):
            log_hparams(lg, cfg)  # what a person compares across runs (training/tb_callbacks.py)

    if resumed is not None:  # a clear message for another model's checkpoint
        check_resume_checkpoint(cfg.ckpt_path, model, resumed)
        del resumed
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics.update(_stage_times(timer, "train"))  # now: testing reloads a checkpoint, and with it the Timer's offset
        if cfg.get("test"):
            ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(model, datamodule=datamodule, ckpt_path=ckpt or None)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
            metrics["test/ckpt_path"] = ckpt
            metrics.update(_stage_times(timer, "test"))
    except SystemExit as e:  # Ctrl-C: Lightning's graceful shutdown exits with 1; the convention is 128 + SIGINT
        if trainer.received_sigterm:  # kill, timeout, docker stop, SLURM (Lightning's SIGTERMException): 128 + 15
            raise SystemExit(143) from None
        if trainer.interrupted and e.code == 1:
            raise SystemExit(130) from None
        raise
    final = {hp: metrics[key] for hp, key in (("hp/val_acc_best", "val/acc_best"), ("hp/test_acc", "test/acc"))
             if key in metrics}
    for lg in loggers:
        lg.log_metrics(final, step=trainer.global_step)
        lg.finalize("success")
    if trainer.is_global_zero:  # the run's final metrics, for sweep summaries (training/sweep.py)
        from training.checkpoint import keep_one_copy
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        metrics.update(keep_one_copy(trainer, out))  # last.ckpt a link to the best when they hold one state
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
        if cfg.get("record"):  # record=<name>: one line in benchmarks/results/<name>.jsonl
            record_run(cfg, metrics)
    return metrics


def record_run(cfg: DictConfig, metrics: dict) -> None:
    """Append this run to the results store (:mod:`training.records`): its overrides, model, data,
    seed, epochs, every metric and stage time (the store adds command, commit, date, machine)."""
    from omegaconf import OmegaConf

    from training.records import append_record

    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # called without Hydra (tests, notebooks)
        overrides = None
    path = append_record(cfg.record, {
        "source": "train.py", "overrides": overrides, "model": cfg.model.get("model"),
        "model_kwargs": OmegaConf.to_container(cfg.model.get("model_kwargs") or {}, resolve=True),
        "data": str(cfg.data.get("_target_", "")).rsplit(".", 1)[-1], "seed": cfg.seed,
        "epochs": cfg.trainer.get("max_epochs"), "val_size": cfg.data.get("val_size"),
        "run_dir": str(Path(cfg.paths.output_dir).resolve()), "metrics": metrics,
        "peak_rss_mb": peak_rss_mb(),
    })
    print(f"recorded in {path}", file=sys.stderr)


def peak_rss_mb() -> float | None:
    """The most resident memory this process (and the children it waited for) has held, in MiB:
    what ``/usr/bin/time -v`` calls the maximum resident set size. None where the OS cannot say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024  # macOS counts bytes, Linux KiB


def build_trainer(cfg: DictConfig, extra_callbacks: tuple[L.Callback, ...] = ()) -> tuple[L.Trainer, Timer]:
    """The Trainer of ``cfg`` with its callbacks and loggers, and the Timer that times its stages
    (benchmarks/bench_harness.py times this same Trainer)."""
    from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar, Timer

    from training.cli import instantiate_group, instantiate_trainer

    callbacks = instantiate_group(cfg.get("callbacks"))
    if not validates(cfg):  # nothing to choose a checkpoint on or to stop early on: keep the last weights
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        for cb in callbacks:
            if isinstance(cb, ModelCheckpoint) and str(cb.monitor or "").startswith("val/"):
                cb.monitor = None
        callbacks = [cb for cb in callbacks if not (isinstance(cb, EarlyStopping) and cb.monitor.startswith("val/"))]
    loggers = instantiate_group(cfg.get("logger"))
    if not loggers:  # nothing to monitor the learning rate into (Lightning refuses the callback)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    # Lightning's Timer times each stage; it also enforces trainer.max_time (so that one is handed to it).
    timer = Timer(duration=cfg.trainer.get("max_time"), interval="step", verbose=False)
    trainer = instantiate_trainer(cfg.trainer, callbacks=[*callbacks, *extra_callbacks, timer], logger=loggers or False,
                                  max_time=None)
    return trainer, timer


def validates(cfg: DictConfig) -> bool:
    """Whether the run has a validation split (``data.val_size > 0``)."""
    return (cfg.get("data") or {}).get("val_size", 1) != 0


def _stage_times(timer: Timer, stage: str) -> dict[str, float]:
    """Seconds of start-up (process start to the start of the fit loop: imports, config, data,
    model) and of training (the fit loop, its validation passes included; with the time of the
    interrupted run when resumed), or of testing."""
    if timer.start_time(stage) is None:
        return {}
    times = {f"time/{stage}_s": timer.time_elapsed(stage)}
    if stage == "train":
        times["time/startup_s"] = timer.start_time("train") - PROCESS_START
    return times


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from training.cli import discard_failed_run, friendly_errors
    from training.distributed import ddp_scope
    from training.records import capture_git_state
    from training.runs import end_of_run_summary, record_sweep_failure

    if cfg.get("record"):
        capture_git_state()  # the code as the run starts, not as it ends (training.records)
    progress: dict = {}
    # discard_failed_run: a run that fails before its first training step leaves no run folder;
    # ddp_scope: DDP child processes reuse this run's folder
    try:
        with discard_failed_run(cfg.paths.output_dir, progress), friendly_errors(cfg.paths.output_dir), ddp_scope():
            metrics = train(cfg, progress)
    except BaseException as e:  # a failed job of a -m sweep: noted in <job>/failed.txt, the next jobs run
        if not record_sweep_failure(cfg.paths.output_dir, e):
            raise
        return None
    print(end_of_run_summary(metrics, Path(cfg.paths.output_dir)))  # test/acc, times, disk use, where the logs are
    value = metrics.get(cfg.get("optimized_metric") or "")
    return float(value) if value is not None else None


if __name__ == "__main__":
    from training.cli import run_main  # Hydra's errors as one line; ckpt_path=<run>/... resumes with the run's config

    run_main(main, config_name="train", resume=True)
