"""The private Hydra and Lightning names the project relies on still exist in the installed
releases (training/private_api.py gathers them), and the ranges in pyproject.toml stop below the
releases that could move them."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from training import private_api

ROOT = Path(__file__).resolve().parents[1]


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return importlib.import_module(path)


@pytest.mark.parametrize("owner, name", private_api.OVERRIDDEN)
def test_every_private_attribute_our_subclasses_use_exists(owner, name):
    cls = _resolve(owner)
    if name.startswith("_") and not callable(getattr(cls, name, None)):  # an instance attribute
        import inspect

        source = inspect.getsource(cls)
        assert f"self.{name}" in source, f"{owner}.{name} is gone: update training/private_api.py"
    else:
        assert hasattr(cls, name), f"{owner}.{name} is gone: update training/private_api.py"


def test_the_hydra_wrappers_work_with_the_installed_hydra():
    args = private_api.hydra_args_parser().parse_args(["-m", "model=lenet5", "seed=1"])
    assert args.multirun and list(args.overrides) == ["model=lenet5", "seed=1"]
    import hydra._internal.utils as hydra_utils

    original = hydra_utils.run_and_report
    seen = []
    with private_api.hydra_run_and_report_wrapped(lambda f: (lambda: seen.append("wrapped") or f())):
        assert hydra_utils.run_and_report(lambda: 7) == 7
    assert seen == ["wrapped"] and hydra_utils.run_and_report is original


def test_the_distributed_sampler_flag_is_read_from_the_trainer():
    import lightning as L

    trainer = L.Trainer(use_distributed_sampler=False, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    assert private_api.uses_distributed_sampler(trainer) is False
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    assert private_api.uses_distributed_sampler(trainer) is True


def test_no_other_module_reaches_into_private_hydra_or_lightning_names():
    pattern = re.compile(r"hydra\._internal|from lightning[\w.]* import _\w|_accelerator_connector|_sync_module_states")
    offenders = []
    for path in [*ROOT.glob("*.py"), *ROOT.glob("training/**/*.py"), *ROOT.glob("models/**/*.py"),
                 *ROOT.glob("benchmarks/*.py")]:
        if path.name == "private_api.py":
            continue
        if pattern.search(path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_ranges_stop_below_the_releases_that_could_move_them():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"hydra-core>=1\.3,<1\.4"', text)
    assert re.search(r'"lightning>=2\.\d+,<3"', text)
