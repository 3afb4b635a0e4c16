"""Refuse a batch that cannot fit in memory before it is allocated.

``data.batch_size=10000000`` would otherwise be killed by the kernel's out-of-memory killer
(no message, no checkpoint) or fail deep in a convolution on a GPU. The estimate is the sum of
the outputs of the network's layers for one image (measured by a forward pass of one image with
hooks on the leaf modules), times the batch, times a factor for what training keeps besides
(the saved activations, their gradients and temporaries), against the memory the device has
free: ``MemAvailable`` on Linux, ``torch.cuda.mem_get_info`` on a GPU. Where the free memory
cannot be read, nothing is checked.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.errors import ConfigError

#: bytes kept per byte of forward output: training (outputs, their gradients, the backward's
#: temporaries), evaluation (outputs and temporaries, no autograd)
TRAIN_FACTOR, EVAL_FACTOR = 4.0, 2.0


def activation_bytes_per_image(net: torch.nn.Module, image: torch.Tensor) -> int:
    """Bytes of every leaf module's output for one ``(C, H, W)`` image (no autograd)."""
    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if torch.is_tensor(t):
                total += t.numel() * t.element_size()

    leaves = [m for m in net.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(image[None].to(next(iter(net.parameters()), image).device))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return total + image.numel() * 4  # the float input itself


def available_bytes(device: torch.device) -> int | None:
    """The memory free on ``device`` now, or None where it cannot be read."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:
            return None
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_batches_fit(net: torch.nn.Module, image: torch.Tensor, sizes: dict[str, tuple[int, int]],
                      device: torch.device) -> None:
    """``sizes``: ``{setting: (batch size, images in its split)}``, e.g. ``{"data.batch_size": (128,
    55000)}``; a :class:`ConfigError` for the first batch whose estimate exceeds the free memory."""
    free = available_bytes(device)
    if free is None:
        return
    per_image = activation_bytes_per_image(net, image)
    for key, (batch, n) in sizes.items():
        effective = min(batch, n) if n else batch
        factor = TRAIN_FACTOR if key == "data.batch_size" else EVAL_FACTOR
        need = effective * per_image * factor
        if need > free:
            fits = max(1, int(free / (per_image * factor)))
            suggest = 1 << (fits.bit_length() - 1)  # a power of two that fits
            whole = f" (the whole split: {n:,} images)" if n and batch >= n else ""
            raise ConfigError(
                f"{key}={batch}{whole} needs about {need / 2**30:.1f} GiB for this network's activations, but "
                f"{device.type.upper()} memory has {free / 2**30:.1f} GiB free: it would be killed for lack of memory. "
                f"Use {key}={min(suggest, 4096)} or less"
            )
