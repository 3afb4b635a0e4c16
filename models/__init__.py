"""Neocognitron and LeNet-style networks in PyTorch.

``get_model(name, **kwargs)`` builds a registered network; ``list_models()`` names them.
Importing the architecture modules below registers their builders.
"""

from omegaconf import OmegaConf

from . import convnet, lenet, neocognitron, ops  # noqa: F401  (registers the models)
from .errors import CheckpointError, ConfigError, DataError, ImageError, UserError
from .registry import get_model, list_models, register_model

# ${coalesce:a,b}: the first of its arguments that is not null (e.g. image size after an optional resize)
if not OmegaConf.has_resolver("coalesce"):
    OmegaConf.register_new_resolver("coalesce", lambda *args: next((a for a in args if a is not None), None))

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
