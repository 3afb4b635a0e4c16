"""Issue 16 §3-§5: the results store (one appended JSON line per run) and the README's tables
generated from it, with a check that fails when a figure in the README is typed by hand."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

import train as train_script
from tests.conftest import FAST, ROOT, compose_train
from training.records import append_record, read_records

sys.path.insert(0, str(ROOT / "benchmarks"))
import report  # noqa: E402


def test_a_record_says_what_ran_where_and_is_only_ever_appended(tmp_path):
    first = append_record("demo", {"seed": 1, "metrics": {"test/acc": 0.5}})
    text = first.read_text()
    append_record("demo", {"seed": 2, "metrics": {"test/acc": 0.7}})
    assert first.read_text().startswith(text)  # the first line is untouched
    a, b = read_records("demo")
    assert (a["seed"], b["seed"], a["_line"], b["_line"]) == (1, 2, 1, 2)
    assert {"command", "date", "git", "machine"} <= a.keys()
    assert len(a["git"]["commit"] or "") == 40 and isinstance(a["git"]["dirty"], bool)
    assert a["machine"]["cores"] == os.cpu_count() and a["machine"]["torch"]


def test_a_record_name_cannot_leave_the_store():
    from models.errors import ConfigError

    with pytest.raises(ConfigError, match="record name"):
        append_record("../../etc/x", {})


def test_train_py_records_a_run_when_asked(mnist_root, tmp_path):
    tiny = ["model.model_kwargs.blocks=[{channels:4,kernel:3,pool:max}]", "model.model_kwargs.mlp=[16]",
            "data.train_subset=320", "data.download=false", "logger=none", "record=tiny"]
    metrics = train_script.train(compose_train(FAST + tiny + [f"data.root={mnist_root}", "seed=3"], tmp_path / "run"))
    (rec,) = read_records("tiny")
    assert rec["source"] == "train.py" and rec["seed"] == 3 and rec["model"] == "convnet"
    assert rec["metrics"]["test/acc"] == metrics["test/acc"] and "time/train_s" in rec["metrics"]


def test_summary_statistics_and_the_gap_in_standard_errors():
    s = report.summary([1.0, 2.0, 3.0])
    assert (s["n"], s["mean"], s["std"]) == (3, 2.0, 1.0) and math.isclose(s["se"], 1 / math.sqrt(3))
    row = report.Row("m", "MNIST", "demo", {"model": "m"}, "err", "cmd", paper=1.0)
    for e in (1.0, 2.0, 3.0):
        append_record("demo", {"model": "m", "err": e})
    append_record("demo", {"model": "other", "err": 99.0})  # not selected
    line = report.render_row(row)
    assert "**2.00** ± 1.00 (n = 3, SE 0.58)" in line and f"{(2 - 1) / (1 / math.sqrt(3)):+.1f} SE" in line
    assert "`demo.jsonl` 1-3" in line


def test_report_check_fails_when_a_figure_is_typed_by_hand(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "TABLES", {"demo": [report.Row("m", "MNIST", "demo", {"model": "m"}, "err", "cmd")]})
    for e in (1.0, 3.0):
        append_record("demo", {"model": "m", "err": e})
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- report:demo -->\nold\n<!-- /report:demo -->\nend\n")
    assert report.main(["--readme", str(readme), "--check"]) == 1
    assert report.main(["--readme", str(readme)]) == 0
    assert report.main(["--readme", str(readme), "--check"]) == 0
    readme.write_text(readme.read_text().replace("**2.00**", "**1.90**"))  # a hand-edited figure
    assert report.main(["--readme", str(readme), "--check"]) == 1


def test_the_readme_tables_are_those_the_records_give():
    env = {k: v for k, v in os.environ.items() if k != "NEOLENET_RESULTS_DIR"}  # the project's own records
    out = subprocess.run([sys.executable, "benchmarks/report.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
