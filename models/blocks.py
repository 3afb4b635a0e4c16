"""The two blocks :class:`~models.convnet.ConvNet` and the supervised
:class:`~models.neocognitron.Neocognitron` are built from, written once.

* :func:`conv_block`: ``[zero padding] -> conv -> [batch norm] -> activation``, with an optional
  pooling layer after the activation or, with ``pool_first``, right after the convolution. An
  asymmetric ``(P_L, P_R)`` padding (``same`` with an even kernel: the extra row/column goes
  right/bottom, :func:`models.ops.same_padding`) is a ``ZeroPad2d`` before an unpadded
  convolution; a symmetric one is the convolution's own ``padding``.
* :func:`mlp_head`: flatten the maps, then ``Linear -> activation`` per hidden width, then the
  linear class scores, with dropout.
* :func:`check_padding`: a padding setting as ``(P_L, P_R)``.

The layers are returned in forward order, so a network's ``nn.Sequential`` of them gives the
state-dict keys the network always had (``features.0.weight``, ``stages.0.0.0.weight``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from .activations import activation as make_activation
from .checks import check_positive_int, is_int, refuse
from .ops import same_padding


def check_padding(where: str, key: str, v: Any, kernel: int, *, pairs: bool = False) -> tuple[int, int]:
    """``(P_L, P_R)`` for a padding setting: ``"same"`` (:func:`models.ops.same_padding`), an
    integer ``>= 0`` (both sides), or with ``pairs`` a ``[left, right]`` pair of them."""
    if v == "same":
        return same_padding(kernel)
    if is_int(v) and v >= 0:
        return v, v
    if pairs and isinstance(v, (tuple, list)) and len(v) == 2 and all(is_int(p) and p >= 0 for p in v):
        return v[0], v[1]
    must = "'same', an integer >= 0 or a [left, right] pair" if pairs else "an integer >= 0 or 'same'"
    raise refuse(where, key, must, v)


def conv_block(in_maps: int, out_maps: int, kernel: int, stride: int, pads: tuple[int, int], *,
               batch_norm: bool, activation: str, pool: nn.Module | None = None,
               pool_first: bool = False) -> list[nn.Module]:
    """The layers of ``[ZeroPad2d] -> Conv2d -> [BatchNorm2d] -> activation -> [pool]``
    (``pool_first``: ``-> Conv2d -> pool -> [BatchNorm2d] -> activation``).

    ``pads`` is ``(P_L, P_R)``, the same for rows and columns; the convolution has no bias when a
    batch norm follows (its shift would cancel it). Sizes are the caller's to check
    (:func:`models.ops.check_conv`, :func:`models.ops.check_pool`), with its own layer names.
    """
    p_l, p_r = pads
    layers: list[nn.Module] = []
    if p_l != p_r:
        layers.append(nn.ZeroPad2d((p_l, p_r, p_l, p_r)))
        p_l = 0
    layers.append(nn.Conv2d(in_maps, out_maps, kernel, stride, p_l, bias=not batch_norm))
    if pool is not None and pool_first:
        layers.append(pool)
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_maps))
    layers.append(make_activation(activation))
    if pool is not None and not pool_first:
        layers.append(pool)
    return layers


def mlp_head(where: str, width: int, hidden: Sequence[Any], num_classes: int, *, activation: str = "relu",
             dropout: float = 0.0, dropout_before: bool = False) -> nn.Sequential:
    """``Flatten -> (Linear -> activation) per width in hidden -> Linear(num_classes)``, from ``width`` inputs.

    Dropout with probability ``dropout``: after each hidden activation when it is not 0
    (``dropout_before=False``, ConvNet's head), or before every Linear, the output's too, even at
    0 (``dropout_before=True``, the Neocognitron's decision layer). Each hidden width must be a
    positive integer; the error names ``{where} layer {j}``.
    """
    head: list[nn.Module] = [nn.Flatten()]
    for j, h in enumerate(hidden):
        h = check_positive_int(f"{where} layer {j}", "width", h)
        if dropout_before:
            head.append(nn.Dropout(dropout))
        head += [nn.Linear(width, h), make_activation(activation)]
        if dropout and not dropout_before:
            head.append(nn.Dropout(dropout))
        width = h
    if dropout_before:
        head.append(nn.Dropout(dropout))
    head.append(nn.Linear(width, num_classes))
    return nn.Sequential(*head)
