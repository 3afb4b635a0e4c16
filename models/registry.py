"""A tiny model registry, torchvision/timm style.

Each model variant is a builder function decorated with :func:`register_model`; its
name is the function's name. Every builder accepts ``in_channels``, ``num_classes``
and ``input_size`` (the side of the square input image) plus its own keyword
arguments, and returns a plain ``nn.Module`` whose forward maps images
``(B, in_channels, input_size, input_size)`` to class scores ``(B, num_classes)``.
"""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from .errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its own name; the name must be new."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """The names of all registered models, sorted (``models.list_models`` first imports the
    project's architecture modules, which register theirs)."""
    return sorted(_MODELS)


def get_model(name: str, weights: str | None = None, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs``; with ``weights`` (``"mnist"``), the
    trained network of that shipped set, in eval mode (:mod:`models.weights`)."""
    if weights is not None and name in _MODELS:
        from .weights import pretrained

        return pretrained(name, weights, **kwargs)
    if name not in _MODELS:
        raise ConfigError(
            f"unknown model {name!r}; registered models are: {', '.join(list_models())}"
        )
    builder = _MODELS[name]
    try:
        inspect.signature(builder).bind(**kwargs)
    except TypeError as e:  # an unknown or missing keyword argument
        raise ConfigError(f"model {name!r}: {e}") from None
    return builder(**kwargs)
