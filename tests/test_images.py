"""Images as people have them (issue 15, sections 2, 3 and 6): one decoder (training/images.py) for
predict.py and image-folder data; 16-bit PNGs, transparency, non-square images, dark digits on paper,
unreadable files among good ones, a bad --topk; the image folders' class checks, an IDX label out of
range, a failed download that leaves nothing behind, the image cache's progress and location.
Every image is made with Pillow here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import training.data
import predict as predict_script
from models.errors import ConfigError, DataError, ImageError
from training.images import decode_image
from tests.conftest import FAST, ROOT, compose_train, digits_28, write_idx


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def digits():
    return digits_28()


@pytest.fixture(scope="module")
def ckpt(mnist_root, tmp_path_factory) -> str:
    """A tiny convnet trained by train.py for one short epoch on the small MNIST (its accuracy does
    not matter here: the tests compare predictions of the same digit decoded two ways)."""
    import train as train_script

    run = tmp_path_factory.mktemp("run")
    cfg = compose_train(FAST + [f"data.root={mnist_root}", "data.download=false", "data.train_subset=256",
                                "model.model_kwargs.blocks=[{channels:4,kernel:3,pool:max}]", "model.model_kwargs.mlp=[16]",
                                "logger=none", "callbacks.filter_images.enabled=false",
                                "callbacks.feature_maps.enabled=false", "callbacks.validation_errors.enabled=false",
                                "callbacks.model_graph.enabled=false"], run)
    train_script.train(cfg)
    return str(run / "checkpoints" / "last.ckpt")


def save(array: np.ndarray, path: Path, mode: str | None = None) -> Path:
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return path


def run_predict(capsys, *args) -> tuple[int, str, str]:
    try:
        predict_script.main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def probabilities(line: str) -> dict[str, float]:
    return {c.split(" (")[0]: float(c.split(" (")[1].rstrip(")")) for c in line.split(": ", 1)[1].split(", ")}


# --- the decoder --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 40])
def test_a_16_bit_png_is_scaled_to_8_bits_at_the_model_size_and_at_another(digits, tmp_path, size):
    d = digits[0][0]
    eight = save(d, tmp_path / "d8.png")
    sixteen = save(d.astype(np.uint16) * 257, tmp_path / "d16.png")  # the same image, 16 bits deep
    assert Image.open(sixteen).mode == "I;16"
    a, _ = decode_image(eight, 1, size)
    b, notes = decode_image(sixteen, 1, size)
    assert b.dtype == torch.uint8 and torch.equal(a, b)  # scaled, not clamped to 0..255
    assert "scaled from 16 to 8 bits" in notes
    # any 16-bit value: round(v * 255 / 65535); the other 16-bit modes PIL has too
    v = np.array([[0, 1, 128, 129, 32767, 32768, 65534, 65535]], dtype=np.uint16)
    want = torch.tensor(np.round(v.astype(np.float64) * 255 / 65535), dtype=torch.uint8)[None]
    assert torch.equal(decode_image(Image.fromarray(v), 1)[0], want)
    assert torch.equal(decode_image(Image.frombytes("I;16B", (8, 1), v.astype(">u2").tobytes()), 1)[0], want)
    assert torch.equal(decode_image(Image.fromarray(v.astype(np.int32), "I"), 1)[0], want)


def test_a_digit_on_a_transparent_background_is_the_digit_on_black(digits, tmp_path):
    d = digits[0][0]
    on_black, _ = decode_image(save(d, tmp_path / "black.png"), 1, 28)
    white = np.full_like(d, 255)
    la = save(np.stack([white, d], -1), tmp_path / "la.png", "LA")  # white strokes, alpha = the digit
    rgba = save(np.stack([white, white, white, d], -1), tmp_path / "rgba.png", "RGBA")
    for path in (la, rgba):
        x, notes = decode_image(path, 1, 28)
        assert torch.equal(x, on_black), path
        assert any("composited over black" in n for n in notes)
    # a palette image whose colour 0 (grey, under the transparent pixels) is transparent: a GIF, say
    p = Image.fromarray((d >= 128).astype(np.uint8), "P")
    p.putpalette([128, 128, 128, 255, 255, 255])
    p.info["transparency"] = 0
    p.save(tmp_path / "p.gif")
    x, _ = decode_image(tmp_path / "p.gif", 1, 28)
    assert torch.equal(x[0], torch.from_numpy(np.where(d >= 128, 255, 0).astype(np.uint8)))
    # a black pen on a transparent canvas (PNG from a drawing program): composited over white so the
    # strokes stay visible, then (predict.py's auto-inversion) the same light-on-dark digit
    black_pen = save(np.stack([0 * white, 0 * white, 0 * white, d], -1), tmp_path / "pen.png", "RGBA")
    x, notes = decode_image(black_pen, 1, 28, auto_invert=True)
    assert torch.equal(x, on_black) and any("composited over white" in n for n in notes)


def test_grey_with_alpha_for_a_colour_model_and_colour_for_a_grey_model(digits, tmp_path):
    d = digits[0][0]
    la = save(np.stack([np.full_like(d, 255), d], -1), tmp_path / "la.png", "LA")
    x, notes = decode_image(la, 3, 32)  # used to fail: "expanded size (3) must match (2)"
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]) and int(x.max()) > 200
    assert "converted from 1 to 3 channel(s)" in notes
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255  # opaque red
    x, notes = decode_image(save(rgba, tmp_path / "red.png", "RGBA"), 1, 28)
    assert x.shape == (1, 28, 28) and int(x[0, 0, 0]) == 76 and notes == ["converted from 3 to 1 channel(s)"]


def test_a_non_square_image_is_padded_with_the_background_not_stretched(tmp_path):
    img = np.zeros((75, 200), np.uint8)
    img[10:65, 90:110] = 255  # a bar 55 high and 20 wide (a "1"; stretched it would be a wide block)
    x, notes = decode_image(save(img, tmp_path / "wide.png"), 1, 40)
    assert notes == ["padded from 200x75 to 200x200 with black, keeping its aspect ratio", "resized from 200x200 to 40x40"]
    rows, cols = (x[0] > 127).nonzero().unbind(1)
    height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert 10 <= height <= 12 and 4 <= width <= 5  # 55 x 20 / 5: the aspect ratio is kept
    pad = (200 - 75) // 2 * 40 // 200  # the padded rows above and below are background
    assert int(x[0, :pad].max()) == 0 and int(x[0, -pad:].max()) == 0
    assert abs(float(rows.float().mean()) - 19.5) < 1  # centred
    white = decode_image(Image.fromarray(255 - img), 1, 40, background=255)[0]  # the background of the training data
    assert int(white[0, :pad].min()) == 255


def test_unreadable_images_are_image_errors(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageError, match="is not an image that can be read"):
        decode_image(text, 1, 28)
    with pytest.raises(ImageError, match="no such file"):
        decode_image(tmp_path / "nope.png", 1, 28)
    with pytest.raises(ImageError, match="is a directory"):
        decode_image(tmp_path, 1, 28)


# --- predict.py -----------------------------------------------------------------------------------


def test_16_bit_pngs_get_the_prediction_of_their_8_bit_version(ckpt, digits, tmp_path, capsys):
    d = digits[0][3]
    files = [save(d, tmp_path / "d8.png"), save(d.astype(np.uint16) * 257, tmp_path / "d16.png")]
    big = np.asarray(Image.fromarray(d).resize((56, 56), Image.BILINEAR))
    files += [save(big, tmp_path / "big8.png"), save(big.astype(np.uint16) * 257, tmp_path / "big16.png")]
    code, out, err = run_predict(capsys, ckpt, *files, "--topk", "10")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 4 and "clamp" not in err
    assert probabilities(lines[0]) == probabilities(lines[1]) and probabilities(lines[2]) == probabilities(lines[3])
    assert f"note: {files[1]}: scaled from 16 to 8 bits" in err


def test_a_dark_digit_on_paper_is_inverted_unless_told_not_to(ckpt, digits, tmp_path, capsys):
    """The whole-image path (--no-crop); framing finds the ink's polarity itself (tests/test_framing.py)."""
    d = digits[0][5]
    light_on_dark = save(d, tmp_path / "mnist_style.png")
    on_paper = save(255 - d, tmp_path / "pen_on_paper.png")
    code, out, err = run_predict(capsys, ckpt, light_on_dark, on_paper, "--topk", "10", "--no-crop")
    assert code == 0
    a, b = out.splitlines()
    assert probabilities(a) == probabilities(b)  # the same digit once inverted
    assert f"note: {on_paper}: inverted: its border is light" in err and "--no-auto-invert" in err
    assert f"note: {light_on_dark}" not in err
    code, out, err = run_predict(capsys, ckpt, light_on_dark, on_paper, "--topk", "10", "--no-auto-invert", "--no-crop")
    a, b = out.splitlines()
    assert probabilities(a) != probabilities(b) and "inverted" not in err
    code, out, err = run_predict(capsys, ckpt, on_paper, "--topk", "10", "--invert", "--no-crop")  # forced, as before
    assert probabilities(out.strip()) == probabilities(a)


def test_one_unreadable_file_among_several_is_reported_and_the_others_classified(ckpt, digits, tmp_path):
    good = [save(digits[0][i], tmp_path / f"good{i}.png") for i in range(2)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really")
    missing = tmp_path / "missing.png"
    # the whole command, as a user runs it; it must not import Lightning, torchvision or the
    # LightningModule (start-up time, issue 15 section 7)
    probe = ("import runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n    runpy.run_path('predict.py', run_name='__main__')\n"
             "finally:\n    heavy = [m for m in ('lightning', 'torchvision', 'training.module', 'hydra') if m in sys.modules]\n"
             "    print('imported:', heavy, file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", probe, "predict.py", ckpt, str(good[0]), str(bad), str(missing), str(good[1])],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env=env())
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split(": ")[0] for ln in lines] == [str(good[0]), str(good[1])]
    assert f"error: {bad} is not an image that can be read" in r.stderr and f"error: {missing}: no such file" in r.stderr
    assert "error: 2 of 4 file(s) could not be read" in r.stderr
    assert "Traceback" not in r.stderr and "imported: []" in r.stderr


@pytest.mark.parametrize("k", [0, 11, -1])
def test_topk_outside_the_models_classes_is_one_clear_line(ckpt, digits, tmp_path, capsys, k):
    png = save(digits[0][0], tmp_path / "d.png")
    code, out, err = run_predict(capsys, ckpt, png, "--topk", str(k))
    assert code == 2 and out == ""
    assert err == f"error: --topk must be between 1 and 10 (the model's classes), got {k}\n"
    code, out, _ = run_predict(capsys, ckpt, png, "--topk", "10")
    assert code == 0 and len(probabilities(out.strip())) == 10


@pytest.mark.parametrize("tta_flip, channels_last", [(False, False), (True, True)])
def test_predict_scores_as_the_classifier_does_without_lightning(ckpt, digits, tmp_path, tta_flip, channels_last):
    """predict.py builds the network from the checkpoint itself (no LightningModule): the same
    probabilities as the Classifier's evaluation, with its test-time flip and memory format."""
    from training.module import Classifier
    from training.data import MNISTDataModule

    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    saved["hyper_parameters"].update(tta_flip=tta_flip, channels_last=channels_last)
    path = tmp_path / "flip.ckpt"
    torch.save(saved, path)
    files = [save(digits[0][i], tmp_path / f"{i}.png") for i in range(4)]
    ours = predict_script.predict(str(path), [str(f) for f in files], topk=10, crop=False)
    model, _ = Classifier.load_with_checkpoint(path)
    x = MNISTDataModule(root=str(tmp_path), normalize="standard").transform(torch.from_numpy(digits[0][:4])[:, None])
    with torch.no_grad():
        _, scores, _ = model._shared_step((x, torch.zeros(4, dtype=torch.long)))
    probs = scores.softmax(1)
    for top, p in zip(ours, probs):
        assert {c: round(q, 5) for c, q in top} == {str(j): round(float(p[j]), 5) for j in range(10)}


def test_a_checkpoint_whose_weights_do_not_fit_names_the_file(ckpt, tmp_path, capsys):
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    saved["hyper_parameters"]["model_kwargs"] = {"mlp": [17]}
    other = tmp_path / "other.ckpt"
    torch.save(saved, other)
    code, _, err = run_predict(capsys, other, tmp_path / "x.png")
    assert code == 2 and err.startswith(f"error: {other}: its weights do not fit the model it names ('convnet')")


# --- image folders --------------------------------------------------------------------------------


def make_folder(root: Path, train: dict[str, int], test: dict[str, int] | None = None, size=(12, 12)) -> Path:
    rng = np.random.default_rng(0)
    for split, counts in (("train", train), ("test", test if test is not None else train)):
        for c, n in counts.items():
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                save(rng.integers(0, 256, size, dtype=np.uint8), root / split / c / f"{i}.png")
    return root


def folder_module(root: Path, **kwargs):
    return training.data.ImageFolderDataModule(root=str(root), in_channels=1, image_size=12, val_size=0, **kwargs)


def test_num_classes_must_match_the_class_folders(tmp_path):
    root = make_folder(tmp_path, {"cat": 2, "dog": 2, "fox": 2})
    for n in (2, 4):  # too few: used to fail mid-training with "Target 2 is out of bounds"
        with pytest.raises(DataError, match=rf"data.num_classes={n} but .*train has 3 class folders \(cat, dog, fox\); "
                                            r"set data.num_classes=3"):
            folder_module(root, num_classes=n).setup()
    x, y = folder_module(root, num_classes=3).load_split(train=True)
    assert x.shape == (6, 1, 12, 12) and y.tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ConfigError, match="data.num_classes must be an integer >= 2"):
        folder_module(root, num_classes="3")


def test_empty_and_single_class_folders_and_unknown_test_classes_are_refused(tmp_path):
    root = make_folder(tmp_path / "a", {"cat": 2, "dog": 2})
    (root / "train" / "emu").mkdir()
    (root / "train" / "emu" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder\(s\) .*train/emu hold no images"):
        folder_module(root).load_split(train=True)
    one = make_folder(tmp_path / "b", {"cat": 3})
    with pytest.raises(DataError, match=r"has only one class folder \(cat\); a classifier needs at least two classes"):
        folder_module(one).load_split(train=True)
    extra = make_folder(tmp_path / "c", {"cat": 2, "dog": 2}, {"cat": 1, "dog": 1, "emu": 1, "yak": 1})
    with pytest.raises(DataError, match=r"test has class folder\(s\) that .*train lacks: emu, yak"):
        folder_module(extra).load_split(train=False)
    fewer = make_folder(tmp_path / "d", {"cat": 2, "dog": 2}, {"dog": 2})  # a test split without some classes is fine
    assert folder_module(fewer).load_split(train=False)[1].tolist() == [1, 1]


def test_train_py_refuses_a_wrong_num_classes_in_one_line(tmp_path):
    root = make_folder(tmp_path / "images", {"cat": 2, "dog": 2, "fox": 2})
    r = subprocess.run([sys.executable, "train.py", "model=convnet", "data=image_folder", f"data.root={root}",
                        "data.num_classes=2", "data.in_channels=1", f"hydra.run.dir={tmp_path / 'run'}", "logger=none"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env())
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "data.num_classes=2 but" in errors[0] and "3 class folders (cat, dog, fox)" in errors[0]


def test_image_folders_decode_like_predict_and_say_where_the_cache_is(digits, tmp_path, monkeypatch, capsys):
    d = digits[0][0]
    root = tmp_path / "images"
    for c in ("a", "b"):
        (root / "train" / c).mkdir(parents=True)
    save(d.astype(np.uint16) * 257, root / "train" / "a" / "0.png")  # 16 bits: used to be clamped, not scaled
    save(np.stack([np.full_like(d, 255), d], -1), root / "train" / "a" / "1.png", "LA")  # grey + alpha, colour model
    save(np.pad(d, ((0, 0), (20, 20))), root / "train" / "b" / "0.png")  # 68x28: padded, not stretched
    save(d, root / "train" / "b" / "1.png")
    shutil.copytree(root / "train", root / "test")
    clock = iter(range(0, 1000, 3))  # each image "takes" 3 s: a progress line every 5 s
    with monkeypatch.context() as m:
        m.setattr("time.monotonic", lambda: next(clock))
        dm = training.data.ImageFolderDataModule(root=str(root), in_channels=3, image_size=28, num_classes=2)
        x, y = dm.load_split(train=True)
    assert x.shape == (4, 3, 28, 28) and y.tolist() == [0, 0, 1, 1]
    for i, name in enumerate(["a/0.png", "a/1.png", "b/0.png", "b/1.png"]):
        assert torch.equal(x[i], decode_image(root / "train" / name, 3, 28)[0]), name
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[3])  # 16-bit and grey+alpha decode to the 8-bit digit
    err = capsys.readouterr().err
    cache = Path(os.environ["NEOLENET_CACHE_DIR"])
    assert f"decoding {root / 'train'}: 2/4 images" in err
    assert f"decoded 4 images of {root / 'train'}; cached in {cache}" in err and "deleting it is safe" in err
    cached = list(cache.glob("images-*.pt"))
    assert len(cached) == 1 and torch.load(cached[0], weights_only=True)[0].shape == x.shape
    x2, _ = training.data.ImageFolderDataModule(root=str(root), in_channels=3, image_size=28, num_classes=2).load_split(True)
    assert torch.equal(x, x2) and "decoded" not in capsys.readouterr().err  # the second time from the cache


# --- MNIST files -------------------------------------------------------------------------------------


def test_an_idx_label_outside_0_to_9_is_named(mnist_root, tmp_path):
    shutil.copytree(mnist_root / "MNIST", tmp_path / "MNIST")
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    y = np.frombuffer(labels.read_bytes()[8:], dtype=np.uint8).copy()
    y[7] = 12
    write_idx(labels, y)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte holds the label 12 \(at index 7; 1 label\(s\) in all "
                                        r"outside 0..9\)"):
        training.data.MNISTDataModule(root=str(tmp_path), download=False).load_split(train=False)


@pytest.mark.parametrize("exists", [True, False])
def test_a_failed_download_leaves_no_empty_folders_behind(tmp_path, monkeypatch, exists):
    import urllib.error

    import torchvision.datasets.mnist

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    root = tmp_path / "data"
    if exists:
        root.mkdir()
        (root / "mine.txt").write_text("the user's own file")
    with pytest.raises(DataError, match="MNIST not found in .* could not be downloaded"):
        training.data.MNISTDataModule(root=str(root), download=True).load_split(train=True)
    if exists:
        assert sorted(p.name for p in root.iterdir()) == ["mine.txt"]  # no empty MNIST/raw
    else:
        assert not root.exists()
