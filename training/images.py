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
from models.weights import transform_batch  # noqa: F401  (the evaluation transform; re-exported)

NORMALIZATIONS = ("standard", "lecun", "unit")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")
DECODER_VERSION = 3  # part of the image-folder cache key: a changed decoder rebuilds old caches (3: images over 2048 px reduced as read)


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


# --- framing a digit as MNIST's makers did ----------------------------------------------------------

FIELD, BOX = 28, 20  # MNIST: the ink's bounding box fitted in 20x20, centred by its centre of mass in 28x28
MIN_CONTRAST = 24  # grey levels between ink and paper below which an image holds no ink


class NoInkError(ImageError):
    """An image with nothing written on it (a blank page, a uniform or fully transparent image)."""


def _blocks(a, block: int, q: float):
    """The ``q``-th percentile of each ``block x block`` tile of the 2-D array ``a`` (edge tiles padded
    with their last row/column), then a 3x3 median over the tiles: a coarse map of the paper."""
    import numpy as np

    h, w = a.shape
    nh, nw = -(-h // block), -(-w // block)
    t = np.pad(a, ((0, nh * block - h), (0, nw * block - w)), mode="edge")
    grid = np.percentile(t.reshape(nh, block, nw, block).transpose(0, 2, 1, 3).reshape(nh, nw, -1), q, axis=2)
    g = np.pad(grid, 1, mode="edge")
    return np.median(np.stack([g[i:i + nh, j:j + nw] for i in range(3) for j in range(3)]), axis=0)


def _paper(a, q: float):
    """The paper's grey level at each pixel of ``a``: :func:`_blocks` with tiles an eighth of the short
    side, interpolated (bilinear) back to the image's size. Follows uneven light and ignores the ink,
    which covers less than ``100 - q`` percent of each neighbourhood of 3x3 tiles."""
    block = max(4, min(a.shape) // 8)
    grid = torch.from_numpy(_blocks(a, block, q).astype("float32"))[None, None]
    return F.interpolate(grid, size=a.shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def _smooth(a):
    """``a`` blurred by the 3x3 kernel [1, 2, 1]^T [1, 2, 1] / 16 (edges replicated): noise reduced,
    one-pixel lines kept at half their contrast."""
    x = F.pad(torch.from_numpy(a)[None, None], (1, 1, 1, 1), mode="replicate")
    k = torch.tensor([1.0, 2.0, 1.0]) / 4
    return F.conv2d(x, (k[:, None] * k[None, :])[None, None])[0, 0].numpy()


def _otsu(v) -> float:
    """Otsu's threshold (1979) of the values ``v`` (>= 0): the level that maximises the variance
    between the two sides, on a 256-bin histogram."""
    import numpy as np

    top = float(v.max())
    if top <= 0:
        return 0.0
    hist, edges = np.histogram(v, bins=256, range=(0.0, top))
    p = hist / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0, m0 = np.cumsum(p), np.cumsum(p * centres)
    w1, mt = 1 - w0, m0[-1]
    between = np.where((w0 > 0) & (w1 > 0), (mt * w0 - m0) ** 2 / np.maximum(w0 * w1, 1e-12), 0)
    return float(edges[int(between.argmax()) + 1])


def _components(mask):
    """Labels (int64, 0 = none) of the 8-connected components of the boolean 2-D array ``mask``: each
    pixel takes 1 + the smallest flat index in its component, by repeated 3x3 min-pooling, each step
    followed by pointer jumping (a pixel takes the label of the pixel its label names)."""
    m = torch.from_numpy(mask)
    n = m.numel()
    idx = torch.arange(n, dtype=torch.float32).view(m.shape)  # exact below 2^24 cells
    lab = torch.where(m, idx, torch.tensor(float(n)))
    while True:
        new = torch.where(m, -F.max_pool2d(-lab[None, None], 3, stride=1, padding=1)[0, 0], torch.tensor(float(n)))
        flat = torch.cat([new.flatten(), torch.tensor([float(n)])])
        new = torch.where(m, flat[new.long()].view(m.shape), new)
        if torch.equal(new, lab):
            break
        lab = new
    return torch.where(m, lab + 1, torch.tensor(0.0)).long().numpy()


def find_ink(grey, ink: str = "auto"):
    """Where the ink of a written digit is in the grey image ``grey`` (2-D float, 0..255): a dict with
    ``strength`` (float 0..1 per pixel: 0 the paper, 1 full ink, grey levels of the strokes' edges
    kept), ``box`` (``x0, y0, x1, y1``, inclusive) and ``dark`` (whether the ink is darker than the
    paper), or ``None`` when the image holds no ink.

    The paper's level is found robustly to uneven light and noise: a map of block percentiles
    (:func:`_paper`) is subtracted, the noise is measured by the median absolute deviation of what is
    left; the ink is darker than the paper when the border's median grey level is light, as
    :func:`decode_image`'s ``auto_invert`` decides (``ink="dark"`` or ``"light"`` decides it). Ink is what departs from the paper by more
    than Otsu's threshold, 4 noise deviations and 40% of the strongest mark (so that the faint lines of
    squared paper are not ink); 8-connected pieces of ink with less than 5% of the largest piece's
    area (specks of noise) are dropped. No ink: the strongest mark is below :data:`MIN_CONTRAST` grey
    levels or 6 noise deviations, or no piece is left.
    """
    import numpy as np

    a = np.ascontiguousarray(grey, dtype=np.float32)
    if ink == "auto":  # as decode_image's auto_invert: the border is paper; light paper, dark ink
        band = max(1, min(a.shape) // 32)
        dark = float(np.median(np.concatenate([a[:band].ravel(), a[-band:].ravel(), a[:, :band].ravel(),
                                                a[:, -band:].ravel()]))) > 127.5
    else:
        dark = ink == "dark"
    # the paper from the side away from the ink: right under a thick stroke when the ink covers < 75%
    res = (_paper(a, 75) - a) if dark else (a - _paper(a, 25))  # ink > 0
    noise = 1.4826 * float(np.median(np.abs(res - np.median(res))))
    rs = _smooth(res)
    noise_s = 1.4826 * float(np.median(np.abs(rs - np.median(rs))))
    v, vs = np.maximum(res, 0), np.maximum(rs, 0)
    top = float(vs.max())
    if top < max(MIN_CONTRAST, 6 * noise_s):
        return None
    t = max(_otsu(vs), 4 * noise_s, 0.4 * top)
    low = max(t / 2, 0.25 * top, 3 * noise_s)
    strong, weak = vs > t, vs > low
    # pieces of ink: the connected pieces of the weak mask (hysteresis, as Canny's edges), each
    # measured by its strong ink, on a grid of at most 128 cells a side (a cell holds ink if any pixel does)
    k = max(1, -(-max(a.shape) // 128))
    st, wt = (torch.from_numpy(m.astype(np.float32))[None, None] for m in (strong, weak))
    lab = _components(F.max_pool2d(wt, k, ceil_mode=True)[0, 0].numpy() > 0)
    area = F.avg_pool2d(st, k, ceil_mode=True, count_include_pad=False)[0, 0].numpy()
    sizes = np.bincount(lab.ravel(), weights=area.ravel())
    sizes[0] = 0
    keep = torch.from_numpy((sizes >= 0.05 * sizes.max())[lab].astype(np.float32))[None, None]
    keep = F.interpolate(keep, scale_factor=k, mode="nearest")[:, :, :a.shape[0], :a.shape[1]] * wt
    ink_px = keep[0, 0].numpy() > 0
    ys, xs = np.nonzero(ink_px & (v > low))
    if len(ys) == 0:
        ys, xs = np.nonzero(ink_px)
    around = F.max_pool2d(keep, 3, stride=1, padding=1)[0, 0].numpy() > 0  # and the strokes' grey edges
    full = float(np.percentile(v[ink_px & strong], 90)) if (ink_px & strong).any() else top
    floor = min(3 * noise, 0.5 * full)
    strength = np.where(around, np.clip((v - floor) / max(full - floor, 1e-6), 0, 1), 0).astype(np.float32)
    return {"strength": strength, "box": (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), "dark": dark}


STROKE = 2.7 / FIELD  # MNIST's median stroke width (2 x area / outline, pixels > 127), per pixel of the field


def stroke_width(strength) -> float:
    """The mean width of the strokes of ``strength`` (2-D, 0..1), in pixels: twice the area of the
    ink (> 0.5) over the number of its pixels on the outline."""
    import numpy as np

    m = np.asarray(strength) > 0.5
    p = np.pad(m, 1)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return 2 * float(m.sum()) / max(1, int((m & ~inner).sum()))


def frame_digit(strength, box: tuple[int, int, int, int], size: int = FIELD, normalize_stroke: bool = True):
    """``(field, (w, h))``: the ink ``strength`` (2-D, 0..1) cropped to ``box`` (``x0, y0, x1, y1``,
    inclusive), scaled (bilinear, antialiased) so that its longer side is ``20/28`` of ``size``
    keeping its aspect ratio, and placed in a ``size x size`` field of zeros with its centre of mass
    (rounded to a whole pixel) at the field's centre, as MNIST's digits were made (LeCun et al. 1998,
    section III.A); a float ``(size, size)`` tensor on 0..1, the scaled digit's width and height, and
    ``(before, after)``, the strokes' width in the field when ``normalize_stroke`` changed it (else
    None): strokes thinner than 0.6 or wider than 1.4 times MNIST's median (:data:`STROKE`), a paint
    program's one-pixel line or a thick marker, are spread or eroded (max/min filter) before scaling."""
    import numpy as np

    x0, y0, x1, y1 = box
    crop = torch.as_tensor(np.ascontiguousarray(strength[y0:y1 + 1, x0:x1 + 1]), dtype=torch.float32)
    h, w = crop.shape
    fit = max(1, round(size * BOX / FIELD))
    stroke = None
    if normalize_stroke:  # a paint program's thin line, a thick marker: strokes about as wide as MNIST's
        scale, target = fit / max(h, w), STROKE * size
        width = stroke_width(crop.numpy()) * scale
        r = round((target - width) / (2 * scale))
        if r != 0 and not 0.6 * target <= width <= 1.4 * target:
            crop = F.pad(crop, (abs(r),) * 4) if r > 0 else crop
            pool = (lambda c: F.max_pool2d(c, 2 * abs(r) + 1, stride=1, padding=abs(r))) if r > 0 else \
                (lambda c: -F.max_pool2d(-c, 2 * abs(r) + 1, stride=1, padding=abs(r)))
            crop = pool(crop[None, None])[0, 0]
            stroke = (width, stroke_width(crop.numpy()) * fit / max(crop.shape))
            h, w = crop.shape
    sh, sw = max(1, round(h * fit / max(h, w))), max(1, round(w * fit / max(h, w)))
    d = F.interpolate(crop[None, None], size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)[0, 0]
    d = d.clamp_(0, 1)
    mass = float(d.sum())
    cy = float((d.sum(1) * torch.arange(sh)).sum()) / mass if mass > 0 else (sh - 1) / 2
    cx = float((d.sum(0) * torch.arange(sw)).sum()) / mass if mass > 0 else (sw - 1) / 2
    top, left = round((size - 1) / 2 - cy), round((size - 1) / 2 - cx)
    field = torch.zeros(size, size)
    fy0, fx0 = max(0, top), max(0, left)
    fy1, fx1 = min(size, top + sh), min(size, left + sw)
    field[fy0:fy1, fx0:fx1] = d[fy0 - top:fy1 - top, fx0 - left:fx1 - left]
    return field, (sw, sh), stroke


def _colour_name(value: int) -> str:
    return "black" if value < 128 else "white"


MAX_SIDE = 2048  # a larger image is reduced (by an integer factor, box filter) as it is read


def open_image(path, max_side: int | None = MAX_SIDE):
    """The image file ``path`` opened and fully decoded by PIL (first frame), or an :class:`ImageError`
    that says why not (damaged bytes included: a PNG's chunk checksums are verified and the whole image
    is decoded, never with ``ImageFile.LOAD_TRUNCATED_IMAGES``). An image larger than ``max_side`` on
    a side is reduced while it is read (JPEG: decoded at a reduced scale with ``Image.draft``; others:
    ``Image.reduce``), so that no full-size float copy is ever made; ``img.info["reduced"]`` then
    holds the factor."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path} is a directory; pass image files (e.g. {path}/*.png)")
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    truncated, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        img = Image.open(path)
        if img.format == "PNG":
            img.verify()  # every chunk's CRC: a flipped byte is an error, not a silently wrong image
            img = Image.open(path)
        w, h = img.size
        factor = 1 if max_side is None else -(-max(w, h) // max_side)
        if factor > 1 and img.format == "JPEG":
            img.draft(img.mode, (-(-w // factor), -(-h // factor)))  # a power-of-2 scale, decoded directly
        img.load()
        factor = 1 if max_side is None else -(-max(img.size) // max_side)
        if factor > 1:
            if img.mode in ("P", "PA", "1") or img.mode.startswith("I;16"):  # modes Image.reduce lacks
                img = img.convert("I" if img.mode.startswith("I;16") else "L" if img.mode == "1"
                                  else "RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
            img = img.reduce(factor)
        if img.size != (w, h):
            img.info["reduced"], img.info["original_size"] = w / img.size[0], (w, h)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path} is too large to read: {str(e).splitlines()[0][:160]}") from None
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError) as e:
        if isinstance(e, PermissionError):
            raise ImageError(f"{path} cannot be read: permission denied") from None
        detail = "" if isinstance(e, UnidentifiedImageError) else f": {str(e).splitlines()[0][:120]}" if str(e) else ""
        raise ImageError(f"{path} is not an image that can be read (PNG, JPEG, GIF, WebP, BMP, TIFF){detail}") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated
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
    frame: bool = False,
) -> tuple[torch.Tensor, list[str]]:
    """A uint8 ``(channels, size, size)`` tensor of the image file (or PIL image) ``source``, and the
    notices about what was converted (see the module's docstring).

    ``background`` (0 or 255): the background of the training images, used for transparent parts
    and for padding a non-square image. ``invert``: invert the grey levels (always).
    ``auto_invert``: invert when the border's median grey level is on the other side of mid-grey
    from ``background`` (a dark digit on light paper for a model of light-on-dark digits).
    ``size=None`` keeps the image's own size (and shape). ``frame`` (a grey model of digits, with
    ``size``): the ink is found, cropped, scaled and centred as MNIST's digits were
    (:func:`find_ink`, :func:`frame_digit`) instead of padding and resizing the whole image; its
    polarity is found from the image with ``auto_invert``, else it is the model's (inverted with
    ``invert``). Raises :class:`ImageError`, :class:`NoInkError` for an image with no ink when framing.
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
    if "reduced" in img.info:
        ow, oh = img.info["original_size"]
        notices.append(f"reduced from {ow}x{oh} to {img.size[0]}x{img.size[1]} as it was read")
    h, w, c = a.shape
    frame = frame and size is not None and channels == 1
    square = size is None or (h == w == size)
    if a.dtype == np.uint8 and alpha is None and c in (channels, 1) and square and not invert and not auto_invert \
            and not frame:
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
    if frame:
        return _framed(x[0].numpy(), size, background, "auto" if auto_invert and not invert else
                       "dark" if (background < 128) == invert else "light", img, source, notices)
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


def _framed(grey, size: int, background: int, ink: str, img, source, notices: list[str]):
    """:func:`decode_image`'s framing: the digit found in ``grey`` framed as MNIST's, as a uint8
    ``(1, size, size)`` tensor in the model's polarity, and the notices with what was done."""
    found = find_ink(grey, ink)
    name = source if not hasattr(source, "mode") else "the image"
    if found is None:
        raise NoInkError(f"{name}: no ink found (a blank image): no answer")
    field, (sw, sh), stroke = frame_digit(found["strength"], found["box"], size)
    f = img.info.get("reduced", 1.0)
    x0, y0, x1, y1 = (round(c * f) for c in found["box"])
    w, h = img.info.get("original_size", (grey.shape[1], grey.shape[0]))
    model_dark = background >= 128
    notices.append(f"cropped the {'dark' if found['dark'] else 'light'} ink ({x0},{y0})-({x1},{y1}) of {w}x{h}, "
                   f"scaled to {sw}x{sh} and centred by its centre of mass in {size}x{size}, as MNIST's digits"
                   + (f", inverted to {'dark' if model_dark else 'light'} ink on {'light' if model_dark else 'dark'} as "
                      "the model's" if found["dark"] != model_dark else "")
                   + (f", strokes {'thickened' if stroke[1] > stroke[0] else 'thinned'} from {stroke[0]:.1f} to "
                      f"{stroke[1]:.1f} pixels wide as MNIST's" if stroke else "") + " (--no-crop keeps the whole image)")
    x = field * 255 if background < 128 else 255 - field * 255
    return x[None].round_().clamp_(0, 255).to(torch.uint8).contiguous(), notices
