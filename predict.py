"""Classify image files with a trained checkpoint and print the top classes.

    python predict.py <checkpoint>.ckpt digit.png photo.jpg [--topk 3] [--invert | --no-auto-invert] [--no-crop]
    python predict.py lenet5:mnist digit.png      # shipped weights by name (python -m models.weights lists them)

For a grey model of digits (a clear background, as MNIST's), each image's ink is framed as MNIST's
digits were (LeCun et al. 1998, section III.A): the paper's level is removed (uneven light, noise),
the ink's bounding box is scaled to 20x20 keeping its aspect ratio and centred by its centre of mass
in 28x28 (``training.images.find_ink``, ``frame_digit``), with a note; an image with no ink prints
``name: no ink found (a blank image): no answer`` and the exit status is then 1. ``--no-crop``, and
models without a clear background or of colour, take the whole image as follows.

Any size, grey or colour, 8 or 16 bits, with or without transparency: each image is converted to
the channel count and size the model was trained on (a non-square one is padded to a square with
the training images' background first, so its aspect ratio is kept), transparent parts are filled
with that background, and, for a model of light-on-dark digits, an image whose border is light (a
dark digit on paper) is inverted; each conversion is named in a note on stderr. The images are then
normalised as in training. A file that cannot be read is reported and the others are classified;
the exit status is then 1.

Arguments are parsed before torch is imported, and the network is built from the checkpoint
without Lightning (``training.checkpoint.read_checkpoint`` + ``build_network``), so the command
starts quickly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

def load_network(ckpt_path):
    """``(net, ckpt)``: the checkpoint's network (CPU, eval mode) with its weights, and the checkpoint.
    Built from the checkpoint's hyperparameters by :func:`training.checkpoint.build_network`, as the
    Classifier builds it; a :class:`CheckpointError` naming the file when they do not fit."""
    from training.checkpoint import build_network, network_weights, read_checkpoint
    from models.errors import CheckpointError, UserError

    ckpt = read_checkpoint(ckpt_path)
    hp = ckpt["hyper_parameters"]
    try:
        net = build_network(**hp)
    except (UserError, TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt_path}: cannot build the model it names ({hp.get('model')!r}): {e}") from None
    weights = network_weights(ckpt["state_dict"])
    try:
        if not weights:
            raise RuntimeError("it holds no network weights (no 'net.' keys in its state_dict)")
        net.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"{ckpt_path}: its weights do not fit the model it names ({hp.get('model')!r}): {str(e).splitlines()[0]}"
        ) from None
    return net.eval(), ckpt


def predict(ckpt_path: str, images: list[str], topk: int = 3, invert: bool = False, auto_invert: bool = True,
            on_error=None, on_notice=None, crop: bool = True) -> list[list[tuple[str, float]] | None]:
    """The top ``topk`` ``(class, probability)`` pairs of each image. A file that cannot be read raises
    its :class:`ImageError`, or, with ``on_error(name, error)``, is reported there and gets ``None``;
    so does an image with no ink when it is framed (:class:`training.images.NoInkError`). ``crop``: for
    a grey model of digits (a clear background), frame each image's ink as MNIST's digits were framed.
    ``on_notice(name, text)`` receives the notes about each image's conversion (default: stderr)."""
    import torch

    from training.checkpoint import checkpoint_data_state, mirror_averaged
    from models.checks import is_int
    from models.errors import ConfigError, ImageError
    from training.images import decode_image, training_background, transform_batch

    net, ckpt = load_network(ckpt_path)
    hp = ckpt["hyper_parameters"]
    channels, size, n_classes = hp.get("in_channels", 1), hp.get("input_size", 28), hp.get("num_classes", 10)
    if not is_int(topk) or not 1 <= topk <= n_classes:
        raise ConfigError(f"--topk must be between 1 and {n_classes} (the model's classes), got {topk}")
    state = checkpoint_data_state(ckpt) or {}
    classes = state.get("classes") or [str(i) for i in range(n_classes)]
    background, clear = training_background(state, channels)
    frame = crop and clear and channels == 1  # not for CIFAR-like (no clear background) or colour models
    on_notice = on_notice or (lambda name, text: print(f"note: {name}: {text}", file=sys.stderr))
    batch, done = [], []
    for name in images:
        try:
            x, notices = decode_image(Path(name), channels, size, background=background, invert=invert,
                                      auto_invert=auto_invert and clear, frame=frame)
        except ImageError as e:
            if on_error is None:
                raise
            on_error(name, e)
            continue
        for text in notices:
            on_notice(name, text)
        batch.append(x)
        done.append(name)
    results: dict[str, list[tuple[str, float]]] = {}
    if batch:
        x = transform_batch(torch.stack(batch), state.get("mean") or [0.5] * channels,
                            state.get("std") or [0.5] * channels, state.get("hparams", {}).get("normalize", "standard"))
        if hp.get("channels_last"):
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            # a model evaluated as the mean with the mirror image (model.tta_flip) predicts so too
            scores = mirror_averaged(net, x) if hp.get("tta_flip") else net(x)
            probs = scores.float().softmax(dim=1)
        p, i = probs.topk(topk, dim=1)
        for name, ps, js in zip(done, p.tolist(), i.tolist()):
            results[name] = [(classes[j] if j < len(classes) else str(j), q) for q, j in zip(ps, js)]
    return [results.get(name) for name in images]


def main(argv: list[str] | None = None) -> None:
    from training.cli import argument_parser  # argparse's mistakes as one line, exit 2 (no torch imported)

    parser = argument_parser(prog="predict.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt file written by train.py, or the name of shipped weights, "
                        "e.g. lenet5:mnist (python -m models.weights lists them)")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, GIF, WebP, BMP, TIFF)")
    parser.add_argument("--topk", type=int, default=3, help="how many classes to print per image (default 3)")
    parser.add_argument("--invert", action="store_true", help="always invert grey levels")
    parser.add_argument("--no-auto-invert", dest="auto_invert", action="store_false",
                        help="do not invert an image whose border is light for a model of light-on-dark digits")
    parser.add_argument("--no-crop", dest="crop", action="store_false",
                        help="classify the whole image (padded to a square and resized), not its ink framed as MNIST's")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.debug:
        os.environ["NEOLENET_DEBUG"] = "1"
    failed, blank = [], []

    def report(name, error):
        from training.images import NoInkError

        if isinstance(error, NoInkError):  # in place of its classes, on stdout
            blank.append(name)
            print(error)
            return
        failed.append(name)
        if args.debug:  # --debug: the traceback too
            import traceback

            traceback.print_exception(error, file=sys.stderr)
        print(f"error: {error}", file=sys.stderr)

    from training.cli import friendly_errors  # a UserError as one line, exit status 2 (as train.py, eval.py)

    with friendly_errors():
        results = predict(args.checkpoint, args.images, args.topk, args.invert, args.auto_invert, on_error=report,
                          crop=args.crop)
    for name, top in zip(args.images, results):
        if top is not None:
            print(f"{name}: " + ", ".join(f"{c} ({p:.3f})" for c, p in top))
    if failed:
        print(f"error: {len(failed)} of {len(args.images)} file(s) could not be read", file=sys.stderr)
    if blank:
        print(f"error: {len(blank)} of {len(args.images)} image(s) had no ink: no answer", file=sys.stderr)
    if failed or blank:
        sys.exit(1)


if __name__ == "__main__":
    main()
