"""Digits as people write them (issue 25, part 2): training/images.py frames the ink of an image as
MNIST's makers framed theirs (find_ink, frame_digit; LeCun et al. 1998, section III.A), so that a
digit on a sheet of paper, in a corner, at one end of a strip, in a photo, with a marker or a thin
pen, or on squared paper reads as the same digit cropped to 28x28. Blank images give no answer;
damaged and huge files are errors or are reduced, not classified silently or read into gigabytes.

The digits are scikit-learn's (tests/conftest.py ``digits_28``), framed as MNIST's; a small MLP
trained here on them for a second or two is the classifier. Every image is made here."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

import predict as predict_script
from models.errors import ImageError
from training.images import NoInkError, decode_image, find_ink, frame_digit
from tests.conftest import ROOT, digits_28

N_TRAIN, N_TEST = 1297, 150  # the last 150 of the other 500 are the test digits


# --- the framings a user makes, from a 28x28 light-on-dark digit ------------------------------------


def _ink(d: np.ndarray, side: int) -> np.ndarray:
    """The digit ``d`` (uint8, light on dark) resized to ``side`` pixels, as ink strength 0..1."""
    return np.asarray(Image.fromarray(d).resize((side, side), Image.BICUBIC), dtype=np.float32).clip(0, 255) / 255


def _paste(canvas: np.ndarray, ink: np.ndarray, top: int, left: int) -> np.ndarray:
    out = np.zeros_like(canvas)
    out[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    return out


def _on_paper(ink: np.ndarray, paper, ink_level: float, rng, noise: float = 0.0) -> np.ndarray:
    img = paper - (paper - ink_level) * ink + rng.normal(0, noise, ink.shape) if noise else paper - (paper - ink_level) * ink
    return img.clip(0, 255).round().astype(np.uint8)


def _jpeg(a: np.ndarray, quality: int, blur: float = 0.0) -> Image.Image:
    img = Image.fromarray(a)
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf)


def _dilate(ink: np.ndarray, k: int) -> np.ndarray:
    return F.max_pool2d(torch.from_numpy(ink)[None, None], k, stride=1, padding=k // 2)[0, 0].numpy()


def _thin(mask: np.ndarray) -> np.ndarray:
    """Zhang and Suen's thinning (1984) of a boolean image: its one-pixel-wide skeleton."""
    m = np.pad(mask.astype(bool), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = [m[1:-1, 1:-1]] + [np.roll(np.roll(m, -dy, 0), -dx, 1)[1:-1, 1:-1] for dy, dx in
                                   ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]
            n = sum(q.astype(int) for q in p[1:])
            ring = p[1:] + [p[1]]
            a = sum((~ring[i] & ring[i + 1]).astype(int) for i in range(8))
            p2, p4, p6, p8 = p[1], p[3], p[5], p[7]
            cond = (p2 & p4 & p6) if step == 0 else (p2 & p4 & p8)
            cond2 = (p4 & p6 & p8) if step == 0 else (p2 & p6 & p8)
            drop = p[0] & (n >= 2) & (n <= 6) & (a == 1) & ~cond & ~cond2
            if drop.any():
                m[1:-1, 1:-1] &= ~drop
                changed = True
        if not changed:
            return m[1:-1, 1:-1]


def sheet(d, rng):
    """Dark on a 160x160 grey sheet, 60-110 pixels high, anywhere."""
    side = int(rng.integers(60, 111))
    ink = _paste(np.zeros((160, 160), np.float32), _ink(d, side), *rng.integers(0, 160 - side + 1, 2))
    return Image.fromarray(_on_paper(ink, float(rng.uniform(150, 200)), float(rng.uniform(20, 60)), rng, 3))


def corner(d, rng):
    """At its own size (28x28) in a corner of a black 64x64 canvas."""
    top, left = int(rng.integers(0, 2)) * 36, int(rng.integers(0, 2)) * 36
    a = np.zeros((64, 64), np.uint8)
    a[top:top + 28, left:left + 28] = d
    return Image.fromarray(a)


def strip(d, rng):
    """At one end of a black 96x28 strip."""
    a = np.zeros((28, 96), np.uint8)
    left = 0 if rng.integers(0, 2) else 68
    a[:, left:left + 28] = d
    return Image.fromarray(a)


def photo(d, rng):
    """A blurred JPEG photo of paper: light falling off across it and into the corners, noise."""
    h, w, side = 200, 240, int(rng.integers(90, 141))
    ink = _paste(np.zeros((h, w), np.float32), _ink(d, side), int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5))
    vignette = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2)
    paper = 175 + 110 * ramp - 80 * vignette
    return _jpeg(_on_paper(ink, paper, float(rng.uniform(30, 70)), rng, 6), 55, blur=float(rng.uniform(1.0, 2.5)))


def marker(d, rng):
    """A thick marker stroke: the digit's ink spread by 5 pixels at 100 pixels high (strokes about 1.5 times
    as wide as MNIST's), black on white."""
    ink = _dilate((_ink(d, 100) > 0.5).astype(np.float32), 5)
    ink = _paste(np.zeros((180, 180), np.float32), ink, *rng.integers(0, 80, 2))
    return Image.fromarray(_on_paper(ink, 255.0, 0.0, rng))


def paint(d, rng):
    """A paint program's pencil: a 3-pixel black line (the digit's skeleton) on a white 280x280 canvas."""
    line = _dilate(_thin(_ink(d, 200) > 0.45).astype(np.float32), 3)
    ink = _paste(np.zeros((280, 280), np.float32), line, *rng.integers(0, 80, 2))
    return Image.fromarray(_on_paper(ink, 255.0, 0.0, rng))


def squared(d, rng):
    """A phone photo of squared paper: faint grey lines every 16 pixels, uneven light, blur, noise, JPEG."""
    h = w = 220
    side = int(rng.integers(80, 131))
    ink = _paste(np.zeros((h, w), np.float32), _ink(d, side), *rng.integers(0, h - side + 1, 2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paper = 200 + 40 * (xx / w - 0.5) - 30 * (yy / h - 0.5)
    off = rng.integers(0, 16, 2)
    lines = (((yy + off[0]) % 16) < 1.5) | (((xx + off[1]) % 16) < 1.5)
    paper = paper - 45 * lines
    return _jpeg(_on_paper(ink, paper, float(rng.uniform(20, 60)), rng, 4), 70, blur=1.0)


FRAMINGS = {"sheet": sheet, "corner": corner, "strip": strip, "photo": photo, "marker": marker, "paint": paint,
            "squared": squared}


# --- the digits and the classifier -----------------------------------------------------------------


def mnist_framed(x: np.ndarray) -> np.ndarray:
    """28x28 light-on-dark digits made like MNIST's: strokes at full strength (the upscaled 8x8
    digits are twice as bright, clipped), framed as MNIST's (the bounding box of their ink in 20x20,
    centred by the centre of mass), as uint8."""
    out = []
    for d in (x.astype(np.float32) * 2).clip(0, 255):
        found = find_ink(d.astype(np.float32), "light")
        out.append((frame_digit(found["strength"], found["box"])[0] * 255).round().numpy())
    return np.stack(out).astype(np.uint8)


@pytest.fixture(scope="module")
def data():
    x, y = digits_28()
    x = mnist_framed(x)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[-N_TEST:], y[-N_TEST:])


@pytest.fixture(scope="module")
def classify(data):
    """A small convnet (5x5 conv 8, max-pool, 5x5 conv 16, max-pool, linear) trained on the framed
    training digits (Adam, 200 steps of 128): a function of uint8 (N, 28, 28) digits -> classes."""
    (x, y), _ = data
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xt, yt = torch.from_numpy(x).float()[:, None] / 255, torch.from_numpy(y).long()
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        i = torch.randint(0, len(xt), (128,), generator=g)
        opt.zero_grad()
        F.cross_entropy(net(xt[i]), yt[i]).backward()
        opt.step()
    net.eval()

    def run(digits: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.as_tensor(np.asarray(digits)).float()[:, None] / 255).argmax(1).numpy()

    return run


def decoded(img, crop: bool) -> np.ndarray:
    """``img`` as predict.py gives it to a model of MNIST (black background, auto-inversion)."""
    return decode_image(img, 1, 28, background=0, auto_invert=True, frame=crop)[0][0].numpy()


def accuracies(data, classify, framing) -> tuple[float, float, float]:
    """Percent right on the 28x28 crops, on ``framing`` with framing and without (--no-crop)."""
    _, (x, y) = data
    rng = np.random.default_rng(0)
    images = [FRAMINGS[framing](d, rng) for d in x]
    crops = 100 * float((classify(x) == y).mean())
    framed = 100 * float((classify(np.stack([decoded(im, True) for im in images])) == y).mean())
    plain = 100 * float((classify(np.stack([decoded(im, False) for im in images])) == y).mean())
    return crops, framed, plain


@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_a_framed_digit_reads_nearly_as_its_28x28_crop(data, classify, framing):
    """On these blurry upscaled 8x8 digits and a small convnet the framed digits lose up to 25 points
    against the crops (faint strokes are lost; the real MNIST model loses at most 2.3, see the slow
    test below); without framing the digits are not read at all."""
    crops, framed, plain = accuracies(data, classify, framing)
    print(f"{framing}: crops {crops:.1f}%, framed {framed:.1f}%, whole image (--no-crop) {plain:.1f}%")
    assert crops > 80  # the classifier reads the crops
    assert framed >= crops - 30 and framed > plain + 40, (framing, crops, framed, plain)
    assert plain < 30, (framing, crops, plain)  # without framing (--no-crop), as before: not read


MNIST_RAW = os.path.join(os.environ.get("DATA_DIR", "data"), "MNIST", "raw")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(os.path.join(MNIST_RAW, "t10k-images-idx3-ubyte")) or
                    not os.environ.get("FRAMING_CKPT"), reason="needs $DATA_DIR/MNIST and $FRAMING_CKPT (a MNIST checkpoint)")
@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_real_mnist_digits_framed_read_within_3_points_of_their_crops(framing):
    from predict import load_network
    from training.checkpoint import checkpoint_data_state
    from training.images import transform_batch

    net, ckpt = load_network(os.environ["FRAMING_CKPT"])
    state = checkpoint_data_state(ckpt) or {}
    raw = lambda name, skip: np.fromfile(os.path.join(MNIST_RAW, name), np.uint8)[skip:]  # noqa: E731
    x = raw("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)[:300]
    y = raw("t10k-labels-idx1-ubyte", 8)[:300]

    def right(digits) -> float:
        t = transform_batch(torch.from_numpy(np.stack(digits))[:, None], state.get("mean") or [0.5],
                            state.get("std") or [0.5], state.get("hparams", {}).get("normalize", "standard"))
        with torch.no_grad():
            return 100 * float((net(t).argmax(1).numpy() == y).mean())

    rng = np.random.default_rng(0)
    images = [FRAMINGS[framing](d, rng) for d in x]
    crops, framed = right(list(x)), right([decoded(im, True) for im in images])
    plain = right([decoded(im, False) for im in images])
    print(f"MNIST {framing}: crops {crops:.1f}%, framed {framed:.1f}%, --no-crop {plain:.1f}%")
    assert framed >= crops - 3 and plain < framed - 20


# --- the framing itself, by hand -----------------------------------------------------------------


def test_a_rectangle_of_ink_lands_centred_with_its_longer_side_20_pixels():
    a = np.full((120, 90), 200, np.uint8)
    a[10:90, 50:90] = 30  # a dark outline 80 high and 40 wide (a "0"), against the right edge
    a[16:84, 56:84] = 200
    found = find_ink(a.astype(np.float32))
    assert found["dark"] and found["box"] == (50, 10, 89, 89)
    x, (w, h), _ = frame_digit(found["strength"], found["box"], normalize_stroke=False)
    rows, cols = (x > 0.5).nonzero().unbind(1)
    assert (w, h) == (10, 20) and int(rows.max() - rows.min()) == 19 and int(cols.max() - cols.min()) == 9
    # centred: rows 4..23, columns 9..18 (a pixel either way where the light under it is uneven)
    assert np.abs(np.subtract((int(rows.min()), int(cols.min())), (4, 9))).max() <= 1
    _, notes = decode_image(Image.fromarray(a), 1, 28, auto_invert=True, frame=True)
    assert notes[0].startswith("cropped the dark ink (50,10)-(89,89) of 90x120, scaled to ")
    assert "centred by its centre of mass in 28x28, as MNIST's digits, inverted to light ink on dark" in notes[0]
    field, (w, h), _ = frame_digit(np.ones((80, 40), np.float32), (0, 0, 39, 79), size=56, normalize_stroke=False)
    rows, cols = (field > 0.5).nonzero().unbind(1)
    assert (h, w) == (40, 20) and (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())) == (8, 47, 18, 37)


def test_the_centre_of_mass_not_the_box_is_centred():
    s = np.zeros((60, 60), np.float32)
    s[10:50, 10:14] = 1.0  # an L: a tall bar and a heavy foot
    s[40:50, 10:50] = 1.0
    found = find_ink(s * 255, "light")
    assert found["box"] == (10, 10, 49, 49)
    field, _, _ = frame_digit(found["strength"], found["box"], normalize_stroke=False)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    m = float(field.sum())
    assert abs(float((field * ys).sum()) / m - 13.5) <= 0.5 and abs(float((field * xs).sum()) / m - 13.5) <= 0.5


def test_specks_of_noise_and_faint_grid_lines_are_not_ink():
    rng = np.random.default_rng(0)
    a = np.full((200, 200), 210.0) + rng.normal(0, 4, (200, 200))
    a[::20, :] -= 40  # faint lines of squared paper
    a[:, ::20] -= 40
    a[60:140, 90:100] = 40  # the digit: a "1"
    a[5, 190], a[180, 10] = 20, 20  # specks
    found = find_ink(a.clip(0, 255))
    assert found["dark"] and np.abs(np.subtract(found["box"], (90, 60, 99, 139))).max() <= 1  # lines touch it


@pytest.mark.parametrize("kind", ["black", "white", "grey", "transparent", "faint noise"])
def test_an_image_with_no_ink_gives_no_answer(kind):
    rng = np.random.default_rng(0)
    img = {"black": Image.new("L", (64, 64), 0), "white": Image.new("L", (64, 48), 255),
           "grey": Image.new("RGB", (30, 30), (120, 130, 140)), "transparent": Image.new("RGBA", (50, 50), (0, 0, 0, 0)),
           "faint noise": Image.fromarray((200 + rng.normal(0, 3, (80, 80))).clip(0, 255).astype(np.uint8))}[kind]
    with pytest.raises(NoInkError, match="the image: no ink found \\(a blank image\\): no answer"):
        decode_image(img, 1, 28, auto_invert=True, frame=True)
    x, _ = decode_image(img, 1, 28, auto_invert=True)  # without framing (--no-crop): as before, classified
    assert x.shape == (1, 28, 28)


# --- files: damaged, huge -------------------------------------------------------------------------


def test_a_damaged_png_is_an_error_naming_the_file(tmp_path):
    a = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    good = tmp_path / "good.png"
    Image.fromarray(a).save(good)
    data = good.read_bytes()
    truncated, flipped = tmp_path / "truncated.png", tmp_path / "flipped.png"
    truncated.write_bytes(data[:len(data) // 2])
    i = data.index(b"IDAT") + 40
    flipped.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
    for bad in (truncated, flipped):
        with pytest.raises(ImageError, match=f"{bad} is not an image that can be read"):
            decode_image(bad, 1, 28)
    assert decode_image(good, 1, 28)[0].shape == (1, 28, 28)


def test_past_pillows_decompression_bomb_limit_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (300, 300), 255).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20000)  # 90,000 pixels is past twice the limit
    with pytest.raises(ImageError, match=f"{path} is too large to read: Image size \\(90000 pixels\\) exceeds limit"):
        decode_image(path, 1, 28)


def test_a_huge_strip_is_reduced_as_it_is_read_in_bounded_memory(tmp_path):
    """A 500x50000 PNG (25 million pixels; once padded to 50000x50000 floats, 10 GB) with a digit at
    one end: read reduced, framed, and the process grows by far less than 500 MB."""
    x, _ = digits_28()
    a = np.full((500, 50000), 230, np.uint8)
    a[50:450, 100:500] = 230 - np.asarray(Image.fromarray(x[0]).resize((400, 400), Image.BICUBIC)).astype(int) * 200 // 255
    path = tmp_path / "strip.png"
    Image.fromarray(a).save(path, compress_level=1)
    del a
    probe = ("import resource, sys, torch\nfrom training.images import decode_image\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "for frame in (True, False):\n    x, notes = decode_image(sys.argv[1], 1, 28, auto_invert=True, frame=frame)\n"
             "    print(notes)\n"
             "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "print('peak_mb', peak / 1024, 'after_imports_mb', before / 1024, 'grew_mb', (peak - before) / 1024)\n")
    r = subprocess.run([sys.executable, "-c", probe, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    grew = float(r.stdout.split("grew_mb")[1])
    print(r.stdout)
    assert grew < 200, r.stdout
    assert "reduced from 50000x500 to 2000x20 as it was read" in r.stdout and "cropped the dark ink (" in r.stdout


# --- predict.py ------------------------------------------------------------------------------------

from tests.test_images import ckpt, run_predict  # noqa: E402,F401  (the tiny trained checkpoint)


def test_predict_frames_says_so_and_no_crop_keeps_the_whole_image(ckpt, tmp_path, capsys):  # noqa: F811
    x, _ = digits_28()
    rng = np.random.default_rng(1)
    photo_path, blank = tmp_path / "photo.jpg", tmp_path / "blank.png"
    photo(x[3], rng).save(photo_path)
    Image.new("L", (64, 64), 255).save(blank)
    code, out, err = run_predict(capsys, ckpt, photo_path, blank)
    assert code == 1
    assert out.splitlines()[0] == f"{blank}: no ink found (a blank image): no answer"
    assert out.splitlines()[1].startswith(f"{photo_path}: ")
    assert f"note: {photo_path}: cropped the dark ink (" in err and "as MNIST's digits" in err
    assert "error: 1 of 2 image(s) had no ink: no answer" in err and "Traceback" not in err
    code, out, err = run_predict(capsys, ckpt, photo_path, blank, "--no-crop")  # as before framing existed
    assert code == 0 and len(out.splitlines()) == 2 and "cropped" not in err
    assert f"note: {photo_path}: padded from 240x200 to 240x240 with black" in err
    old = decode_image(photo_path, 1, 28, background=0, auto_invert=True)[0]
    assert torch.equal(old, decode_image(photo_path, 1, 28, background=0, auto_invert=True, frame=False)[0])
