"""Neocognitron and LeNet-style networks in PyTorch.

``get_model(name, **kwargs)`` builds a registered network; ``list_models()`` names them.

Importing the package is cheap: it registers the config resolvers (:mod:`models.resolvers`) and
the error types, and nothing that imports torch. The registry, the architecture modules and the
submodules (``models.data``, ``models.ops``, ...) load when first used, so that ``train.py --help``
answers without importing torch or Lightning.
"""

from __future__ import annotations

import importlib

from . import resolvers  # noqa: F401  (${coalesce:} and ${run_stamp:}, before Hydra composes a config)
from .errors import CheckpointError, ConfigError, DataError, ImageError, UserError

_REGISTRY_NAMES = ("get_model", "list_models", "register_model")
_SUBMODULES = ("callbacks", "checkpoint", "classifier", "cli", "convnet", "data", "distributed", "images", "lenet",
               "neocognitron", "neocognitron_fukushima", "ops", "quiet", "registry", "sdlm", "sweep", "tb_callbacks",
               "visualize")


def __getattr__(name: str):
    """``models.get_model`` / ``list_models`` / ``register_model`` (with the built-in models
    registered) and ``models.<submodule>``, imported on first use."""
    if name in _REGISTRY_NAMES:
        registry = importlib.import_module(".registry", __name__)
        registry._load_builtin()
        return getattr(registry, name)
    if name in _SUBMODULES:
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_REGISTRY_NAMES) | set(_SUBMODULES))


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ImageError",
    "UserError",
    "get_model",
    "list_models",
    "register_model",
]
