"""Hydra multirun: each job in its own folder, TensorBoard runs with their hyperparameters, a
summary table of final metrics at the end; the SLURM launcher config composes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from training.sweep import read_jobs, summarize
from tests.conftest import ROOT, compose_train


def tensorboard_hparams(run_dir: Path) -> dict:
    """The hyperparameters a TensorBoard run shows in its HPARAMS tab."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    hp = data.session_start_info.hparams
                    return {k: hp[k].WhichOneof("kind") and getattr(hp[k], hp[k].WhichOneof("kind")) for k in hp}
    return {}


def test_multirun_runs_each_job_in_its_own_folder_and_writes_a_summary(mnist_root, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=1,2", "model=convnet", f"data.root={mnist_root}", "data.download=false", "data.train_subset=128",
            "data.val_size=100", "data.batch_size=16", "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0",
            "trainer.enable_model_summary=false", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "LOG_DIR": str(tmp_path / "logs")}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert not (tmp_path / "logs").exists()  # nothing outside the sweep folder
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    metrics = {}
    for job, seed in (("0", 1), ("1", 2)):
        d = sweep / job
        assert OmegaConf.load(d / ".hydra" / "overrides.yaml")[0] == f"seed={seed}"
        assert (d / "checkpoints" / "last.ckpt").is_file()
        metrics[job] = json.loads((d / "metrics.json").read_text())
        hp = tensorboard_hparams(d / "tensorboard")  # a separate TensorBoard run, with its hyperparameters
        assert hp["seed"] == seed and hp["model/model"] == "convnet", hp
    assert metrics["0"]["val/acc_best"] != metrics["1"]["val/acc_best"]  # two different runs
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [(r["job"], r["seed"]) for r in rows] == [("0", "1"), ("1", "2")]
    for r in rows:
        assert float(r["test/acc"]) == pytest.approx(metrics[r["job"]]["test/acc"])
        assert float(r["val/acc_best"]) == pytest.approx(metrics[r["job"]]["val/acc_best"])
    md = (sweep / "summary.md").read_text()
    assert f"| 0 | 1 | {metrics['0']['val/acc_best']:.4f} |" in md
    assert "Mean ± standard deviation over `seed`" in md


def _fake_job(sweep: Path, job: str, overrides: list[str], metrics: dict | None) -> None:
    d = sweep / job
    (d / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), d / ".hydra" / "overrides.yaml")
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))


def test_summary_table_groups_seeds_and_reports_failed_jobs(tmp_path):
    sweep = tmp_path
    n = 0
    for model, accs in (("lenet5", (0.90, 0.94)), ("convnet", (0.98, 0.99))):
        for seed, acc in zip((1, 2), accs):
            _fake_job(sweep, str(n), [f"model={model}", f"seed={seed}", "data=mnist"],
                      {"val/acc_best": acc, "test/acc": acc - 0.01, "test/loss": 0.1, "test/ckpt_path": "x"})
            n += 1
    _fake_job(sweep, "10", ["model=neocognitron", "seed=1", "data=mnist"], None)  # a job that failed
    assert [j["job"] for j in read_jobs(sweep)] == ["0", "1", "2", "3", "10"]  # numeric order
    md = summarize(sweep)
    assert "Common overrides: `data=mnist`" in md
    assert "| 0 | lenet5 | 1 | 0.9000 | 0.8900 | 0.1000 |" in md
    assert "| 10 | neocognitron | 1 | failed (no metrics.json)" in md
    assert "| lenet5 | 2 | 0.9200 ± 0.0283 |" in md  # mean and sample std of 0.90, 0.94
    assert "| convnet | 2 | 0.9850 ± 0.0071 |" in md
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert len(rows) == 5 and rows[-1]["status"] == "no metrics.json" and rows[0]["status"] == "done"
    assert "test/ckpt_path" not in rows[0]  # only numeric metrics are columns


def test_slurm_launcher_config_composes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="hydra-submitit-launcher is not installed (pip install -e '.[slurm]')")
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONFIGS

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                                          "trainer.num_nodes=2", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)  # one task per GPU
    assert launcher.partition == "gpu" and launcher.timeout_min == 120
    assert str(launcher.submitit_folder).endswith("/.submitit/%j")
    # the launcher object builds from it (nothing is submitted)
    params = {k: OmegaConf.to_container(launcher[k], resolve=True) if OmegaConf.is_config(launcher[k])
              else launcher[k] for k in launcher if k not in ("name", "submitit_folder")}
    obj = instantiate({**params, "submitit_folder": str(tmp_path), "name": "t"})
    assert type(obj).__name__ == "SlurmLauncher" and obj.params["nodes"] == 2
    # and a DDP child of a train config still composes the default launcher (no plugin needed)
    plain = compose_train(["trainer=ddp"], tmp_path)
    assert plain.trainer.strategy._target_ == "training.distributed.DDPStrategy"
    assert plain.trainer.use_distributed_sampler is False
