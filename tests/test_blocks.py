"""The blocks ConvNet and the supervised Neocognitron share (models/blocks.py): the state-dict keys
and shapes of the registered models are pinned (checkpoints name them), and each network equals
the same layers written out by hand, loaded with its weights (``strict=True``), output for output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import models
from models.blocks import check_padding, conv_block, mlp_head
from models.cells import PoolCPlanes
from models.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    """The state-dict entries of a BatchNorm2d(c) at ``prefix``."""
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def linear(prefix: str, out: int, inp: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (out, inp), f"{prefix}.bias": (out,)}


def keys_and_shapes(net: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in net.state_dict().items()]


def blur_stages() -> list[dict]:
    """The stages of the blur variant, model=neocognitron_blur (configs/model/neocognitron_blur.yaml)."""
    return yaml.safe_load((ROOT / "configs" / "model" / "neocognitron_blur.yaml").read_text())["model_kwargs"]["stages"]


# The keys and shapes of the code before the shared blocks (issue 29), in state-dict order.
PINNED = {
    "convnet": ("convnet", {}, {
        "features.0.weight": (32, 1, 3, 3), **bn("features.1", 32),
        "features.4.weight": (64, 32, 3, 3), **bn("features.5", 64),
        **linear("classifier.1", 256, 3136), **linear("classifier.4", 10, 256)}),
    "mlp": ("mlp", {}, {
        **linear("classifier.1", 512, 784), **linear("classifier.4", 128, 512), **linear("classifier.7", 10, 128)}),
    "neocognitron": ("neocognitron", {}, {
        "stages.0.0.0.weight": (32, 1, 5, 5), **bn("stages.0.0.1", 32),
        "stages.1.0.0.weight": (64, 32, 5, 5), **bn("stages.1.0.1", 64),
        **linear("decision.2", 128, 3136), **linear("decision.5", 10, 128)}),
    "neocognitron_blur": ("neocognitron", {"stages": blur_stages()}, {
        "stages.0.0.0.weight": (32, 1, 5, 5), **bn("stages.0.0.1", 32), "stages.0.1.kernel": (32, 1, 3, 3),
        "stages.1.0.0.weight": (64, 32, 5, 5), **bn("stages.1.0.1", 64), "stages.1.1.kernel": (64, 1, 3, 3),
        **linear("decision.2", 128, 3136), **linear("decision.5", 10, 128)}),
}


@pytest.mark.parametrize("variant", sorted(PINNED))
def test_the_state_dict_keys_and_shapes_of_the_default_models_are_pinned(variant):
    name, kwargs, expected = PINNED[variant]
    assert keys_and_shapes(models.get_model(name, **kwargs)) == list(expected.items())


def assert_same_network(net: nn.Module, reference: nn.Module, x: torch.Tensor) -> None:
    """``reference`` takes ``net``'s state dict key for key and then computes the same scores."""
    reference.load_state_dict(net.state_dict(), strict=True)
    net.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), rtol=0, atol=0)


def test_the_default_convnet_is_its_layers_written_out():
    torch.manual_seed(0)
    net = models.get_model("convnet")
    features = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2, 2),
                             nn.Conv2d(32, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2, 2))
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(3136, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10))
    reference = nn.Sequential()
    reference.features, reference.classifier = features, classifier
    net.features[1].running_mean.uniform_(-1, 1)  # statistics other than the initial ones
    assert_same_network(net, reference, torch.randn(3, 1, 28, 28))


def test_a_convnet_with_asymmetric_padding_pool_first_and_dropout_is_its_layers_written_out():
    """Even kernel with 'same' padding (the extra row/column right/bottom), a [left, right] pair,
    pooling before the batch norm, dropout after a block and in the MLP."""
    blocks = [
        {"channels": 4, "kernel": 4, "padding": "same", "pool": "avg", "pool_first": True, "batch_norm": True,
         "activation": "gelu", "dropout": 0.1},
        {"channels": 3, "kernel": 3, "stride": 2, "padding": [0, 1], "pool": "none", "activation": "silu"},
        {"channels": 5, "kernel": 2, "padding": 1, "pool": "max", "pool_size": 3, "pool_stride": 1,
         "activation": "sigmoid", "batch_norm": True},
    ]
    torch.manual_seed(0)
    net = models.get_model("convnet", in_channels=3, num_classes=7, input_size=20, blocks=blocks, mlp=[8, 6],
                           mlp_dropout=0.2, mlp_activation="tanh")
    features = nn.Sequential(
        nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(3, 4, 4, bias=False), nn.AvgPool2d(2, 2), nn.BatchNorm2d(4), nn.GELU(),
        nn.Dropout2d(0.1),
        nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(4, 3, 3, 2), nn.SiLU(),
        nn.Conv2d(3, 5, 2, 1, 1, bias=False), nn.BatchNorm2d(5), nn.Sigmoid(), nn.MaxPool2d(3, 1))
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(80, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 6), nn.Tanh(),
                               nn.Dropout(0.2), nn.Linear(6, 7))
    reference = nn.Sequential()
    reference.features, reference.classifier = features, classifier
    assert_same_network(net, reference, torch.randn(2, 3, 20, 20))


def test_the_default_neocognitron_and_an_asymmetric_one_are_their_layers_written_out():
    torch.manual_seed(0)
    net = models.get_model("neocognitron")
    stages = nn.Sequential(
        nn.Sequential(nn.Sequential(nn.Conv2d(1, 32, 5, 1, 2, bias=False), nn.BatchNorm2d(32), nn.ReLU()),
                      PoolCPlanes("max", 2, 2)),
        nn.Sequential(nn.Sequential(nn.Conv2d(32, 64, 5, 1, 2, bias=False), nn.BatchNorm2d(64), nn.ReLU()),
                      PoolCPlanes("max", 2, 2)))
    decision = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.25),
                             nn.Linear(128, 10))
    reference = nn.Sequential()
    reference.stages, reference.decision = stages, decision
    assert_same_network(net, reference, torch.randn(3, 1, 28, 28))

    stage = {"planes": 3, "s_kernel": 4, "activation": "tanh", "c_kind": "avg", "c_kernel": 3, "c_stride": 2,
             "c_padding": 1}
    net = models.get_model("neocognitron", in_channels=2, num_classes=5, input_size=9, stages=[stage], decision=[],
                           dropout=0.1)
    reference = nn.Sequential()
    reference.stages = nn.Sequential(nn.Sequential(
        nn.Sequential(nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(2, 3, 4), nn.Tanh()), PoolCPlanes("avg", 3, 2, 1)))
    reference.decision = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(3 * 5 * 5, 5))
    assert_same_network(net, reference, torch.randn(2, 2, 9, 9))


def test_conv_block_pads_an_asymmetric_padding_before_the_convolution():
    torch.manual_seed(0)
    layers = conv_block(2, 3, 4, 1, (1, 2), batch_norm=False, activation="identity")
    assert [type(m) for m in layers] == [nn.ZeroPad2d, nn.Conv2d, nn.Identity] and layers[1].padding == (0, 0)
    x = torch.randn(1, 2, 7, 7)
    y = nn.Sequential(*layers)(x)
    conv = layers[1]
    torch.testing.assert_close(y, F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, conv.bias))
    assert y.shape[-1] == 7  # 'same' for an even kernel

    layers = conv_block(2, 3, 3, 2, (1, 1), batch_norm=True, activation="relu", pool=nn.MaxPool2d(2), pool_first=True)
    assert [type(m) for m in layers] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU]
    assert layers[0].padding == (1, 1) and layers[0].stride == (2, 2) and layers[0].bias is None


def test_mlp_head_places_dropout_after_the_activations_or_before_every_linear():
    after = mlp_head("m", 12, [5], 3, activation="tanh", dropout=0.5)
    assert [type(m) for m in after] == [nn.Flatten, nn.Linear, nn.Tanh, nn.Dropout, nn.Linear]
    assert [type(m) for m in mlp_head("m", 12, [5], 3)] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]
    before = mlp_head("m", 12, [5], 3, dropout=0.0, dropout_before=True)
    assert [type(m) for m in before] == [nn.Flatten, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    with pytest.raises(ConfigError, match=r"^m layer 1: width must be a positive integer, got True$"):
        mlp_head("m", 12, [5, True], 3)


def test_check_padding_reads_same_integers_and_pairs():
    assert check_padding("b", "padding", "same", 5) == (2, 2)
    assert check_padding("b", "padding", "same", 4) == (1, 2)  # the extra one right/bottom
    assert check_padding("b", "padding", 0, 3) == (0, 0)
    assert check_padding("b", "padding", [0, 1], 3, pairs=True) == (0, 1)
    for bad, pairs in ((-1, False), (True, False), ([0, 1], False), ([True, 0], True), ([1], True), ("valid", True)):
        with pytest.raises(ConfigError, match=r"^b: padding must be .*, got "):
            check_padding("b", "padding", bad, 3, pairs=pairs)
