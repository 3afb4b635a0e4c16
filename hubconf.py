"""torch.hub entry points: every registered network, with or without shipped weights.

    import torch
    net = torch.hub.load("<this repository's folder>", "lenet5", source="local", weights="mnist")

One entry point per registered model (``models.list_models()``), each
``models.get_model(<name>, weights=..., **kwargs)``; ``python -m models.weights``
lists the shipped sets.
"""

dependencies = ["torch"]

import models as _models  # noqa: E402


def _entry(name: str):
    def entry(weights: str | None = None, **kwargs):
        return _models.get_model(name, weights=weights, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"models.get_model({name!r}, weights=..., **kwargs): weights, e.g. 'mnist', or None for a fresh net"
    return entry


for _name in _models.list_models():
    globals()[_name] = _entry(_name)
