"""Issue 16 §3-§5: the results store (one appended JSON line per run) and the README's tables
generated from it, with a check that fails when a figure in the README is typed by hand."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import train as train_script
from tests.conftest import FAST, ROOT, compose_train
from training.records import DIRTY_FILES_CAP, append_record, git_state, read_records

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


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                   cwd=repo, check=True, capture_output=True, timeout=30)


@pytest.fixture
def repo(tmp_path):
    """A committed repository holding code, a config, a results file, a README and a doc."""
    files = {"model.py": "x = 1\n", "configs/x.yaml": "a: 1\n", "benchmarks/results/r.jsonl": "{}\n",
             "README.md": "# r\n", "docs/usage.md": "use\n", "notebooks/n.ipynb": "{}\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def test_a_clean_tree_is_not_dirty(repo):
    state = git_state(repo)
    assert len(state["commit"]) == 40 and state["dirty"] is False and state["dirty_files"] == []


def test_results_docs_readme_and_untracked_files_do_not_make_a_record_dirty(repo):
    """Issue 30 §3: every run appends to the results store, so counting it made almost every
    record "dirty"; documentation and untracked files do not change what a run computes either."""
    with open(repo / "benchmarks/results/r.jsonl", "a") as f:
        f.write('{"seed": 1}\n')
    (repo / "README.md").write_text("# r, with a new table\n")
    (repo / "docs/usage.md").write_text("use it so\n")
    (repo / "new_module.py").write_text("y = 2\n")  # untracked
    (repo / "benchmarks/results/new.jsonl").write_text("{}\n")  # untracked
    state = git_state(repo)
    assert state["dirty"] is False and state["dirty_files"] == [], state


@pytest.mark.parametrize("name", ["model.py", "configs/x.yaml", "notebooks/n.ipynb"])
def test_a_change_to_code_or_a_config_makes_it_dirty_and_is_named(repo, name):
    (repo / name).write_text((repo / name).read_text() + "# changed\n")
    (repo / "README.md").write_text("# r, changed too\n")  # not named: it is not code
    state = git_state(repo)
    assert state["dirty"] is True and state["dirty_files"] == [name], state


def test_staged_changes_deletions_and_renames_count(repo):
    (repo / "configs/x.yaml").write_text("a: 2\n")
    _git(repo, "add", "configs/x.yaml")  # staged, not committed
    (repo / "model.py").unlink()
    _git(repo, "mv", "notebooks/n.ipynb", "docs/n.ipynb")  # code moved under docs/: its old name counts
    state = git_state(repo)
    assert state["dirty"] is True and state["dirty_files"] == ["configs/x.yaml", "model.py", "notebooks/n.ipynb"]


def test_the_list_of_dirty_files_is_capped_and_says_how_many_it_left_out(repo):
    names = [f"m{i:02d}.py" for i in range(DIRTY_FILES_CAP + 5)]
    for name in names:
        (repo / name).write_text("z = 0\n")
    _git(repo, "add", *names)
    state = git_state(repo)
    assert state["dirty"] is True and len(names) == DIRTY_FILES_CAP + 5
    assert state["dirty_files"] == names[:DIRTY_FILES_CAP] and state["dirty_files_omitted"] == 5


def test_a_project_inside_a_larger_repository_sees_only_its_own_files(repo):
    """Paths are taken relative to the root given: its own results store does not count, a change
    outside it does not count either."""
    (repo / "model.py").write_text("x = 2\n")  # outside 'sub'
    sub = repo / "sub"
    (sub / "benchmarks/results").mkdir(parents=True)
    (sub / "benchmarks/results/r.jsonl").write_text("{}\n")
    (sub / "train.py").write_text("t = 1\n")
    _git(repo, "add", "sub")
    _git(repo, "commit", "-q", "-m", "sub")
    (sub / "benchmarks/results/r.jsonl").write_text("{}\n{}\n")
    assert git_state(sub)["dirty"] is False
    (sub / "train.py").write_text("t = 2\n")
    assert git_state(sub)["dirty_files"] == ["train.py"]


def test_a_record_keeps_the_git_state_its_run_started_with(repo, monkeypatch, tmp_path):
    """An edit made while a run goes on must not mark the run dirty (nor a commit made then give it
    a commit it did not run): the entry points capture the state as they start."""
    import training.records as records

    monkeypatch.setattr(records, "_STATE_AT_START", None)
    monkeypatch.setenv("NEOLENET_RESULTS_DIR", str(tmp_path / "results"))
    start = records.capture_git_state(repo)
    (repo / "model.py").write_text("x = 2\n")  # edited while the run goes on
    assert git_state(repo)["dirty"] is True
    assert append_record("demo", {"seed": 0})
    (rec,) = read_records("demo")
    assert rec["git"] == start and rec["git"]["dirty"] is False


def test_outside_a_repository_dirty_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path either
    assert git_state(tmp_path) == {"commit": None, "dirty": None, "dirty_files": None}


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
    assert 100 < rec["peak_rss_mb"] < 64 * 1024  # torch alone holds more than 100 MiB; in MiB, not KiB or bytes


def test_peak_memory_is_the_high_water_mark_in_mib():
    """Writing 400 MiB more than the recorded peak raises it by that much, and it then agrees with
    the kernel's own high-water mark (VmHWM): a unit error of 1024, or the current size read instead
    of the peak, would fail. (A child starts with its parent's peak: Linux carries it across exec.)"""
    pytest.importorskip("resource")
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux's /proc")
    code = ("import re, train; b = train.peak_rss_mb(); x = b'1' * ((int(b) + 400) << 20); a = train.peak_rss_mb(); "
            "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1); "
            "print(b, a, int(hwm) / 1024)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    before, after, hwm = map(float, out.stdout.split())
    assert after - before > 380 and abs(after - hwm) < 8


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
    # with the paper's test-set size its binomial error joins ours: 1.0% on 10,000 digits is +-0.0995
    for e in (1.0, 1.1, 1.2):
        append_record("demo2", {"model": "m", "err": e})
    near = report.Row("m", "MNIST", "demo2", {"model": "m"}, "err", "cmd", paper=1.0)
    ours_only = 0.1 / (0.1 / math.sqrt(3))
    both = 0.1 / math.sqrt(0.01 / 3 + 0.01 * 0.99 / 10_000 * 100 ** 2)
    assert f"{ours_only:+.1f} SE" in report.render_row(near)
    assert f"{both:+.1f} SE" in report.render_row(report.replace(near, paper_n=10_000)) and both < ours_only / 1.5


def test_a_row_names_only_the_records_that_give_its_figure():
    """A record that matches the row but holds none of its figures (another model's checkpoints in
    the same benchmark run) is not cited."""
    append_record("demo", {"kind": "t", "results": {"a_s1": 0.5}})
    append_record("demo", {"kind": "t", "results": {"b_s1": 0.7, "b_s2": 0.9}})
    row = report.Row("b", "MNIST", "demo", {"kind": "t"},
                     lambda r: [v for k, v in r["results"].items() if k.startswith("b_")], "cmd")
    line = report.render_row(row)
    assert "(n = 2," in line and line.endswith("`demo.jsonl` 2 |")


def test_the_blur_noise_ablation_reads_only_validation_scores_by_arm():
    """Issue 30 §1: each arm's seeds from the records scored with --split val, never a test-split
    record under the same label."""
    res = lambda acc: {"none": {"0": 0.99}, "noise": {"50": acc}}  # noqa: E731
    append_record("blur_noise_tol", {"settings": {"split": "val"}, "results": {"blur/s1": res(0.5), "blur/s2": res(0.7)}})
    append_record("blur_noise_tol", {"settings": {"split": "test"}, "results": {"blur/s3": res(0.1)}})
    append_record("blur_noise_tol", {"settings": {"split": "val"}, "results": {"blur_nosat/s1": res(0.9)}})
    values, recs = report.ablation_values("blur", "noise", "50")
    assert values == [0.5, 0.7] and [r["_line"] for r in recs] == [1, 1]
    assert report.ablation_values("blur_nosat", "noise", "50")[0] == [0.9]
    line = next(t for t in report.ablation_table().splitlines() if t.startswith("| blurring C-planes"))
    assert "| 60.0 ± 14.1 |" in line and "`blur_noise_tol.jsonl` 1 |" in line and "| 2 |" in line


def test_report_check_fails_when_a_figure_is_typed_by_hand(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "TABLES", {"demo": [report.Row("m", "MNIST", "demo", {"model": "m"}, "err", "cmd")]})
    for e in (1.0, 3.0):
        append_record("demo", {"model": "m", "err": e})
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- report:demo -->\nold\n<!-- /report:demo -->\nend\n")
    docs = ["--docs", str(tmp_path)]  # the project's docs cite rows this table has not
    assert report.main(["--readme", str(readme), "--check", *docs]) == 1
    assert report.main(["--readme", str(readme), *docs]) == 0
    assert report.main(["--readme", str(readme), "--check", *docs]) == 0
    readme.write_text(readme.read_text().replace("**2.00**", "**1.90**"))  # a hand-edited figure
    assert report.main(["--readme", str(readme), "--check", *docs]) == 1


def test_the_readme_tables_are_those_the_records_give():
    env = {k: v for k, v in os.environ.items() if k != "NEOLENET_RESULTS_DIR"}  # the project's own records
    out = subprocess.run([sys.executable, "benchmarks/report.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def _bench_output(centred: float, s2: float, s4: float) -> str:
    """The table bench_neocognitron.py prints with --shifts 2 4 (its last lines)."""
    return ("model                                        val acc     2 px     4 px  train s  notes\n"
            f"neocognitron_fukushima (self-organised)       {centred:.2f}%   {s2:.2f}%   {s4:.2f}%       63  planes ...\n")


def test_fukushima_settings_are_read_from_validation_runs_and_the_pareto_front_is_right():
    """Only --val runs with shifts count; a run is on the front unless another is at least as good on
    centred and 2-px accuracy and better on one."""
    runs = [("{}", "0", 98.8, 92.0, 47.7), ('{"c_kernels": [5, 5, 5]}', "0", 98.85, 95.1, 58.3),
            ("{}", "2", 98.5, 97.9, 86.0), ("{}", "4", 98.05, 97.75, 97.0), ("{}", "3", 97.9, 97.91, 95.1)]
    for kw, aug, c, s2, s4 in runs:
        append_record("neocognitron", {"argv": ["--only", "fukushima", "--val", "5000", "--test-limit", "2000",
                                                "--shifts", "2", "4", "--augment", aug, "--fukushima-kwargs", kw],
                                       "output": "training ...\n" + _bench_output(c, s2, s4)})
    append_record("neocognitron", {"argv": ["--only", "fukushima", "--shifts", "2", "4"],  # scored on test: left out
                                   "output": _bench_output(99.9, 99.9, 99.9)})
    found = {(a["settings"], a["augment"]): a for a in report.fukushima_settings()}
    assert len(found) == 5 and found["defaults", 4]["acc"] == [98.05, 97.75, 97.0] and found["defaults", 4]["images"] == 2000
    front = {k for k, a in found.items() if a["pareto"]}
    assert front == {("c_kernels: [5, 5, 5]", 0), ("defaults", 2), ("defaults", 3)}
    table = report.fukushima_table()
    assert table.count("**yes**") == 3 and "| c_kernels: [5, 5, 5] | 0 px | 98.85 | 95.10 | 58.30 | 3.75 / 40.55 |" in table


def test_the_comparison_table_pairs_training_records_with_tolerance_records():
    for seed, acc in ((1, 0.99), (2, 0.98)):
        append_record("tolerance_models", {"model": "mlp", "overrides": ["model=mlp", "data.augment=true", f"seed={seed}"],
                                           "metrics": {"test/acc": acc}})
    append_record("tolerance_models", {"model": "mlp", "overrides": ["data.augment=false"], "metrics": {"test/acc": 0.5}})
    append_record("tolerance_models", {"model": "mlp", "overrides": ["model=mlp_wide", "data.augment=true"],  # another config
                                       "metrics": {"test/acc": 0.5}})
    levels = {p: {lv: 0.9 for lv in ("0", "1", "2", "3", "4", "15", "34")}
              for p in ("none", "shift", "shift_consistency", "rotation", "elastic")}
    levels["noise"] = {"50": 0.6, "100": 0.3}  # occlusion left out: a record without it leaves its cells empty
    res = {"mlp/shift2/s1": levels, "mlp/shift2/s2": {**levels, "shift": {**levels["shift"], "2": 0.7}},
           "mlp/none/s1": levels}
    append_record("tolerance_compare", {"results": res})
    row = next(ln for ln in report.comparison_table().splitlines() if "`mlp`" in ln and "random shifts" in ln)
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == "98.50 ± 0.71"  # test accuracy over the two shifted runs only
    assert cells[3] == "90.0 ± 0.0" and cells[5] == "80.0 ± 14.1" and cells[-2] == "2 / 2"
    assert cells[-1] == "`tolerance_models.jsonl` 1-2; `tolerance_compare.jsonl` 1"
    assert cells[11:15] == ["60.0 ± 0.0", "30.0 ± 0.0", "", ""]  # noise σ 50, σ 100; no occlusion recorded


def test_a_record_that_does_not_say_what_made_it_is_left_out_of_the_tables(tmp_path):
    """Records without a command, commit or date (the results store's first LeNet lines) cannot
    be traced to a run: the tables skip them, and say nothing of them."""
    import training.records as records

    append_record("demo3", {"model": "m", "err": 1.0})
    with open(records.results_dir() / "demo3.jsonl", "a") as f:
        f.write(json.dumps({"model": "m", "err": 50.0}) + "\n")  # an old line: no command, commit, date
    line = report.render_row(report.Row("m", "MNIST", "demo3", {"model": "m"}, "err", "cmd"))
    assert "1.00 (n = 1)" in line and "`demo3.jsonl` 1 |" in line


def test_a_prose_figure_is_written_from_its_row_and_a_stale_one_is_caught(monkeypatch):
    for e in (1.0, 2.0, 3.0):
        append_record("demo4", {"model": "m", "err": e})
    row = report.Row("m", "MNIST", "demo4", {"model": "m"}, "err", "cmd", paper=1.0, key="demo")
    monkeypatch.setattr(report, "TABLES", {"t": [row]})
    text = "ours <!-- fig:demo:mean_std -->9.99 ± 9.99<!-- /fig --> (n = <!-- fig:demo:n -->7<!-- /fig -->)"
    new = report.update_figures(text)
    assert new == "ours <!-- fig:demo:mean_std -->2.00 ± 1.00<!-- /fig --> (n = <!-- fig:demo:n -->3<!-- /fig -->)"
    assert report.update_figures(new) == new and new != text  # what --check compares
    with pytest.raises(SystemExit, match="keyed rows are"):
        report.update_figures("<!-- fig:nope:mean -->1<!-- /fig -->")


def test_a_prose_figure_can_cite_a_row_in_no_table_one_seed_and_the_median(monkeypatch):
    for seed, e in ((0, 1.0), (1, 2.0), (2, 6.0)):
        append_record("demo5", {"model": "m", "seed": seed, "err": e, "output": f"refs {1000 * (seed + 1)}\n"})
    monkeypatch.setattr(report, "TABLES", {})
    monkeypatch.setattr(report, "PROSE_ROWS", [report.Row("m", "", "demo5", {"model": "m"}, "err", "", key="p"),
                                               report._prose("refs", "demo5", report._printed(r"^refs (\d+)"), digits=0)])
    assert [report.figure("p", w) for w in ("seed1", "median", "mean")] == ["2.00", "2.00", "3.00"]
    assert report.figure("refs", "max") == "3,000" and report.figure("p", "seed7") == "no record yet"


def test_a_prose_figure_can_cite_a_cell_of_the_comparison_table():
    append_record("tolerance_compare", {"results": {"mlp/none/s1": {"noise": {"50": 0.9}},
                                                    "mlp/none/s2": {"noise": {"50": 0.8}}}})
    assert report.figure("cmp.mlp.none.noise.50", "mean_std") == "85.0 ± 7.1"
    assert report.figure("cmp.mlp.none.noise.100", "mean") == "no record yet"
    with pytest.raises(SystemExit, match="cmp.MODEL.TRAINING"):
        report.figure("cmp.mlp.noise", "mean")
