"""Fault injection for the reliability tests: callbacks that kill or poison a training run at a
chosen step. Used from the command line as ``+callbacks.kill._target_=tests.faults.KillAtStep``."""

from __future__ import annotations

import os
import signal

import lightning as L
import torch


class KillAtStep(L.Callback):
    """SIGKILL this process in the middle of optimizer step ``step`` (after its backward pass,
    before the weights change): no exception handler, no ``finally``, no checkpoint on exit."""

    def __init__(self, step: int):
        self.step = step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonAtStep(L.Callback):
    """Make training diverge at optimizer step ``step``: ``what='loss'`` puts a NaN into the
    input batch (so the loss is NaN), ``what='grad'`` sets one gradient to infinity (the loss is
    still finite, the weights become NaN after the optimizer step)."""

    def __init__(self, step: int, what: str = "loss"):
        self.step, self.what = step, what

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.what == "loss" and trainer.global_step == self.step:
            batch[0].fill_(float("nan"))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.what == "grad" and trainer.global_step == self.step:
            p = next(p for p in pl_module.parameters() if p.grad is not None)
            p.grad.fill_(float("inf"))


class SlowDown(L.Callback):
    """Sleep ``seconds`` after every training batch, so another process can kill this one at a
    moment it does not choose."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        time.sleep(self.seconds)


class KeepEpochEndCheckpoint(L.Callback):
    """Copy ``last.ckpt`` as written at the end of epoch ``epoch`` to ``epoch_end_<epoch>.ckpt``
    beside it (at the start of the next epoch: the checkpoint callbacks run after this one),
    for resume tests."""

    def __init__(self, epoch: int = 0):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        import shutil
        from pathlib import Path

        if trainer.current_epoch == self.epoch + 1 and trainer.checkpoint_callback is not None:
            last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
            shutil.copyfile(last, last.with_name(f"epoch_end_{self.epoch}.ckpt"))


class ScrambleBeforeValidation(L.Callback):
    """Replace every weight with noise just before the validation pass of epoch ``epoch``: that
    epoch's val/acc falls to chance, so the best checkpoint is an earlier epoch's (tests that the
    checkpoint tested is the one chosen on validation, not the last)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking:
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 3)
