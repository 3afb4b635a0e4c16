"""Neocognitron and LeNet-style networks in PyTorch.

``get_model(name, **kwargs)`` builds a registered network; ``list_models()`` names them.
Importing the architecture modules below registers their builders.
"""

from . import convnet, lenet, neocognitron, ops  # noqa: F401  (registers the models)
from .errors import CheckpointError, ConfigError, DataError, ImageError, UserError
from .registry import get_model, list_models, register_model

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
