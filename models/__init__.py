"""The lecture's operations and the networks: plain PyTorch (no Lightning, Hydra, torchmetrics or
TensorBoard; a test checks it).

``get_model(name, **kwargs)`` builds a registered network; ``list_models()`` names them;
``get_model(name, weights="mnist")`` gives a trained one, ``list_weights()`` the shipped sets.
Importing the package is cheap: the registry and the architecture modules (``models.lenet``,
``models.ops``, ...) load when first used, so that ``train.py --help`` answers without torch.
"""

from __future__ import annotations

import importlib

from .errors import CheckpointError, ConfigError, DataError, ImageError, UserError

_REGISTRY_NAMES = ("get_model", "list_models", "register_model")
_WEIGHTS_NAMES = ("list_weights",)
_ARCHITECTURES = ("convnet", "lenet", "neocognitron", "neocognitron_fukushima")  # convnet also registers mlp
_SUBMODULES = ("activations", "blocks", "cells", "checks", "convnet", "errors", "lenet", "lenet_layers", "neocognitron",
               "neocognitron_fukushima", "ops", "registry", "sdlm", "weights")


def __getattr__(name: str):
    """``models.get_model`` / ``list_models`` / ``register_model`` (with the built-in models
    registered) and ``models.<submodule>``, imported on first use."""
    if name in _REGISTRY_NAMES:
        for arch in _ARCHITECTURES:  # importing them registers their builders
            importlib.import_module(f".{arch}", __name__)
        return getattr(importlib.import_module(".registry", __name__), name)
    if name in _WEIGHTS_NAMES:
        return getattr(importlib.import_module(".weights", __name__), name)
    if name in _SUBMODULES:
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_REGISTRY_NAMES) | set(_WEIGHTS_NAMES) | set(_SUBMODULES))


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ImageError",
    "UserError",
    "get_model",
    "list_models",
    "list_weights",
    "register_model",
]
