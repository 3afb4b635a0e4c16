"""Reporting a mistake as one clear line instead of a traceback.

``friendly_errors`` (the entry points' body), ``argument_parser`` (argparse's mistakes),
``user_error`` / ``translate_error`` (a known third-party error that is the user's to fix, such as
a full disk, a ``???`` value left open or a tensor too large for memory, as a :class:`UserError`).
``HYDRA_FULL_ERROR=1`` or ``NEOLENET_DEBUG=1`` (:func:`debug_requested`) shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sys
from pathlib import Path

from models.errors import ConfigError, UserError


@contextlib.contextmanager
def friendly_errors(writing_to: str | os.PathLike | None = None):
    """Print a UserError's message (no traceback) and exit with status 2.
    ``HYDRA_FULL_ERROR=1`` (or ``NEOLENET_DEBUG=1``) re-raises it with its traceback.
    ``writing_to``: the folder the command writes (the run folder), named when a write fails
    without saying which file (TensorBoard's writer thread on a full disk)."""
    import threading

    original_hook = threading.excepthook

    def thread_hook(args):  # a write error in a writer thread: reported once, by the main thread
        if debug_requested() or user_error(args.exc_value) is None:
            original_hook(args)

    threading.excepthook = thread_hook
    try:
        yield
    except KeyboardInterrupt:  # Ctrl-C outside training (Lightning handles it during fit: InterruptCheckpoint)
        if debug_requested():
            raise
        print("interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        cause = user_error(e, writing_to)
        if cause is None or debug_requested():
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    finally:
        threading.excepthook = original_hook


def argument_parser(**kwargs):
    """An ``argparse.ArgumentParser`` whose mistakes (a missing or misspelled option, a value of the
    wrong type) are one line, ``error: <what> (see <prog> --help)``, exit status 2, as every other
    mistake (argparse's own prints its usage first and ``<prog>: error: ...``)."""
    import argparse

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    return OneLineParser(**kwargs)


def debug_requested() -> bool:
    """Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1``, ``NEOLENET_DEBUG=1``)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("NEOLENET_DEBUG") == "1"


def user_error(e: BaseException | None, writing_to: str | os.PathLike | None = None) -> UserError | None:
    """The UserError behind ``e`` (Hydra's instantiate and Lightning wrap exceptions), if any; a
    known third-party error that is the user's to fix (:func:`translate_error`) becomes one."""
    seen = set()
    chain = []
    while e is not None and id(e) not in seen:
        if isinstance(e, UserError):
            return e
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    for link in chain:
        translated = translate_error(link, writing_to)
        if translated is not None:
            return translated
    return None


# errno: what it means for a file the project writes
_WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EISDIR: "a folder stands where a file should be",
    errno.EEXIST: "a file stands where a folder should be",
}


def translate_error(e: BaseException, writing_to: str | os.PathLike | None = None) -> UserError | None:
    """A clear :class:`UserError` for a third-party error that the user can fix (None otherwise):

    * a write that failed (a full disk, a read-only or unwritable folder, a file where the run
      folder goes): :class:`StorageError` naming the path, why, and what to do;
    * a mandatory config value left out (``???``: ``ckpt_path`` of eval.py, ``data.root`` of
      ``data=image_folder``): which key to set;
    * ``trainer.accelerator`` naming hardware this machine lacks (Lightning's "No supported gpu backend");
    * a tensor torch's allocator cannot make (a network built for ``data.resize=100000``): which settings
      make things large.
    """
    from models.errors import StorageError

    if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
        where = e.filename or (f"to {writing_to}" if writing_to else "a file")
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        return StorageError(f"cannot write {where}: {_WRITE_ERRNOS[e.errno]}{_free_space(where, e.errno)}. "
                            f"Nothing already written was removed; {'free some space there, or ' if full else ''}"
                            f"choose a folder you can write (LOG_DIR=<folder>, or hydra.run.dir=<folder>)")
    if type(e).__name__ == "MissingMandatoryValue":
        key = getattr(e, "full_key", None) or "a config value"
        hint = {"ckpt_path": "ckpt_path=<run>/checkpoints/last.ckpt (the checkpoint to evaluate)",
                "data.root": "data.root=<folder> (it holds train/<class>/* and test/<class>/* images)",
                "data.num_classes": "data.num_classes=<the number of class folders in train/>"}.get(key, f"{key}=<value>")
        return ConfigError(f"{key} must be given (the config leaves it open, ???): add {hint} to the command line")
    memory = _ALLOC_FAILED.search(str(e)) if isinstance(e, (RuntimeError, MemoryError)) else None
    if memory is not None:  # torch's allocator (CPU or CUDA) refused a tensor: a setting asks for too much
        size = memory.group(1) or memory.group(2)
        asked = f"{int(size) / 2**30:.1f} GiB" if size.isdigit() else size
        where = "GPU" if "CUDA" in str(e) else "CPU"
        return ConfigError(f"not enough memory: a tensor of {asked} could not be allocated on the {where}; a setting "
                           f"makes the network or its batches too large for this machine (data.resize, data.batch_size, "
                           f"data.eval_batch_size, the layer widths in model.model_kwargs): make it smaller")
    lightning = _lightning_setting_error(e)
    if lightning is not None:
        return lightning
    if type(e).__name__ == "MisconfigurationException" and "No supported gpu backend" in str(e):
        return ConfigError("trainer=gpu (trainer.accelerator=gpu) but this machine has no GPU that PyTorch can use "
                           "(torch.cuda.is_available() is False): use trainer=cpu, the default")
    return None


def _lightning_setting_error(e: BaseException) -> ConfigError | None:
    """Lightning's refusals of a trainer setting it checks only when the Trainer is built or fitting:
    an accelerator it does not know or this machine lacks, a val_check_interval beyond an epoch."""
    text = str(e)
    if isinstance(e, ValueError) and "You selected an invalid accelerator name" in text:
        return ConfigError(f"trainer.accelerator: {text.strip()} (trainer=cpu, trainer=gpu choose one)")
    if type(e).__name__ == "MisconfigurationException" and "can not run on your system" in text:
        name = re.search(r"`(\w+)Accelerator`", text)
        return ConfigError(f"trainer.accelerator={(name.group(1).lower() if name else '...')}: this machine has no such "
                           f"device; use trainer=cpu (or trainer=gpu on a machine with a GPU)")
    if isinstance(e, ModuleNotFoundError) and "Requirement 'torch_xla" in text:
        return ConfigError("trainer.accelerator=tpu needs torch_xla, which is not installed (and a TPU): use trainer=cpu "
                           "or trainer=gpu")
    bad = re.search(r"`val_check_interval` \((\d+)\) must be less than or equal to the number of the training batches "
                    r"\((\d+)\)", text) if isinstance(e, ValueError) else None
    if bad:
        n, batches = bad.groups()
        return ConfigError(f"trainer.val_check_interval={n} is more than the {batches} training batches of an epoch: use "
                           f"at most {batches}, a fraction of an epoch (e.g. 0.5), or trainer.check_val_every_n_epoch=null "
                           f"to count batches across epochs")
    return None


# torch's allocators: "DefaultCPUAllocator: can't allocate memory: you tried to allocate 639974400256 bytes"
# (or "not enough memory: ..."), "CUDA out of memory. Tried to allocate 20.00 GiB"
_ALLOC_FAILED = re.compile(r"DefaultCPUAllocator: .*?you tried to allocate (\d+) bytes|"
                           r"CUDA out of memory\. Tried to allocate ([\d.]+ [KMGT]?i?B)")


def _free_space(path: str, code: int) -> str:
    if code not in (errno.ENOSPC, errno.EDQUOT):
        return ""
    folder = Path(path.removeprefix("to "))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f" ({shutil.disk_usage(folder).free / 2**20:.0f} MiB free in {folder})"
    except OSError:
        return ""
