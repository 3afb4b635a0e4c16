"""Scanning an MLP is a CNN ("Convolutional Networks II", slides 2-4, 40 and 69).

:func:`mlp_to_conv` turns an MLP applied to every ``N x N`` block at stride ``S`` into a stack
of conv layers (``N x N`` filters first, then ``1 x 1``); :func:`scan_mlp` runs the MLP on the
blocks directly, for comparison.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .auto import Conv2d
from .conv import unfold_patches

__all__ = ["mlp_to_conv", "scan_mlp"]


_ELEMENTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU, nn.Softplus,
    nn.Hardtanh, nn.Identity, nn.Dropout,
)


def _mlp_layers(mlp: nn.Module | Iterable[nn.Module]) -> list[nn.Module]:
    layers = list(mlp.children()) if isinstance(mlp, nn.Module) else list(mlp)
    if isinstance(mlp, nn.Linear):
        layers = [mlp]
    if layers and isinstance(layers[0], nn.Flatten):
        layers = layers[1:]
    for layer in layers:
        if not isinstance(layer, (nn.Linear, *_ELEMENTWISE)):
            raise ConfigError(
                f"mlp_to_conv: the MLP may hold only nn.Linear and element-wise activations, "
                f"found {type(layer).__name__}"
            )
    if not layers or not isinstance(layers[0], nn.Linear):
        raise ConfigError("mlp_to_conv: the MLP must start with an nn.Linear layer")
    return layers


def mlp_to_conv(mlp: nn.Module, block_size: int, stride: int = 1, in_channels: int = 1,
                algorithm: str = "direct") -> nn.Sequential:
    """The CNN that computes ``mlp`` on every ``N x N`` block at stride ``S`` (slide 40).

    The MLP reads a block flattened in ``(channel, row, column)`` order, i.e.
    ``x[:, :, i:i+N, j:j+N].flatten(1)``. Its first ``nn.Linear(C N^2, H1)`` becomes ``H1``
    filters of size ``N x N`` over ``C`` maps at stride ``S``; every later ``nn.Linear(H, H')``
    becomes ``H'`` ``1 x 1`` filters (a perceptron over the depth of the maps, slide 69);
    activations stay as they are. The weights are copied, so the result is independent of
    ``mlp``. Output: ``(B, H_last, H_out, W_out)`` with ``H_out = floor((H - N) / S) + 1``.
    """
    layers = _mlp_layers(mlp)
    first = layers[0]
    if first.in_features != in_channels * block_size * block_size:
        raise ConfigError(
            f"mlp_to_conv: the first Linear layer reads {first.in_features} inputs, but a "
            f"{block_size}x{block_size} block of {in_channels} map(s) has "
            f"{in_channels * block_size * block_size}; fix block_size or in_channels"
        )
    convs: list[nn.Module] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            if i == 0:
                conv = Conv2d(in_channels, layer.out_features, block_size, stride,
                              bias=layer.bias is not None, algorithm=algorithm)
            else:
                conv = Conv2d(layer.in_features, layer.out_features, 1,
                              bias=layer.bias is not None, algorithm=algorithm)
            with torch.no_grad():
                conv.weight.copy_(layer.weight.reshape(conv.weight.shape))
                if layer.bias is not None:
                    conv.bias.copy_(layer.bias)
            convs.append(conv)
        else:
            convs.append(layer)
    return nn.Sequential(*convs).to(first.weight.device)


def scan_mlp(mlp: nn.Module, x: Tensor, block_size: int, stride: int = 1) -> Tensor:
    """Run ``mlp`` separately on every ``N x N`` block of ``x`` at stride ``S`` (the slow,
    literal form of slide 40). Returns ``(B, outputs, H_out, W_out)``, like :func:`mlp_to_conv`."""
    blocks = unfold_patches(x, block_size, block_size, stride, stride)  # (B, C, Ho, Wo, N, N)
    b, _, ho, wo = blocks.shape[:4]
    flat = blocks.permute(0, 2, 3, 1, 4, 5).reshape(b, ho, wo, -1)  # (c, row, col) order
    for layer in _mlp_layers(mlp):  # (a leading nn.Flatten is skipped: blocks come flat)
        flat = layer(flat)
    return flat.permute(0, 3, 1, 2)
