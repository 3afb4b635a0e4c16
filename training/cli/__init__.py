"""What the command-line entry points share: building the Trainer and its callbacks/loggers
from configs, checking the settings of a run, and reporting a mistake as one clear message
instead of a traceback. Every name below is importable from ``training.cli``; each lives in the
module named beside it (patch it there).

=============================  ====================================================================
``friendly_errors``            (:mod:`.errors`) a :class:`UserError` (or Ctrl-C) as one line on
                               stderr, exit status 2 (130); ``HYDRA_FULL_ERROR=1`` /
                               ``NEOLENET_DEBUG=1``: the traceback
``argument_parser``            (:mod:`.errors`) argparse's mistakes as one line, exit status 2
``run_main``                   (:mod:`.hydra_main`) the entry points' ``__main__``: Hydra's own
                               errors (an unknown ``model=`` name, a misspelled key) as one line,
                               exit status 2; and ``ckpt_path=<run>/checkpoints/last.ckpt`` resumes
                               with that run's own overrides (``resume_overrides``)
``check_trainer_config``       (:mod:`.settings`) the types and ranges of the ``trainer.*``
                               settings, before any data is read; ``check_run_config``: ``seed``,
                               ``matmul_precision``, ``test``, ``record``
``instantiate_trainer``        (:mod:`.build`) the Trainer, callbacks and loggers of the configs
``check_resume_config``        (:mod:`.resume`) a resumed run keeps its model and data split;
                               ``check_resume_checkpoint``: its weights load into the model
``discard_failed_run``         (:mod:`.cleanup`) a run folder whose run failed before its first
                               training step is removed
=============================  ====================================================================
"""

from __future__ import annotations

from .build import instantiate_group, instantiate_trainer
from .cleanup import discard_failed_run
from .errors import argument_parser, debug_requested, friendly_errors, translate_error, user_error
from .hydra_main import hydra_error_message, run_main
from .resume import (RESUME_DATA_KEYS, RESUME_FREE_MODEL_KEYS, check_resume_checkpoint, check_resume_config,
                     resume_overrides, run_folder_of)
from .settings import (MATMUL_PRECISIONS, TRAINER_CHECKS, check_learning_phases, check_run_config,
                       check_trainer_config)

__all__ = [
    "MATMUL_PRECISIONS", "RESUME_DATA_KEYS", "RESUME_FREE_MODEL_KEYS", "TRAINER_CHECKS", "argument_parser",
    "check_learning_phases", "check_resume_checkpoint", "check_resume_config", "check_run_config",
    "check_trainer_config", "debug_requested", "discard_failed_run", "friendly_errors", "hydra_error_message",
    "instantiate_group", "instantiate_trainer", "resume_overrides", "run_folder_of", "run_main",
    "translate_error", "user_error",
]
