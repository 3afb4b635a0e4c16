"""Property-based tests (hypothesis): random model configs build, run forward and backward and give
the promised output shape exactly when the lecture's size formulas (computed here, independently
of the models' own checks) say they fit; the others raise the project's ConfigError with a message
that names the offending setting, never an internal PyTorch error. A valid config refused is a
failure as much as an invalid one accepted.

The budget is small (a few dozen examples per property, small images) so the suite stays fast;
raise it locally with ``HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py``."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import models
from models.errors import ConfigError, UserError

settings.register_profile("fast", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fast")

# Values that are wrong for any "positive integer" setting, and for any "name" setting.
BAD_INTS = st.sampled_from([0, -1, -7, 2.5, "3", None, True, [3]])
BAD_NAMES = st.sampled_from(["median", "", "MAX", 3, None, "relu6"])


def run_forward_backward(net: torch.nn.Module, in_channels: int, size: int, num_classes: int) -> None:
    """The promised contract: (B, C, S, S) -> (B, num_classes) finite scores, and gradients
    for every trainable parameter that the scores depend on."""
    net.train()
    x = torch.randn(2, in_channels, size, size)
    scores = net(x)
    assert scores.shape == (2, num_classes), scores.shape
    assert torch.isfinite(scores).all()
    params = [p for p in net.parameters() if p.requires_grad]
    if getattr(net, "learns_by_backprop", True) and params:
        scores.square().mean().backward()
        assert any(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


# --- sizes: what each model promises, computed here independently of the model's own checks --------


def conv_out(n: int, k: int, stride: int, p_lo: int, p_hi: int) -> int:
    """The lecture's output-size formula, floor((N + P_L + P_R - M) / S) + 1 (as F.conv2d)."""
    return (n + p_lo + p_hi - k) // stride + 1


def pool_out(n: int, p: int, stride: int) -> int:
    return (n - p) // stride + 1


def first_block_too_small(blocks: list[dict], size: int, kind: str) -> int | None:
    """The index of the first convnet block / Neocognitron stage whose maps shrink below 1x1 for
    an input of side ``size`` (None: every block fits), from the formulas alone."""
    n = size
    for i, b in enumerate(blocks):
        if kind == "convnet":
            k, s, pad, pool = b.get("kernel", 3), b.get("stride", 1), b.get("padding", 0), b.get("pool")
            p = b.get("pool_size", 2) if pool not in (None, "none") else None
        else:  # neocognitron stage: S-layer then C-layer (max/avg/blur pooling, stride = its kernel)
            k, s, pad = b.get("s_kernel", 5), b.get("s_stride", 1), b.get("s_padding", "same")
            p = b.get("c_kernel", 2)
        lo, hi = ((k - 1) // 2, k - 1 - (k - 1) // 2) if pad == "same" else (pad, pad)
        n = conv_out(n, k, s, lo, hi)
        if n < 1:
            return i
        if p is not None:
            n = pool_out(n, p, p)
            if n < 1:
                return i
    return None


def build_as_the_formulas_say(name: str, layers: list[dict], size: int, **kwargs):
    """Build ``name`` with blocks/stages ``layers`` (also in ``kwargs``): it must build when the
    formulas say every one fits, and be refused with a ConfigError naming the first that does not
    fit otherwise."""
    bad = first_block_too_small(layers, size, name)
    if bad is None:
        return models.get_model(name, input_size=size, **kwargs)
    with pytest.raises(ConfigError) as info:
        models.get_model(name, input_size=size, **kwargs)
    where = f"convnet block {bad}" if name == "convnet" else f"neocognitron stage {bad}"
    assert where in str(info.value), str(info.value)
    return None


# The input sides each registered network accepts with its default architecture (in_channels 1-3,
# any number of classes), from its paper's layer table: a model missing here fails the test below.
ACCEPTED_SIZES = {
    "convnet": range(4, 1000),  # two 3x3 'same' convs, each followed by 2x2 max pooling
    "mlp": range(1, 1000),  # no convolution: any size
    "neocognitron": range(4, 1000),  # two stages: 5x5 'same' S-planes, 2x2 C-planes
    "neocognitron_fukushima": range(1, 1000),  # every layer pads: any size
    "lenet1": range(16, 1000),  # 5x5 conv, 2x2 subsampling, 5x5 conv, 2x2: (N - 4) // 2 - 4 >= 2
    "lenet4": range(1, 33),  # padded to its 32x32 input field; larger inputs refused
    "lenet5": range(1, 33),
    "lenet5_modern": range(1, 33),
    "lenet1989": range(16, 17),  # 16x16 only (its H1/H2 connection scheme is for that size)
}


# --- every registered model: sizes, channels, classes ------------------------------------------


def test_every_registered_model_states_the_sizes_it_accepts():
    assert set(ACCEPTED_SIZES) == set(models.list_models())


@pytest.mark.parametrize("name", models.list_models())
def test_every_model_builds_exactly_the_sizes_it_promises(name):
    """A valid size refused is as much a failure as an invalid one built."""
    for size in range(1, 41):
        if size in ACCEPTED_SIZES[name]:
            models.get_model(name, in_channels=1, num_classes=10, input_size=size)
        else:
            with pytest.raises(ConfigError) as info:
                models.get_model(name, in_channels=1, num_classes=10, input_size=size)
            assert "input" in str(info.value) or "fit" in str(info.value), str(info.value)


# LeNet-5's RBF output has the 10 digit bitmaps: 10 classes only (else output=linear, refused below).
ACCEPTED_CLASSES = {"lenet5": range(10, 11)}


@pytest.mark.parametrize("name", models.list_models())
@settings(settings.get_profile(PROFILE), max_examples=6)
@given(in_channels=st.sampled_from([1, 3]), num_classes=st.integers(2, 12), size=st.integers(4, 40))
def test_every_model_runs_at_the_sizes_it_accepts(name, in_channels, num_classes, size):
    if size not in ACCEPTED_SIZES[name]:
        return
    if num_classes not in ACCEPTED_CLASSES.get(name, range(2, 1000)):
        with pytest.raises(ConfigError, match="num_classes"):
            models.get_model(name, in_channels=in_channels, num_classes=num_classes, input_size=size)
        return
    net = models.get_model(name, in_channels=in_channels, num_classes=num_classes, input_size=size)
    run_forward_backward(net, in_channels, size, num_classes)


@settings(settings.get_profile(PROFILE))
@given(name=st.sampled_from(models.list_models()),
       key=st.sampled_from(["in_channels", "num_classes", "input_size"]), bad=BAD_INTS)
def test_every_model_refuses_bad_channels_classes_and_sizes(name, key, bad):
    kwargs = {"in_channels": 1, "num_classes": 10, "input_size": 28, key: bad}
    with pytest.raises(ConfigError) as info:
        models.get_model(name, **kwargs)
    assert key in str(info.value) or name in str(info.value)


@settings(settings.get_profile(PROFILE))
@given(name=st.sampled_from(models.list_models()), key=st.sampled_from(["widht", "chanels", "foo"]))
def test_unknown_model_keys_are_refused_by_name(name, key):
    with pytest.raises(ConfigError, match=f"model '{name}': .*{key}"):
        models.get_model(name, **{key: 1})


# --- convnet -------------------------------------------------------------------------------


def convnet_block():
    return st.fixed_dictionaries(
        {"channels": st.integers(1, 6), "kernel": st.integers(1, 5)},
        optional={"stride": st.integers(1, 2), "padding": st.one_of(st.just("same"), st.integers(0, 2)),
                  "pool": st.sampled_from(["max", "avg", "none", None]), "pool_size": st.integers(1, 3),
                  "batch_norm": st.booleans(), "activation": st.sampled_from(["relu", "tanh", "gelu"]),
                  "dropout": st.sampled_from([0.0, 0.2])},
    )


@settings(settings.get_profile(PROFILE))
@given(blocks=st.lists(convnet_block(), min_size=1, max_size=3), mlp=st.lists(st.integers(1, 16), max_size=2),
       in_channels=st.sampled_from([1, 3]), size=st.integers(6, 32), num_classes=st.integers(2, 10))
def test_random_convnets_run_or_refuse_their_sizes(blocks, mlp, in_channels, size, num_classes):
    net = build_as_the_formulas_say("convnet", blocks, size, in_channels=in_channels, num_classes=num_classes,
                                    blocks=blocks, mlp=mlp)
    if net is not None:
        run_forward_backward(net, in_channels, size, num_classes)


CONVNET_BAD = {
    "channels": BAD_INTS, "kernel": BAD_INTS, "stride": BAD_INTS, "pool_size": BAD_INTS,
    "pool": st.sampled_from(["median", "MAX", 2, "sum"]), "activation": BAD_NAMES,
    "padding": st.sampled_from([-1, "valid-ish", [1], [1, -1], 1.5]), "dropout": st.sampled_from([1.0, -0.1, "0.5", 2]),
    "kernal": st.integers(1, 3),  # a misspelt key
}


@settings(settings.get_profile(PROFILE))
@given(blocks=st.lists(convnet_block(), min_size=1, max_size=3), data=st.data(),
       key=st.sampled_from(sorted(CONVNET_BAD)))
def test_a_bad_convnet_setting_is_named_in_the_error(blocks, data, key):
    i = data.draw(st.integers(0, len(blocks) - 1), label="block")
    bad = data.draw(CONVNET_BAD[key], label="value")
    blocks[i] = {**blocks[i], key: bad}
    if key == "pool_size" and blocks[i].get("pool") in (None, "none"):
        blocks[i]["pool"] = "max"  # pool_size is only read when the block pools
    with pytest.raises(ConfigError) as info:
        models.get_model("convnet", input_size=64, blocks=blocks, mlp=[])
    msg = str(info.value)
    assert f"convnet block {i}" in msg, msg
    assert key.rstrip("l") in msg or key in msg or "padding" in msg, msg


# --- the supervised Neocognitron ---------------------------------------------------------------


def neocognitron_stage():
    return st.fixed_dictionaries(
        {"planes": st.integers(1, 6)},
        optional={"s_kernel": st.integers(1, 5), "s_stride": st.integers(1, 2),
                  "s_padding": st.one_of(st.just("same"), st.integers(0, 2)),
                  "c_kind": st.sampled_from(["max", "avg", "blur"]), "c_kernel": st.integers(1, 3),
                  "batchnorm": st.booleans(), "activation": st.sampled_from(["relu", "tanh"])},
    )


@settings(settings.get_profile(PROFILE))
@given(stages=st.lists(neocognitron_stage(), min_size=1, max_size=3),
       decision=st.lists(st.integers(1, 16), max_size=2), size=st.integers(6, 32), num_classes=st.integers(2, 10))
def test_random_neocognitrons_run_or_refuse_their_sizes(stages, decision, size, num_classes):
    if "neocognitron" not in models.list_models():
        pytest.skip("neocognitron is not registered")
    net = build_as_the_formulas_say("neocognitron", stages, size, in_channels=1, num_classes=num_classes,
                                    stages=stages, decision=decision, dropout=0.0)
    if net is not None:
        run_forward_backward(net, 1, size, num_classes)


NEO_BAD = {"planes": BAD_INTS, "s_kernel": BAD_INTS, "s_stride": BAD_INTS, "c_kernel": BAD_INTS,
           "c_kind": BAD_NAMES, "activation": BAD_NAMES, "batchnorm": st.sampled_from(["yes", 1, None]),
           "s_padding": st.sampled_from([-1, "valid-ish", 1.5]), "c_gain": st.sampled_from([0, -1.0, "2"])}


@settings(settings.get_profile(PROFILE))
@given(stages=st.lists(neocognitron_stage(), min_size=1, max_size=3), data=st.data(),
       key=st.sampled_from(sorted(NEO_BAD)))
def test_a_bad_neocognitron_setting_is_named_in_the_error(stages, data, key):
    if "neocognitron" not in models.list_models():
        pytest.skip("neocognitron is not registered")
    i = data.draw(st.integers(0, len(stages) - 1), label="stage")
    stages[i] = {**stages[i], key: data.draw(NEO_BAD[key], label="value")}
    with pytest.raises(ConfigError) as info:
        models.get_model("neocognitron", input_size=64, stages=stages, decision=[])
    msg = str(info.value)
    assert f"neocognitron stage {i}" in msg and key in msg, msg


# --- LeNet-5's C3 connection table --------------------------------------------------------------


@settings(settings.get_profile(PROFILE))
@given(table=st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=6, unique=True), min_size=1, max_size=16))
def test_random_c3_tables_build_lenet5s_that_run(table):
    if "lenet5" not in models.list_models():
        pytest.skip("lenet5 is not registered")
    net = models.get_model("lenet5", input_size=28, c3_table=table, output="linear", criterion="ce", num_classes=10)
    run_forward_backward(net, 1, 28, 10)


@settings(settings.get_profile(PROFILE))
@given(table=st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=6, unique=True), min_size=1, max_size=16),
       data=st.data(), bad=st.sampled_from([6, 7, 15, -1, "2", 1.0, None]))
def test_a_c3_table_naming_a_missing_map_is_refused(table, data, bad):
    if "lenet5" not in models.list_models():
        pytest.skip("lenet5 is not registered")
    row = data.draw(st.integers(0, len(table) - 1), label="row")
    table[row] = [*table[row], bad]
    with pytest.raises(ConfigError) as info:
        models.get_model("lenet5", input_size=28, c3_table=table)
    msg = str(info.value)
    assert "C3" in msg and f"row {row}" in msg, msg


# --- Fukushima's selectivity thresholds ---------------------------------------------------------


@settings(settings.get_profile(PROFILE))
@given(which=st.sampled_from(["thetas", "thetas_learn"]), data=st.data(),
       bad=st.sampled_from([0.0, 1.0, 1.5, -0.2, float("nan"), "0.5", None]))
def test_a_selectivity_outside_0_1_is_refused(which, data, bad):
    if "neocognitron_fukushima" not in models.list_models():
        pytest.skip("neocognitron_fukushima is not registered")
    values = [0.6, 0.55, 0.55, 0.5] if which == "thetas" else [0.75, 0.7, 0.8]
    i = data.draw(st.integers(0, len(values) - 1), label="index")
    values[i] = bad
    with pytest.raises(ConfigError) as info:
        models.get_model("neocognitron_fukushima", **{which: values})
    assert f"{which}[{i}]" in str(info.value), str(info.value)


def test_user_errors_are_the_projects_own_type():
    """What the fuzz tests accept as a refusal is the project's error, not a bare ValueError."""
    assert issubclass(ConfigError, UserError)
    with pytest.raises(UserError):
        models.get_model("convnet", blocks=[{"channels": 4, "stride": 0}])
