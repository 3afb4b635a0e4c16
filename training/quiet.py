"""Quiet output: the third-party tips and deprecation warnings that a default ``python train.py``
would print, and that say nothing about the user's run, are filtered narrowly (each by its
category and the start of its message); every other warning still shows.

No torch or Lightning import: the entry points call :func:`quiet_third_party` before anything
that would warn. The ``torch.jit.trace`` deprecation of the model-graph callback is silenced where
the callback traces (:class:`training.tb_callbacks.ModelGraph`), not here.
"""

from __future__ import annotations

import logging
import re
import warnings

# (category, regex matched at the start of the message, where it comes from)
WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated",
     "Lightning 2.6's lightning/pytorch/utilities/_pytree.py with torch >= 2.10, at every fit and test"),
)

# Lightning's info records (logging, not warnings), matched at the start of the message
LOG_MESSAGES: tuple[tuple[str, str], ...] = (
    (r"💡 Tip: .*litlogger", "an advertisement for Lightning's cloud logger, at every Trainer"),
    (r"`Trainer\(\w+=1\.0\)` was configured so 100%", "a limit_*_batches=1.0 (all batches) said back"),
    (r"Loading `train_dataloader` to estimate number of stepping batches",
     "Lightning counting the steps for OneCycleLR"),
)

# the loggers Lightning's rank_zero_info writes through (lightning.pytorch sets the first)
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                     "lightning_utilities.core.rank_zero")


class _DropKnownRecords(logging.Filter):
    """Drops the log records whose message starts with one of :data:`LOG_MESSAGES`."""

    pattern = re.compile("|".join(f"(?:{rx})" for rx, _ in LOG_MESSAGES))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted: let logging report it
            return True
        return self.pattern.match(message) is None


_FILTER = _DropKnownRecords()


def _lightning_console() -> None:
    """Lightning's messages on stderr as plain lines, as when it is imported before Hydra sets up
    logging: on its first import Lightning gives its loggers a console handler of their own only
    if the root logger has none yet, and the entry points import it after Hydra has given the
    root logger its handlers (which would print each message twice, once prefixed with "INFO:")."""
    if logging.getLogger().hasHandlers():
        return
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.setLevel(logging.INFO)
            logger.addHandler(logging.StreamHandler())
            logger.propagate = False


def quiet_third_party() -> None:
    """Install the filters (idempotent), and keep Lightning's messages plain (:func:`_lightning_console`)."""
    _lightning_console()
    for category, message, _ in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
