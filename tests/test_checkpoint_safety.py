"""Issue 20: a checkpoint someone sends you must not run code.

A crafted file whose pickle calls ``os.system("touch <marker>")`` when unpickled is handed to
every way the project opens a checkpoint; each must refuse it with one clear line, and the
marker file must not exist afterwards. (Checkpoints the project writes itself keep loading:
tests/test_harness.py resumes, evaluates, predicts with and ``load_from_checkpoint``s them,
all through the same safe loader.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.callbacks import AtomicCheckpointIO
from training.checkpoint import UnsafeCheckpointError, read_checkpoint, safe_load
from training.module import Classifier, check_resume_checkpoint
from models.errors import CheckpointError
from tests.conftest import ROOT


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    """A checkpoint-looking file that runs ``touch <marker>`` when unpickled, and the marker."""
    marker = tmp_path / "code-ran"
    path = tmp_path / "crafted.ckpt"
    torch.save({"hyper_parameters": {"model": "convnet"}, "state_dict": {}, "x": _Evil(marker)}, path)
    return path, marker


def test_the_crafted_file_really_runs_code_when_loaded_unsafely(crafted):
    """The fixture is live: an unsafe load does create the marker (else every test below is vacuous)."""
    path, marker = crafted
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_python_api_refuses_it(crafted):
    path, marker = crafted
    for load in (read_checkpoint, safe_load, Classifier.load_from_checkpoint, Classifier.load_with_checkpoint,
                 lambda p: check_resume_checkpoint(p, None)):
        with pytest.raises(UnsafeCheckpointError, match=r"could run code.*posix.system|could run code"):
            load(path)
    assert not marker.exists()


def test_lightnings_own_loads_are_safe_whatever_they_ask(crafted):
    """trainer.fit(ckpt_path=...) and trainer.test(ckpt_path=...) read through the Trainer's
    checkpoint IO (configs/trainer: AtomicCheckpointIO), even when asked for weights_only=False."""
    path, marker = crafted
    with pytest.raises(UnsafeCheckpointError):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()


def test_reading_a_run_folder_is_safe(crafted, tmp_path):
    from training.visualize import read_run

    path, marker = crafted
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "tensorboard").mkdir()
    path.rename(run / "checkpoints" / "last.ckpt")
    with pytest.raises(UnsafeCheckpointError):
        read_run(run)
    assert not marker.exists()


def _cli(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.mark.parametrize("script", ["predict.py", "eval.py", "train.py"])
def test_entry_points_refuse_it_with_one_line(script, crafted, mnist_root, tmp_path):
    path, marker = crafted
    if script == "predict.py":
        from PIL import Image

        Image.new("L", (28, 28)).save(tmp_path / "digit.png")
        args = [str(path), str(tmp_path / "digit.png")]
    else:  # eval.py; train.py resumes from it
        args = [f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}"]
        if script == "train.py":
            args += ["model=convnet", f"data.root={mnist_root}", "data.download=false", "logger=none",
                     "callbacks=none"]
    result = _cli(script, *args)
    assert not marker.exists(), "the checkpoint's code ran"
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "could run code" in errors[0] and str(path) in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_nothing_in_the_project_loads_unsafely():
    """Every torch.load in the package, the entry points, the benchmarks, the notebooks and the
    other tests asks for weights_only=True (a grep: it fails if anyone turns it off or leaves it out)."""
    files = [*ROOT.glob("*.py"), *(ROOT / "models").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"),
             *(ROOT / "tests").rglob("*.py"), *(ROOT / "notebooks").glob("*.ipynb")]
    unsafe = []
    for f in files:
        if f.name == Path(__file__).name:  # this file loads the crafted file unsafely on purpose
            continue
        text = f.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, end = 0, m.end() - 1
            for end in range(m.end() - 1, len(text)):  # to the matching parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            call = text[m.start(): end + 1]
            if "weights_only=True" not in call:
                unsafe.append(f"{f.relative_to(ROOT)}: {call[:80]}")
        if "weights_only=False" in text:
            unsafe.append(f"{f.relative_to(ROOT)}: weights_only=False")
    assert not unsafe, unsafe
