"""The LightningModule that trains every registered network.

It takes the network's registry *name* and keyword arguments (primitives), and the
optimizer / LR-scheduler as Hydra ``_partial_`` configs (plain dicts), and saves them
all as hyperparameters: a checkpoint is self-describing, so
``Classifier.load_from_checkpoint(path)`` works in a notebook without Hydra.

Loss: cross-entropy on the network's scores, unless the network defines
``loss(scores, targets)``. A network that does not learn by backprop (Fukushima's
self-organising Neocognitron) sets ``learns_by_backprop = False`` and defines
``learn(x, y) -> dict`` (called on every training batch) and ``learning_epoch_end() -> dict``;
it gets no optimizer, and what those return is logged as ``train/<key>``.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from .callbacks import host_sync_due, what_is_kept
from .checkpoint import build_network, mirror_averaged
from .checkpoint import checkpoint_data_state, read_checkpoint  # noqa: F401  (re-exported: eval.py, predict.py)
from .cli.resume import check_resume_checkpoint  # noqa: F401  (re-exported; a resume check)
from models.errors import CheckpointError, ConfigError, DivergenceError


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class Classifier(L.LightningModule):
    def __init__(
        self,
        model: str = "convnet",
        model_kwargs: dict | None = None,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        scheduler_interval: str = "epoch",
        compile: bool = False,
        channels_last: bool = False,
        label_smoothing: float = 0.0,
        tta_flip: bool = False,
    ):
        super().__init__()
        model_kwargs = dict(_plain(model_kwargs) or {})
        optimizer, scheduler = _plain(optimizer), _plain(scheduler)
        if scheduler_interval not in ("epoch", "step"):
            raise ConfigError(f"model.scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        for key, value in (("compile", compile), ("channels_last", channels_last), ("tta_flip", tta_flip)):
            if not isinstance(value, bool):
                raise ConfigError(f"model.{key} must be true or false, got {value!r}")
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
            raise ConfigError(f"model.label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
        if optimizer:  # fail now, not after the data are loaded
            _build("model.optimizer", optimizer, [torch.zeros(1, requires_grad=True)])
        for key in ("max_lr", "base_lr", "eta_min", "min_lr"):  # torch checks optimizer.lr >= 0, not the schedule's
            value = (scheduler or {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"model.scheduler.{key} must be a learning rate >= 0, got {value!r}")
        self.save_hyperparameters()
        self.net = build_network(model, model_kwargs, in_channels, num_classes, input_size, channels_last)
        # compiled lazily and kept out of the module tree, so checkpoints hold the plain weights
        object.__setattr__(self, "_compiled", None)
        self.automatic_optimization = getattr(self.net, "learns_by_backprop", True)
        # The training metrics are updated every step, so their updates must not read the device:
        # MeanMetric's NaN check and MulticlassAccuracy's argument checks do (`if tensor.any()`),
        # which would make every GPU step wait for the host. The loss is checked for NaN anyway
        # (training_step, at the logging interval), and the scores and labels are our own.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        acc = dict(num_classes=num_classes, average="micro")
        self.train_acc = MulticlassAccuracy(**acc, validate_args=False)
        self.val_acc, self.test_acc = (MulticlassAccuracy(**acc) for _ in range(2))
        self.val_acc_best = MaxMetric()
        # The validation confusion matrix (training.tb_callbacks.ValidationErrors draws it): a metric
        # attribute, so that its compute() sums the counts of every DDP rank; the scores and labels
        # are the ones val_acc has just checked.
        self.val_cm = MulticlassConfusionMatrix(num_classes=num_classes, validate_args=False)
        self.val_acc_best.persistent(True)  # in checkpoints, so a resumed run keeps the best so far
        self.train_loss.persistent(True)  # and an epoch resumed midway its running training metrics
        self.train_acc.persistent(True)
        self._restored_epoch: int | None = None  # set by on_load_checkpoint

    # -- the model -------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.hparams.compile:
            return self.net(x)
        if self._compiled is None:
            object.__setattr__(self, "_compiled", torch.compile(self.net))
        return self._compiled(x)

    def loss(self, scores: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        own = getattr(self.net, "loss", None)
        return own(scores, y) if callable(own) else F.cross_entropy(scores, y, label_smoothing=smoothing)

    def _shared_step(self, batch):
        x, y = batch
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.training:  # label smoothing (model.label_smoothing) is a training loss only
            scores = self(x)
            return self.loss(scores, y, self.hparams.label_smoothing), scores, y
        # test-time augmentation (model.tta_flip): the mean with the mirror image
        scores = mirror_averaged(self, x) if self.hparams.tta_flip else self(x)
        return self.loss(scores, y), scores, y

    # -- training --------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        if not self.automatic_optimization:
            from .distributed import gather_batch  # under DDP every rank learns from all ranks' batches

            with torch.no_grad():
                stats = self.net.learn(*gather_batch(self, batch)) or {}
            for k, v in stats.items():
                self.log(f"train/{k}", float(v), on_step=True, on_epoch=False)
            # A learning step without an optimizer still counts as a training step, so that
            # step-based logging, max_steps and checkpoints (which skip an unchanged global_step) work.
            progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
            progress.increment_ready()
            progress.increment_completed()
            return None
        loss, scores, y = self._shared_step(batch)
        # before backward, so a NaN never reaches the weights; on a GPU only at the logging interval
        if (self._trainer is None or host_sync_due(self.trainer, 1)) and not torch.isfinite(loss):
            raise DivergenceError(
                f"training diverged: train/loss is {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}); training stopped and "
                f"{what_is_kept(self.trainer) if self._trainer is not None else 'no checkpoint is written'}. "
                f"Lower model.optimizer.lr or check the data."
            )
        # Per step only the metrics' update(); self.log only on the steps whose values Lightning
        # writes (every trainer.log_every_n_steps): each self.log call costs ~0.6 ms on this CPU,
        # a sixth of a LeNet-5 step (benchmarks/bench_harness.py). Epoch values: on_train_epoch_end.
        self.train_loss.update(loss.detach())
        self.train_acc.update(scores.detach(), y)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._restored_epoch = checkpoint.get("epoch")  # the epoch the running training metrics belong to

    def on_train_epoch_start(self) -> None:
        # A new epoch starts its running training metrics afresh, except the epoch a mid-epoch checkpoint
        # was resumed in (its metrics come from the checkpoint). An epoch-end checkpoint of epoch e is
        # resumed at epoch e + 1, so it is reset as well.
        restored, self._restored_epoch = self._restored_epoch, None
        if restored != self.current_epoch:
            self.train_loss.reset()
            self.train_acc.reset()

    def on_train_epoch_end(self) -> None:
        if self.automatic_optimization and self.train_loss.update_count:  # compute() syncs DDP ranks
            self.log("train/loss_epoch", self.train_loss.compute())
            self.log("train/acc", self.train_acc.compute(), prog_bar=True)
        if not self.automatic_optimization:
            for k, v in (self.net.learning_epoch_end() or {}).items():
                self.log(f"train/{k}", float(v), sync_dist=True)  # the same on every rank

    # -- evaluation ------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        loss, scores, y = self._shared_step(batch)
        self.val_loss(loss, weight=len(y))  # the mean over images, exact also across DDP ranks
        self.val_acc(scores, y)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)
        self.val_cm.update(scores.detach(), y)
        return {"scores": scores.detach()}  # for callbacks (worst mistakes)

    def on_validation_epoch_start(self) -> None:
        self.val_cm.reset()  # not logged with self.log, so Lightning does not reset it

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=False)

    def on_train_start(self) -> None:
        if self.trainer.ckpt_path is None:  # a resumed run keeps the best accuracy of its checkpoint
            self.val_acc_best.reset()
            return
        # Resumed: a schedule whose length was planned from the run's length (OneCycleLR's total_steps)
        # got the checkpoint's plan back. A longer run (more epochs) cannot extend it: one cycle has
        # one warm-up and one annealing to ~0, and stepping past its end is an error in PyTorch.
        planned = getattr(self, "_planned_total_steps", None)
        for config in self.trainer.lr_scheduler_configs if planned else ():
            restored = getattr(config.scheduler, "total_steps", None)
            if isinstance(restored, int) and planned > restored:
                done = "has ended" if self.global_step >= restored else f"ends at step {restored}"
                raise ConfigError(
                    f"cannot continue {self.trainer.ckpt_path} to {planned} steps: its learning-rate schedule "
                    f"({type(config.scheduler).__name__}) was planned for {restored} steps when the run started and "
                    f"cannot be extended (it {done}; the run is at step {self.global_step}). Resume with the run's own "
                    f"length (trainer.max_epochs, trainer.max_steps, data.batch_size as they were), or train a new run "
                    f"of the length you want (without ckpt_path)"
                )

    def setup(self, stage: str) -> None:
        from .distributed import DDPStrategy

        trainer = self._trainer
        self._check_batches_fit(stage)
        if (stage == "fit" and trainer is not None and trainer.world_size > 1 and not self.automatic_optimization
                and not isinstance(trainer.strategy, DDPStrategy)):
            raise ConfigError(
                f"{self.hparams.model} learns without backprop; on {trainer.world_size} processes it needs "
                f"trainer=ddp (training.distributed.DDPStrategy), which makes every rank learn from all ranks' "
                f"batches, not strategy {type(trainer.strategy).__name__}"
            )

    def _check_batches_fit(self, stage: str) -> None:
        """A batch too large for the device's free memory is refused before it is allocated
        (:mod:`training.memory`); the data module's splits are read by now (Lightning sets it up first)."""
        from .memory import check_batches_fit

        dm = getattr(self._trainer, "datamodule", None)
        data = getattr(dm, "data", None)
        if not data or "train" not in data or not hasattr(dm, "hparams"):
            return
        hp = dm.hparams
        sizes = {"data.batch_size": (hp.batch_size, len(data["train"][1]))} if stage == "fit" else {}
        split = "test" if stage == "test" else "val"
        if split in data and len(data[split][1]):
            sizes["data.eval_batch_size"] = (hp.eval_batch_size, len(data[split][1]))
        x = data["train"][0][:1]
        try:
            image = dm.transform(x.to(torch.device("cpu")))[0]
        except Exception:  # pragma: no cover  (a data module without the usual transform)
            return
        check_batches_fit(self.net, image, sizes, self._trainer.strategy.root_device)

    def test_step(self, batch, batch_idx):
        loss, scores, y = self._shared_step(batch)
        self.test_loss(loss, weight=len(y))
        self.test_acc(scores, y)
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=1)

    # -- optimisation ----------------------------------------------------------------
    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        if not self.automatic_optimization or not params:
            return None
        opt_cfg = self.hparams.optimizer or {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}
        optimizer = _build("model.optimizer", opt_cfg, params)
        if not self.hparams.scheduler:
            return optimizer
        sched_cfg = dict(self.hparams.scheduler)
        if "total_steps" in sched_cfg and sched_cfg["total_steps"] is None:  # e.g. OneCycleLR
            total = self.trainer.estimated_stepping_batches
            # OneCycleLR needs a warm-up phase of at least 2 steps (pct_start * total_steps >= 2)
            shortest = math.ceil(2 / sched_cfg.get("pct_start", 0.3)) + 1
            sched_cfg["total_steps"] = max(int(total), shortest) if math.isfinite(total) else None
            # what this run plans; a resumed run's scheduler gets its checkpoint's plan back (on_train_start)
            object.__setattr__(self, "_planned_total_steps", sched_cfg["total_steps"])
        scheduler = _build("model.scheduler", sched_cfg, optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }

    # -- checkpoints -----------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, **kwargs):
        """Lightning's loader, reading the file safely (``weights_only=True``: a file carrying
        objects that could run code is refused before any of it runs, :mod:`training.checkpoint`),
        with a clear :class:`CheckpointError` for a missing, empty, corrupt or foreign checkpoint
        instead of a deep traceback."""
        hp = read_checkpoint(checkpoint_path)["hyper_parameters"]
        kwargs["weights_only"] = True  # never unpickle code, whatever the caller asked
        try:
            return super().load_from_checkpoint(
                checkpoint_path, map_location=map_location, hparams_file=hparams_file, strict=strict, **kwargs
            )
        except RuntimeError as e:
            raise _misfit(checkpoint_path, hp, e) from None

    @classmethod
    def load_with_checkpoint(cls, path) -> tuple["Classifier", dict]:
        """The model of a checkpoint (on the CPU, in eval mode) and the checkpoint dict itself,
        reading the file once (eval.py and predict.py also need its data module's state)."""
        ckpt = read_checkpoint(path)
        model = cls(**ckpt["hyper_parameters"])
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            raise _misfit(path, ckpt["hyper_parameters"], e) from None
        return model.eval(), ckpt


def _misfit(path, hp: dict, e: RuntimeError) -> CheckpointError:
    return CheckpointError(
        f"{path}: its weights do not fit the model it names ({hp.get('model')!r}): {str(e).splitlines()[0]}"
    )


def _build(key: str, cfg: dict, *args, **kwargs):
    """Instantiate a ``_partial_`` optimizer / scheduler config and call it; a ConfigError naming
    ``key`` for an unknown target, a wrong argument or an out-of-range value (e.g. a negative lr)."""
    try:
        return instantiate(cfg)(*args, **kwargs)
    except Exception as e:
        cause = e
        while cause.__cause__ is not None:  # Hydra wraps the real error
            cause = cause.__cause__
        raise ConfigError(f"{key} ({cfg.get('_target_')}): {type(cause).__name__}: {str(cause).splitlines()[0][:300]}") from None
