"""Classify image files with a trained checkpoint and print the top classes.

    python predict.py <checkpoint>.ckpt digit.png photo.jpg [--topk 3] [--invert]

Any size, grey or colour: each image is converted to the channel count and resized
to the size the model was trained on (with a notice), then normalised as in training.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from models.classifier import Classifier, checkpoint_data_state
from models.cli import friendly_errors
from models.data import transform_batch
from models.errors import ImageError


def load_image(path: Path, channels: int, size: int, invert: bool = False) -> tuple[torch.Tensor, list[str]]:
    """A uint8 ``(channels, size, size)`` tensor, and the notices about what was converted."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path} is a directory; pass image files (e.g. {path}/*.png)")
    try:
        img = decode_image(read_file(str(path)), mode=ImageReadMode.UNCHANGED)
    except Exception:
        raise ImageError(f"{path} is not an image that can be read (PNG, JPEG, GIF, WebP)") from None
    notices = []
    if img.shape[0] == 4:  # drop alpha
        img = img[:3]
    if img.shape[0] != channels:
        notices.append(f"converted from {img.shape[0]} to {channels} channel(s)")
        img = img.float().mean(0, keepdim=True) if channels == 1 else img.expand(3, -1, -1).float()
    if tuple(img.shape[-2:]) != (size, size):
        notices.append(f"resized from {img.shape[2]}x{img.shape[1]} to {size}x{size}")
        img = F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True)[0]
    img = img.round().clamp(0, 255).to(torch.uint8)
    if invert:
        img = 255 - img
    return img, notices


def predict(ckpt_path: str, images: list[str], topk: int = 3, invert: bool = False) -> list[list[tuple[str, float]]]:
    model, ckpt = Classifier.load_with_checkpoint(ckpt_path)
    hp = model.hparams
    state = checkpoint_data_state(ckpt) or {}
    classes = state.get("classes") or [str(i) for i in range(hp.num_classes)]
    data_hp = state.get("hparams", {})
    results = []
    for name in images:
        x, notices = load_image(Path(name), hp.in_channels, hp.input_size, invert)
        for n in notices:
            print(f"note: {name}: {n}", file=sys.stderr)
        x = transform_batch(x[None], state.get("mean", [0.5] * hp.in_channels), state.get("std", [0.5] * hp.in_channels),
                            data_hp.get("normalize", "standard"))
        with torch.no_grad():
            probs = model(x).softmax(dim=1)[0]
        p, i = probs.topk(min(topk, len(probs)))
        results.append([(classes[j], float(q)) for q, j in zip(p.tolist(), i.tolist())])
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt file written by train.py")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--topk", type=int, default=3, help="how many classes to print per image")
    parser.add_argument("--invert", action="store_true", help="invert grey levels (dark digits on light paper)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.debug:
        os.environ["NEOLENET_DEBUG"] = "1"
    with friendly_errors():
        results = predict(args.checkpoint, args.images, args.topk, args.invert)
    for name, top in zip(args.images, results):
        print(f"{name}: " + ", ".join(f"{c} ({p:.3f})" for c, p in top))


if __name__ == "__main__":
    main()
