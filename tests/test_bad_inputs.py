"""Every bad input a user was seen to make (issue 25 §4) gets one line that says what was wrong and
what to do, exit status 2, and nothing already written is lost. The checks are tested where they
live (fast), and the entry points end to end on the small generated MNIST (subprocesses)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import training.data
from models.errors import CheckpointError, ConfigError, StorageError
from tests.conftest import ROOT
from tests.test_cli import TINY, error_line, run
from training import cli, memory
from training.checkpoint import safe_load

# --- the top-level settings ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, 2**32, "abc", 1.5, True, None])
def test_a_seed_outside_what_numpy_takes_is_refused(seed):
    with pytest.raises(ConfigError, match=r"seed must be an integer from 0 to 4294967295, got"):
        cli.check_run_config(OmegaConf.create({"seed": seed, "matmul_precision": "high"}))


def test_good_seeds_and_a_bad_matmul_precision():
    for seed in (0, 42, 2**32 - 1):
        cli.check_run_config(OmegaConf.create({"seed": seed, "matmul_precision": "medium"}))
    with pytest.raises(ConfigError, match="matmul_precision must be one of highest, high, medium, got 'low'"):
        cli.check_run_config(OmegaConf.create({"seed": 1, "matmul_precision": "low"}))


# --- data modules: explicit arguments, checked against the data --------------------------------


def test_a_misspelled_data_argument_is_refused_with_the_closest_name(mnist_root):
    with pytest.raises(ConfigError, match=r"data\.bacth_size \(did you mean data\.batch_size\?\) is not a setting "
                                          r"of MNISTDataModule; its settings: augment, batch_size"):
        training.data.MNISTDataModule(root=str(mnist_root), bacth_size=3)
    with pytest.raises(ConfigError, match=r"data\.root_dir \(did you mean data\.root\?\), data\.zzz are not settings"):
        training.data.CIFAR10DataModule(root_dir="x", zzz=1)


@pytest.mark.parametrize("key, value, says", [
    ("in_channels", 3, r"data\.in_channels=3, but MNIST's images have 1 channel"),
    ("num_classes", 5, r"data\.num_classes=5, but MNIST has 10 classes"),
    ("image_size", 32, r"data\.image_size=32, but MNIST's images are 28 pixels a side \(to train at another size, "
                       r"set data\.resize instead\)"),
])
def test_a_declared_size_the_data_does_not_have_is_refused_before_training(mnist_root, key, value, says):
    dm = training.data.MNISTDataModule(root=str(mnist_root), download=False, val_size=50, **{key: value})
    with pytest.raises(ConfigError, match=says):
        dm.setup("fit")


def test_the_declared_sizes_of_the_data_pass_and_resize_counts(mnist_root):
    training.data.MNISTDataModule(root=str(mnist_root), download=False, val_size=50, in_channels=1, num_classes=10,
                                  image_size=28).setup("fit")
    training.data.MNISTDataModule(root=str(mnist_root), download=False, val_size=50, resize=16,
                                  image_size=16).setup("fit")


def test_a_shift_that_moves_the_image_out_of_its_frame_is_refused(mnist_root):
    dm = training.data.MNISTDataModule(root=str(mnist_root), download=False, val_size=50, augment=True,
                                       crop_padding=14)
    with pytest.raises(ConfigError, match=r"data\.crop_padding=14 shifts MNIST's 28x28 images by up to 14 pixels"):
        dm.setup("fit")
    training.data.MNISTDataModule(root=str(mnist_root), download=False, val_size=50, augment=True,
                                  crop_padding=13).setup("fit")  # below half the image: allowed
    training.data.MNISTDataModule(root=str(mnist_root), download=False, val_size=50, augment=False,
                                  crop_padding=100).setup("fit")  # no augmentation: the shift is never used


# --- third-party errors that are the user's to fix ---------------------------------------------


@pytest.mark.parametrize("code, says", [
    (errno.ENOSPC, "the disk is full"), (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"), (errno.ENOTDIR, "a file stands where a folder should be"),
])
def test_a_failed_write_is_named_with_its_reason(tmp_path, code, says):
    e = OSError(code, os.strerror(code), str(tmp_path / "run" / "last.ckpt"))
    translated = cli.translate_error(e)
    assert isinstance(translated, StorageError)
    assert f"cannot write {tmp_path / 'run' / 'last.ckpt'}: {says}" in str(translated)
    assert "Nothing already written was removed" in str(translated)
    # wrapped (Lightning and Hydra re-raise) and without a file name: the run folder is named
    try:
        try:
            raise OSError(code, os.strerror(code))
        except OSError as inner:
            raise RuntimeError("Error in call to target") from inner
    except RuntimeError as outer:
        assert f"cannot write to {tmp_path}: {says}" in str(cli.user_error(outer, tmp_path))
    assert cli.translate_error(OSError(errno.ENOENT, "no such file")) is None  # not a write error: a traceback


def test_a_value_left_open_and_a_missing_gpu_are_named():
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import MissingMandatoryValue

    cfg = OmegaConf.create({"ckpt_path": "???", "data": {"root": "???"}})
    for key, hint in (("ckpt_path", "ckpt_path=<run>/checkpoints/last.ckpt"), ("data.root", "data.root=<folder>")):
        with pytest.raises(MissingMandatoryValue) as info:
            OmegaConf.select(cfg, key, throw_on_missing=True)
        assert f"{key} must be given" in str(cli.translate_error(info.value)) and hint in str(cli.translate_error(info.value))
    gpu = cli.translate_error(MisconfigurationException("No supported gpu backend found!"))
    assert isinstance(gpu, ConfigError) and "use trainer=cpu" in str(gpu)


def test_a_full_disk_during_torch_save_is_reported_as_full(tmp_path, monkeypatch):
    """torch's zip writer says "[enforce fail at inline_container.cc] unexpected pos" on a full
    disk; atomic_torch_save turns that into ENOSPC (the partial file removed, the old file kept)."""
    from training import callbacks

    target = tmp_path / "last.ckpt"
    target.write_bytes(b"the previous checkpoint")

    def full_disk_save(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(callbacks.torch, "save", full_disk_save)
    monkeypatch.setattr(callbacks, "_disk_full", lambda folder: True)
    with pytest.raises(OSError) as info:
        callbacks.atomic_torch_save({"a": 1}, target)
    assert info.value.errno == errno.ENOSPC and "the disk is full" in str(cli.translate_error(info.value))
    assert target.read_bytes() == b"the previous checkpoint" and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    monkeypatch.setattr(callbacks, "_disk_full", lambda folder: False)  # another RuntimeError stays itself
    with pytest.raises(RuntimeError, match="unexpected pos"):
        callbacks.atomic_torch_save({"a": 1}, target)


# --- checkpoints ----------------------------------------------------------------------------------


def test_checkpoint_errors_are_whole_sentences_without_torchs_unsafe_advice(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"a": torch.randn(2000)}, good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        safe_load(cut)
    text = str(info.value)
    assert "is truncated or damaged" in text and text.endswith("or copy this one again")
    assert "weights_only" not in text and "high likelihood" not in text

    class Unsafe:  # an object whose loading would run code
        def __reduce__(self):
            return (os.getcwd, ())

    evil = tmp_path / "evil.ckpt"
    torch.save({"x": Unsafe()}, evil)
    with pytest.raises(CheckpointError) as info:
        safe_load(evil)
    assert "weights_only" not in str(info.value) and "could run code" in str(info.value)


# --- memory ---------------------------------------------------------------------------------------


def test_a_batch_that_cannot_fit_is_refused_before_it_is_allocated(monkeypatch):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 28 * 28, 10))
    image = torch.zeros(1, 28, 28)
    per_image = memory.activation_bytes_per_image(net, image)
    assert per_image == 4 * (8 * 28 * 28 * 3 + 10 + 28 * 28)  # conv, relu, flatten, linear outputs + the input
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000 * per_image * memory.TRAIN_FACTOR)
    memory.check_batches_fit(net, image, {"data.batch_size": (1000, 55000)}, torch.device("cpu"))  # just fits
    with pytest.raises(ConfigError, match=r"data\.batch_size=10000000 \(the whole split: 55,000 images\) needs about "
                                          r".* GiB .* Use data\.batch_size=512 or less"):
        memory.check_batches_fit(net, image, {"data.batch_size": (10_000_000, 55000)}, torch.device("cpu"))
    memory.check_batches_fit(net, image, {"data.batch_size": (10_000_000, 900)}, torch.device("cpu"))  # the split fits
    monkeypatch.undo()
    assert memory.available_bytes(torch.device("cpu")) > 0  # /proc/meminfo is read on Linux


# --- the entry points, end to end ------------------------------------------------------------------


def eval_config(**values):
    return OmegaConf.create({"ckpt_path": "x.ckpt", "data": None, **values})


def test_eval_refuses_what_would_not_change_what_it_evaluates():
    from eval import check_eval_config

    check_eval_config(eval_config())
    with pytest.raises(ConfigError, match="ckpt_path must be given"):
        check_eval_config(OmegaConf.create({"ckpt_path": "???", "data": None}))
    with pytest.raises(ConfigError, match="evaluates the network saved in the checkpoint"):
        check_eval_config(eval_config(model={"model": "lenet5"}))
    with pytest.raises(ConfigError, match=r"data\.root without a data set: .* data_root=<folder>"):
        check_eval_config(eval_config(data={"root": "/data"}))


@pytest.fixture(scope="module")
def logs(tmp_path_factory, mnist_root):
    return tmp_path_factory.mktemp("logs")


@pytest.mark.parametrize("script, args, says", [
    ("train.py", ["seed=abc"], "seed must be an integer from 0 to 4294967295, got 'abc'"),
    ("train.py", ["trainer=gpu"], "this machine has no GPU that PyTorch can use"),
    ("train.py", ["model=neocognitron_fukushima", "trainer.max_epochs=1"], "use trainer.max_epochs=3"),
    ("train.py", ["model=neocognitron_fukushima", "model.model_kwargs.adjust_epochs=2", "trainer.max_epochs=3"],
     "and 2 adjusting pass(es)): trainer.max_epochs=3 stops before its top layer's adjusting passes; use trainer.max_epochs=5"),
    ("train.py", ["model.optimizer.lr=1e9", "data.augment=false"], "no checkpoint had been written yet"),
    ("train.py", ["hydra.run.dir=/proc/neolenet_cannot_be_made/run"], "cannot create the run folder /proc/"),
    ("eval.py", [], "ckpt_path must be given"),
    ("eval.py", ["ckpt_path=x.ckpt", "model=lenet5"], "evaluates the network saved in the checkpoint"),
])
def test_each_bad_input_ends_with_one_line_and_status_2(script, args, says, logs, mnist_root):
    if torch.cuda.is_available() and "trainer=gpu" in args:
        pytest.skip("this machine has a GPU")
    own_model = any(a.startswith("model=") for a in args)
    tiny = [a for a in TINY if not (own_model and a.startswith("model"))]
    base = [*tiny, f"data.root={mnist_root}"] if script == "train.py" else []
    r = run(script, [*base, *args], logs / script, timeout=240)
    assert r.returncode == 2, r.stderr[-2000:]
    assert says in error_line(r)


def test_a_log_dir_that_is_a_file_is_named_and_left_as_it_was(tmp_path, mnist_root):
    blocker = tmp_path / "logs"
    blocker.write_text("a file the user keeps")
    r = run("train.py", [*TINY, f"data.root={mnist_root}"], blocker)
    assert r.returncode == 2 and "a file stands where a folder should be" in error_line(r)
    assert blocker.read_text() == "a file the user keeps"


def _mount_tmpfs(where: Path, size: str, *options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    opts = ",".join((f"size={size}", *options))
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True).returncode == 0


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_a_full_or_read_only_disk_is_named_end_to_end(tmp_path, mnist_root, kind):
    """On a real small file system (tmpfs, where this machine lets a test mount one): the run
    ends with the one line naming the disk as full (or read-only), exit status 2."""
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "40k", *(("ro",) if kind == "read-only" else ())):
        pytest.skip("cannot mount a small file system here")
    try:
        r = run("train.py", [*TINY, f"data.root={mnist_root}", f"hydra.run.dir={disk / 'run'}"], tmp_path / "logs")
        says = "the disk is full" if kind == "full" else "the file system is read-only"
        assert r.returncode == 2 and says in error_line(r)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


from tests.test_images import ckpt, run_predict  # noqa: E402,F401  (the tiny trained checkpoint)


def test_predict_debug_shows_the_traceback_of_an_unreadable_file(ckpt, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("NEOLENET_DEBUG", "0")  # --debug sets it to 1: restored after the test
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    code, _, err = run_predict(capsys, ckpt, bad)
    assert code == 1 and "Traceback" not in err and f"error: {bad} is not an image" in err
    code, _, err = run_predict(capsys, ckpt, bad, "--debug")
    assert code == 1 and "Traceback (most recent call last)" in err and f"error: {bad} is not an image" in err


# --- found by benchmarks/bench_inputs.py -------------------------------------------------------


@pytest.mark.parametrize("key, value, says", [
    ("test", "maybe", "test must be true or false (test the best checkpoint after fitting), got 'maybe'"),
    ("record", [1], "record must be null or a name of letters, digits, '_', '-' or '.'"),
    ("record", "a/b", "record must be null or a name of letters, digits"),
])
def test_train_pys_own_switches_are_checked_before_the_run(key, value, says):
    cfg = OmegaConf.create({"seed": 1, "matmul_precision": "high", "test": True, "record": None})
    cli.check_run_config(cfg)
    cfg[key] = value
    with pytest.raises(ConfigError) as info:
        cli.check_run_config(cfg)
    assert str(info.value).startswith(says)


def test_a_train_subset_larger_than_the_training_split_is_refused(mnist_root):
    dm = training.data.MNISTDataModule(root=str(mnist_root), download=False, val_size=1000, train_subset=600)
    with pytest.raises(ConfigError, match=r"data\.train_subset=600, but the training split has 500 images \(of 1500, "
                                          r"data\.val_size=1000 held out for validation\): use data\.train_subset=500"):
        dm.setup("fit")
    training.data.MNISTDataModule(root=str(mnist_root), download=False, val_size=1000, train_subset=500).setup("fit")


def test_a_tensor_too_large_to_allocate_names_the_settings_that_make_it():
    """A network built for data.resize=100000 asks torch's allocator for 600 GB: one line, not Hydra's exit 1."""
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                       "tried to allocate 639974400256 bytes. Error code 12 (Cannot allocate memory)")
    text = str(cli.translate_error(cpu))
    assert text.startswith("not enough memory: a tensor of 596.0 GiB could not be allocated on the CPU") and "data.resize" in text
    gpu = cli.translate_error(RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.15 GiB total)"))
    assert isinstance(gpu, ConfigError) and "a tensor of 20.00 GiB could not be allocated on the GPU" in str(gpu)
    assert cli.translate_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    try:  # torch's own error, wrapped as Hydra's instantiate wraps it
        try:
            torch.empty(2**62, dtype=torch.uint8)
        except RuntimeError as inner:
            raise RuntimeError("Error in call to target 'training.module.Classifier'") from inner
    except RuntimeError as outer:
        assert str(cli.user_error(outer)).startswith("not enough memory: a tensor of 4294967296.0 GiB")


def test_a_single_class_is_refused_by_the_data_module_before_the_model_is_built(mnist_root):
    with pytest.raises(ConfigError, match=r"data\.num_classes must be at least 2 \(a classifier tells two classes apart"):
        training.data.MNISTDataModule(root=str(mnist_root), num_classes=1)
    training.data.MNISTDataModule(root=str(mnist_root), num_classes=10)


def test_more_cpu_training_processes_than_cores_are_refused(monkeypatch):
    """trainer.devices=64 on a 2-core machine started 64 copies of the run, which filled the
    memory until the kernel's out-of-memory killer ended them (and others)."""
    monkeypatch.setattr(cli.settings, "_cpu_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"trainer\.devices=64 starts 64 training processes on the CPU, but this "
                                          r"machine has 2 core\(s\): use trainer\.devices=2 or less"):
        cli.check_trainer_config(OmegaConf.create({"accelerator": "cpu", "devices": 64}))
    cli.check_trainer_config(OmegaConf.create({"accelerator": "cpu", "devices": 4}))  # trainer=ddp: a few are fine
    monkeypatch.setattr(cli.settings, "_cpu_count", lambda: 1)
    cli.check_trainer_config(OmegaConf.create({"accelerator": "auto", "devices": 2}))
    cli.check_trainer_config(OmegaConf.create({"accelerator": "gpu", "devices": 64}))  # Lightning counts GPUs
    cli.check_trainer_config(OmegaConf.create({"accelerator": "cpu", "devices": 8, "num_nodes": 4}))


def test_command_line_option_mistakes_are_one_line_with_status_2(capsys):
    """bench_tolerance.py's argparse mistakes printed argparse's usage and '<prog>: error: ...' (no
    line starting with 'error: '), and mismatched --labels exited with status 1."""
    import argparse
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_tolerance

    for argv, says in (([], "error: the following arguments are required: --ckpt (see "),
                       (["--ckpt", "a.ckpt", "--limit", "abc"], "error: argument --limit: invalid int value: 'abc'"),
                       (["--ckpt", "a.ckpt", "--limit", "0"], "error: --limit must be >= 1")):
        with pytest.raises(SystemExit) as info:
            bench_tolerance.main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.startswith(says) and len(err.strip().splitlines()) == 1, err
    with pytest.raises(ConfigError, match=r"give 1 distinct --labels, one per --ckpt \(got 2\)"):
        bench_tolerance.labels_for(argparse.Namespace(labels=["a", "b"], ckpt=["a.ckpt"]), ["convnet"])


def test_lightnings_late_refusals_of_trainer_settings_are_named():
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    for error, says in (
        (ValueError("You selected an invalid accelerator name: `accelerator='quantum'`. Available names are: auto, "
                    "tpu, mps, cuda, cpu."), "trainer.accelerator: You selected an invalid accelerator name"),
        (MisconfigurationException("`MPSAccelerator` can not run on your system since the accelerator is not "
                                   "available."), "trainer.accelerator=mps: this machine has no such device; use trainer=cpu"),
        (ModuleNotFoundError("Requirement 'torch_xla>=1.13' not met."), "trainer.accelerator=tpu needs torch_xla"),
        (ValueError(" `val_check_interval` (100000) must be less than or equal to the number of the training batches "
                    "(10). If you want to disable"), "trainer.val_check_interval=100000 is more than the 10 training "
                                                     "batches of an epoch: use at most 10"),
    ):
        translated = cli.translate_error(error)
        assert isinstance(translated, ConfigError) and str(translated).startswith(says), translated
    assert cli.translate_error(ValueError("some other value")) is None


def test_convnet_blocks_that_are_not_a_list_of_settings_and_a_negative_schedule_are_refused():
    import models
    from training.module import Classifier

    for blocks in ("abc", [1, 2]):
        with pytest.raises(ConfigError, match=r"convnet: model\.model_kwargs\.blocks must be a list of block settings"):
            models.get_model("convnet", blocks=blocks, mlp=[16])
    one_cycle = {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "_partial_": True, "total_steps": None}
    with pytest.raises(ConfigError, match=r"model\.scheduler\.max_lr must be a learning rate >= 0, got -1"):
        Classifier(model="convnet", scheduler={**one_cycle, "max_lr": -1})
    Classifier(model="convnet", scheduler={**one_cycle, "max_lr": 0.01})


def test_a_lenet_rbf_j_that_is_not_a_number_and_an_eval_ckpt_path_list_are_refused():
    import models
    from eval import check_eval_config

    with pytest.raises(ConfigError, match=r"LeNet: rbf_j \(model\.model_kwargs\.rbf_j, the e\^-j rubbish term\) must be "
                                          r"a number >= 0, got 'abc'"):
        models.get_model("lenet5", rbf_j="abc")
    models.get_model("lenet5", rbf_j=2)
    with pytest.raises(ConfigError, match=r"ckpt_path must be one file, .* got \[1\]"):
        check_eval_config(OmegaConf.create({"ckpt_path": [1], "data": None}))


def test_an_override_without_a_key_is_one_line():
    from hydra.errors import ConfigCompositionException

    text = cli.hydra_error_message(ValueError("Config group override must be a string or a list. Got int"),
                                   ROOT / "configs", "train", ["=3"])
    assert text == ("cannot read an override: Config group override must be a string or a list. Got int "
                    "(an override is key=value, e.g. seed=3)")
    assert cli.hydra_error_message(ConfigCompositionException("x"), ROOT / "configs", "train", []) == "x"


def test_bench_tolerance_refuses_a_bad_sigma_and_an_output_folder_that_is_missing(tmp_path, capsys):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_tolerance

    for argv, says in ((["--elastic-sigma", "-1"], "error: --elastic-sigma must be > 0"),
                       (["--json", str(tmp_path / "no" / "t.json")], f"error: --json {tmp_path / 'no' / 't.json'}: the "
                                                                    f"folder {tmp_path / 'no'} does not exist")):
        with pytest.raises(SystemExit) as info:
            bench_tolerance.main(["--ckpt", "a.ckpt", *argv])
        assert info.value.code == 2 and capsys.readouterr().err.startswith(says)


def test_a_run_folder_that_cannot_be_made_is_named(capsys):
    """hydra.run.dir=/proc/x/run: Hydra's mkdir failed with a FileNotFoundError traceback (exit 1). The guard
    prints one line and exits 2 itself (Hydra turns a callback's exception into a warning and goes on)."""
    from training.runs import RunFolderGuard

    config = OmegaConf.create({"hydra": {"output_subdir": ".hydra", "run": {"dir": "/proc/bench_inputs/run"}}})
    with pytest.raises(SystemExit) as info:
        RunFolderGuard().on_run_start(config)
    assert info.value.code == 2
    assert capsys.readouterr().err == ("error: cannot create the run folder /proc/bench_inputs/run: No such file or "
                                       "directory (/proc/bench_inputs); choose a folder you can write "
                                       "(LOG_DIR=<folder>, or hydra.run.dir=<folder>)\n")


def test_predict_argument_mistakes_are_one_line(capsys):
    import predict

    for argv, says in ((["x.ckpt", "img.png", "--topk", "abc"], "argument --topk: invalid int value: 'abc'"),
                       ([], "the following arguments are required: checkpoint, images")):
        with pytest.raises(SystemExit) as info:
            predict.main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err == f"error: {says} (see predict.py --help)\n", err
