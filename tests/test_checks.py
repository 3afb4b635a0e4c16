"""The one way the networks check a setting (models/checks.py) and the one activation table
(models/activations.py), with each network's accepted subset of it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import models
from models import activations, checks, convnet, lenet_layers, neocognitron
from models.errors import ConfigError


# --- the checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", [0, 1, -3, 10**400])
def test_is_int_takes_integers(v):
    assert checks.is_int(v)


@pytest.mark.parametrize("v", [True, False, 1.0, "1", None, [1]])
def test_is_int_refuses_bools_and_other_types(v):
    assert not checks.is_int(v)


def test_check_int_takes_the_minimum_and_refuses_below_it_and_bools():
    assert checks.check_int("w", "k", 1) == 1 and checks.check_int("w", "k", 0, minimum=0) == 0
    assert checks.check_int("w", "k", 7, minimum=7) == 7
    with pytest.raises(ConfigError, match=r"^w: k must be an integer >= 7, got 6$"):
        checks.check_int("w", "k", 6, minimum=7)
    with pytest.raises(ConfigError, match=r"^w: k must be an integer >= 1, got True$"):
        checks.check_int("w", "k", True)
    with pytest.raises(ConfigError, match=r"^w: k must be an integer >= 0, got False$"):
        checks.check_int("w", "k", False, minimum=0)
    with pytest.raises(ConfigError, match=r"^w: k must be a tally, got 2\.0$"):
        checks.check_int("w", "k", 2.0, must="a tally")


def test_check_positive_int_words_it_positive():
    assert checks.check_positive_int("w", "k", 1) == 1
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ConfigError, match=rf"^w: k must be a positive integer, got {bad!r}$"):
            checks.check_positive_int("w", "k", bad)


def test_check_number_bounds_closed_open_and_finite():
    assert checks.check_number("w", "x", 0) == 0.0 and isinstance(checks.check_number("w", "x", 2), float)
    assert checks.check_number("w", "x", 0.999, hi=1.0) == 0.999
    for bad, kw, says in [
        (True, {}, "a number >= 0.0"), (-0.1, {}, "a number >= 0.0"), (0, {"lo_open": True}, "a number > 0.0"),
        (1.0, {"hi": 1.0}, "a number >= 0.0 and < 1.0"), (float("nan"), {}, "a number >= 0.0"),
        (float("inf"), {}, "a number >= 0.0"), ("0.5", {}, "a number >= 0.0"), (0.5, {"lo": 1.0}, "a number >= 1.0"),
    ]:
        with pytest.raises(ConfigError, match=rf"^w: x must be {says}, got "):
            checks.check_number("w", "x", bad, **kw)
    with pytest.raises(ConfigError, match=r"^w: x must be a number in \[0, 1\), got 1$"):
        checks.check_number("w", "x", 1, hi=1.0, must="a number in [0, 1)")


def test_is_number_is_finite_and_not_bool():
    assert checks.is_number(3) and checks.is_number(-2.5) and checks.is_number(10**400)
    assert not any(checks.is_number(v) for v in (True, math.nan, math.inf, -math.inf, "1", None))


def test_check_bool_takes_only_true_and_false():
    assert checks.check_bool("w", "b", True) is True and checks.check_bool("w", "b", False) is False
    for bad in (1, 0, "yes", "false", None):
        with pytest.raises(ConfigError, match=rf"^w: b must be true or false, got {bad!r}$"):
            checks.check_bool("w", "b", bad)


def test_check_choice_refuses_unknown_and_unhashable_values_with_its_wording():
    assert checks.check_choice("w", "pool", "max", ("max", "avg")) == "max"
    with pytest.raises(ConfigError, match=r"^w: pool must be one of max, avg, got 'median'$"):
        checks.check_choice("w", "pool", "median", ("max", "avg"))
    with pytest.raises(ConfigError, match=r"^w: pool must be one of max, avg, got \['max'\]$"):
        checks.check_choice("w", "pool", ["max"], {"max": 1, "avg": 2})  # a list: refused, not a TypeError
    with pytest.raises(ConfigError, match=r"^w/pool/2/max, avg$"):
        checks.check_choice("w", "pool", 2, ("max", "avg"), message="{where}/{key}/{value!r}/{options}")


# A bool where a count or a size belongs, for each network: a slip, never 1 or 0.
BOOL_SETTINGS = [
    ("convnet", {"in_channels": True}, "convnet: in_channels must be a positive integer, got True"),
    ("convnet", {"blocks": [{"channels": True}]}, "convnet block 0: channels must be a positive integer, got True"),
    ("convnet", {"blocks": [{"channels": 4, "padding": True}]}, "convnet block 0: padding must be 'same', an "),
    ("convnet", {"mlp": [True]}, "convnet mlp layer 0: width must be a positive integer, got True"),
    ("convnet", {"mlp_dropout": False}, r"convnet mlp: dropout must be a number in \[0, 1\), got False"),
    ("mlp", {"hidden": [True]}, "mlp mlp layer 0: width must be a positive integer, got True"),
    ("neocognitron", {"num_classes": True}, "neocognitron: num_classes must be an integer >= 1, got True"),
    ("neocognitron", {"stages": [{"planes": True}]}, "neocognitron stage 0: planes must be an integer >= 1, got True"),
    ("neocognitron", {"stages": [{"planes": 2, "s_padding": False}]}, "neocognitron stage 0: s_padding must be an "),
    ("neocognitron", {"stages": [{"planes": 2, "c_padding": True}]}, "neocognitron stage 0: c_padding must be an "),
    ("neocognitron", {"stages": [{"planes": 2, "batchnorm": 1}]}, "neocognitron stage 0: batchnorm must be true or false"),
    ("neocognitron", {"decision": [True]}, "neocognitron decision layer 0: width must be a positive integer, got True"),
    ("neocognitron", {"dropout": False}, "neocognitron: dropout must be a number >= 0.0 and < 1.0, got False"),
    ("lenet5", {"in_channels": True}, "lenet5: in_channels must be a positive integer, got True"),
    ("lenet5", {"input_size": True}, "lenet5: input_size must be a positive integer, got True"),
    ("lenet1", {"input_size": True}, "lenet1: input_size must be a positive integer, got True"),
    ("lenet5", {"rbf_j": True}, r"LeNet: rbf_j \(model.model_kwargs.rbf_j, the e\^-j rubbish term\) must be a number >= 0, "
                                "got True"),
    ("lenet5", {"rbf_j": float("nan")}, r"LeNet: rbf_j .* must be a number >= 0, got nan"),
    ("lenet5", {"c3_table": [[0, True]]}, "lenet5 C3: table row 0 names input map True"),
]


@pytest.mark.parametrize("name, kwargs, message", BOOL_SETTINGS, ids=[f"{n}-{k}" for n, k, _ in BOOL_SETTINGS])
def test_every_network_refuses_a_bool_for_a_number(name, kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        models.get_model(name, **kwargs)


def test_the_cells_module_still_offers_the_checks():
    from models.cells import check_int, check_number

    assert check_int is checks.check_int and check_number is checks.check_number


# --- the activation table -------------------------------------------------------------------------

ACCEPTED = {  # each network's names, as before the one table
    "convnet": ("relu", "gelu", "tanh", "sigmoid", "silu", "identity"),
    "neocognitron": ("relu", "tanh", "sigmoid", "gelu", "identity"),
    "lenet": ("scaled_tanh", "tanh", "relu", "identity"),
}


def test_each_network_accepts_its_own_subset_of_the_one_table():
    assert convnet.ACTIVATIONS == ACCEPTED["convnet"]
    assert neocognitron.ACTIVATIONS == ACCEPTED["neocognitron"]
    assert lenet_layers.ACTIVATIONS == ACCEPTED["lenet"] and models.lenet.ACTIVATIONS is lenet_layers.ACTIVATIONS
    for names in ACCEPTED.values():
        assert set(names) <= set(activations.ACTIVATIONS)
    assert set().union(*ACCEPTED.values()) == set(activations.ACTIVATIONS)  # no name that no network takes


def build_with_activation(family: str, name: str) -> list[nn.Module]:
    """The activation modules that ``name`` sets in a small ``family`` network."""
    if family == "convnet":
        net = models.get_model("convnet", input_size=8, blocks=[{"channels": 2, "activation": name}], mlp=[4],
                               mlp_activation=name)
        return [net.features[1], net.classifier[2]]  # conv -> activation; flatten -> linear -> activation
    if family == "mlp":
        return [models.get_model("mlp", input_size=4, hidden=[3], activation=name).classifier[2]]
    if family == "neocognitron":
        net = models.get_model("neocognitron", input_size=8, stages=[{"planes": 2, "activation": name}])
        return [net.s_layers()[0][-1]]
    net = models.get_model("lenet5", activation=name, output="linear", criterion="ce")
    return [st.act for st in net.stages if st.name in ("C1", "S2", "C3", "S4", "C5", "F6")]


@pytest.mark.parametrize("family", ["convnet", "mlp", "neocognitron", "lenet"])
@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_a_network_builds_each_accepted_activation_from_the_table_and_refuses_the_others(family, name):
    accepted = ACCEPTED["convnet" if family == "mlp" else family]
    if name not in accepted:
        with pytest.raises(ConfigError, match=f"activation.*{name}|{name}.*activation"):
            build_with_activation(family, name)
        return
    acts = build_with_activation(family, name)
    assert acts and all(type(m) is activations.ACTIVATIONS[name] for m in acts), acts


def test_scaled_tanh_is_lecuns_squashing_function():
    a = torch.tensor([1.0, -1.0, 0.0, 3.0])
    f = activations.ScaledTanh()(a)
    torch.testing.assert_close(f[:3], torch.tensor([1.0, -1.0, 0.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(f, 1.7159 * torch.tanh(2 * a / 3))
    stage = lenet_layers.Stage("A", lenet_layers.Dense("A", 2, 2), "scaled_tanh")
    assert isinstance(stage.act, activations.ScaledTanh) and lenet_layers.SQUASH_A is activations.SQUASH_A
