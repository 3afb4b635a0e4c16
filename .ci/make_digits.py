"""Write a small MNIST look-alike in torchvision's layout, with numpy only (no scikit-learn: CI's
first step runs in a virtual environment with the runtime dependencies alone).

    python .ci/make_digits.py DIR [--train 600] [--test 200] [--seed 0]

writes DIR/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte: 28x28 light-on-dark digits
drawn from a 5x7 bitmap font, each at a random scale (2 or 3 pixels per font pixel), position and
brightness, with noise; labels 0..9 in turn.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

FONT = {
    0: ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    1: ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    2: ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    3: ["11111", "00010", "00100", "00010", "00001", "10001", "01110"],
    4: ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    5: ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    6: ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    7: ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    8: ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    9: ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
}


def digits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (n, 28, 28) uint8 and their labels (n,) uint8."""
    images = np.zeros((n, 28, 28), dtype=np.float32)
    labels = np.arange(n) % 10
    for i, label in enumerate(labels):
        glyph = np.array([[c == "1" for c in row] for row in FONT[int(label)]], dtype=np.float32)
        scale = int(rng.integers(2, 4))
        g = np.kron(glyph, np.ones((scale, scale), dtype=np.float32))
        top = int(rng.integers(2, 28 - g.shape[0] - 1))
        left = int(rng.integers(2, 28 - g.shape[1] - 1))
        images[i, top:top + g.shape[0], left:left + g.shape[1]] = g * rng.uniform(0.7, 1.0)
    images += rng.normal(0.0, 0.05, images.shape).astype(np.float32)
    return (images.clip(0, 1) * 255).round().astype(np.uint8), labels.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (MNIST's format): magic 0x0000 08 <ndim>, big-endian sizes, then the uint8 data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path)
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    raw = args.root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", args.train), ("t10k", args.test)):
        x, y = digits(n, rng)
        write_idx(raw / f"{split}-images-idx3-ubyte", x)
        write_idx(raw / f"{split}-labels-idx1-ubyte", y)
    print(f"wrote {args.train} training and {args.test} test digits to {raw}")


if __name__ == "__main__":
    main()
