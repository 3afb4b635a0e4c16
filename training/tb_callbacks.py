"""Lightning callbacks that draw what a network learned into TensorBoard.

Each one logs at the end of every ``every_n_epochs``-th validation epoch (not during the
sanity check), through the run's :class:`~lightning.pytorch.loggers.TensorBoardLogger`;
with another logger, or none, it does nothing. Tags:

================  ===================================================================
callback          tags
================  ===================================================================
FilterImages      ``filters/<layer>``: the weights of every conv / S layer (first layer
                  as images; deeper layers as a grid, one row per output map, one column
                  per input map)
FeatureMaps       ``feature_maps/input`` and ``feature_maps/<layer>`` for a fixed set of
                  validation images (the first ``n_images`` of the validation split), and
                  for a network that grows (the self-organised Neocognitron)
                  ``planes/<layer>``: the number of planes each layer has
ValidationErrors  ``val/confusion_matrix`` and ``val/worst_mistakes`` (figures)
ModelGraph        the model graph (TensorBoard's GRAPHS tab), once
ParamNorms        ``weight_norm/<parameter>`` each logging epoch and, if ``log_grads``,
                  ``grad_norm/<parameter>`` every ``trainer.log_every_n_steps`` steps
================  ===================================================================

They are configured in ``configs/callbacks/`` and switched off one by one with
``callbacks.<name>.enabled=false`` (or all with ``callbacks=none``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from . import visualize as viz

# the final metrics train.py logs at the end of a run, shown with its hyperparameters in HPARAMS
HPARAM_METRICS = ("hp/val_acc_best", "hp/test_acc")


def _hp_value(value: Any) -> bool | int | float | str:
    """A value TensorBoard's HPARAMS can show: numbers and strings as they are; booleans and None as
    "true", "false", "null"; lists and mappings (e.g. a Neocognitron's stages) as compact JSON."""
    from omegaconf import Container, OmegaConf

    if isinstance(value, Container):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return "null"
    if isinstance(value, bool):  # as a word: TensorBoard would show a boolean as 1.0 / 0.0
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _short(target: str | None) -> str:
    """``torch.optim.AdamW`` -> ``AdamW``; ``training.data.MNISTDataModule`` -> ``MNIST``."""
    if not target:
        return "none"
    name = str(target).rsplit(".", 1)[-1]
    return name[: -len("DataModule")] if name.endswith("DataModule") and name != "DataModule" else name


def hparams_for_tensorboard(cfg) -> dict[str, bool | int | float | str]:
    """What a person compares across runs, from a train.py config, keyed by config path: the
    model's registry name and each of its ``model_kwargs``, the data set and its batch size and
    augmentation, the optimizer, its learning rate (and weight decay), the scheduler, the number
    of epochs and the seed. (Not the whole flattened config: 100+ callback and path settings.)"""
    from omegaconf import OmegaConf

    get = lambda key: OmegaConf.select(cfg, key, default=None)  # noqa: E731
    hp: dict[str, Any] = {"model/model": get("model.model")}
    for key, value in (get("model.model_kwargs") or {}).items():
        hp[f"model/model_kwargs/{key}"] = value
    hp["data"] = _short(get("data._target_"))
    for key in ("batch_size", "augment"):
        hp[f"data/{key}"] = get(f"data.{key}")
    for key in ("resize", "train_subset"):  # only when set
        if get(f"data.{key}") is not None:
            hp[f"data/{key}"] = get(f"data.{key}")
    hp["model/optimizer"] = _short(get("model.optimizer._target_"))
    hp["model/optimizer/lr"] = get("model.optimizer.lr")
    if get("model.optimizer.weight_decay") is not None:
        hp["model/optimizer/weight_decay"] = get("model.optimizer.weight_decay")
    hp["model/scheduler"] = _short(get("model.scheduler._target_"))
    hp["trainer/max_epochs"] = get("trainer.max_epochs")
    hp["seed"] = get("seed")
    return {k: _hp_value(v) for k, v in hp.items()}


@rank_zero_only
def log_hparams(logger: TensorBoardLogger, cfg) -> None:
    """Write the run's :func:`hparams_for_tensorboard` to TensorBoard's HPARAMS tab, at the start of
    the run, naming :data:`HPARAM_METRICS` as its metrics without logging a value for them:
    train.py logs each once, at the end (no line rising from a placeholder 0)."""
    from torch.utils.tensorboard.summary import hparams

    validates = (cfg.get("data") or {}).get("val_size", 1) != 0  # no validation split: no hp/val_* metric
    metrics = [m for m in HPARAM_METRICS if validates or not m.startswith("hp/val")]
    experiment, start, end = hparams(hparams_for_tensorboard(cfg), dict.fromkeys(metrics, 0.0))
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, start, end):
        writer.add_summary(summary)


def tensorboard_writer(trainer: L.Trainer):
    """The SummaryWriter of the trainer's TensorBoard logger, or None."""
    if not trainer.is_global_zero:
        return None
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            return lg.experiment
    return None


_FIGURE_NOTICE_GIVEN = False


def _can_draw_figures() -> bool:
    """Whether matplotlib is there (a runtime dependency, but an environment may lack it); without
    it, one line says so and the figures are skipped."""
    global _FIGURE_NOTICE_GIVEN
    if importlib.util.find_spec("matplotlib") is not None:
        return True
    if not _FIGURE_NOTICE_GIVEN:
        _FIGURE_NOTICE_GIVEN = True
        print("note: matplotlib is not installed, so TensorBoard gets no val/confusion_matrix or "
              "val/worst_mistakes figures (pip install matplotlib)", file=sys.stderr)
    return False


class _TensorBoardCallback(L.Callback):
    def __init__(self, every_n_epochs: int = 1):
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            from models.errors import ConfigError

            raise ConfigError(f"{type(self).__name__}: every_n_epochs must be a positive integer, got {every_n_epochs!r}")
        self.every_n_epochs = every_n_epochs

    def _due_on_every_rank(self, trainer: L.Trainer) -> bool:
        """Whether this epoch logs, answered alike on every DDP rank (a metric's compute(), which
        sums the ranks' counts, must run on all of them)."""
        if trainer.sanity_checking or not any(isinstance(lg, TensorBoardLogger) for lg in trainer.loggers):
            return False
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def _due(self, trainer: L.Trainer) -> bool:
        """Whether this process draws now: rank 0 (which alone writes to TensorBoard), when due."""
        return self._due_on_every_rank(trainer) and tensorboard_writer(trainer) is not None

    @staticmethod
    def _images(batch) -> torch.Tensor | None:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return x if isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point() else None


class FilterImages(_TensorBoardCallback):
    """``filters/<layer>``: the learned filters of every conv / S layer as image grids."""

    def __init__(self, every_n_epochs: int = 1, max_out: int = 64, max_in: int = 32):
        super().__init__(every_n_epochs)
        self.max_out, self.max_in = max_out, max_in

    def on_validation_epoch_end(self, trainer, pl_module):
        if not self._due(trainer):
            return
        writer = tensorboard_writer(trainer)
        for name, w in viz.conv_filters(pl_module).items():
            writer.add_image(f"filters/{name}", viz.filter_grid(w, self.max_out, self.max_in), trainer.global_step)


class FeatureMaps(_TensorBoardCallback):
    """``feature_maps/<layer>`` of a fixed set of validation images; ``planes/<layer>`` for a
    network that grows its planes."""

    def __init__(self, every_n_epochs: int = 1, n_images: int = 4, max_maps: int = 16, size: int = 48):
        super().__init__(every_n_epochs)
        self.n_images, self.max_maps, self.size = n_images, max_maps, size
        self.images: torch.Tensor | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.images is None and batch_idx == 0 and dataloader_idx == 0 and not trainer.sanity_checking:
            x = self._images(batch)
            if x is not None:
                self.images = x[: self.n_images].detach().clone()

    def on_validation_epoch_end(self, trainer, pl_module):
        if not self._due(trainer):
            return
        writer, step = tensorboard_writer(trainer), trainer.global_step
        planes = viz.planes_per_layer(pl_module)
        for name, n in (planes or {}).items():
            writer.add_scalar(f"planes/{name}", n, step)
        if self.images is None:
            return
        x = self.images.to(pl_module.device)
        writer.add_image("feature_maps/input", viz.feature_map_grid(x.cpu(), 1, self.size), step)
        for name, maps in viz.feature_maps(pl_module, x).items():
            if maps.shape[1] == 0 or maps.shape[-1] * maps.shape[-2] == 1:  # no planes yet, or 1x1 maps
                continue
            writer.add_image(f"feature_maps/{name}", viz.feature_map_grid(maps, self.max_maps, self.size), step)


class ValidationErrors(_TensorBoardCallback):
    """``val/confusion_matrix`` and ``val/worst_mistakes``: the ``k`` misclassified validation
    images whose true class got the lowest probability, titled 'true→predicted (p(true))'.

    The confusion matrix is the module's ``val_cm`` metric (:class:`training.module.Classifier`
    counts it), summed over every DDP rank, so it covers the whole validation split; for a module
    without one, this callback counts its own the same way. The worst mistakes are rank 0's."""

    def __init__(self, every_n_epochs: int = 1, k: int = 16, normalize: bool = False):
        super().__init__(every_n_epochs)
        self.k, self.normalize = k, normalize
        self.last_cm: torch.Tensor | None = None  # the confusion matrix logged last
        self._reset()

    def _reset(self):
        self.own_cm = None  # the callback's own count, for a module without val_cm
        self.worst: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def _module_cm(pl_module):
        from torchmetrics.classification import MulticlassConfusionMatrix

        cm = getattr(pl_module, "val_cm", None)
        return cm if isinstance(cm, MulticlassConfusionMatrix) else None

    def on_validation_epoch_start(self, trainer, pl_module):
        self._reset()

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if dataloader_idx != 0 or not self._due_on_every_rank(trainer):
            return
        x, y = batch[0], batch[1]
        scores = outputs.get("scores") if isinstance(outputs, dict) else None
        if scores is None:  # the module's validation_step does not return its scores
            scores = pl_module(x)
        if self._module_cm(pl_module) is None:
            from torchmetrics.classification import MulticlassConfusionMatrix

            if self.own_cm is None:  # on the module's device, so that compute() can sum the ranks' counts
                self.own_cm = MulticlassConfusionMatrix(scores.shape[1], validate_args=False).to(scores.device)
            self.own_cm.update(scores.detach(), y)
        if not self._due(trainer):
            return
        scores, y = scores.detach().float().cpu(), y.detach().cpu()
        pred = scores.argmax(1)
        idx = viz.worst_mistakes(scores, y, self.k)
        if len(idx):
            p_true = scores.softmax(1)[idx, y[idx]]
            cand = (x[idx].detach().float().cpu(), y[idx], pred[idx], p_true)
            if self.worst is not None:
                cand = tuple(torch.cat([a, b]) for a, b in zip(self.worst, cand))
            keep = cand[3].argsort()[: self.k]
            self.worst = tuple(t[keep] for t in cand)

    def on_validation_epoch_end(self, trainer, pl_module):
        if not self._due_on_every_rank(trainer):
            return
        metric = self._module_cm(pl_module)
        metric = self.own_cm if metric is None else metric
        cm = metric.compute().cpu() if metric is not None else None  # on every rank: sums their counts
        if not self._due(trainer) or cm is None or not cm.sum():  # rank 0 draws, once a batch was counted
            self._reset()
            return
        if not _can_draw_figures():
            self._reset()
            return
        writer, step = tensorboard_writer(trainer), trainer.global_step
        classes = getattr(trainer.datamodule, "classes", None) if trainer.datamodule is not None else None
        if classes is not None and len(classes) != cm.shape[0]:
            classes = None
        self.last_cm = cm
        writer.add_figure("val/confusion_matrix", viz.confusion_figure(cm, classes, self.normalize), step)
        if self.worst is not None:
            images, t, p, pt = self.worst
            writer.add_figure("val/worst_mistakes", viz.mistakes_figure(images, t, p, pt, classes), step)
        self._reset()


class ModelGraph(_TensorBoardCallback):
    """The network's graph (traced on two validation images), logged once."""

    def __init__(self):
        super().__init__(1)
        self.example: torch.Tensor | None = None
        self.done = False

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.example is None and not trainer.sanity_checking:
            x = self._images(batch)
            if x is not None:
                self.example = x[:2].detach().clone()

    def on_validation_epoch_end(self, trainer, pl_module):
        if self.done or self.example is None or not self._due(trainer):
            return
        self.done = True
        net = viz.unwrap(pl_module)
        was_training = net.training
        net.eval()
        try:
            with warnings.catch_warnings():  # torch.jit.trace's deprecation and its tracer notes, not the user's
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated",
                                        category=FutureWarning)
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                tensorboard_writer(trainer).add_graph(net, self.example.to(pl_module.device))
        except Exception as e:  # a network that torch.jit.trace cannot follow
            rank_zero_warn(f"ModelGraph: could not trace {type(net).__name__} for TensorBoard's graph: "
                           f"{type(e).__name__}: {str(e)[:200]}")
        finally:
            net.train(was_training)


class ParamNorms(_TensorBoardCallback):
    """``weight_norm/<parameter>`` at each logging validation end; ``grad_norm/<parameter>``
    every ``trainer.log_every_n_steps`` optimiser steps when ``log_grads``."""

    def __init__(self, every_n_epochs: int = 1, log_grads: bool = True):
        super().__init__(every_n_epochs)
        self.log_grads = log_grads

    def on_validation_epoch_end(self, trainer, pl_module):
        if not self._due(trainer):
            return
        writer = tensorboard_writer(trainer)
        for name, v in viz.weight_norms(pl_module).items():
            writer.add_scalar(f"weight_norm/{name}", v, trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if not self.log_grads or trainer.global_step % max(trainer.log_every_n_steps, 1):
            return
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        for name, v in viz.grad_norms(pl_module).items():
            writer.add_scalar(f"grad_norm/{name}", v, trainer.global_step)
