"""Image files to uint8 tensors, and the evaluation transform: plain PIL and torch, no Lightning.

:func:`decode_image` is the one decoder of the project: ``predict.py`` classifies files with it and
the image-folder data (:func:`training.data.load_image_folder`, also CIFAR-10 from PNG folders) read
their training images with it, so a file is converted the same way in training and in prediction:

- 16-bit grey (PIL modes ``I;16``, ``I;16B``, ``I``) is scaled to 8 bits, ``round(v * 255 / 65535)``
  (an 8-bit image stored as 16 bits, ``v * 257``, decodes to exactly its 8-bit values);
- transparency (``LA``, ``RGBA``, a palette or grey/RGB PNG with a transparent colour) is composited
  over the background the model was trained on (black for MNIST-style light-on-dark digits); strokes
  of the background's own colour (a black pen on a transparent canvas, for a black background) are
  composited over the opposite colour instead, so that they stay visible;
- the channel count is converted (colour to grey with ITU-R 601 luma weights, grey to colour by
  repeating it);
- a non-square image is padded to a square with the background, centred (its aspect ratio is kept),
  then resized (bilinear, antialiased) to the model's size;
- ``auto_invert``: an image whose border is light, for a model trained on a dark background (or
  the reverse), is inverted.

Each conversion is named in the notices returned beside the tensor (predict.py prints them).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from models.errors import ImageError

NORMALIZATIONS = ("standard", "lecun", "unit")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")
DECODER_VERSION = 2  # part of the image-folder cache key: a changed decoder rebuilds old caches


# the data modules whose images are light strokes on black
MNIST_FAMILY = ("MNISTDataModule", "FashionMNISTDataModule", "KMNISTDataModule")


def training_background(state: dict | None, in_channels: int) -> tuple[int, bool]:
    """``(background, clear)``: the grey level (0 or 255) of the training images' background, and
    whether they have a clear one (light strokes on dark or the reverse, as MNIST's digits), which is
    when an image of the opposite polarity is worth inverting. The MNIST family: black, clear. Other
    data: from the mean grey level saved in the checkpoint (< 0.5: black; clear below 0.35 or above
    0.65; CIFAR-10's 0.47 has no clear background)."""
    state = state or {}
    if str(state.get("target", "")).rsplit(".", 1)[-1] in MNIST_FAMILY:
        return 0, True
    mean = state.get("mean")
    if mean:
        m = sum(mean) / len(mean)
        return (0 if m < 0.5 else 255), (m < 0.35 or m > 0.65)
    return 0, in_channels == 1


def transform_batch(
    x: torch.Tensor,
    mean: list[float],
    std: list[float],
    normalize: str = "standard",
    resize: int | None = None,
) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> normalised float batch, on whatever device ``x`` is.

    ``standard``: (x/255 - mean) / std, as torchvision's ToTensor + Normalize.
    ``lecun``: background (0) -> -0.1, foreground (255) -> 1.175 (LeCun et al. 1998, II.B).
    ``unit``: x / 255.
    """
    x = x.float().div_(255.0)
    if resize is not None and x.shape[-1] != resize:
        x = F.interpolate(x, size=(resize, resize), mode="bilinear", antialias=True, align_corners=False)
    if normalize == "standard":
        m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
        x = (x - m) / s
    elif normalize == "lecun":
        x = x * 1.275 - 0.1
    return x


def _colour_name(value: int) -> str:
    return "black" if value < 128 else "white"


def open_image(path):
    """The image file ``path`` opened and decoded by PIL (first frame), or an :class:`ImageError`
    that says why not."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path} is a directory; pass image files (e.g. {path}/*.png)")
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError, Image.DecompressionBombError) as e:
        if isinstance(e, PermissionError):
            raise ImageError(f"{path} cannot be read: permission denied") from None
        detail = "" if isinstance(e, UnidentifiedImageError) else f": {str(e).splitlines()[0][:120]}" if str(e) else ""
        raise ImageError(f"{path} is not an image that can be read (PNG, JPEG, GIF, WebP, BMP, TIFF){detail}") from None
    return img


def _to_array(img):
    """``(values, alpha, note)``: float32 or uint8 ``(H, W, C)`` values on the 0..255 scale, the alpha
    channel (uint8 ``(H, W)``) or None when the image is opaque, and a notice about the bit depth."""
    import numpy as np

    mode, note = img.mode, None
    if mode.startswith("I;16") or mode == "I":  # 16-bit grey (a 32-bit "I" image is read as 16 bits)
        a = np.asarray(img).astype(np.float32)
        if mode == "I":
            a = a.clip(0, 65535)
        return (a * (255.0 / 65535.0))[..., None], None, "scaled from 16 to 8 bits"
    if mode == "F":  # 32-bit float grey: 0..1 or 0..255
        a = np.nan_to_num(np.asarray(img, dtype=np.float32))
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return (a * scale).clip(0, 255)[..., None], None, None
    if "transparency" in img.info or mode in ("PA", "RGBa", "La"):
        img = img.convert("RGBA") if mode != "La" else img.convert("LA")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGB")  # palette, CMYK, YCbCr, LAB, HSV, ...
    a = np.array(img)  # a writable copy
    if a.ndim == 2:
        a = a[..., None]
    alpha = None
    if img.mode in ("LA", "RGBA"):
        a, alpha = a[..., :-1], a[..., -1]
        if alpha.min() == 255:
            alpha = None
    return a, alpha, note


def decode_image(
    source,
    channels: int,
    size: int | None = None,
    *,
    background: int = 0,
    invert: bool = False,
    auto_invert: bool = False,
) -> tuple[torch.Tensor, list[str]]:
    """A uint8 ``(channels, size, size)`` tensor of the image file (or PIL image) ``source``, and the
    notices about what was converted (see the module's docstring).

    ``background`` (0 or 255): the background of the training images, used for transparent parts
    and for padding a non-square image. ``invert``: invert the grey levels (always).
    ``auto_invert``: invert when the border's median grey level is on the other side of mid-grey
    from ``background`` (a dark digit on light paper for a model of light-on-dark digits).
    ``size=None`` keeps the image's own size (and shape). Raises :class:`ImageError`.
    """
    import numpy as np

    img = source if hasattr(source, "mode") else open_image(source)
    notices: list[str] = []
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:
        orientation = 1
    if orientation not in (None, 1):  # a photo taken sideways: turn it as viewers show it
        from PIL import ImageOps

        img = ImageOps.exif_transpose(img)
    a, alpha, note = _to_array(img)
    if note:
        notices.append(note)
    h, w, c = a.shape
    square = size is None or (h == w == size)
    if a.dtype == np.uint8 and alpha is None and c in (channels, 1) and square and not invert and not auto_invert:
        x = torch.from_numpy(a).permute(2, 0, 1)  # the common case: no arithmetic
        if c != channels:
            notices.append(f"converted from {c} to {channels} channel(s)")
            x = x.expand(channels, -1, -1)
        return x.contiguous(), notices

    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)
    if alpha is not None:
        al = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32)).div_(255.0)[None]
        lum = x[0] if c == 1 else sum(wt * ch for wt, ch in zip(LUMA, x))
        ink = al[0] >= 0.5
        under = background
        if ink.any() and bool(ink.logical_not().any()):
            ink_dark = float(lum[ink].mean()) < 127.5
            if ink_dark == (background < 128):  # strokes the background's colour: keep them visible
                under = 255 - background
        x = x * al + under * (1 - al)
        if under == background:
            notices.append(f"transparent parts composited over {_colour_name(background)} (the model's background)")
        else:
            notices.append(f"transparent parts composited over {_colour_name(under)}, so that its "
                           f"{'dark' if under > 127 else 'light'} strokes stay visible")
    if c != channels:
        notices.append(f"converted from {c} to {channels} channel(s)")
        if channels == 1:
            x = sum(wt * ch for wt, ch in zip(LUMA, x))[None]
        else:
            x = x.repeat(channels, 1, 1)
    if invert:
        x = 255.0 - x
    elif auto_invert:
        band = max(1, min(h, w) // 32)
        frame = torch.cat([x[:, :band].flatten(), x[:, -band:].flatten(), x[:, :, :band].flatten(), x[:, :, -band:].flatten()])
        border = float(frame.median())
        if (border > 127.5) != (background > 127.5):
            x = 255.0 - x
            notices.append(
                f"inverted: its border is {'light' if border > 127.5 else 'dark'} (median grey level {border:.0f}) and the "
                f"model was trained on a {'dark' if background < 128 else 'light'} background (--no-auto-invert keeps it as it is)"
            )
    if size is not None:
        if h != w:
            s = max(h, w)
            top, left = (s - h) // 2, (s - w) // 2
            x = F.pad(x, (left, s - w - left, top, s - h - top), value=float(background))
            notices.append(f"padded from {w}x{h} to {s}x{s} with {_colour_name(background)}, keeping its aspect ratio")
            h = w = s
        if (h, w) != (size, size):
            notices.append(f"resized from {w}x{h} to {size}x{size}")
            x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return x.round_().clamp_(0, 255).to(torch.uint8).contiguous(), notices
