"""DDP through Lightning, with 2 CPU processes (gloo), run as ``python train.py trainer=ddp``:
the ranks train on disjoint halves of every epoch, end with identical weights, log metrics that
a single process reproduces from the checkpoint, and share one run folder written by rank 0.
Fukushima's self-organised Neocognitron grows the same planes on both ranks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from training.module import Classifier
from training.data import EpochShuffleSampler, MNISTDataModule
from training.tb_callbacks import ValidationErrors
from tests.conftest import ROOT, compose_train, with_model


class RecordShards(L.Callback):
    """Test probe (runs inside every DDP process): a fingerprint of every training image each
    rank trained on, per epoch, the rank's final state and the confusion matrix its
    ValidationErrors callback logged last (None where it logged none), saved as ``<out>/rank<r>.pt``."""

    def __init__(self, out: str):
        self.out = Path(out)
        self.seen: dict[int, list[str]] = {}

    def on_train_start(self, trainer, pl_module):
        self.draws = torch.rand(4)  # what augmentation would draw next on this rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        x, y = batch
        self.seen.setdefault(trainer.current_epoch, []).extend(fingerprints(x, y))

    def on_train_end(self, trainer, pl_module):
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        last_cm = next((c.last_cm for c in trainer.callbacks if isinstance(c, ValidationErrors)), None)
        torch.save({"seen": self.seen, "state": state, "world_size": trainer.world_size, "pid": os.getpid(),
                    "draws": self.draws, "last_cm": last_cm},
                   self.out / f"rank{trainer.global_rank}.pt")


def fingerprints(x: torch.Tensor, y: torch.Tensor) -> list[str]:
    x = x.detach().cpu().contiguous()
    return [hashlib.blake2b(x[i].numpy().tobytes(), digest_size=8).hexdigest() + f":{int(y[i])}"
            for i in range(len(y))]


def run_train(args: list[str], log_dir: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOG_DIR": str(log_dir), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("LOCAL_RANK", None)
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *with_model(args)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "callbacks.progress_bar.refresh_rate=0",
       "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1", "data.download=false",
       "data.augment=false",  # the probe recognises training images by their pixels
       "+callbacks.probe._target_=tests.test_ddp.RecordShards", "+callbacks.probe.out=${paths.output_dir}"]


# --- the sampler, on its own ----------------------------------------------------------


@pytest.mark.parametrize("n,world", [(10, 1), (10, 2), (11, 2), (13, 3), (8, 4)])
def test_sampler_shards_are_disjoint_equal_and_cover_the_epoch(n, world):
    for epoch in (0, 1):
        shards = []
        for rank in range(world):
            s = EpochShuffleSampler(n, seed=3, rank=rank, world_size=world, batch_size=3)
            s.set_epoch(epoch)
            batches = list(s)
            assert len(batches) == len(s)
            shards.append([i for b in batches for i in b])
        flat = [i for sh in shards for i in sh]
        assert len(set(flat)) == len(flat) == n - n % world  # disjoint; the n % world left-overs sit out
        assert len({len(sh) for sh in shards}) == 1  # equal lengths: equal batch counts on every rank
    # evaluation: strided, nothing dropped or padded
    ev = [list(EpochShuffleSampler(n, 0, r, world, batch_size=4, shuffle=False)) for r in range(world)]
    assert sorted(i for sh in ev for b in sh for i in b) == list(range(n))


def test_sampler_reshuffles_per_epoch_and_resumes_mid_epoch():
    s = EpochShuffleSampler(50, seed=1, batch_size=8)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1 and sorted(sum(e0, [])) == sorted(sum(e1, [])) == list(range(50))
    assert list(EpochShuffleSampler(50, seed=2, batch_size=8)) != e0  # the seed matters
    it = iter(s)
    next(it), next(it)
    resumed = EpochShuffleSampler(50, seed=0, batch_size=8)
    resumed.load_state_dict(s.state_dict())
    assert list(resumed) == e1[2:]
    assert list(resumed) == e1  # the skip applies once


def test_ddp_child_of_a_sweep_job_runs_that_job_alone_in_its_folder(monkeypatch):
    """Lightning would re-run ``sys.argv`` (the whole sweep, with ``-m``) for rank 1."""
    import hydra.utils
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from training.distributed import hydra_child_command

    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "seed=1,2", "hydra.sweep.dir=/s", "hydra.job.chdir=false",
                                      "--config-name=train"])
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None)  # as for `python train.py`
    monkeypatch.setattr(hydra.utils, "get_original_cwd", lambda: "/cwd")
    monkeypatch.setattr(hydra.utils, "to_absolute_path", lambda p: "/cwd/" + p)
    monkeypatch.setattr(HydraConfig.instance(), "cfg", OmegaConf.create({"hydra": {
        "overrides": {"task": ["seed=2"], "hydra": ["hydra.mode=MULTIRUN", "hydra.sweep.dir=/s", "hydra.job.chdir=false"]},
        "runtime": {"output_dir": "/s/1"}}}))
    command, cwd = hydra_child_command(1)
    assert command[1:] == ["/cwd/train.py", "--config-name=train", "seed=2", "hydra.job.chdir=false",
                           'hydra.run.dir="/s/1"', "hydra.job.name=train_ddp_process_1", "hydra.output_subdir=null"]
    assert cwd == "/cwd"


@pytest.mark.parametrize("env,name", [
    ({}, r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"),  # one process (or Lightning's launcher): the start time
    ({"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "8"}, r"slurm-77\.0"),  # srun: the step
    ({"TORCHELASTIC_RUN_ID": "abc"}, r"torchrun-abc"),  # torchrun: the rendezvous id
])
def test_ranks_started_by_srun_or_torchrun_share_one_run_folder(env, name, monkeypatch, tmp_path):
    """Every rank that srun or torchrun starts runs train.py (and Hydra) itself; the run folder's
    name must not depend on when each one started."""
    import re

    from hydra import compose, initialize_config_dir

    from tests.conftest import CONFIGS

    for k in ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LOG_DIR", str(tmp_path))
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train", return_hydra_config=True)
    assert re.fullmatch(re.escape(str(tmp_path)) + r"/train/runs/" + name, cfg.hydra.run.dir), cfg.hydra.run.dir


# --- 2 CPU processes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ddp_run(mnist_root, tmp_path_factory):
    """``python train.py trainer=ddp trainer.devices=2`` on the fake MNIST, 2 epochs."""
    logs = tmp_path_factory.mktemp("ddp_logs")
    overrides = DDP + [f"data.root={mnist_root}", "data.train_subset=256", "data.val_size=200",
                       "data.batch_size=32", "trainer.max_epochs=2", "seed=7"]
    result = run_train(overrides, logs)
    runs = list((logs / "train" / "runs").iterdir())
    return logs, runs, overrides, result


def test_ddp_makes_one_run_folder_written_by_rank_zero(ddp_run):
    logs, runs, _, result = ddp_run
    assert len(runs) == 1, runs  # the second process reused the first one's folder
    run = runs[0]
    assert sorted(p.name for p in (logs / "train" / "runs").iterdir()) == [run.name]
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 ran in this folder
    assert (run / "metrics.json").is_file()
    both = [torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [b["world_size"] for b in both] == [2, 2] and both[0]["pid"] != both[1]["pid"]
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))  # ...<time>.<host>.<pid>.<n>
    assert events and {int(e.name.split(".")[-2]) for e in events} == {both[0]["pid"]}  # rank 0's only
    ckpts = [p.name for p in (run / "checkpoints").iterdir()]
    assert "last.ckpt" in ckpts and len([c for c in ckpts if c.startswith("epoch_")]) == 1, ckpts  # top-1


def test_ddp_ranks_train_on_disjoint_halves_of_each_epoch(ddp_run, mnist_root):
    _, (run,), _, _ = ddp_run
    r0, r1 = (torch.load(run / f"rank{r}.pt", weights_only=True)["seen"] for r in (0, 1))
    dm = MNISTDataModule(root=str(mnist_root), val_size=200, train_subset=256, download=False)
    dm.setup()
    x, y = dm.data["train"]
    everything = Counter(fingerprints(dm.transform(x), y))
    assert len(everything) == 256  # every training image is distinguishable
    assert sorted(r0) == sorted(r1) == [0, 1]
    for epoch in (0, 1):
        assert len(r0[epoch]) == len(r1[epoch]) == 128
        assert not set(r0[epoch]) & set(r1[epoch])  # disjoint
        assert Counter(r0[epoch]) + Counter(r1[epoch]) == everything  # together: the epoch, once each
    assert r0[0] != r0[1]  # reshuffled between epochs


def test_ddp_ranks_end_with_identical_weights(ddp_run):
    _, (run,), _, _ = ddp_run
    r0, r1 = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(r0["draws"], r1["draws"])  # each rank its own random stream (augmentation)
    s0, s1 = r0["state"], r1["state"]
    assert s0.keys() == s1.keys()
    for k in s0:
        if k.split(".")[0] in ("train_loss", "train_acc"):
            continue  # each rank's own running training metrics (summed over the ranks when computed)
        assert torch.equal(s0[k], s1[k]), k
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(v, s0[k]), k
    assert ckpt["global_step"] == 2 * 4  # 128 samples per rank per epoch, batches of 32


def test_ddp_logged_val_acc_equals_single_process_evaluation(ddp_run, mnist_root):
    _, (run,), _, _ = ddp_run
    logged = json.loads((run / "metrics.json").read_text())
    model = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    dm = MNISTDataModule(root=str(mnist_root), val_size=200, train_subset=256, download=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    (single,) = trainer.validate(model, datamodule=dm, verbose=False)
    assert 0.2 < logged["val/acc"] < 1.0  # learnt something, not everything: a real comparison
    assert logged["val/acc"] == pytest.approx(single["val/acc"], abs=1e-7)
    assert logged["val/loss"] == pytest.approx(single["val/loss"], rel=1e-5)  # a mean weighted by batch sizes
    best = Classifier.load_from_checkpoint(logged["test/ckpt_path"], map_location="cpu")
    (tested,) = trainer.test(best, datamodule=dm, verbose=False)  # train.py tests the best checkpoint
    assert logged["test/acc"] == pytest.approx(tested["test/acc"], abs=1e-7)


def test_ddp_confusion_matrix_counts_every_validation_image(ddp_run, mnist_root):
    """The val/confusion_matrix rank 0 logs sums both ranks' counts (the Classifier's val_cm metric):
    all 200 validation images, not the 100 of rank 0's shard, and the very matrix one process
    counts with the final weights."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, (run,), _, _ = ddp_run
    r0, r1 = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    cm = r0["last_cm"]
    assert cm is not None and r1["last_cm"] is None  # rank 0 alone writes to TensorBoard
    assert cm.shape == (10, 10) and int(cm.sum()) == 200
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("val/confusion_matrix")) == 2  # one per epoch, the last one drawn from cm
    model = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    dm = MNISTDataModule(root=str(mnist_root), val_size=200, train_subset=256, download=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    (single,) = trainer.validate(model, datamodule=dm, verbose=False)
    assert torch.equal(cm, model.val_cm.compute())
    assert float(cm.trace()) / 200 == pytest.approx(single["val/acc"], abs=1e-7)


# --- the self-organised Neocognitron --------------------------------------------------

SMALL_FUKUSHIMA = ["model=neocognitron_fukushima", "model.model_kwargs.n_orient=4",
                   "model.model_kwargs.max_planes=[6,8]", "model.model_kwargs.learn_limit=[64,64]",
                   "model.model_kwargs.top_epochs=1", "model.model_kwargs.max_refs=200", "trainer.max_epochs=3"]


@pytest.mark.slow
def test_self_organised_neocognitron_grows_the_same_planes_on_every_rank(mnist_root, tmp_path):
    """Each rank learns from both ranks' batches (gathered), so the planes and reference vectors
    grown are the same on both ranks, and the same as one process learning from those batches."""
    run_train(DDP + SMALL_FUKUSHIMA + [f"data.root={mnist_root}", "data.train_subset=128", "data.val_size=100",
                                      "data.batch_size=16", "seed=3", "test=false"], tmp_path)
    (run,) = (tmp_path / "train" / "runs").iterdir()
    s0, s1 = (torch.load(run / f"rank{r}.pt", weights_only=True)["state"] for r in (0, 1))
    assert s0.keys() == s1.keys()
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    assert s0["net.refs"].shape[0] > 0 and int(s0["net.learned_phases"]) == 3
    # one process, fed rank 0's then rank 1's batch at each step, grows exactly the same network
    fresh = instantiate(compose_train(SMALL_FUKUSHIMA, tmp_path).model)
    dm = MNISTDataModule(root=str(mnist_root), val_size=100, train_subset=128, batch_size=16, download=False)
    dm.setup()
    x, y = dm.data["train"]
    for epoch in range(3):
        samplers = [EpochShuffleSampler(len(y), 3, r, 2, batch_size=16) for r in (0, 1)]
        for s in samplers:
            s.set_epoch(epoch)
        for b0, b1 in zip(*samplers):
            idx = torch.tensor(b0 + b1)
            fresh.net.learn(dm.transform(x[idx]), y[idx])
        fresh.net.learning_epoch_end()
    for k, v in fresh.net.state_dict().items():
        assert torch.equal(v, s0["net." + k]), k


@pytest.mark.slow
def test_ddp_inside_a_hydra_multirun_keeps_one_folder_per_job(mnist_root, tmp_path):
    """Lightning re-runs the command line for rank 1; under ``-m`` that would start a sweep of
    its own. training.distributed gives it the job's own overrides and folder instead."""
    sweep = tmp_path / "sweep"
    run_train(["-m", "seed=1,2"] + DDP + [f"data.root={mnist_root}", "data.train_subset=128", "data.val_size=64",
                                         "data.batch_size=8", "trainer.max_epochs=1", "test=false",
                                         f"hydra.sweep.dir={sweep}"], tmp_path / "logs")
    assert not (tmp_path / "logs").exists()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name != ".hydra") == ["0", "1"]
    assert [p.parent for p in tmp_path.rglob("multirun.yaml")] == [sweep]  # no sweep started by a child
    assert sorted(p.parent.name for p in tmp_path.rglob("train_ddp_process_1.log")) == ["0", "1"]
    assert (sweep / "summary.md").is_file()
    for job in ("0", "1"):
        d = sweep / job
        ranks = [torch.load(d / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
        assert [r["world_size"] for r in ranks] == [2, 2]
        assert (d / "train_ddp_process_1.log").is_file() and (d / "metrics.json").is_file()
        assert (d / "checkpoints" / "last.ckpt").is_file() and (d / "tensorboard").is_dir()
        assert [p.parent for p in d.rglob(".hydra")] == [d]  # no run folder nested in the job's


def test_sample_batch_depends_on_seed_and_epoch_only(mnist_root, monkeypatch):
    """SDLM re-estimates its Hessian on ``sample_batch`` each epoch: every DDP rank (each with its
    own random stream) must draw the same images, or the ranks' step sizes differ."""
    monkeypatch.setenv("PL_GLOBAL_SEED", "5")
    dm = MNISTDataModule(root=str(mnist_root), val_size=200, download=False)
    torch.manual_seed(1)
    a = dm.sample_batch(32)
    torch.manual_seed(2)
    b = dm.sample_batch(32)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    monkeypatch.setenv("PL_GLOBAL_SEED", "6")
    assert not torch.equal(dm.sample_batch(32)[0], a[0])


@pytest.mark.slow
def test_lenet5_with_sdlm_keeps_identical_weights_on_every_rank(mnist_root, tmp_path):
    """LeNet-5 as published (SDLM: per-parameter step sizes from a Hessian estimate) under DDP."""
    run_train(DDP + ["experiment=lenet5_paper", f"data.root={mnist_root}", "data.train_subset=128",
                     "data.val_size=64", "trainer.max_epochs=2", "test=false", "callbacks.sdlm_hessian.num_samples=32"],
              tmp_path)
    (run,) = [p.parent for p in tmp_path.glob("*/runs/*/rank0.pt")]
    s0, s1 = (torch.load(run / f"rank{r}.pt", weights_only=True)["state"] for r in (0, 1))
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
