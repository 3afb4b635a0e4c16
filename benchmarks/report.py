"""Write the results tables of the README and docs/ from the records in benchmarks/results/*.jsonl.

    python benchmarks/report.py            # rewrite the tables between the markers
    python benchmarks/report.py --check    # exit 1 when a file differs from what the records give

Each table lives between ``<!-- report:<table> -->`` and ``<!-- /report:<table> -->`` in the file
``TABLE_FILES`` names (the README: a few headline rows; docs/results.md and docs/speed.md: the rest).
A row selects records (a file and the values some keys must have), takes one figure from each
(a metric) and prints n, mean ± std over the records (seeds), the standard error of the mean,
the paper's figure and the gap to it in standard errors, and which lines of which file the
figure comes from. No figure in those tables is typed by hand: a test runs ``--check``.

The tables are here; the machinery they are made of (``Row``, ``select``, ``render_row``, ...) is in
``report_core.py``, the Fukushima tables in ``report_fukushima.py`` and the prose figures
(``<!-- fig:KEY:WHAT -->``, ``PROSE_ROWS``) in ``report_prose.py``, none of which imports this file.
Their names are re-exported here (``report.Row``, ``report.top_rows``, ``report.PROSE_ROWS``, ...);
``figure`` and ``update_figures`` read this module's ``TABLES`` and ``PROSE_ROWS`` when called.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # the project (training, models) and report_core & co

import report_prose  # noqa: E402
from report_core import (HEADER, Row, _get, _lines, _tested_last_epoch, figures, gap_se,  # noqa: E402,F401
                         render_row, select, summary, traceable)
from report_fukushima import (FUKUSHIMA_ROW, fukushima_run, fukushima_settings, fukushima_table,  # noqa: E402,F401
                              fukushima_top_table, top_rows)
from report_prose import FIG, PROSE_ROWS, _printed, _prose  # noqa: E402,F401
from training.records import read_records  # noqa: E402


# The README's tables. Figures are test error in % (LeNet, as the paper gives them) or test
# accuracy in %; each command appends the records its row reads.
def _test_run(r: dict) -> bool:  # a test figure: no validation split, the paper's step (x1)
    return "split" not in r and (r.get("step_scale") or 1.0) == 1.0


TABLES: dict[str, list[Row] | Callable[[], str]] = {
    "lenet": [
        # issue 26: the paper's per-pattern updates, each setting chosen on validation (the choices table)
        Row("`lenet1` as published: per pattern, the digit 16×16 in 28×28 (`init=pytorch`), test error %", "MNIST",
            "lenet", {"recipe": "lenet1_16in28", "per_sample": True, "epochs": 20, "model_kwargs": {"init": "pytorch"}},
            "test_err", "python benchmarks/bench_lenet.py --models lenet1_16in28 --per-sample --seeds 0 1 2 3 4 "
            "--set init=pytorch", paper=1.7, paper_n=10_000, keep=_test_run, key="lenet1_paper"),
        Row("`lenet4` as published: per pattern (`init=pytorch`), test error %", "MNIST", "lenet",
            {"recipe": "lenet4", "per_sample": True, "epochs": 20, "model_kwargs": {"init": "pytorch"}}, "test_err",
            "python benchmarks/bench_lenet.py --models lenet4 --per-sample --seeds 0 1 2 3 4 --set init=pytorch",
            paper=1.1, paper_n=10_000, keep=lambda r: _test_run(r) and not r.get("boosted"), key="lenet4_paper"),
        Row("boosted `lenet4` (three nets, [1998] III.C.9), test error %", "MNIST", "lenet",
            {"recipe": "lenet4_boosted", "boosted": True}, "test_err",
            "python benchmarks/bench_lenet_boost.py --seeds 0 1 2 3 4", paper=0.7, paper_n=10_000,
            keep=lambda r: "split" not in r, key="lenet4_boosted"),
        Row("`lenet5` with LeCun's distortions (45% of each pass distorted), test error %", "MNIST", "lenet",
            {"model": "lenet5", "recipe": "lenet5", "batch_size": 16, "step_scale": 4}, "test_err",
            "python benchmarks/bench_lenet.py --models lenet5 --distort --seeds 0 1 2 3 4 --train-curve", paper=0.8,
            paper_n=10_000, keep=lambda r: "split" not in r and bool(r.get("distort")), key="lenet5_distort"),
        Row("`lenet5` (SDLM, paper schedule), test error %", "MNIST", "lenet",
            {"model": "lenet5", "batch_size": 16, "step_scale": 4, "epochs": 20, "model_kwargs": {}},
            "test_err", "python benchmarks/bench_lenet.py --models lenet5 --seeds 0 1 2 3 4 5", paper=0.95,
            paper_n=10_000, keep=lambda r: not r.get("distort"), key="lenet5_batch16"),
        # LeNet-4's step scale and both networks' init chosen on validation (docs/results.md)
        Row("`lenet4` (`init=pytorch`, SDLM step scale ×2), test error %", "MNIST", "lenet",
            {"model": "lenet4", "batch_size": 16, "step_scale": 2, "model_kwargs": {"init": "pytorch"}},
            "test_err", "python benchmarks/bench_lenet.py --models lenet4 --seeds 0 1 2 --set init=pytorch", paper=1.1,
            paper_n=10_000, key="lenet4_batch16"),
        Row("`lenet1` (`init=pytorch`), test error %", "MNIST", "lenet",
            {"model": "lenet1", "batch_size": 16, "step_scale": 4, "model_kwargs": {"init": "pytorch"}},
            "test_err", "python benchmarks/bench_lenet.py --models lenet1 --seeds 0 1 2 --set init=pytorch", paper=1.7,
            paper_n=10_000, key="lenet1_batch16"),
        Row("`lenet1989` on all of MNIST at 16×16 (LeNet-5's recipe), test error %", "MNIST", "lenet",
            {"model": "lenet1989", "batch_size": 16, "step_scale": 4, "model_kwargs": {}}, "test_err",
            "python benchmarks/bench_lenet.py --models lenet1989 --seeds 0 1 2",
            note="5.0 on its own zip codes: other data, no gap", key="lenet1989_mnist"),
        Row("`lenet1989` on the 1989 paper's sizes (7,291 training / 2,007 test digits drawn from MNIST at 16×16), "
            "per pattern, plain SGD, 23 passes, test error %", "MNIST, 7,291 / 2,007", "lenet",
            {"model": "lenet1989", "split": "zip1989", "per_sample": True, "optimizer": "sgd", "epochs": 23},
            "test_err", "python benchmarks/bench_lenet.py --models lenet1989 --split zip1989 --per-sample --optimizer sgd "
            "--lr 0.003 --no-shuffle --epochs 23 --seeds 0 1 2 3 4",
            note="5.0 on its zip codes; 4.09 in karpathy/lecun1989-repro (one run, its own draw): no gap, other draws",
            key="lenet1989_zip"),
        Row("`lenet5_modern` (ReLU, max pool, CE, AdamW), test error %", "MNIST", "lenet",
            {"model": "lenet5_modern", "model_kwargs": {}}, "test_err", "python benchmarks/bench_lenet.py --models lenet5_modern --seeds 0 1 2", key="lenet5_modern"),
        Row("`lenet5` through the harness (`experiment=lenet5_paper`: Lightning, the same SDLM and schedule), "
            "test error %", "MNIST", "lenet5_harness", {"source": "train.py", "model": "lenet5", "epochs": 20},
            lambda r: 1 - r["metrics"]["test/acc"], "python train.py experiment=lenet5_paper seed=S record=lenet5_harness",
            paper=0.95, scale=100, paper_n=10_000),
    ],
}


# Fukushima's network with the compact top chosen on validation (issue 27 §1), as train.py overrides.
COMPACT8 = ("model.model_kwargs.thetas_learn=[0.75,0.7,0.5] model.model_kwargs.margin=0.0 "
            "model.model_kwargs.reinforce=true model.model_kwargs.top_epochs=3 model.model_kwargs.adjust_epochs=8 "
            "model.model_kwargs.adjust_rate=0.1 model.model_kwargs.intvec_k=1 trainer.max_epochs=13")


# The other models, through train.py with record=<name> (the checkpoint chosen on validation is tested).
TABLES["models"] = [
    Row("`neocognitron` (the default `python train.py`: 12 epochs, random shifts), test accuracy %",
        "MNIST (55k train, 5k validation)", "neocognitron_default",
        {"source": "train.py", "model": "neocognitron", "val_size": 5000, "epochs": 12}, "metrics.test/acc",
        "python train.py seed=S record=neocognitron_default", scale=100),
    Row("`neocognitron`, 4 epochs (`experiment=neocognitron_mnist`: the same model, data and shifts), test accuracy %",
        "MNIST (55k train, 5k validation)", "tolerance_models", {"source": "train.py", "model": "neocognitron", "epochs": 4},
        "metrics.test/acc", "python train.py model=neocognitron data.augment=true trainer.max_epochs=4 seed=S "
        "record=tolerance_models", scale=100,
        keep=lambda r: "model=neocognitron" in r["overrides"] and "data.augment=true" in r["overrides"]),
    Row("`convnet` (12 epochs, random shifts), test accuracy %", "MNIST (55k train, 5k validation)", "convnet_default",
        {"source": "train.py", "model": "convnet", "val_size": 5000, "epochs": 12}, "metrics.test/acc",
        "python train.py model=convnet seed=S record=convnet_default", scale=100),
    Row("`neocognitron_fukushima` (Add-if-Silent with frozen planes, the default), test accuracy %",
        "MNIST (55k train, 5k validation)", "fukushima",
        {"source": "train.py", "model": "neocognitron_fukushima", "val_size": 5000, "epochs": 3}, "metrics.test/acc",
        "python train.py experiment=neocognitron_fukushima_mnist seed=S record=fukushima", scale=100,
        note="98.6 on ETL-1 (another data set)", key="fukushima_default"),
    *(Row(f"`neocognitron_fukushima`, compact top (`experiment=neocognitron_fukushima_compact`), {what}",
          "MNIST (55k train, 5k validation)", "fukushima_compact",
          {"source": "train.py", "model": "neocognitron_fukushima", "val_size": 5000, "epochs": 9}, metric,
          "python train.py experiment=neocognitron_fukushima_compact seed=S record=fukushima_compact", scale=scale,
          digits=digits, note=note)  # issue 27's goals, not a paper's figures: no gap
      for what, metric, scale, digits, note in (
          ("test accuracy %", "metrics.test/acc", 100, 2, "goal (issue 27): at least 99.0"),
          ("reference vectors", "metrics.train/us4_refs", 1, 0, "goal (issue 27): at most 3,000"),
          ("MB of the run folder", "metrics.disk/run_mb", 1, 1, "goal (issue 27): a checkpoint of at most 30"))),
    *(Row(f"`neocognitron_fukushima`, compact top with 8 adjusting passes (the best compact top on validation, "
          f"`fukushima_top.jsonl` 3), {what}", "MNIST (55k train, 5k validation)", "fukushima_top_default",
          {"source": "train.py", "model": "neocognitron_fukushima", "val_size": 5000, "epochs": 13}, metric,
          f"python train.py experiment=neocognitron_fukushima_mnist {COMPACT8} seed=S record=fukushima_top_default",
          scale=scale, digits=digits, note=note, key=f"compact8_{key}")
      for what, metric, scale, digits, note, key in (
          ("test accuracy %", "metrics.test/acc", 100, 2, "goal (issue 27): at least 99.0", "test"),
          ("reference vectors", "metrics.train/us4_refs", 1, 0, "goal (issue 27): at most 3,000", "refs"),
          ("MB of the run folder", "metrics.disk/run_mb", 1, 1, "goal (issue 27): a checkpoint of at most 30", "mb"))),
    # CIFAR-10: this machine has only the first 1,000 test images (../shared/data/README)
    Row("`neocognitron` on CIFAR-10 (`experiment=neocognitron_cifar10`: wider, batch norm, 10 epochs), test accuracy %",
        "CIFAR-10 (45k train, 5k validation; the first 1,000 test images)", "neocognitron_cifar10",
        {"source": "train.py", "model": "neocognitron"}, "metrics.test/acc",
        "python train.py experiment=neocognitron_cifar10 seed=S record=neocognitron_cifar10", scale=100),
    Row("`neocognitron_fukushima` on CIFAR-10 (grey, 3 epochs: its MNIST settings), test accuracy %",
        "CIFAR-10 (45k train, 5k validation; the first 1,000 test images)", "fukushima_cifar10",
        {"source": "train.py", "model": "neocognitron_fukushima"}, "metrics.test/acc",
        "python train.py model=neocognitron_fukushima data=cifar10 data.augment=false data.batch_size=250 "
        "trainer.max_epochs=3 seed=S record=fukushima_cifar10", scale=100),
    Row("`convnet`, `experiment=cifar10_fast` (12 epochs in at most 10 minutes, flip TTA), test accuracy %",
        "CIFAR-10 (all 50k train, no validation; the first 1,000 test images)", "cifar10_fast",
        {"source": "train.py", "model": "convnet"}, "metrics.test/acc",
        "python train.py experiment=cifar10_fast seed=S record=cifar10_fast", scale=100),
]

# Choices made on a validation split (issue 16 §2): the figure is the validation error, never test.
TABLES["choices"] = [
    Row("LeNet-5 SDLM step scale ×4 (chosen), validation error %", "MNIST, 5,000 held out", "lenet",
        {"model": "lenet5", "split": "val", "step_scale": 4.0, "batch_size": 16, "epochs": 20, "model_kwargs": {}},
        "val_err",
        "python benchmarks/bench_lenet.py --models lenet5 --seeds 0 1 --step-scale 4 --val 5000",
        keep=lambda r: "distort" not in r, key="val_lenet5_x4"),
    Row("LeNet-5 SDLM step scale ×8, validation error %", "MNIST, 5,000 held out", "lenet",
        {"model": "lenet5", "split": "val", "step_scale": 8.0, "batch_size": 16, "epochs": 20, "model_kwargs": {}},
        "val_err",
        "python benchmarks/bench_lenet.py --models lenet5 --seeds 0 1 --step-scale 8 --val 5000", key="val_lenet5_x8"),
]
TABLES["choices"] += [  # LeNet-1 and LeNet-4 had taken LeNet-5's step scale; seed 2 lost a class at x4
    Row(f"`{m}` SDLM step scale ×{sc}, validation error %", "MNIST, 5,000 held out", "lenet",
        {"model": m, "split": "val", "step_scale": float(sc), "batch_size": 16, "epochs": 20, "model_kwargs": {}},
        "val_err",
        f"python benchmarks/bench_lenet.py --models {m} --seeds 0 1 2 --step-scale {sc} --val 5000",
        key=f"val_{m}_lecun_x{sc}")
    for m in ("lenet1", "lenet4") for sc in (1, 2, 4)
] + [  # the initialisation behind the dead output units: PyTorch's, 2.4x smaller than lecun_sqrt
    Row(f"`{m}` SDLM step scale ×{sc}, `init=pytorch`, validation error %", "MNIST, 5,000 held out", "lenet",
        {"model": m, "split": "val", "step_scale": float(sc), "batch_size": 16, "epochs": 20,
         "model_kwargs": {"init": "pytorch"}}, "val_err",
        f"python benchmarks/bench_lenet.py --models {m} --seeds 0 1 2 --step-scale {sc} --val 5000 --set init=pytorch",
        key=f"val_{m}_batch16")
    for m, sc in (("lenet1", 4), ("lenet4", 2))
]
# Issue 26: the papers' per-pattern updates against batches of 16, LeNet-1's input, the step.
def _scale_is(sc: float) -> Callable[[dict], bool]:
    return lambda r: (r.get("step_scale") or 1.0) == sc  # the first per-pattern records say None for x1


PER_SAMPLE_CMD = "python benchmarks/bench_lenet.py --models {recipe} --seeds {seeds} --per-sample{extra} --val 5000"
TABLES["choices"] += [
    Row(f"`{recipe}` per pattern (the paper's updates){label}, validation error %", "MNIST, 5,000 held out", "lenet",
        {"recipe": recipe, "split": "val", "per_sample": True, "epochs": 20, "model_kwargs": kwargs, **where},
        "val_err", PER_SAMPLE_CMD.format(recipe=recipe, seeds=seeds, extra=extra + (" --set init=pytorch" if kwargs else "")),
        keep=_scale_is(sc), key=key)
    for key, recipe, label, kwargs, where, sc, seeds, extra in (
        ("val_lenet1_ps", "lenet1", ", 28×28 input", {"init": "pytorch"}, {}, 1.0, "0 1 2", ""),
        ("val_lenet1_16in28_ps", "lenet1_16in28", ", 16×16 digit in 28×28 (the paper's input)", {"init": "pytorch"}, {},
         1.0, "0 1 2", ""),
        ("val_lenet1_16in28_ps_x2", "lenet1_16in28", ", 16×16 in 28×28, eta ×2", {"init": "pytorch"}, {}, 2.0, "0 1 2",
         " --step-scale 2"),
        ("val_lenet4_ps", "lenet4", "", {"init": "pytorch"}, {}, 1.0, "0 1 2", ""),
        ("val_lenet5_ps_pytorch", "lenet5", ", `init=pytorch`", {"init": "pytorch"}, {}, 1.0, "0 1", ""),
    )
] + [
    Row(f"`lenet5` batches of 16, SDLM step scale ×4{label}, validation error %", "MNIST, 5,000 held out", "lenet",
        {"model": "lenet5", "split": "val", "step_scale": 4.0, "batch_size": 16, "epochs": 20, "model_kwargs": kwargs},
        "val_err", "python benchmarks/bench_lenet.py --models lenet5 --seeds 0 1 --val 5000" + extra,
        keep=(lambda r: "distort" in r) if distort else (lambda r: "distort" not in r), key=key)
    for key, label, kwargs, distort, extra in (
        ("val_lenet5_pytorch", ", `init=pytorch`", {"init": "pytorch"}, False, " --set init=pytorch"),
        ("val_lenet5_distort", ", LeCun's distortions (45% of each pass)", {}, True, " --distort"),
    )
]
CIFAR_CMD = ("python train.py experiment=cifar10_fast data.val_size=5000 trainer.limit_val_batches=null "
             "trainer.check_val_every_n_epoch=12 test=false model.label_smoothing={ls} model.tta_flip={tta} seed=1 "
             "record=cifar10_choices")
TABLES["choices"] += [
    Row(f"`cifar10_fast`, label smoothing {ls}, flip TTA {'on' if tta == 'true' else 'off'}{note}, validation accuracy %",
        "CIFAR-10, 5,000 held out", "cifar10_choices", {"source": "train.py"}, "metrics.val/acc",
        CIFAR_CMD.format(ls=ls, tta=tta), scale=100,
        keep=lambda r, ls=ls, tta=tta: f"model.label_smoothing={ls}" in r["overrides"]
        and f"model.tta_flip={tta}" in r["overrides"], key=f"val_cifar_ls{ls}_tta{tta}")
    for ls, tta, note in (("0.0", "true", " (the preset)"), ("0.2", "true", ""), ("0.0", "false", ""))
]
# Speed (issue 7's goals in the goal column); the speedrun's baseline is a recipe comparison.
TABLES["speed"] = [
    Row("MNIST speedrun (`experiment=mnist_speedrun`): test accuracy % (a target on the test split by construction: "
        "its recipe was tuned until the test figure reached it)", "MNIST", "speedrun", {"side": "ours"},
        "acc", "python benchmarks/bench_speedrun.py", scale=100, note="≥ 99.0 mean, each ≥ 98.9"),
    Row("MNIST speedrun: training s", "MNIST", "speedrun", {"side": "ours"}, "train",
        "python benchmarks/bench_speedrun.py", digits=1, note="≤ 10", stat="median"),
    Row("MNIST speedrun: start-up s (process start to the first step)", "MNIST", "speedrun", {"side": "ours"},
        "startup", "python benchmarks/bench_speedrun.py", digits=2, note="≤ 3", stat="median"),
    Row("the PyTorch examples' MNIST recipe: training s to 99% (a recipe comparison: another model, optimizer, "
        "schedule, batch size and data pipeline)", "MNIST", "speedrun", {"side": "baseline"}, "train_to_target",
        "python benchmarks/bench_speedrun.py", digits=1, stat="median", key="speedrun_baseline"),
    *(Row(f"harness overhead, `{m}`: train.py's Trainer / a hand-written loop, img/s (median of the repeats' "
          "ratios per record)", "MNIST", "harness", {"what": "train.py's Trainer / hand loop", "model": m},
          "ratio_median", "python benchmarks/bench_harness.py --skip-datapath --repeats 5", digits=3, note="≥ 0.95")
      for m in ("convnet", "lenet5", "neocognitron")),
    Row("CIFAR-10 in 10 minutes (`experiment=cifar10_fast`, 12 epochs): training s", "CIFAR-10", "cifar10_fast",
        {"source": "train.py", "model": "convnet"}, "metrics.time/train_s",
        "python train.py experiment=cifar10_fast seed=S record=cifar10_fast", digits=1, note="≤ 600", stat="median"),
    Row("peak resident memory of `python train.py` (the default, one epoch), GiB", "MNIST", "memory",
        {"source": "train.py"}, lambda r: r["peak_rss_mb"] / 1024,
        "python train.py trainer.max_epochs=1 seed=S record=memory", note="< 2", stat="median", key="memory"),
    Row("`python train.py --help` s (median of 5 per record)", "", "startup", {},
        lambda r: r["medians_s"]["train.py --help"], "python benchmarks/bench_startup.py", note="≤ 1"),
    Row("`python eval.py --help` s", "", "startup", {}, lambda r: r["medians_s"]["eval.py --help"],
        "python benchmarks/bench_startup.py", note="≤ 1"),
    Row("`python predict.py --help` s", "", "startup", {}, lambda r: r["medians_s"]["predict.py --help"],
        "python benchmarks/bench_startup.py", note="≤ 1"),
]
HEADERS = {"headline": ("| what | data | command | ours: over seeds or runs | paper or goal | gap | records |\n"
                        "| --- | --- | --- | --- | --- | --- | --- |"),
           "tolerance": ("| model: perturbation | data | command | ours: mean ± std over checkpoints (seeds) | | | "
                         "records |\n| --- | --- | --- | --- | --- | --- | --- |"),
           "speed": ("| what | data | command | ours: over runs | goal | gap | records |\n"
                     "| --- | --- | --- | --- | --- | --- | --- |")}

# Tolerance (issue 17): the default models' checkpoints under perturbations of the first 1,000 test
# images (bench_tolerance.py --limit 1000); one figure per checkpoint whose label starts with the prefix.
def _tolerance(prefix: str, perturbation: str, level: str):
    return lambda r: [res[perturbation][level] for label, res in r["results"].items() if label.startswith(prefix)]


TOLERANCE_RUN = {"settings.limit": 1000, "settings.seed": 0}
TOLERANCE_CMD = "python benchmarks/bench_tolerance.py --ckpt <checkpoints> --limit 1000 --record"
TABLES["tolerance"] = [
    Row(f"{name}: {what}, {'agreement' if pert == 'shift_consistency' else 'accuracy'} %",
        "MNIST, first 1,000 test images", store, TOLERANCE_RUN,
        _tolerance(prefix, pert, level), TOLERANCE_CMD, scale=100, digits=1, key=f"tol.{model}.{pert}.{level}")
    for model, name, store, prefix in (
        ("neocognitron", "`neocognitron` (default, max C-planes, trained with shifts ≤ 2 px)", "tolerance",
         "neocognitron_s"),
        ("convnet", "`convnet` (default, max pooling, trained with shifts ≤ 2 px)", "tolerance", "convnet_s"),
        # Fukushima's default's 3 seeds are the comparison's (tolerance.jsonl 1 holds one of an earlier default)
        ("neocognitron_fukushima", "`neocognitron_fukushima` (default, no augmentation)", "tolerance_compare",
         "neocognitron_fukushima/none/"))
    for what, pert, level in (("centred", "none", "0"), ("shifted 1 px (mean of 8 directions)", "shift", "1"),
                              ("shifted 2 px", "shift", "2"), ("shifted 4 px", "shift", "4"),
                              ("rotated ±15°", "rotation", "15"), ("elastic α 34, σ 4", "elastic", "34"),
                              ("same class under two shifts ≤ 2 px (consistency)", "shift_consistency", "2"))
]


# The tolerance comparison (issue 17 §2): six models trained the same way (MNIST 55k/5k, seeds 1-3;
# the backprop models 4 epochs of their own optimiser, Fukushima's its 3 learning phases), without
# and with random shifts of up to 2 px. Test accuracy on all 10,000 from train.py's records, the
# perturbations on the first 1,000 (bench_tolerance.py --record tolerance_compare); labels
# "<model>/<none|shift2>/s<seed>".
COMPARISON_MODELS = (
    ("mlp", "`mlp` (no convolution)"),
    ("lenet5_modern", "`lenet5_modern` (max pooling)"),
    ("convnet", "`convnet` (max pooling)"),
    ("neocognitron", "`neocognitron` (max C-planes)"),
    ("neocognitron_blur", "`neocognitron_blur` (Fukushima's blurring C-planes)"),
    ("neocognitron_fukushima", "`neocognitron_fukushima` (self-organised)"),
)
COMPARISON_ROWS = [(model, name, training, trained_on) for model, name in COMPARISON_MODELS
                   for training, trained_on in (("none", "centred digits"), ("shift2", "random shifts ≤ 2 px"))]
COMPARISON_ROWS.append(("neocognitron_fukushima_tolerant", "`neocognitron_fukushima`, "
                        "`experiment=neocognitron_fukushima_tolerant`", "shift3",
                        "random shifts ≤ 3 px, two top-layer passes (chosen on validation)"))
COMPARISON_COLUMNS = (("centred", "none", "0"), ("1 px", "shift", "1"), ("2 px", "shift", "2"), ("3 px", "shift", "3"),
                      ("4 px", "shift", "4"), ("same class, 2 shifts ≤ 2 px", "shift_consistency", "2"),
                      ("rotated ±15°", "rotation", "15"), ("elastic α 34", "elastic", "34"),
                      ("noise σ 50 (of 255)", "noise", "50"), ("noise σ 100", "noise", "100"),
                      ("occluded 8x8 square", "occlusion", "8"), ("occluded 12x12", "occlusion", "12"))


def _train_records(model: str, training: str) -> tuple[str, list[dict]]:
    """The store and train.py's records of the runs of ``model`` trained as ``training`` (Fukushima's
    without shifts: the default runs of the models table; its tolerant preset: its own store, the
    runs that tested the whole network, ``last_epoch.ckpt``: the first three had tested the best
    centred validation accuracy, after one top pass for seed 3)."""
    if model == "neocognitron_fukushima" and training == "none":
        return "fukushima", [r for r in read_records("fukushima") if r.get("source") == "train.py" and r.get("epochs") == 3]
    if model == "neocognitron_fukushima_tolerant":
        return "fukushima_tolerant", [r for r in read_records("fukushima_tolerant") if _tested_last_epoch(r)]
    want = f"data.augment={'true' if training == 'shift2' else 'false'}"
    return "tolerance_models", [r for r in read_records("tolerance_models")
                                if _config(r) == model and want in r.get("overrides", [])]


def _config(record: dict) -> str:
    """The model config a train.py run chose (``model=neocognitron_blur`` builds the registered
    ``neocognitron`` with other C-planes), else its registered model."""
    chosen = [o.split("=", 1)[1] for o in record.get("overrides", []) if o.startswith("model=")]
    return chosen[-1] if chosen else record.get("model")


def _cell(values: list[float], d: int = 1) -> str:
    s = summary([100 * v for v in values])
    if s["n"] == 0:
        return ""
    return f"{s['mean']:.{d}f}" if s["n"] == 1 else f"{s['mean']:.{d}f} ± {s['std']:.{d}f}"


def comparison_table() -> str:
    head = ["model", "trained on", "test acc % (10,000)", *(c for c, _, _ in COMPARISON_COLUMNS), "n (trained / scored)", "records"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    tol = read_records("tolerance_compare")
    for model, name, training, trained_on in COMPARISON_ROWS:
        store, runs = _train_records(model, training)
        results = [(r, res) for r in tol for label, res in r["results"].items() if label.startswith(f"{model}/{training}/")]
        cells = [_cell([res[p][lv] for _, res in results if lv in res.get(p, {})])  # older records lack some
                 for _, p, lv in COMPARISON_COLUMNS]
        src = [f"`{store}.jsonl` {_lines(runs)}" if runs else "",
               f"`tolerance_compare.jsonl` {_lines([r for r, _ in results])}" if results else ""]
        lines.append("| " + " | ".join([name, trained_on, _cell([r["metrics"]["test/acc"] for r in runs], 2), *cells,
                                        f"{len(runs)} / {len(results)}", "; ".join(s for s in src if s)]) + " |")
    return "\n".join(lines)


TABLES["comparison"] = comparison_table  # a table of its own shape (one row per model and training)


# Why blurring C-planes lose under noise (issue 30 §1): the supervised Neocognitron with one piece of
# its C- or S-cells left out at a time, trained on centred digits (train.py data.augment=false
# trainer.max_epochs=4 test=false record=blur_noise), scored on the first 2,000 validation images its
# run held out (bench_tolerance.py --split val --limit 2000 --record blur_noise_tol); labels "<arm>/s<seed>".
ABLATION_ARMS = (
    ("blur", "blurring C-planes (3×3 Gaussian, stride 2, then ψ; `model=neocognitron_blur`)",
     "model=neocognitron_blur"),
    ("blur_nosat", "the same blur without the saturation ψ", "model=neocognitron_blur "
     "+model.model_kwargs.stages.0.c_saturate=false +model.model_kwargs.stages.1.c_saturate=false"),
    ("blur_nobn", "blurring C-planes, no batch norm in the S-cells", "model=neocognitron_blur "
     "model.model_kwargs.stages.0.batchnorm=false model.model_kwargs.stages.1.batchnorm=false"),
    ("max", "max C-planes (2×2; `model=neocognitron`)", "model=neocognitron"),
    ("max_nobn", "max C-planes, no batch norm in the S-cells", "model=neocognitron "
     "model.model_kwargs.stages.0.batchnorm=false model.model_kwargs.stages.1.batchnorm=false"),
)
ABLATION_COLUMNS = (("centred", "none", "0"), ("noise σ 25", "noise", "25"), ("σ 50", "noise", "50"),
                    ("σ 75", "noise", "75"), ("σ 100", "noise", "100"), ("2 px shift", "shift", "2"),
                    ("occluded 8x8", "occlusion", "8"))


def ablation_values(arm: str, perturbation: str, level: str,
                    records: list[dict] | None = None) -> tuple[list[float], list[dict]]:
    """One cell of the ablation table (accuracy as a fraction, one per seed) and the records it read
    (``records``: the store's, when the caller has read them already)."""
    recs = [r for r in (read_records("blur_noise_tol") if records is None else records)
            if _get(r, "settings.split") == "val"]
    hits = [(r, res) for r in recs for label, res in r["results"].items() if label.split("/")[0] == arm]
    return [res[perturbation][level] for _, res in hits if level in res.get(perturbation, {})], [r for r, _ in hits]


def ablation_table() -> str:
    head = ["C- and S-cells (trained on centred digits, 4 epochs)", *(c for c, _, _ in ABLATION_COLUMNS), "n",
            "train.py overrides", "records"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    store = read_records("blur_noise_tol")  # once, not once a cell
    for arm, name, overrides in ABLATION_ARMS:
        clean, recs = ablation_values(arm, "none", "0", store)
        cells = [_cell(ablation_values(arm, p, lv, store)[0]) for _, p, lv in ABLATION_COLUMNS]
        lines.append("| " + " | ".join([name, *cells, str(len(clean)), f"`{overrides}`",
                                        f"`blur_noise_tol.jsonl` {_lines(recs)}" if recs else "no record yet"]) + " |")
    return "\n".join(lines)


TABLES["blur_noise"] = ablation_table


def comparison_values(model: str, training: str, perturbation: str, level: str) -> list[float]:
    """One cell of the comparison table as its values (accuracy %, one per scored seed); the
    perturbation ``test`` gives the row's test accuracy on the 10,000 digits. Prose cites a cell as
    ``<!-- fig:cmp.MODEL.TRAINING.PERTURBATION.LEVEL:mean -->`` (e.g. ``cmp.mlp.none.noise.50``)."""
    if perturbation == "test":
        return [100 * r["metrics"]["test/acc"] for r in _train_records(model, training)[1]]
    tol = read_records("tolerance_compare")
    return [100 * res[perturbation][level] for r in tol for label, res in r["results"].items()
            if label.startswith(f"{model}/{training}/") and level in res.get(perturbation, {})]


# Fukushima's settings against tolerance, on validation (issue 17 §3), and his top layer's reference
# vectors against validation accuracy (issue 27 §1): report_fukushima.py
TABLES["fukushima_tolerance"] = fukushima_table
TABLES["fukushima_top"] = fukushima_top_table


def weights_table() -> str:
    """docs/weights.md: every set weights/registry.json names. The figures are read from the record
    each set names (its test and validation accuracy, the seeds' mean ± std), not from the registry;
    a registry whose meta disagrees with its record stops the report."""
    from models.weights import list_weights

    lines = ["| name | data | input | test accuracy % (this seed) | validation % | all seeds: test % | MB | sha256 | "
             "made by | record |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for w in list_weights():
        if not w.file:
            lines.append(f"| `{w.name}` | {w.data} | | not shipped: {w.not_shipped} | | | | | | |")
            continue
        store, line = w.meta["record"].removeprefix("benchmarks/results/").split(".jsonl:")
        records = read_records(store)
        (rec,) = [r for r in records if r["_line"] == int(line)]
        seeds = [r for r in records if r.get("source") == "train.py" and r.get("model") == w.model]
        if (rec["metrics"]["test/acc"], rec["metrics"]["val/acc"], rec["command"]) != \
                (w.meta["test_acc"], w.meta["val_acc"], w.meta["command"]):
            raise SystemExit(f"error: weights {w.name}: weights/registry.json disagrees with its record {w.meta['record']}")
        s = summary([100 * r["metrics"]["test/acc"] for r in seeds])
        i = w.meta["input"]
        lines.append(f"| `{w.name}` | {w.data} | {i['channels']}×{i['size']}×{i['size']}, {i['normalize']}, "
                     f"{i.get('polarity', '')} | "
                     f"**{100 * rec['metrics']['test/acc']:.2f}** (seed {rec.get('seed')}) | "
                     f"{100 * rec['metrics']['val/acc']:.2f} (the median) | {s['mean']:.2f} ± {s['std']:.2f} "
                     f"(n = {s['n']}) | {w.bytes / 2**20:.2f} | `{w.sha256[:12]}` | `python {rec['command']}` | "
                     f"`{store}.jsonl` {_lines(seeds)} |")
    return "\n".join(lines)


TABLES["weights"] = weights_table

# [1998] Fig. 6: LeNet-5 as published on part of the training set (the same 20 passes), with and
# without distortions; all 60,000 digits are the lenet table's rows. docs/lenet_fig6.png draws them.
LENET5_PUBLISHED = {"model": "lenet5", "recipe": "lenet5", "batch_size": 16, "step_scale": 4, "epochs": 20,
                    "model_kwargs": {}}
TABLES["lenet_fig6"] = [
    Row(f"`lenet5` on {n:,} training digits{', with distortions' if d else ''}, test error %", "MNIST", "lenet",
        {**LENET5_PUBLISHED, "train_size": n}, "test_err",
        f"python benchmarks/bench_lenet.py --models lenet5 --seeds 0 1 2 --train-size {n}{' --distort' if d else ''}",
        keep=lambda r, d=d: "split" not in r and bool(r.get("distort")) == d,
        key=f"lenet5_{n // 1000}k{'_distort' if d else ''}")
    for n in (7_500, 15_000, 30_000) for d in (False, True)
]



def _pick(table: str, label: str, new_label: str) -> Row:
    """The one row of ``TABLES[table]`` whose label starts with ``label``, under ``new_label``: the
    README's headline row reads the same records as the full table's."""
    rows = [r for r in TABLES[table] if r.label.startswith(label)]
    if len(rows) != 1:
        raise SystemExit(f"error: {len(rows)} rows of table {table!r} start with {label!r}, not one")
    return replace(rows[0], label=new_label)


# The README's headline rows (issue 29): the full tables are in docs/results.md and docs/speed.md.
TABLES["headline"] = [
    _pick("lenet", "`lenet5` (SDLM", "LeNet-5 as published (`lenet5`: SDLM, the paper's schedule), test error %"),
    _pick("models", "`neocognitron` (the default", "the default `python train.py`: the supervised `neocognitron`, "
          "test accuracy %"),
    _pick("models", "`neocognitron_fukushima` (Add-if-Silent", "Fukushima's self-organising `neocognitron_fukushima` "
          "(no backprop), test accuracy %"),
    _pick("speed", "MNIST speedrun (", "MNIST speedrun (`experiment=mnist_speedrun`): test accuracy % (a target on "
          "the test split by construction: its recipe was tuned until the test figure reached it)"),
    _pick("speed", "MNIST speedrun: training s", "MNIST speedrun: training s"),
    _pick("models", "`convnet`, `experiment=cifar10_fast`", "CIFAR-10 in 10 minutes (`experiment=cifar10_fast`), "
          "test accuracy %"),
]

# Which file holds each table (the README unless named here).
RESULTS_MD, SPEED_MD = ROOT / "docs" / "results.md", ROOT / "docs" / "speed.md"
TABLE_FILES = {"lenet": RESULTS_MD, "models": RESULTS_MD, "comparison": RESULTS_MD, "choices": RESULTS_MD,
               "blur_noise": RESULTS_MD,
               "tolerance": RESULTS_MD, "fukushima_tolerance": RESULTS_MD, "speed": SPEED_MD,
               "fukushima_top": ROOT / "docs" / "neocognitron_fukushima.md", "weights": ROOT / "docs" / "weights.md",
               "lenet_fig6": ROOT / "docs" / "lenet.md"}  # its curve (bench_fukushima_top.py)


def render(table: str) -> str:
    if callable(TABLES[table]):
        return TABLES[table]()
    return "\n".join([HEADERS.get(table, HEADER), *(render_row(r) for r in TABLES[table])])


# The prose figures (report_prose.py) cite the rows of TABLES and PROSE_ROWS by key: both are read
# here, when a figure is written, so that a test may replace either.
def keyed_rows() -> dict[str, Row]:
    return report_prose.keyed_rows(TABLES, PROSE_ROWS)


def figure(key: str, what: str) -> str:
    """One prose figure, ``<!-- fig:KEY:WHAT -->`` (``report_prose.figure``)."""
    return report_prose.figure(key, what, keyed_rows(), comparison_values)


def update_figures(text: str) -> str:
    """``text`` with every prose figure rewritten from the records."""
    return report_prose.update_figures(text, keyed_rows(), comparison_values)


def update(text: str, names: list[str] | None = None) -> str:
    """``text`` with the marked tables ``names`` (default: all) replaced by what the records give."""
    for name in names if names is not None else TABLES:
        begin, end = f"<!-- report:{name} -->", f"<!-- /report:{name} -->"
        if begin not in text or end not in text:
            raise SystemExit(f"error: the file for table {name!r} (TABLE_FILES) has no {begin} ... {end} markers")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{render(name)}\n{end}{tail}"
    return update_figures(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file's tables differ from the records")
    parser.add_argument("--readme", default=str(ROOT / "README.md"), help="the file for tables not placed elsewhere")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="the folder whose *.md files hold prose figures")
    args = parser.parse_args(argv)
    files: dict[Path, list[str]] = {path: [] for path in sorted(Path(args.docs).glob("*.md"))}  # prose figures
    for name in TABLES:
        files.setdefault(TABLE_FILES.get(name, Path(args.readme)), []).append(name)
    status = 0
    for path, names in files.items():
        old = path.read_text()
        new = update(old, names)
        if args.check:
            if new != old:
                print(f"{path}: its results tables or prose figures differ from benchmarks/results "
                      "(run python benchmarks/report.py)",
                      file=sys.stderr)
                status = 1
            else:
                print(f"{path}: the results tables match the records")
        elif new != old:
            path.write_text(new)
            print(f"{path}: results tables written from the records")
    return status


if __name__ == "__main__":
    sys.exit(main())
