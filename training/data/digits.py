"""LeNet-1's input [1998, III.C]: the digits "downsampled to 16x16 pixels and centered in the 28x28
input layer". MNIST's digits are size-normalised to a 20x20 box and centred by their centre of mass
in 28x28; :func:`fit_digits` takes each digit's bounding box (its non-background pixels), scales it
so its longer side is ``size`` pixels (the aspect ratio kept, antialiased bilinear), and pastes it
with its box centred in a ``canvas`` x ``canvas`` field of background."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_digits(x: torch.Tensor, size: int = 16, canvas: int = 28) -> torch.Tensor:
    """``x``: (N, 1, H, W) images, background 0 (uint8 or float). Returns float (N, 1, canvas,
    canvas) in ``x``'s value range; an empty image stays empty."""
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"fit_digits takes (N, 1, H, W) images, got shape {tuple(x.shape)}")
    if not 0 < size <= canvas:
        raise ValueError(f"fit_digits: size must be in 1..canvas ({canvas}), got {size}")
    xf = x.float()
    out = torch.zeros(x.shape[0], 1, canvas, canvas)
    rows, cols = xf[:, 0].amax(2) > 0, xf[:, 0].amax(1) > 0  # which rows / columns hold ink
    for i in range(x.shape[0]):
        r, c = rows[i].nonzero().flatten(), cols[i].nonzero().flatten()
        if len(r) == 0:
            continue
        box = xf[i:i + 1, :, r[0]:r[-1] + 1, c[0]:c[-1] + 1]
        h, w = box.shape[2:]
        k = size / max(h, w)
        nh, nw = max(1, round(h * k)), max(1, round(w * k))
        small = F.interpolate(box, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (canvas - nh) // 2, (canvas - nw) // 2
        out[i, :, top:top + nh, left:left + nw] = small[0]
    return out
