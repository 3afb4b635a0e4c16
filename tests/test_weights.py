"""Trained weights by name (models.weights, benchmarks/export_weights.py, hubconf.py): the shipped
sets load, match their hash and their records; a set made from generated digits round-trips
through export, get_model, predict.py, eval.py and torch.hub."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import train as train_script
from models.errors import CheckpointError, ConfigError
from tests.conftest import FAST, ROOT, compose_train
from training.records import read_records

sys.path.insert(0, str(ROOT / "benchmarks"))
import export_weights  # noqa: E402

from models import weights as W  # noqa: E402


# --- the sets shipped in weights/ ------------------------------------------------------------
SHIPPED = W.list_weights(shipped=True)


@pytest.mark.parametrize("w", SHIPPED, ids=[w.name for w in SHIPPED])
def test_every_shipped_set_loads_matches_its_hash_and_its_record(w, monkeypatch):
    monkeypatch.setenv("NEOLENET_RESULTS_DIR", str(ROOT / "benchmarks" / "results"))  # the real records
    assert W.sha256_of(w.path) == w.sha256 and w.path.stat().st_size == w.bytes
    net = W.pretrained(w.model, w.data)
    size, channels = w.meta["input"]["size"], w.meta["input"]["channels"]
    blank = w.transforms()(torch.zeros(2, channels, size, size, dtype=torch.uint8))  # a blank page, as it expects it
    if w.meta["input"]["normalize"] == "lecun":
        assert torch.allclose(blank, torch.full_like(blank, -0.1))  # the paper's background
    with torch.no_grad():
        out = net(blank)
    assert out.shape == (2, len(w.meta["input"]["classes"])) and torch.isfinite(out).all()
    store, line = w.meta["record"].removeprefix("benchmarks/results/").split(".jsonl:")
    (rec,) = [r for r in read_records(store) if r["_line"] == int(line)]
    assert rec["metrics"]["test/acc"] == w.meta["test_acc"] and rec["metrics"]["val/acc"] == w.meta["val_acc"]
    assert rec["command"] == w.meta["command"] and rec["git"]["commit"] == w.meta["commit"] and not rec["git"]["dirty"]
    assert rec["model"] == w.model


def test_the_shipped_weights_fit_in_30_mb_and_every_set_not_shipped_says_why():
    assert sum(w.bytes for w in SHIPPED) <= 30 * 2**20
    assert all(w.not_shipped for w in W.list_weights(shipped=False))


# --- the whole path, on generated digits -------------------------------------------------------
TINY = ["model.model_kwargs.blocks=[{channels:4,kernel:3,pool:max}]", "model.model_kwargs.mlp=[16]",
        "data.train_subset=320", "data.download=false", "logger=none", "record=weights_tiny"]


@pytest.fixture()
def tiny_weights(mnist_root, tmp_path, monkeypatch):
    """Three recorded seeds of a tiny convnet, exported as ``convnet:tiny`` into a folder of the test's."""
    monkeypatch.setenv("NEOLENET_WEIGHTS_DIR", str(tmp_path / "weights"))
    for seed in (0, 1, 2):
        train_script.train(compose_train(FAST + TINY + [f"data.root={mnist_root}", f"seed={seed}"], tmp_path / f"s{seed}"))
    from training.records import results_dir  # the records' store, as the tests' conftest moved it

    path = results_dir() / "weights_tiny.jsonl"
    recs = [json.loads(t) for t in path.read_text().splitlines()]
    for r in recs:  # as if run from a clean commit (the test's checkout may be dirty)
        r["git"] = {**r.get("git", {}), "dirty": False, "commit": "0" * 40}
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    export_weights.main(["convnet:tiny", "--store", "weights_tiny"])
    return recs


def test_the_median_validation_seed_is_shipped_and_loads_by_name(tiny_weights, mnist_root):
    (w,) = W.list_weights()
    vals = sorted(r["metrics"]["val/acc"] for r in tiny_weights)
    assert w.name == "convnet:tiny" and w.meta["val_acc"] == vals[1] and w.meta["seeds"]["n"] == 3
    assert w.meta["input"]["polarity"] == "light on dark" and w.meta["input"]["size"] == 28
    chosen = next(r for r in read_records("weights_tiny") if r["metrics"]["val/acc"] == vals[1])
    assert w.meta["test_acc"] == chosen["metrics"]["test/acc"] and w.meta["seed"] == chosen["seed"]
    from models import get_model
    from training.checkpoint import read_checkpoint

    net = get_model("convnet", weights="tiny")
    run = read_checkpoint(chosen["metrics"]["test/ckpt_path"])
    ref = W.build_network(**run["hyper_parameters"])
    ref.load_state_dict(W.network_weights(run["state_dict"]))
    x = torch.randn(4, 1, 28, 28)
    assert not net.training and torch.equal(net(x), ref.eval()(x))
    hub = torch.hub.load(str(ROOT), "convnet", source="local", weights="tiny")
    assert torch.equal(hub(x), net(x))
    from training.data import MNISTDataModule

    dm = MNISTDataModule(root=str(mnist_root), val_size=200, download=False)  # as the runs (FAST)
    dm.setup()
    u8 = dm.data["test"][0][:8]
    assert torch.equal(w.transforms()(u8), dm.transform(u8))


def test_predict_and_eval_take_a_weights_name(tiny_weights, mnist_root, tmp_path, monkeypatch):
    from PIL import Image

    img = tmp_path / "seven.png"
    Image.new("L", (28, 28), 0).save(img)
    import predict

    assert predict.predict("convnet:tiny", [str(img)], crop=False)[0] is not None
    monkeypatch.setenv("DATA_DIR", str(mnist_root))
    out = subprocess.run([sys.executable, "eval.py", "weights=convnet:tiny", "trainer.enable_progress_bar=false"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-1500:]
    acc = float(out.stdout.split("test/acc: ")[1].split()[0])
    (w,) = W.list_weights()
    assert acc == pytest.approx(w.meta["test_acc"], abs=1e-4)  # the record's own test figure, reproduced


def test_a_damaged_set_an_unknown_name_and_other_kwargs_are_refused_in_one_line(tiny_weights):
    from models import get_model

    with pytest.raises(CheckpointError, match="no weights named 'convnet:nope'; the shipped weights are: convnet:tiny"):
        get_model("convnet", weights="nope")
    with pytest.raises(ConfigError, match="architecture is fixed: drop num_classes"):
        get_model("convnet", weights="tiny", num_classes=7)
    (w,) = W.list_weights()
    data = bytearray(w.path.read_bytes())
    data[-100] ^= 0xFF
    w.path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        get_model("convnet", weights="tiny")


def test_the_shipped_seed_is_the_median_by_validation_never_the_best_test():
    runs = [{"seed": s, "metrics": {"val/acc": v, "test/acc": t}} for s, v, t in
            ((0, 0.97, 0.99), (1, 0.95, 0.90), (2, 0.96, 0.91), (3, 0.98, 0.92))]
    assert export_weights.median_run(runs)["seed"] == 2  # the lower middle of 0.95 0.96 0.97 0.98
    assert export_weights.median_run(runs[:3])["seed"] == 2


def test_runs_from_a_dirty_checkout_or_without_validation_are_not_shipped(tmp_path, monkeypatch):
    from training.records import append_record

    monkeypatch.setenv("NEOLENET_WEIGHTS_DIR", str(tmp_path / "w"))
    base = {"source": "train.py", "model": "convnet", "command": "train.py", "git": {"commit": "a", "dirty": False}}
    for s in range(3):
        append_record("shipme", {**base, "seed": s, "metrics": {"test/acc": 0.9}, "git": {"dirty": s == 1}})
    with pytest.raises(SystemExit, match=r"lines \[2\] were not run from a clean commit"):
        export_weights.main(["convnet:x", "--store", "shipme"])
    for s in range(3):
        append_record("noval", {**base, "seed": s, "metrics": {"test/acc": 0.9}})
    with pytest.raises(SystemExit, match="no validation figure"):
        export_weights.main(["convnet:x", "--store", "noval"])
