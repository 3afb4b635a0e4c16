"""What makes a training run survive faults and reproduce exactly.

==========================  =========================================================================
``AtomicCheckpointIO``      a Trainer plugin: every checkpoint is written to a temporary file in the
                            same folder, flushed to disk, then renamed over the old one
                            (``os.replace``), so a kill during a write never leaves a half-written
                            ``last.ckpt`` for the next resume (the old one stays as it was).
``SafeModelCheckpoint``     Lightning's ModelCheckpoint that refuses to save NaN or infinite weights:
                            it stops training with a :class:`~models.errors.DivergenceError` instead,
                            so the last good checkpoint is never overwritten by a diverged model.
                            Used for both the epoch checkpoints (best + ``last.ckpt``) and the step
                            checkpoints (``last.ckpt`` every ``every_n_train_steps`` steps).
``DivergenceGuard``         stops training as soon as the loss or the weights stop being finite, with a
                            message that names the step and the metric.
``ExactResume``             saves the random number generators' states in every checkpoint and puts
                            them back when training resumes (the same dropout masks and augmentations
                            as an uninterrupted run), and makes sure the training loader resumes at
                            the batch where the checkpoint was taken.
``InterruptCheckpoint``     Ctrl-C during training stops after the training step under way, writes
                            ``last.ckpt`` at that step (atomically, like every checkpoint) and prints
                            the one command that resumes it; a second Ctrl-C stops at once. SIGTERM
                            (``kill``, ``timeout``, ``docker stop``, SLURM) does the same (exit 143).
==========================  =========================================================================

They are wired in ``configs/trainer/cpu.yaml`` (``plugins``) and ``configs/callbacks/``.
Resuming mid-epoch also needs the training loader to skip the batches already seen; that is
the data module's :class:`~training.data.EpochShuffleSampler` (seeded by the run's seed and the
epoch) behind a stateful loader.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from models.checks import check_positive_int
from models.errors import ConfigError, DivergenceError

PARTIAL_SUFFIX = ".partial"


# --- atomic checkpoint files ----------------------------------------------------------------


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` that either writes the whole file or leaves ``path`` as it was.

    The data go to ``.<random>.partial`` in the same folder (same file system, so the rename
    is atomic), are flushed and fsync'ed, then ``os.replace`` puts the file in place and the
    folder entry is fsync'ed. On an exception the temporary file is removed; after a kill it
    stays behind (a hidden ``*.partial`` that no resume looks at) and the next successful save
    in that folder removes it (unless the process that wrote it is still running).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        full = isinstance(e, RuntimeError) and _disk_full(path.parent)  # torch's zip writer: "unexpected pos ..."
        tmp.unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise
    _fsync_dir(path.parent)
    for stale in path.parent.glob(f".*{PARTIAL_SUFFIX}"):  # left by a killed process
        pid = stale.name[1:].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)


def _disk_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has (almost) no room left: under 1 MiB free."""
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's TorchCheckpointIO with write-then-rename in the checkpoint's own folder.

    (Lightning's own save writes to a temporary file in the system's temp folder and then
    moves it; across file systems that move is a copy, which a kill can interrupt.)
    Remote paths (``s3://...``) are left to Lightning."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options, got {storage_options!r}")
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = str(path).removeprefix("file://")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        """Read a checkpoint to resume or test from with ``weights_only=True`` whatever Lightning
        asks: a file carrying objects that could run code is refused (:mod:`training.checkpoint`)."""
        from .checkpoint import safe_load

        if "://" in str(path) and not str(path).startswith("file://"):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return safe_load(str(path).removeprefix("file://"), map_location=map_location or (lambda storage, loc: storage))


# --- divergence ---------------------------------------------------------------------------------


def host_sync_due(trainer, every: int) -> bool:
    """Whether a check that reads a value back from the device (a host synchronisation) runs at
    this step: every ``every`` steps on the CPU, where reading is free, and at most once per
    logging interval (``trainer.log_every_n_steps``) on an accelerator, so that a GPU step never
    waits for the host except to log. ``every`` 0: never."""
    if every <= 0:
        return False
    if trainer.strategy.root_device.type != "cpu":
        every = max(every, trainer.log_every_n_steps)
    return trainer.global_step % every == 0


def first_non_finite(module: torch.nn.Module) -> str | None:
    """The name of the first parameter or floating-point buffer (e.g. BatchNorm's running
    statistics) of ``module`` holding a NaN or an infinity, or None when all are finite.
    (Metric states such as the best accuracy's initial -inf are neither, so not looked at.)"""
    tensors = [(n, t) for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_floating_point()]
    if not tensors:
        return None
    with torch.no_grad():  # one device sync for the common, all-finite case
        flags = torch.stack([torch.isfinite(t).all() for _, t in tensors])
        if bool(flags.all()):
            return None
    return tensors[int((~flags).nonzero()[0])][0]


def what_is_kept(trainer: L.Trainer) -> str:
    """"the last good checkpoint is kept (epoch_003.ckpt)", or that none had been written yet."""
    saved = [Path(p) for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)
             for p in (cb.last_model_path, cb.best_model_path) if p and Path(p).is_file()]
    if not saved:
        return "no checkpoint had been written yet"
    return f"the last good checkpoint is kept ({max(saved, key=lambda p: p.stat().st_mtime).name})"


class SafeModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that never writes non-finite weights: it raises :class:`DivergenceError`
    (training stops, the checkpoints on disk stay as they were) instead of saving them."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        module = trainer.lightning_module
        bad = first_non_finite(module) if module is not None else None
        if bad is not None:
            raise DivergenceError(
                f"training diverged: weight {bad!r} is NaN or infinite at global step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}); not saving {Path(filepath).name}, {what_is_kept(trainer)}. "
                f"Lower model.optimizer.lr or check the data."
            )
        super()._save_checkpoint(trainer, filepath)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning saves last.ckpt at the end of training from a callback that never saved one
        # (a step checkpoint whose N was never reached). When another checkpoint callback already
        # saved this very step, that would only overwrite its last.ckpt with a copy taken after
        # the epoch counter moved on; skip it.
        others = [cb for cb in trainer.checkpoint_callbacks if cb is not self and isinstance(cb, ModelCheckpoint)]
        if any(cb._last_global_step_saved == trainer.global_step and cb.save_last for cb in others):
            return
        super().on_train_end(trainer, pl_module)


class DivergenceGuard(L.Callback):
    """Stop training when the loss or the weights become NaN or infinite.

    The loss is checked on every training batch (``monitor``, default ``train/loss``, as the
    LightningModule returns it); the weights every ``check_weights_every_n_steps`` optimizer
    steps (0: only before validation) and before every validation (on a GPU both at most once
    per logging interval, see :func:`host_sync_due`), so a finite loss with an
    infinite gradient (which turns the weights into NaN) is reported as such. It runs before the
    checkpoint callbacks (Lightning calls those last); between weight checks,
    :class:`SafeModelCheckpoint` refuses to save NaN weights, and the NaN loss of the next step
    stops training. A weight check costs about 2% of a convnet training step on one CPU thread
    (``benchmarks/bench_reliability.py``), hence every 10 steps by default."""

    def __init__(self, monitor: str = "train/loss", check_weights_every_n_steps: int = 10):
        if not isinstance(check_weights_every_n_steps, int) or check_weights_every_n_steps < 0:
            raise ValueError(f"check_weights_every_n_steps must be an integer >= 0, got {check_weights_every_n_steps!r}")
        self.monitor = monitor
        self.every = check_weights_every_n_steps

    def _stop(self, trainer: L.Trainer, what: str) -> None:
        raise DivergenceError(
            f"training diverged: {what} at global step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {trainer.fit_loop.epoch_loop.batch_idx}); training stopped and {what_is_kept(trainer)}. "
            f"Lower model.optimizer.lr or check the data."
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if torch.is_tensor(loss) and host_sync_due(trainer, 1) and not bool(torch.isfinite(loss.detach()).all()):
            self._stop(trainer, f"{self.monitor} is {loss.detach().float().item()}")
        if host_sync_due(trainer, self.every):
            bad = first_non_finite(pl_module)
            if bad is not None:
                self._stop(trainer, f"weight {bad!r} became NaN or infinite ({self.monitor} was "
                                    f"{float(loss) if torch.is_tensor(loss) else 'not returned'})")

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.training:
            return
        bad = first_non_finite(pl_module)
        if bad is not None:
            self._stop(trainer, f"weight {bad!r} is NaN or infinite")


# --- exact resume -------------------------------------------------------------------------------


class ExactResume(L.Callback):
    """What Lightning leaves out of a checkpoint for an exact resume.

    * The global random number generators (torch CPU and CUDA, Python, NumPy): saved in every
      checkpoint and put back when training starts from one, so that dropout masks and batched
      augmentation are drawn exactly as in an uninterrupted run.
    * The training loader's position: Lightning saves a stateful loader's ``state_dict()``
      (:class:`~training.data.ResumableLoader`: the epoch and the batches already done) but only
      loads it back if the loader is created *after* the checkpoint is restored. A scheduler
      that asks for ``trainer.estimated_stepping_batches`` (OneCycleLR) makes Lightning create
      it before, and the saved position would be silently dropped (the resumed epoch would start
      again from its first batch). This callback loads it then.

    Both happen in ``on_train_start``: after Lightning restored everything else, before the
    first resumed batch is drawn (the loader's sampler draws lazily)."""

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        state = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": _numpy_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = dict(state_dict)

    def on_train_start(self, trainer, pl_module) -> None:
        fit_loop = trainer.fit_loop
        loader_states = getattr(fit_loop, "_combined_loader_states_to_load", None)
        combined = getattr(fit_loop, "_combined_loader", None)
        if loader_states and combined is not None:
            combined._load_state_dicts(loader_states)
            fit_loop._combined_loader_states_to_load = []
        state, self._pending = self._pending, None
        if not state:
            return
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state() -> tuple:
    """NumPy's global RNG state with its key array as a tensor (Lightning loads checkpoints
    with ``weights_only=True``, which refuses NumPy arrays)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


# --- Ctrl-C -------------------------------------------------------------------------------------


class InterruptCheckpoint(L.Callback):
    """Ctrl-C (SIGINT) during training: stop after the training step under way, save ``last.ckpt``
    at that step and print the command that resumes it.

    The first Ctrl-C only sets a flag (and says so); the step under way finishes, and at its end
    (``on_train_batch_end``, where the step checkpoints are taken: a consistent state that resumes
    exactly) ``last.ckpt`` is written through the Trainer's checkpoint IO (atomic,
    :class:`AtomicCheckpointIO`) and training stops with a ``KeyboardInterrupt`` (Lightning's
    graceful shutdown; train.py exits with status 130). A Ctrl-C during a validation pass lets that
    pass end, so that the epoch's checkpoint and metrics are complete, and stops before the next
    training step (the checkpoint written at the end of validation is the one to resume from). A
    second Ctrl-C stops at once without saving. Before training starts (data loading) and after it
    ends (testing), Ctrl-C stops at once; nothing is saved then.

    The handler is installed only in the main thread of a single process whose SIGINT handler is
    Python's default (not under DDP, where each rank would have to agree on the step; not when
    SIGINT is ignored). ``dirpath``: where ``last.ckpt`` goes (default: the folder of the first
    checkpoint callback that keeps a ``last.ckpt``, else ``<default_root_dir>/checkpoints``).

    SIGTERM is handled the same way through Lightning's own handler (which sets
    ``trainer.received_sigterm``; its loops then raise ``SIGTERMException``): at the end of the step
    under way ``last.ckpt`` is written, training stops with ``SIGTERMException`` and the resume
    command is printed (train.py exits with status 143). A SIGTERM during a validation pass stops it
    (Lightning's loop does) and the last checkpoint written is named. Under DDP, Lightning's handling
    alone (no save here)."""

    def __init__(self, dirpath: str | None = None, filename: str = "last.ckpt", command: str = "python train.py"):
        self.dirpath, self.filename, self.command = dirpath, filename, command
        self._requested = False
        self._previous: Any = None
        self.saved: str | None = None

    # -- the signal handler --------------------------------------------------------------
    def _install(self, trainer) -> None:
        import signal
        import threading

        if trainer.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return
        self._previous = signal.default_int_handler
        signal.signal(signal.SIGINT, self._on_sigint)

    def _uninstall(self) -> None:
        import signal

        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def _on_sigint(self, signum, frame) -> None:
        import signal
        import sys

        self._requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)  # a second Ctrl-C: at once
        self._previous = None
        print("\nCtrl-C: stopping after this training step and saving last.ckpt (Ctrl-C again: stop at once, "
              "without saving)", file=sys.stderr, flush=True)

    # -- where training may stop -----------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self._requested, self.saved = False, None
        self._install(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._requested:
            self._save(trainer, pl_module)
            self._stop()
        if self._sigterm(trainer) and self.saved is None:  # SIGTERM: Lightning flagged it; save now, stop
            import sys

            from lightning.pytorch.utilities.exceptions import SIGTERMException

            print(f"\nSIGTERM: saving last.ckpt at global step {trainer.global_step} and stopping", file=sys.stderr,
                  flush=True)
            self._save(trainer, pl_module)
            raise SIGTERMException  # Lightning's own exit for SIGTERM (train.py: exit status 143)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._stop_if_saved(trainer)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._stop_if_saved(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._uninstall()
        if self._requested:
            if self._saved_last(trainer) is None:
                self._save(trainer, pl_module)
            else:
                self.saved = self._saved_last(trainer)
            self._stop()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._uninstall()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        import sys

        from lightning.pytorch.utilities.exceptions import SIGTERMException

        self._uninstall()
        sigterm = isinstance(exception, SIGTERMException)
        if not (isinstance(exception, KeyboardInterrupt) or sigterm) or not trainer.is_global_zero:
            return
        from lightning.pytorch.trainer.states import RunningStage, TrainerFn

        if trainer.state.fn != TrainerFn.FITTING:
            return
        if sigterm and not self.saved:  # SIGTERM after this callback's batch end: the epoch's checkpoint, or now
            self.saved = self._saved_last(trainer)
            if self.saved is None and trainer.state.stage == RunningStage.TRAINING and trainer.world_size == 1:
                self._save(trainer, pl_module)
        word = "terminated (SIGTERM)" if sigterm else "interrupted"
        if self.saved:
            print(f"{word} at global step {trainer.global_step}; saved {self.saved}. Resume with:\n"
                  f"  {self.command} ckpt_path={self.saved}", file=sys.stderr, flush=True)
            return
        last = Path(self._dirpath(trainer)) / self.filename
        if last.is_file():
            print(f"{word} at global step {trainer.global_step}; nothing saved at the interrupt. The last "
                  f"checkpoint resumes it:\n  {self.command} ckpt_path={last.resolve()}", file=sys.stderr, flush=True)
        else:
            print(f"{word} before any checkpoint was written; nothing to resume", file=sys.stderr, flush=True)

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _sigterm(trainer) -> bool:
        """Whether Lightning's SIGTERM handler has fired (one process: under DDP Lightning
        synchronises the ranks and raises its SIGTERMException itself)."""
        return bool(getattr(trainer, "received_sigterm", False)) and trainer.world_size == 1

    def _stop_if_saved(self, trainer) -> None:
        """Stop at once if the state as it is now is already in a checkpoint (e.g. the one written at
        the end of the validation pass during which Ctrl-C came); else the next step ends with a save."""
        if self._requested and self._saved_last(trainer) is not None:
            self.saved = self._saved_last(trainer)
            self._stop()

    def _saved_last(self, trainer) -> str | None:
        """The ``last.ckpt`` a checkpoint callback wrote at this global step, if any."""
        for cb in trainer.checkpoint_callbacks:
            if (isinstance(cb, ModelCheckpoint) and cb.save_last and cb._last_global_step_saved == trainer.global_step
                    and cb.last_model_path and Path(cb.last_model_path).is_file()):
                return str(Path(cb.last_model_path).resolve())
        return None

    def _dirpath(self, trainer) -> str:
        if self.dirpath:
            return self.dirpath
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath:
                return cb.dirpath
        return os.path.join(trainer.default_root_dir, "checkpoints")

    def _save(self, trainer, pl_module) -> None:
        import sys

        bad = first_non_finite(pl_module)
        if bad is not None:  # as SafeModelCheckpoint: never save NaN weights
            print(f"not saving at the interrupt: weight {bad!r} is NaN or infinite", file=sys.stderr)
            return
        path = Path(self._dirpath(trainer)) / self.filename
        # the second argument is Lightning's save-side weights_only: False, the whole training state, as
        # ModelCheckpoint saves it (passed so that Lightning does not log that it defaulted to it)
        trainer.save_checkpoint(path, False)
        self.saved = str(path.resolve())

    def _stop(self) -> None:
        self._requested = False
        self._uninstall()
        raise KeyboardInterrupt


# --- the test error after each pass (the LeNet paper's Fig. 5) ------------------------------------


class TestPerPass(L.Callback):
    """The test error and accuracy after every ``every_n_epochs`` training passes, logged as
    ``test_per_pass/error`` and ``test_per_pass/acc``: the curve LeCun et al. (1998) plot in Fig. 5
    for runs that, like the paper, train on the whole training split with no validation split.
    Named *test* because it is: nothing is chosen on it (no checkpoint, no early stop)."""

    def __init__(self, every_n_epochs: int = 1):
        self.every_n_epochs = every_n_epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if dm is None or not getattr(dm, "data", None) or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        x, y = dm.data["test"]
        size = getattr(dm.hparams, "eval_batch_size", 1000)
        was_training, correct = pl_module.training, 0
        pl_module.eval()
        with torch.no_grad():
            for i in range(0, len(y), size):
                xb, yb = dm.transform(x[i : i + size].to(pl_module.device)), y[i : i + size].to(pl_module.device)
                _, scores, _ = pl_module._shared_step((xb, yb))
                correct += int((scores.argmax(1) == yb).sum())
        pl_module.train(was_training)
        acc = correct / max(1, len(y))
        pl_module.log_dict({"test_per_pass/acc": acc, "test_per_pass/error": 1.0 - acc}, on_step=False,
                           on_epoch=True, rank_zero_only=True)


# --- SDLM's curvature, re-estimated before every pass (LeCun et al. 1998, II.B) ---------------------


class SDLMHessianCallback(L.Callback):
    """Before every training epoch, re-estimate SDLM's Hessian diagonal (:class:`models.sdlm.SDLM`)
    on ``num_samples`` training images from ``trainer.datamodule.sample_batch`` ([1998]: 500, every
    pass). Does nothing when the optimizer is not SDLM."""

    def __init__(self, num_samples: int = 500):
        self.num_samples = check_positive_int("SDLMHessianCallback", "num_samples", num_samples)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from models.sdlm import SDLM

        optimizers = [o for o in trainer.optimizers if isinstance(getattr(o, "optimizer", o), SDLM)]
        if not optimizers:
            return
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "sample_batch"):
            raise ConfigError("SDLMHessianCallback needs a datamodule with sample_batch(n)")
        x, y = dm.sample_batch(self.num_samples)
        x, y = x.to(pl_module.device), y.to(pl_module.device)
        net = getattr(pl_module, "net", pl_module)
        loss_fn = getattr(pl_module, "loss", None)
        for o in optimizers:
            stats = getattr(o, "optimizer", o).estimate_hessian(net, loss_fn, x, y)
        pl_module.log_dict({f"train/{k}": v for k, v in stats.items()}, on_step=False, on_epoch=True)
