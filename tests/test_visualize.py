"""TensorBoard figures (training/tb_callbacks.py) and the figure helpers (training/visualize.py):
a tiny run's event files hold every tag; the helpers compute what they claim."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import models
import training.data
from training import tb_callbacks as tbc
from training import visualize as viz
from training.module import Classifier
from training.cli import instantiate_group
from tests.conftest import FAST, compose_train

import train as train_script

TB_CALLBACKS = {"filter_images": tbc.FilterImages, "feature_maps": tbc.FeatureMaps,
                "validation_errors": tbc.ValidationErrors, "model_graph": tbc.ModelGraph}


def _events(run):
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def tb_run(mnist_root, tmp_path_factory):
    """Two epochs of the supervised Neocognitron with every TensorBoard callback on (norms
    included); filters every 2nd epoch, the rest every epoch."""
    run = tmp_path_factory.mktemp("tbrun") / "run"  # alone in its parent folder (find_runs test)
    cfg = compose_train(FAST + [f"data.root={mnist_root}", "data.download=false", "data.train_subset=256",
                                "trainer.max_epochs=2", "model=neocognitron",
                                "model.model_kwargs.stages.0.planes=6", "model.model_kwargs.stages.1.planes=8",
                                "callbacks.param_norms.enabled=true", "callbacks.filter_images.every_n_epochs=2"], run)
    metrics = train_script.train(cfg)
    return run, metrics


def test_tensorboard_run_holds_every_figure_tag(tb_run):
    run, _ = tb_run
    acc = _events(run)
    tags = acc.Tags()
    images = set(tags["images"])
    assert {"filters/S1", "filters/S2"} <= images, images
    assert {f"feature_maps/{n}" for n in ("input", "S1", "C1", "S2", "C2")} <= images, images
    assert {"val/confusion_matrix", "val/worst_mistakes"} <= images, images
    assert tags["graph"], "no model graph in the event files"
    assert acc.PluginTagToContent("hparams"), "no HPARAMS record"
    scalars = set(tags["scalars"])
    assert {"hp/val_acc_best", "hp/test_acc", "val/acc"} <= scalars
    assert "weight_norm/stages.0.0.0.weight" in scalars and "grad_norm/decision.2.weight" in scalars, scalars


def test_figures_are_logged_at_their_frequency(tb_run):
    run, _ = tb_run
    acc = _events(run)
    steps = lambda tag: [e.step for e in acc.Images(tag)]  # noqa: E731
    assert len(steps("feature_maps/S1")) == 2  # every epoch
    assert len(steps("filters/S1")) == 1  # every 2nd epoch: only after the second
    assert steps("filters/S1") == steps("feature_maps/S1")[1:]
    first = acc.Images("filters/S1")[0]
    assert first.width > 5 * 6 and first.height > 5  # 6 S1 filters of 5x5, upscaled


def test_weight_norms_match_the_checkpoint(tb_run):
    run, _ = tb_run
    acc = _events(run)
    logged = acc.Scalars("weight_norm/stages.0.0.0.weight")[-1].value
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert abs(logged - float(ckpt["state_dict"]["net.stages.0.0.0.weight"].norm())) < 1e-4


def test_confusion_matrix_counts_the_validation_predictions(mnist_root):
    dm = training.data.MNISTDataModule(root=str(mnist_root), batch_size=64, eval_batch_size=50, val_size=120,
                                     train_subset=128, download=False)
    errors = tbc.ValidationErrors(k=5)
    logger = TensorBoardLogger(save_dir=str(dm.root.parent / "cm_logs"), name="tb", version="")
    module = Classifier(model="convnet", model_kwargs={"blocks": [{"channels": 4, "kernel": 3, "pool": "max"}],
                                                        "mlp": []})
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=logger, callbacks=[errors], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    from torchmetrics.classification import MulticlassConfusionMatrix

    ref = MulticlassConfusionMatrix(num_classes=10)
    module.eval()
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            x, y = dm.on_after_batch_transfer((x, y), 0)
            ref.update(module(x), y)
    assert errors.last_cm is not None and errors.last_cm.sum() == 120
    assert torch.equal(errors.last_cm, ref.compute())
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    acc.Reload()
    assert len(acc.Images("val/worst_mistakes")) == 1 and len(acc.Images("val/confusion_matrix")) == 1


@pytest.mark.parametrize("logger", ["csv", "none"])
def test_callbacks_are_no_ops_without_tensorboard(logger, mnist_root, tmp_path):
    cfg = compose_train(FAST + [f"data.root={mnist_root}", "data.download=false", "data.train_subset=128",
                                f"logger={logger}", "callbacks.param_norms.enabled=true"]
                        + (["~callbacks.lr_monitor"] if logger == "none" else []), tmp_path)  # it needs a logger
    callbacks = instantiate_group(cfg.callbacks)
    assert {type(c) for c in callbacks} >= set(TB_CALLBACKS.values()) | {tbc.ParamNorms}
    metrics = train_script.train(cfg)
    assert "test/acc" in metrics
    assert not (tmp_path / "tensorboard").exists()


def test_callbacks_switch_off_one_by_one_or_all(tmp_path):
    on = {type(c) for c in instantiate_group(compose_train([], tmp_path).callbacks)}
    assert on >= set(TB_CALLBACKS.values()) and tbc.ParamNorms not in on  # norms are opt-in
    off = {type(c) for c in instantiate_group(compose_train(["callbacks.feature_maps.enabled=false"], tmp_path).callbacks)}
    assert tbc.FeatureMaps not in off and tbc.FilterImages in off
    assert instantiate_group(compose_train(["callbacks=none"], tmp_path).callbacks) == []


def test_self_organised_neocognitron_logs_its_planes(mnist_root, tmp_path):
    cfg = compose_train(FAST + [f"data.root={mnist_root}", "data.download=false", "data.train_subset=128",
                                "model=neocognitron_fukushima", "model.model_kwargs.max_planes=[6,8]",
                                "model.model_kwargs.n_orient=4", "model.model_kwargs.learn_limit=[64,64]",
                                "trainer.max_epochs=1", "test=false"], tmp_path)  # its first phase only
    train_script.train(cfg)
    acc = _events(tmp_path)
    scalars, images = set(acc.Tags()["scalars"]), set(acc.Tags()["images"])
    assert {"planes/US1", "planes/US2", "planes/US3", "planes/US4"} <= scalars
    assert acc.Scalars("planes/US1")[-1].value == 4  # n_orient fixed edge planes
    grown = acc.Scalars("planes/US2")[-1].value
    assert 1 <= grown <= 6  # US2 grew planes during epoch 0, within its cap
    assert {"feature_maps/UG", "feature_maps/US1", "feature_maps/UC1", "feature_maps/US2", "filters/US1",
            "filters/US2"} <= images, images


# --- the helpers --------------------------------------------------------------------------


def test_feature_maps_are_the_s_and_c_layer_outputs():
    torch.manual_seed(0)
    net = models.get_model("neocognitron", stages=[{"planes": 3, "s_kernel": 5, "c_kind": "max", "c_kernel": 2},
                                                   {"planes": 4, "s_kernel": 3, "c_kind": "blur", "c_kernel": 3}])
    net.eval()
    x = torch.randn(2, 1, 28, 28)
    maps = viz.feature_maps(net, x)
    assert list(maps) == ["S1", "C1", "S2", "C2"]
    s1 = net.s_layers()[0](x)
    torch.testing.assert_close(maps["S1"], s1)
    torch.testing.assert_close(maps["C1"], net.c_layers()[0](s1))
    torch.testing.assert_close(maps["C2"], net.features(x))


def test_lenet_filters_show_its_connection_table():
    net = models.get_model("lenet5")
    maps = viz.feature_maps(net, torch.zeros(1, 1, 28, 28))
    assert {k: v.shape[1:] for k, v in maps.items()} == {"C1": (6, 28, 28), "S2": (6, 14, 14), "C3": (16, 10, 10),
                                                         "S4": (16, 5, 5), "C5": (120, 1, 1)}
    filters = viz.conv_filters(net)
    assert list(filters) == ["C1", "C3", "C5"] and filters["C3"].shape == (16, 6, 5, 5)
    c3 = filters["C3"]
    connected = c3.flatten(2).abs().sum(2) > 0  # (16, 6)
    assert connected.sum() == 60  # Table I: 60 of the 96 (output, input) pairs
    grid = viz.filter_grid(c3, upscale=1)
    assert grid.shape[0] == 3
    # 16 rows x 6 columns of 5x5 tiles, 1 pixel of padding
    assert grid.shape[1:] == (16 * 6 + 1, 6 * 6 + 1)
    tile = lambda o, i: grid[0, 1 + 6 * o: 6 + 6 * o, 1 + 6 * i: 6 + 6 * i]  # noqa: E731
    assert torch.allclose(tile(0, 5), torch.full((5, 5), 0.5))  # C3 map 0 does not see S2 map 5
    assert not torch.allclose(tile(0, 0), torch.full((5, 5), 0.5))


def test_first_layer_filters_are_images():
    w = torch.randn(10, 3, 5, 5)
    grid = viz.filter_grid(w, upscale=1)
    assert grid.shape == (3, 3 * 6 + 1, 4 * 6 + 1)  # ceil(sqrt(10)) = 4 tiles a row, 3 rows, RGB kept
    assert grid.min() >= 0 and grid.max() <= 1


def test_worst_mistakes_are_misclassified_and_ordered():
    scores = torch.tensor([[5.0, 0.0], [0.0, 1.0], [0.0, 3.0], [2.0, 0.0], [0.1, 0.0]])
    y = torch.tensor([0, 0, 0, 1, 1])
    idx = viz.worst_mistakes(scores, y, k=10)
    assert idx.tolist() == [2, 3, 1, 4]  # sample 0 is right; p(true) rises along the list
    assert viz.worst_mistakes(scores, y, k=2).tolist() == [2, 3]


def test_figures_render(tmp_path):
    cm = torch.tensor([[5, 1], [2, 7]])
    fig = viz.confusion_figure(cm, ["cat", "dog"])
    assert "0.800" in fig.axes[0].get_title()  # (5 + 7) / 15
    fig.savefig(tmp_path / "cm.png")
    fig = viz.mistakes_figure(torch.randn(3, 1, 8, 8), [0, 1, 2], [1, 2, 0], torch.tensor([0.1, 0.2, 0.3]))
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["0→1 (0.10)", "1→2 (0.20)", "2→0 (0.30)"]
    fig.savefig(tmp_path / "mistakes.png")


def test_small_mnist_matches_the_test_fixture(tmp_path):
    from tests.conftest import digits_28

    x, y = viz.sklearn_digits_28()
    xr, yr = digits_28()
    assert (x == xr).all() and (y == yr).all() and x.shape == (1797, 28, 28)
    root = viz.write_small_mnist(tmp_path)
    xs, ys = training.data.MNISTDataModule(root=str(root), download=False).load_split(train=False)
    assert xs.shape == (297, 1, 28, 28) and torch.equal(ys, torch.as_tensor(y[:297], dtype=torch.long))


def test_read_run_reports_what_the_run_logged(tb_run):
    run, metrics = tb_run
    assert viz.find_runs(run.parent) == [run]
    info = viz.read_run(run)
    assert info["model"] == "neocognitron"
    assert abs(info["test_acc"] - metrics["test/acc"]) < 1e-6 and abs(info["val_acc_best"] - metrics["val/acc_best"]) < 1e-6
    module = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    assert info["params"] == sum(p.numel() for p in module.net.parameters() if p.requires_grad)
    assert len(info["val_acc"]) == 2 and info["train_time_s"] > 0
