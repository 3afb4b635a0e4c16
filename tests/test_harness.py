"""The harness end to end, offline: configs compose, every model trains a batch,
training learns, resume continues, eval reproduces, predict classifies, and bad
input gets a clear message."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

import models
import training.data
from training.module import Classifier
from models.errors import CheckpointError, ConfigError, DataError, ImageError
from tests.conftest import CONFIGS, FAST, ROOT, compose_train

import eval as eval_script
import predict as predict_script
import train as train_script

MODEL_CONFIGS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
DATA_CONFIGS = sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml") if p.stem != "image_folder")


@pytest.mark.parametrize("data", DATA_CONFIGS)
@pytest.mark.parametrize("model", MODEL_CONFIGS)
def test_every_model_and_data_config_composes_and_instantiates(model, data, tmp_path):
    needs = {"lenet1989": ["data.resize=16"]}  # the 1989 network takes 16x16 inputs (and says so otherwise)
    cfg = compose_train([f"model={model}", f"data={data}", "data.root=/nonexistent"] + needs.get(model, []), tmp_path)
    module = instantiate(cfg.model)
    x = torch.randn(2, cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)
    assert module(x).shape == (2, cfg.data.num_classes)
    instantiate(cfg.data)  # constructing a data module reads nothing yet


@pytest.mark.parametrize("name", models.list_models())
def test_fast_dev_run_every_registered_model(name, mnist_root):
    size = 16 if name == "lenet1989" else 28
    dm = training.data.MNISTDataModule(root=str(mnist_root), batch_size=32, val_size=64, download=False,
                                     resize=None if size == 28 else size)
    module = Classifier(model=name, input_size=size)
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm)
    assert 0.0 <= trainer.callback_metrics["test/acc"] <= 1.0


def test_convnet_learns_real_handwritten_digits(mnist_root, tmp_path):
    """On scikit-learn's 1,797 handwritten digits (upscaled), three epochs reach 90% test accuracy."""
    cfg = compose_train(FAST + [f"data.root={mnist_root}", "trainer.max_epochs=3", "data.download=false",
                                "logger=csv"], tmp_path)
    metrics = train_script.train(cfg)
    assert metrics["test/acc"] >= 0.90, metrics
    assert metrics["val/acc_best"] >= 0.90, metrics
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "csv" / "metrics.csv").is_file()


@pytest.fixture(scope="module")
def trained_run(mnist_root, tmp_path_factory):
    """One short training run (tensorboard logger) shared by the tests below: planned for
    3 epochs, interrupted after 2."""
    run = tmp_path_factory.mktemp("run")
    cfg = compose_train(FAST + [f"data.root={mnist_root}", "trainer.max_epochs=3", "data.download=false",
                                "data.train_subset=640", "+callbacks.stop._target_=tests.conftest.StopAfterEpochs",
                                "+callbacks.stop.epochs=2"], run)
    t0 = time.monotonic()
    metrics = train_script.train(cfg)
    metrics["wall_s"] = time.monotonic() - t0
    return run, cfg, metrics


def test_run_folder_holds_checkpoints_and_tensorboard_events(trained_run):
    run, _, metrics = trained_run
    assert {"val/acc_best", "test/acc", "train/loss_epoch", "val/loss"} <= set(metrics)
    # stage times (Lightning's Timer): each within the call, and training not counted twice
    # (testing reloads a checkpoint holding the Timer's elapsed time)
    assert 0 < metrics["time/train_s"] and 0 < metrics["time/test_s"]
    assert metrics["time/train_s"] + metrics["time/test_s"] < metrics["wall_s"]
    assert metrics["time/startup_s"] > 0
    assert (run / "checkpoints" / "last.ckpt").is_file()
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss_step", "train/acc", "val/acc", "val/loss", "val/acc_best", "test/acc",
            "hp/test_acc", "lr-AdamW"} <= tags, tags


def test_resume_continues_at_the_right_epoch_and_step(trained_run, mnist_root, tmp_path):
    run, _, _ = trained_run
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2 * 10  # 640 images / 64 per batch
    cfg = compose_train(FAST + [f"data.root={mnist_root}", "trainer.max_epochs=3", "data.download=false",
                                "data.train_subset=640", f"ckpt_path={last}", "logger=csv"], tmp_path)
    assert cfg.model == trained_run[1].model
    train_script.train(cfg)
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["global_step"] == 3 * 10


def test_eval_reproduces_the_test_accuracy_of_training(trained_run):
    run, _, metrics = trained_run
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("eval", overrides=[f"ckpt_path={metrics['test/ckpt_path']}", "trainer.enable_progress_bar=false"])
    result = eval_script.evaluate(cfg)
    assert abs(result["test/acc"] - metrics["test/acc"]) < 1e-4


def test_checkpoint_loads_without_hydra(trained_run, mnist_root):
    run, _, _ = trained_run
    module = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    assert module.hparams.model == "convnet" and module.hparams.num_classes == 10
    assert module(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_predict_prints_top_classes_and_converts_images(trained_run, mnist_root, tmp_path, capsys):
    run, _, _ = trained_run
    from tests.conftest import digits_28

    x, y = digits_28()
    grey = tmp_path / "digit.png"
    Image.fromarray(x[0]).save(grey)
    colour = tmp_path / "digit_big.jpg"
    Image.fromarray(x[0]).convert("RGB").resize((64, 64)).save(colour)
    predict_script.main([str(run / "checkpoints" / "last.ckpt"), str(grey), str(colour), "--topk", "2", "--no-crop"])  # the whole-image conversions
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{grey}: ") and lines[0].count("(") == 2
    assert "converted from 3 to 1 channel" in out.err and "resized from 64x64 to 28x28" in out.err
    probs = [float(p.split("(")[1].rstrip(")")) for p in lines[0].split(": ", 1)[1].split(", ")]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


# --- pipelines --------------------------------------------------------------------------


def test_an_experiment_preset_names_its_runs_and_the_command_line_still_wins(tmp_path):
    assert compose_train(["experiment=lenet5_paper"], tmp_path).task_name == "lenet5_paper"
    assert compose_train(["experiment=lenet5_paper", "task_name=mine"], tmp_path).task_name == "mine"
    assert compose_train([], tmp_path).task_name == "train"


def test_the_progress_bar_can_be_switched_off_from_the_command_line(tmp_path):
    # callbacks/default.yaml adds a TQDMProgressBar, which Lightning refuses beside enable_progress_bar=false
    cfg = compose_train(["trainer.enable_progress_bar=false", "logger=none"], tmp_path)
    trainer, timer = train_script.build_trainer(cfg)
    assert trainer.progress_bar_callback is None and timer in trainer.callbacks
    assert not any(isinstance(c, L.pytorch.callbacks.LearningRateMonitor) for c in trainer.callbacks)  # no logger
    assert train_script.build_trainer(compose_train([], tmp_path))[0].progress_bar_callback is not None


def test_deterministic_training_and_evaluation_do_not_fill_new_tensors(tmp_path):
    from training.cli import instantiate_trainer

    try:
        train_script.build_trainer(compose_train(["trainer.deterministic=true"], tmp_path))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False  # a debugging aid costing 9% a step
        torch.utils.deterministic.fill_uninitialized_memory = True
        instantiate_trainer(compose_train([], tmp_path).trainer, logger=False)  # as eval.py builds its Trainer
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    finally:
        torch.use_deterministic_algorithms(False)
        torch.utils.deterministic.fill_uninitialized_memory = True


def test_on_an_accelerator_each_split_is_copied_to_its_memory_once(mnist_root):
    """``torch.device("meta")`` stands in for a GPU: the loaders gather batches from the split
    held on the trainer's device, copied there once; on the CPU (or with on_device=false) the
    splits stay where they are."""
    from types import SimpleNamespace

    def loaded(device: str, **kw):
        dm = training.data.MNISTDataModule(root=str(mnist_root), download=False, val_size=100, batch_size=32, **kw)
        dm.setup()
        dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), world_size=1,
                                     current_epoch=0)
        return dm

    dm = loaded("meta")
    x, y = next(iter(dm.train_dataloader()))
    assert (x.device.type, y.device.type, x.shape, x.dtype) == ("meta", "meta", (32, 1, 28, 28), torch.uint8)
    held = dm.data["train"][0]
    assert held.device.type == "meta" and dm.data["test"][0].device.type == "cpu"  # only what was asked for
    next(iter(dm.train_dataloader()))
    assert dm.data["train"][0] is held  # not copied again
    assert dm.sample_batch(16)[0].device.type == "meta"
    for dm in (loaded("cpu"), loaded("meta", on_device=False)):
        assert next(iter(dm.train_dataloader()))[0].device.type == "cpu"


def test_tensor_pipeline_equals_torchvision_transforms(mnist_root):
    import torchvision
    from torchvision import transforms as T

    dm = training.data.MNISTDataModule(root=str(mnist_root), download=False)
    tv = torchvision.datasets.MNIST(str(mnist_root), train=False, download=False,
                                    transform=T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))]))
    x, _ = dm.load_split(train=False)
    ours = dm.transform(x[:16])
    reference = torch.stack([tv[i][0] for i in range(16)])
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-6)


def test_cifar_batches_and_image_folder_layouts_agree(cifar_root, tmp_path):
    dm = training.data.CIFAR10DataModule(root=str(cifar_root), download=False)
    x, y = dm.load_split(train=False)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8
    folder = tmp_path / "CIFAR10" / "test"
    for i, (img, label) in enumerate(zip(x, y)):
        d = folder / dm.classes[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i:05d}.png")
    x2, y2 = training.data.CIFAR10DataModule(root=str(tmp_path), download=False).load_split(train=False)
    order = torch.argsort(y, stable=True)  # the folders are read class by class, each in index order
    assert torch.equal(x2, x[order]) and torch.equal(y2, y[order])


def test_batched_augmentation_shifts_and_flips():
    x = torch.randint(0, 256, (16, 3, 5, 7), dtype=torch.uint8)
    torch.manual_seed(0)
    out = training.data.random_crop_flip(x, pad=2, flip=True)
    torch.manual_seed(0)  # the same draws, in the same order: row shifts, column shifts, flips
    dy, dx, mirrored = torch.randint(0, 5, (16,)), torch.randint(0, 5, (16,)), torch.rand(16) < 0.5
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i, src in enumerate(x):  # image i is its source shifted by (dy - 2, dx - 2), zeros shifted in, maybe mirrored
        crop = torch.nn.functional.pad(src, (2, 2, 2, 2))[:, dy[i]:dy[i] + 5, dx[i]:dx[i] + 7]
        assert torch.equal(out[i], crop.flip(2) if mirrored[i] else crop), i
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 1 and 0 < int(mirrored.sum()) < 16  # a test of something


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown model 'lenet9'; registered models are: .*convnet"):
        models.get_model("lenet9")


def test_pool_first_blocks_pool_before_normalising_and_equal_the_usual_order_without_bn():
    usual = {"channels": 6, "kernel": 3, "padding": "same", "pool": "max"}
    a = models.get_model("convnet", blocks=[usual, usual], mlp=[])
    b = models.get_model("convnet", blocks=[dict(usual, pool_first=True)] * 2, mlp=[])
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(b(x), a(x))  # max-pooling commutes with ReLU
    bn = models.get_model("convnet", blocks=[dict(usual, batch_norm=True, pool_first=True)], mlp=[])
    assert [type(m).__name__ for m in bn.features] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    with pytest.raises(ConfigError, match="convnet block 0: pool_first needs a pool"):
        models.get_model("convnet", blocks=[{"channels": 4, "pool_first": True}])


def test_feature_maps_that_shrink_to_nothing_fail_at_construction():
    blocks = [{"channels": 8, "kernel": 5, "pool": "max"}] * 3
    with pytest.raises(ConfigError, match=r"convnet block 2 \(conv 5x5\): a 5x5 kernel .* does not fit its 4x4 input map"):
        models.get_model("convnet", input_size=28, blocks=blocks)


def test_missing_dataset_offline_says_where_to_put_it(tmp_path):
    dm = training.data.MNISTDataModule(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match=r"MNIST not found in .*\n.*Put the four uncompressed IDX files here:\n.*train-images-idx3-ubyte"):
        dm.setup()
    with pytest.raises(DataError, match="(?s)CIFAR-10 not found .*data_batch_1.*CIFAR10/train/<class>"):
        training.data.CIFAR10DataModule(root=str(tmp_path), download=False).setup()


def test_truncated_idx_file_is_reported(mnist_root, tmp_path):
    import shutil

    shutil.copytree(mnist_root / "MNIST", tmp_path / "MNIST")
    f = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated or corrupt"):
        training.data.MNISTDataModule(root=str(tmp_path), download=False).load_split(train=False)


def test_bad_checkpoints_are_reported(tmp_path, trained_run):
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    with pytest.raises(CheckpointError, match="is empty"):
        Classifier.load_from_checkpoint(empty)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot be read: it is not a PyTorch checkpoint"):
        Classifier.load_from_checkpoint(junk)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, other)
    with pytest.raises(CheckpointError, match="not a checkpoint of this project's Classifier"):
        Classifier.load_from_checkpoint(other)
    run, _, _ = trained_run
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["model_kwargs"] = {"mlp": [17]}  # a checkpoint of another model
    mismatched = tmp_path / "mismatched.ckpt"
    torch.save(ckpt, mismatched)
    with pytest.raises(CheckpointError, match="its weights do not fit the model it names"):
        Classifier.load_from_checkpoint(mismatched)


def test_predict_rejects_missing_files_directories_and_non_images(tmp_path, trained_run):
    run, _, _ = trained_run
    ckpt = str(run / "checkpoints" / "last.ckpt")
    with pytest.raises(ImageError, match="no such file"):
        predict_script.predict(ckpt, [str(tmp_path / "nope.png")])
    with pytest.raises(ImageError, match="is a directory"):
        predict_script.predict(ckpt, [str(tmp_path)])
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageError, match="is not an image"):
        predict_script.predict(ckpt, [str(text)])


def test_lenet1989_on_28x28_data_says_to_resample(tmp_path):
    cfg = compose_train(["model=lenet1989"], tmp_path).model
    with pytest.raises(ConfigError, match="16x16 inputs.*data.resize=16"):
        Classifier(model=cfg.model, model_kwargs=cfg.model_kwargs, input_size=cfg.input_size)


def test_command_line_prints_the_message_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "model=convnet", "model.model_kwargs.mlp=[0]", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "error: convnet mlp layer 0: width must be a positive integer, got 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_one_cycle_schedule_survives_a_run_of_two_steps(mnist_root):
    dm = training.data.MNISTDataModule(root=str(mnist_root), batch_size=512, val_size=64, download=False,
                                     train_subset=1000)
    module = Classifier(model="convnet", scheduler={"_target_": "torch.optim.lr_scheduler.OneCycleLR", "_partial_": True,
                                                    "max_lr": 1e-3, "total_steps": None, "pct_start": 0.25},
                        scheduler_interval="step")
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2


def test_label_smoothing_is_a_training_loss_and_tta_flip_averages_the_mirror_image():
    torch.manual_seed(0)
    module = Classifier(model="convnet", in_channels=3, input_size=32, label_smoothing=0.2, tta_flip=True)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    module.train()
    loss, scores, _ = module._shared_step((x, y))
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(scores, y, label_smoothing=0.2))
    assert not torch.allclose(loss, torch.nn.functional.cross_entropy(scores, y))
    module.eval()
    with torch.no_grad():
        loss, scores, _ = module._shared_step((x, y))
        mean = (module.net(x) + module.net(x.flip(3))) / 2
    assert torch.allclose(scores, mean) and not torch.allclose(scores, module.net(x))
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(mean, y))  # evaluated without smoothing
    with pytest.raises(ConfigError, match="label_smoothing"):
        Classifier(model="convnet", label_smoothing=1.0)
    with pytest.raises(ConfigError, match="tta_flip"):
        Classifier(model="convnet", tta_flip="yes")
