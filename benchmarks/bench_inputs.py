"""A battery of unusual inputs for the command-line entry points (issue 25 §4): is each mistake
answered with one line?

    python benchmarks/bench_inputs.py [--json F] [--only WORD] [--work DIR] [--keep]

This is not a test (``benchmarks/`` is outside pytest's ``testpaths``): it runs some 190 cases as
subprocesses, two at a time, on small data it makes itself (the digits of ``.ci/make_digits.py``,
the tiny CIFAR-10 of ``tests/conftest.py``), with one tiny checkpoint trained once at the start
(the ``TINY`` overrides of ``tests/test_cli.py``). Every case has its own temporary ``LOG_DIR`` and
``hydra.run.dir``. A case is

* ``clean`` -- a good input exits 0 and prints its expected line; a bad input exits 2 (predict.py:
  1 when files could not be read) with exactly one line starting with ``error: `` on stderr (for
  predict.py, one per unreadable file plus its summary line), no ``Traceback``, and the files the
  case set up beforehand unchanged;
* ``bad`` -- anything else: a traceback, Hydra's exit 1, exit 0 on a bad input (it silently ran),
  a kill (the OOM killer), a hang past the case's timeout.

It prints one line per case, ``clean|bad  <command>  -> <the error line or what went wrong>``, then
``N clean of M (P%)``; ``--json F`` writes every case (command, exit status, stderr's tail) as JSON
lines. Paths in the commands are shown as placeholders: ``@MNIST@`` (the generated MNIST),
``@CKPT@`` (the tiny checkpoint), ``@CASE@`` (the case's own folder), ``@W@`` (the work folder).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# tests/test_cli.py's TINY: a small convnet on 640 images, one epoch of 10 steps
MODEL = ["model=convnet", "model.model_kwargs.blocks=[{channels:4,kernel:3,pool:max}]", "model.model_kwargs.mlp=[16]"]
REST = ["data.train_subset=640", "data.val_size=200", "data.batch_size=64", "data.download=false",
        "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "trainer.enable_model_summary=false",
        "callbacks.progress_bar.refresh_rate=0", "logger=csv"]
FUKUSHIMA_CKPT = ROOT / "tests" / "fixtures" / "neocognitron_fukushima_before_counts.ckpt"


class _Unsafe:
    """An object whose unpickling would run code (here, harmlessly, os.getcwd)."""

    def __reduce__(self):
        return (os.getcwd, ())


@dataclass
class Case:
    script: str
    args: list[str]
    expect: str = "error"           # "ok" | "error" | "either" (a legitimate value: exit 0 or a clean refusal)
    out: str | None = None          # "ok": a text stdout must contain
    status: int = 2                 # "error": the exit status
    errors: int = 1                 # "error": how many lines start with "error: "
    base: bool = True               # train.py: add TINY (MODEL unless the case picks its own model=) + data.root
    root: bool = True               # train.py: add data.root=@MNIST@
    run_dir: bool = True            # train.py: add hydra.run.dir=@CASE@/run
    setup: Callable[[Path, Path], None] | None = None   # setup(case_folder, work_folder)
    keep: list[str] = field(default_factory=list)       # paths under the case folder that must not change
    env: dict[str, str] = field(default_factory=dict)
    timeout: int = 300

    def command(self) -> str:
        return " ".join([self.script, *self.args])


def T(*args, **kw) -> Case:
    return Case("train.py", list(args), **kw)


def E(*args, **kw) -> Case:
    return Case("eval.py", list(args), **kw)


def P(*args, **kw) -> Case:
    return Case("predict.py", list(args), **kw)


def B(*args, **kw) -> Case:
    return Case("benchmarks/bench_tolerance.py", list(args), **kw)


def ok(case: Case, out: str) -> Case:
    case.expect, case.out = "ok", out
    return case


# --- what the cases set up ------------------------------------------------------------------


def copy_run(case: Path, work: Path) -> None:
    shutil.copytree(work / "trained", case / "run")


def live_lock(case: Path, work: Path) -> None:
    lock = case / "run" / ".hydra" / "run.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(f"pid={os.getpid()} host={socket.gethostname()} slurm_job=\n")


def file_log_dir(case: Path, work: Path) -> None:
    (case / "logs_file").write_text("a file the user keeps\n")


def unwritable_log_dir(case: Path, work: Path) -> None:
    (case / "ro").mkdir()
    (case / "ro" / "kept.txt").write_text("kept\n")
    os.chmod(case / "ro", 0o555)


def cases() -> list[Case]:
    S = "@CASE@"
    c: list[Case] = []
    # ---- train.py: good inputs ------------------------------------------------------------
    c += [ok(T(), "test/acc:"), ok(T("seed=0"), "test/acc:"), ok(T("data.batch_size=32"), "test/acc:"),
          ok(T("data.resize=16", "trainer.max_steps=3"), "test/acc:"), ok(T("data.val_size=0"), "test/acc:"),
          ok(T("data=fashion_mnist", "logger=none"), "test/acc:"),
          ok(T("callbacks=none", "trainer.enable_progress_bar=false"), "test/acc:"),
          ok(T("--cfg", "job", base=False), "max_epochs"), ok(T("--help", base=False), "model")]
    # ---- train.py: the top-level settings -------------------------------------------------
    c += [T(f"seed={v}") for v in ("abc", "-1", "4294967296", "null")]
    c += [T("matmul_precision=low"), T("test=maybe"), T("record=[1]")]
    # ---- train.py: data.* -------------------------------------------------------------------
    c += [T(f"data.batch_size={v}") for v in ("0", "abc", "1.5", "[1,2]")]
    c += [T("data.eval_batch_size=0")]
    c += [T(f"data.val_size={v}") for v in ("-1", "abc", "100000", "640")]
    c += [T("data.split_seed=abc"), T("data.normalize=foo")]
    c += [T(f"data.resize={v}") for v in ("0", "abc", "1", "100000")]
    c += [T("data.augment=maybe")]
    c += [T("data.augment=true", f"data.crop_padding={v}") for v in ("-1", "14")]
    c += [T("data.hflip=abc"), T("data.download=maybe")]
    c += [T(f"data.train_subset={v}") for v in ("0", "abc", "100000")]
    c += [T(f"data.root={S}/missing"), T(f"data.root={S}/missing", "data.download=true", timeout=180),
          T("data.root=@W@/afile"), T("data.root=@W@/empty"), T("data.root=@W@/corrupt_idx"),
          T("data.root=@W@/bad_labels"), T("data.root=@W@/short_labels"), T("data.root=[1]"),
          T("data=cifar10", "data.root=@W@/empty"), T("data=cifar10", "data.root=@W@/corrupt_cifar"),
          T("data=image_folder", root=False), T("data=image_folder", "data.root=@W@/empty", root=False)]
    c += [T("data.in_channels=3"), T("data.in_channels=abc"), T("data.num_classes=5"), T("data.num_classes=1"),
          T("data.image_size=32"), T("data.image_size=0")]
    c += [T("+data.bacth_size=3"), T("data.bacth_size=3"), T("data=unknown"), T("data=")]
    c += [T(root=False, env={"DATA_DIR": "/nowhere/at/all"}), T(root=False, env={"DATA_DIR": "@W@/afile"})]
    # ---- train.py: trainer.* ----------------------------------------------------------------
    c += [T("trainer.max_epochs=abc"), T("trainer.max_epochs=-2"), T("trainer.max_steps=-5")]
    c += [T(f"trainer.limit_train_batches={v}") for v in ("1.5", "-1")]
    c += [T("trainer.limit_val_batches=all"), T("trainer.limit_test_batches=-0.5")]
    c += [T("trainer.precision=33"), T("trainer.precision=abc")]
    c += [T(f"trainer.devices={v}") for v in ("0", "abc", "[]", "64")]
    c += [T(f"trainer.accelerator={v}") for v in ("tpu", "mps", "quantum")]
    c += [T("trainer.gradient_clip_val=-1"),
          T("trainer.gradient_clip_algorithm=foo")]
    c += [T(f"trainer.val_check_interval={v}") for v in ("1.5", "0", "100000")]
    c += [T("trainer.accumulate_grad_batches=0"), T("trainer.max_time=10"), T("trainer.max_time={hours:-1}")]
    c += [T("+trainer.max_epoch=3"), T("trainer.max_epoch=3"), T("trainer=unknown"),
          T("trainer.num_nodes=0"), T("trainer.log_every_n_steps=0"), T("trainer.deterministic=maybe"),
          T("trainer.fast_dev_run=-1"), T("trainer.overfit_batches=-1"), T("trainer.strategy=foo"),
          T("trainer.min_epochs=5", "trainer.max_epochs=2"), T("trainer.max_epochs=0")]
    if os.geteuid() != 0:  # root writes into a read-only folder
        c += [T(f"hydra.run.dir={S}/ro/run", run_dir=False, setup=unwritable_log_dir, keep=["ro"])]
    if not _has_gpu():
        c += [T("trainer=gpu"), T("trainer.accelerator=gpu")]
    # ---- train.py: model.* --------------------------------------------------------------------
    c += [T(f"model.optimizer.lr={v}") for v in ("-1", "abc", "null")]
    c += [T("model.optimizer.lr=1e9", "data.augment=false"), T("model.optimizer.weight_decay=-1"),
          T("model.optimizer._target_=torch.optim.Foo"), T("model.optimizer._target_=os.system"),
          T("model=unknown"), T("model="),
          T("model.scheduler_interval=foo"), T("model.label_smoothing=2"), T("model.label_smoothing=abc"),
          T("model.compile=maybe"),
          T("model.scheduler.pct_start=2"), T("model.scheduler.max_lr=-1"), T("model.scheduler._target_=nope.Nope")]
    kw = "model.model_kwargs"
    c += [T(f"{kw}.blocks={v}") for v in ("abc", "[]", "[{channels:0,kernel:3}]", "[{channels:4,kernel:99}]",
                                           "[{channels:4,kernel:3,pool:foo}]", "[{chanels:4}]", "[1,2]",
                                           "[{channels:4,kernel:3,padding:-1}]")]
    c += [T(f"{kw}.mlp={v}") for v in ("abc", "[0]")]
    c += [T(f"{kw}.mlp_dropout=2")]
    c += [T(f"{kw}.foo=1"), T(f"+{kw}.foo=1")]
    lenet = ["model=lenet5", "trainer.max_epochs=1"]
    c += [T(*lenet, f"{kw}.{k}={v}") for k, v in (("init", "unknown"), ("activation", "foo"), ("pooling", "foo"),
                                                    ("c3_table", "foo"), ("output", "foo"), ("criterion", "foo"),
                                                    ("rbf_j", "abc"), ("c3_table", "[[99]]"))]
    c += [T("model=lenet1", f"{kw}.activation=foo"), T("model=lenet1989"),  # 28x28 data for a 16x16 network
          T("model=neocognitron", f"+{kw}.zzz=1"), T("model=mlp", f"{kw}.hidden=abc"),
          T("model=neocognitron_fukushima", "trainer.max_epochs=1")]
    c += [T("experiment=unknown"), T("callbacks=unknown"), T("logger=unknown"), T("logger=[csv,zzz]"),
          T("hydra/launcher=zzz")]
    # ---- train.py: override syntax and unknown keys ----------------------------------------
    c += [T("seed="), T("=3"), T("data.batch_size=[1,2"), T("data.batch_size"), T("trainer.max_epochs=3=4"),
          T("~model"), T("+seed=3"), T("'seed=3"), T("-m", "model=unknown")]
    # ---- train.py: ckpt_path ------------------------------------------------------------------
    c += [T(f"ckpt_path={S}/missing.ckpt"), T("ckpt_path=@W@/ckpt/empty.ckpt"), T("ckpt_path=@W@/ckpt/text.ckpt"),
          T("ckpt_path=@W@/ckpt/truncated.ckpt"), T(f"ckpt_path={FUKUSHIMA_CKPT}"),
          T("ckpt_path=@W@/ckpt/unsafe.ckpt"), T("ckpt_path=@W@/ckpt"), T("ckpt_path=@W@/ckpt/notzip.ckpt"),
          T("ckpt_path=@W@/ckpt/dict.ckpt"), T("ckpt_path=@CKPT@", "trainer.max_epochs=2")]
    # ---- train.py: where it writes ------------------------------------------------------------
    c += [T(run_dir=False, env={"LOG_DIR": f"{S}/logs_file"}, setup=file_log_dir, keep=["logs_file"]),
          T(setup=copy_run, keep=["run"]),
          T(setup=live_lock, keep=["run/.hydra/run.lock"]),
          T("hydra.run.dir=/proc/bench_inputs/run", run_dir=False),
          T(run_dir=False, env={"LOG_DIR": "/proc/bench_inputs"})]
    # ---- eval.py --------------------------------------------------------------------------
    c += [ok(E("ckpt_path=@CKPT@"), "test/acc:"), ok(E("ckpt_path=@CKPT@", "data_root=@MNIST@"), "test/acc:"),
          # data.val_size: the generated MNIST has 1,000 training images, fewer than the default 5,000 held out
          ok(E("ckpt_path=@CKPT@", "data=mnist", "data.root=@MNIST@", "data.download=false", "data.val_size=200"),
             "test/acc:"),
          ok(E("ckpt_path=@CKPT@", "data=fashion_mnist", "data.root=@MNIST@", "data.download=false",
               "data.val_size=200"), "test/acc:")]
    c += [E(), E("ckpt_path="), E("ckpt_path=null"), E(f"ckpt_path={S}/missing.ckpt"),
          E("ckpt_path=@W@/ckpt/empty.ckpt"), E("ckpt_path=@W@/ckpt/text.ckpt"),
          E("ckpt_path=@W@/ckpt/truncated.ckpt"), E("ckpt_path=@W@/ckpt/unsafe.ckpt"), E("ckpt_path=@W@/ckpt"),
          E("ckpt_path=@W@/ckpt/dict.ckpt"), E("ckpt_path=@W@/ckpt/notzip.ckpt"),
          E("ckpt_path=@CKPT@", "model=lenet5"), E("ckpt_path=@CKPT@", "+model=lenet5"),
          E("ckpt_path=@CKPT@", "data=unknown"), E("ckpt_path=@CKPT@", "data=cifar10", "data.root=@W@/cifar"),
          E("ckpt_path=@CKPT@", "data.root=@MNIST@"), E("ckpt_path=@CKPT@", "+data.root=@MNIST@"),
          E("ckpt_path=@CKPT@", "data_root=/missing"), E("ckpt_path=@CKPT@", "data_root=@W@/afile"),
          E("ckpt_path=@CKPT@", "data_root=@W@/corrupt_idx"), E("ckpt_path=@CKPT@", "seed=abc"),
          E("ckpt_path=@CKPT@", "trainer.limit_test_batches=abc"),
          E("ckpt_path=@CKPT@", "data=mnist", "data.root=/missing", "data.download=false"),
          E("ckpt_path=@CKPT@", "data=mnist", "data.root=@MNIST@", "data.eval_batch_size=0"),
          E("ckpt_path=@CKPT@", "data=mnist", "data.root=@MNIST@", "data.resize=16"),
          E("ckpt_path=@CKPT@", "data_root=[1]"), E("ckpt_path=[1]"),
          E(f"ckpt_path={FUKUSHIMA_CKPT}", "data_root=/missing")]
    # ---- predict.py -----------------------------------------------------------------------
    img = "@W@/img"
    c += [ok(P("@CKPT@", f"{img}/digit.png"), "digit.png: "), ok(P("@CKPT@", f"{img}/digit.png", "--topk", "1"), "digit.png: "),
          ok(P("@CKPT@", f"{img}/digit.png", "--no-crop"), "digit.png: "),
          ok(P("@CKPT@", f"{img}/digit.png", f"{img}/digit.jpg"), "digit.jpg: "),
          ok(P("@CKPT@", f"{img}/digit_rgba.png"), "digit_rgba.png: ")]
    c += [P("@CKPT@", f"{img}/{name}", status=1, errors=2)
          for name in ("missing.png", "folder", "text.png", "empty.png", "truncated.png", "huge.png", "bad_crc.png")]
    c += [P("@CKPT@", f"{img}/digit.png", f"{img}/missing.png", status=1, errors=2),
          P("@CKPT@", f"{img}/digit.png", "--topk", "0"), P("@CKPT@", f"{img}/digit.png", "--topk", "99"),
          P("@CKPT@", f"{img}/digit.png", "--topk", "abc"), P("@W@/ckpt/text.ckpt", f"{img}/digit.png"),
          P(f"{S}/missing.ckpt", f"{img}/digit.png"), P("@W@/ckpt/truncated.ckpt", f"{img}/digit.png"),
          P("@W@/ckpt/unsafe.ckpt", f"{img}/digit.png"), P("@CKPT@"), P(), P("@CKPT@", f"{img}/digit.png", "--zzz")]
    # ---- benchmarks/bench_tolerance.py ----------------------------------------------------
    c += [ok(B("--ckpt", "@CKPT@", "--limit", "20", "--quiet"), "shift"),
          B(), B("--ckpt"), B("--ckpt", "@CKPT@", "--limit", "0"), B("--ckpt", "@CKPT@", "--limit", "abc"),
          B("--ckpt", f"{S}/missing.ckpt"), B("--ckpt", "@W@/ckpt/text.ckpt"),
          B("--ckpt", "@CKPT@", "--data-root", "/missing", "--quiet"),
          B("--ckpt", "@CKPT@", "--labels", "a", "b", "--quiet"), B("--ckpt", "@CKPT@", "--seed", "abc"),
          B("--ckpt", "@CKPT@", "--elastic-sigma", "abc"), B("--ckpt", "@CKPT@", "--elastic-sigma", "-1", "--limit", "20"),
          B("--ckpt", "@CKPT@", "--limit", "20", "--quiet", "--json", "/proc/bench_inputs/t.json"),
          B("--ckpt", "@CKPT@", "--zzz")]
    return c


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


# --- the shared data ---------------------------------------------------------------------------


def build_work(work: Path) -> None:
    """The data, the tiny checkpoint and its broken variants, the images, under ``work``."""
    import numpy as np
    import torch
    from PIL import Image

    from tests.conftest import make_cifar_batches

    data = work / "data"
    subprocess.run([sys.executable, str(ROOT / ".ci" / "make_digits.py"), str(data), "--train", "1000", "--test", "200"],
                   check=True)
    shutil.copytree(data / "MNIST", data / "FashionMNIST")
    raw = data / "MNIST" / "raw"
    (work / "empty").mkdir()
    (work / "afile").write_text("not a folder\n")
    for name, edit in (("corrupt_idx", "cut"), ("bad_labels", "labels"), ("short_labels", "short")):
        folder = work / name / "MNIST" / "raw"
        shutil.copytree(raw, folder)
        if edit == "cut":
            images = folder / "train-images-idx3-ubyte"
            images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
        elif edit == "labels":
            labels = folder / "train-labels-idx1-ubyte"
            b = bytearray(labels.read_bytes())
            b[8 + 5] = 200  # a label outside 0..9
            labels.write_bytes(bytes(b))
        else:  # a labels file with fewer labels than images, its header consistent
            labels = folder / "train-labels-idx1-ubyte"
            b = labels.read_bytes()
            labels.write_bytes(struct.pack(">II", 0x0801, 500) + b[8:8 + 500])
    make_cifar_batches(work / "cifar")
    bad_cifar = work / "corrupt_cifar" / "cifar-10-batches-py"
    shutil.copytree(work / "cifar" / "cifar-10-batches-py", bad_cifar)
    (bad_cifar / "data_batch_3").write_bytes(b"\x80\x04garbage")

    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *MODEL, *REST, f"data.root={data}",
                        f"hydra.run.dir={work / 'trained'}"], cwd=ROOT, env=child_env(work / "trained_logs"),
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        sys.exit(f"error: the tiny checkpoint could not be trained:\n{r.stderr[-3000:]}")
    good = work / "trained" / "checkpoints" / "last.ckpt"
    ck = work / "ckpt"
    ck.mkdir()
    (ck / "empty.ckpt").write_bytes(b"")
    (ck / "text.ckpt").write_text("this is a text file, not a checkpoint\n")
    (ck / "truncated.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (ck / "notzip.ckpt").write_bytes(b"PK\x03\x04" + os.urandom(2000))
    torch.save({"x": _Unsafe()}, ck / "unsafe.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, ck / "dict.ckpt")  # a torch file without hyper_parameters

    im = work / "img"
    (im / "folder").mkdir(parents=True)
    x = np.fromfile(raw / "t10k-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    Image.fromarray(x[3]).resize((84, 84)).save(im / "digit.png")
    Image.fromarray(x[3]).save(im / "digit.jpg", quality=90)
    Image.fromarray(x[3]).convert("RGBA").save(im / "digit_rgba.png")
    (im / "text.png").write_text("not an image\n")
    (im / "empty.png").write_bytes(b"")
    png = (im / "digit.png").read_bytes()
    (im / "truncated.png").write_bytes(png[: len(png) // 2])
    bad = bytearray(png)
    bad[len(bad) // 2] ^= 0xFF  # a flipped byte in the image data: its checksum fails
    (im / "bad_crc.png").write_bytes(bytes(bad))
    (im / "huge.png").write_bytes(huge_png(20000, 20000))


def huge_png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG of ``width`` x ``height`` (a decompression bomb: some KiB on disk,
    width x height pixels decoded), written row by row without ever holding the image."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" + bytes((width + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --- running a case ------------------------------------------------------------------------------


def child_env(log_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "NEOLENET_DEBUG", "DATA_DIR")}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "LOG_DIR": str(log_dir),
                "HYDRA_FULL_ERROR": "0", "NEOLENET_DEBUG": "0"})
    env.update(extra or {})
    return env


def expand(text: str, case_dir: Path, work: Path) -> str:
    return (text.replace("@CKPT@", str(work / "trained" / "checkpoints" / "last.ckpt"))
            .replace("@MNIST@", str(work / "data")).replace("@CASE@", str(case_dir)).replace("@W@", str(work)))


def argv_of(case: Case, case_dir: Path, work: Path) -> list[str]:
    args = list(case.args)
    if case.script == "train.py" and case.base:
        own_model = any(a.lstrip("+").startswith("model=") for a in args)
        flags = [a for a in args if a.startswith("-")]  # -m, --cfg job: before the overrides
        own_callbacks = any(a.startswith("callbacks=") for a in args)
        rest = [a for a in REST if not (own_callbacks and a.startswith("callbacks."))]
        args = [*flags, *([] if own_model else MODEL), *rest, *(["data.root=@MNIST@"] if case.root else []),
                *([f"hydra.run.dir={case_dir}/run"] if case.run_dir else []), *(a for a in args if a not in flags)]
    return [expand(a, case_dir, work) for a in args]


def snapshot(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def run_case(i: int, case: Case, work: Path) -> dict:
    case_dir = work / "cases" / f"{i:03d}"
    case_dir.mkdir(parents=True)
    if case.setup:
        case.setup(case_dir, work)
    before = {k: snapshot(case_dir / k) for k in case.keep}
    argv = argv_of(case, case_dir, work)
    env = child_env(case_dir / "logs", {k: expand(v, case_dir, work) for k, v in case.env.items()})
    record = {"case": i, "script": case.script, "args": case.args, "env": case.env, "expect": case.expect}
    # its own session: on a timeout (and after it ends) what it started is ended too (a DDP launch's children)
    proc = subprocess.Popen([sys.executable, str(ROOT / case.script), *argv], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=case.timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        rc = None
    _kill_group(proc.pid)
    changed = [k for k in case.keep if snapshot(case_dir / k) != before[k]]
    verdict, why = classify(case, rc, out, err, changed)
    record.update(verdict=verdict, why=why, rc=rc, stdout_tail=out[-1500:], stderr_tail=err[-3000:])
    if (case_dir / "ro").exists():
        os.chmod(case_dir / "ro", 0o755)
    return record


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def classify(case: Case, rc: int | None, out: str, err: str, changed: list[str]) -> tuple[str, str]:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    last = lines[-1][:300] if lines else "(no stderr)"
    if rc is None:
        return "bad", f"hung past {case.timeout} s; last stderr line: {last}"
    if rc < 0 or rc == 137:
        return "bad", f"killed (signal {-rc if rc < 0 else 9}; the OOM killer?); last stderr line: {last}"
    if changed:
        return "bad", f"exit {rc} but changed what was there: {', '.join(changed)}"
    if "Traceback" in err:
        tail = [ln for ln in lines if not ln.startswith(" ")]
        return "bad", f"exit {rc} with a traceback: {tail[-1][:300] if tail else last}"
    if rc == 0:
        if case.expect in ("ok", "either"):
            if case.expect == "ok" and case.out and case.out not in out:
                return "bad", f"exit 0 without {case.out!r} on stdout"
            return "clean", (f"ran; {out.strip().splitlines()[-1][:200]}" if out.strip() else "ran")
        return "bad", f"exit 0: the bad input ran ({(out.strip().splitlines() or ['no output'])[-1][:200]})"
    if case.expect == "ok":
        return "bad", f"exit {rc} on a good input: {last}"
    want = case.status if case.expect == "error" else 2
    if rc != want:
        return "bad", f"exit {rc} (not {want}): {last}"
    if len(errors) != case.errors:
        return "bad", f"exit {rc} with {len(errors)} 'error: ' line(s), not {case.errors}: {last}"
    return "clean", errors[-1][:400]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="write every case as a JSON line to this file")
    p.add_argument("--only", help="run only the cases whose command contains this text")
    p.add_argument("--work", type=Path, help="the work folder (default: a new temporary one, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_inputs_"))
    work.mkdir(parents=True, exist_ok=True)
    todo = [(i, c) for i, c in enumerate(cases()) if not args.only or args.only in c.command()]
    try:
        if not (work / "trained" / "checkpoints" / "last.ckpt").exists():
            print(f"making the data and the tiny checkpoint in {work} ...", file=sys.stderr, flush=True)
            build_work(work)
        shutil.rmtree(work / "cases", ignore_errors=True)
        records = []
        log = open(args.json, "w") if args.json else None  # each case as it ends (sorted again at the end)
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = {pool.submit(run_case, i, c, work): (i, c) for i, c in todo}
            for fut in concurrent.futures.as_completed(futures):
                i, c = futures[fut]
                rec = fut.result()
                records.append(rec)
                if log:
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                env = " ".join(f"{k}={v}" for k, v in c.env.items())
                print(f"{rec['verdict']:5s}  {(env + ' ') if env else ''}{c.command()}  -> {rec['why']}", flush=True)
        records.sort(key=lambda r: r["case"])
        n_clean = sum(r["verdict"] == "clean" for r in records)
        print(f"{n_clean} clean of {len(records)} ({100 * n_clean / max(len(records), 1):.1f}%)")
        if log:
            log.close()
            with open(args.json, "w") as f:
                for r in records:
                    f.write(json.dumps(r) + "\n")
    finally:
        if not args.keep and not args.work:
            for d in (work / "cases").glob("*/ro") if (work / "cases").exists() else []:
                os.chmod(d, 0o755)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
