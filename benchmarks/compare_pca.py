"""Benchmark skae's autoencoders against PCA as unsupervised dimensionality reducers.

For each method and code size, the reducer is fitted on the training images without labels;
the train and test images are encoded, and each classifier is trained on the train codes and
scored on the test codes. The test images are also reconstructed from their codes. Reported per
run: test accuracy per classifier, reconstruction error (SSE per image and MSE per pixel, pixels
in [0, 1]), fit time with its spread (each epoch is timed; PCA is fitted 3 times), transform
time, and the autoencoder's epochs. PCA always runs: it is the reference.

Each run first prints how long it should take (after any notice that digits stand in), scaled
from the measured default runs (FULL_RUN_MINUTES, QUICK_RUN_MINUTES). Progress goes to stderr:
a bar over the runs and, inside each fit, a bar over its epochs with the loss (--quiet: none).

Outputs, in --output-dir (the dataset's name is in every file name):
  compare_pca_<dataset>.csv / .json   the results, rewritten after every run, so that a stopped
                                      run keeps every run it finished (the JSON adds "complete",
                                      the run's kind, "quick", "full" or "subset", data sizes,
                                      machine, settings, command and each fit's epoch times)
  compare_pca_<dataset>.md            the markdown table (printed on stdout at the end)
  accuracy_<dataset>.png              test accuracy minus PCA's at the same code size, in
                                      percentage points, one panel per classifier; a grey band
                                      of two binomial standard errors of PCA's accuracy
  reconstruction_error_<dataset>.png  test SSE per image, from 0
  fit_time_<dataset>.png              fit wall time per method and code size, from 0, whiskers
                                      at the pace of its 10th and 90th percentile epochs
  reconstructions_<dataset>.png       10 test images, then their reconstructions per method at
                                      the largest code size, each row labelled with its SSE
With one code size the figures are bars per method, labelled with their values; with several,
one line per method against n_components. Each method keeps its colour in every figure. Every
figure's small print gives the data size (training and test images), the epochs each
autoencoder trained (n_iter_), the threads, CPU or GPU and date. When the dataset can neither
be found nor downloaded, the first line printed says so and everything runs on scikit-learn's
8x8 digits instead.

--quick is a representative subset run of about two minutes on 2 CPU cores: 10,000 random
training images and all 10,000 test images, n_components 64, methods pca, ae and vae, trained
with the estimators' own defaults (as in the full run), at most 2 threads. Its markdown title,
figure titles and JSON ("run": "quick", "n_train") say it is a quick run on a subset. Explicit
options still win, e.g. --quick --methods pca,ae --threads 1.

Usage, from the repository root (the dataset is read from, or downloaded into,
<data home>/<dataset>/, the data home being --data-home, else $SKAE_DATA, else scikit-learn's
data home):
  python benchmarks/compare_pca.py --quick
  python benchmarks/compare_pca.py --dataset fashion-mnist --n-components 8,16,32,64,128
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from _harness import (
    Dataset,
    Report,
    add_common_arguments,
    announce_fallback,
    benchmark_parser,
    comma_list,
    command_line,
    describe_machine,
    limit_threads,
    load_dataset,
    machine_info,
    positive_int,
    runs,
    subsample,
    timed_fit,
    warm_up,
)
from _harness.figures import (
    by_size_figure,
    caption,
    fit_time_figure,
    method_colors,
    save_figure,
    title_and_caption,
    versus_reference_figure,
)
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer

# Wall time of the default full and quick runs on the reference machine (the README's 2-core AMD
# EPYC, 2 threads, nothing else running): update them with each new benchmark result, e.g. when
# the estimators' default training budget changes. The full run's comes from the README's runs
# (24-epoch defaults); the quick run took 2.1 minutes with 1 thread, on 2026-11-29, with the
# step-based defaults (150 epochs of 10,000 images).
REFERENCE_MACHINE = "2 CPU cores"
FULL_RUN_MINUTES = 14
QUICK_RUN_MINUTES = 2
FULL_TRAIN_IMAGES = 60_000  # MNIST's training set: what the full run's timing was measured on
# The estimators' default budget ("auto"): about 6,000 optimizer steps of 256 images, with
# smaller batches below 8,192 images. Only used to scale the estimates above to other runs.
DEFAULT_BUDGET_IMAGES = 6_000 * 256
FULL_BATCH_FROM = 8_192

# The autoencoder variants: (class, parameters on top of its defaults). The strengths are the
# ones benchmarks/bench_variants.py measured on 10,000 MNIST images: each regulariser clearly
# acts (sparse: Hoyer sparsity 0.64 against 0.19; contractive: 40% lower relative sensitivity)
# at no more than a few percent of reconstruction error, masking noise aside.
VARIANTS = {
    "ae": (AutoEncoderTransformer, {}),
    "sparse": (AutoEncoderTransformer, {"l1_penalty": 0.02}),
    "denoising": (AutoEncoderTransformer, {"noise_type": "masking", "noise_level": 0.25}),
    "contractive": (AutoEncoderTransformer, {"contractive_penalty": 1e-6}),
    "vae": (VariationalAutoEncoderTransformer, {}),
}
METHODS = ("pca", *VARIANTS)
# One colour per method in every figure, whichever methods a run includes.
COLORS = method_colors(METHODS)

CLASSIFIERS = {
    "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "knn": lambda: KNeighborsClassifier(n_neighbors=5),
}
CLASSIFIER_NAMES = {"logreg": "logistic regression (standardised codes)", "knn": "5-NN"}

# Defaults of the full run and of --quick; options given explicitly win over both. --quick is a
# representative subset, not a smoke test: its autoencoders train with their own defaults, so
# that its numbers agree with the full run's.
FULL = {
    "n_train": None,
    "n_test": None,
    "n_components": [16, 32, 64],
    "methods": list(METHODS),
    "max_iter": None,
    "threads": None,
}
QUICK = {
    "n_train": 10_000,
    "n_test": None,
    "n_components": [64],
    "methods": ["pca", "ae", "vae"],
    "max_iter": None,
    "threads": 2,
}

N_EXAMPLES = 10  # test images in the reconstruction grid
PCA_REPEATS = 3  # PCA's fit is cheap: its time's spread comes from repeated fits

# Column order of the CSV; units are in the names (pixels lie in [0, 1]).
COLUMNS = [
    "dataset", "method", "n_components", "settings", "n_train", "n_test", "epochs",
    "fit_time_s", "fit_time_low_s", "fit_time_high_s", "epoch_time_median_s", "fit_threads",
    "transform_time_train_test_s", "test_sse_per_image", "test_mse_per_pixel",
]  # fmt: skip
# Left out of the markdown table (they are in the CSV and JSON).
HIDDEN = ("dataset", "settings", "n_train", "n_test", "fit_time_low_s", "fit_time_high_s",
          "epoch_time_median_s", "fit_threads", "convergence_warnings",
          "other_processes_cores")  # fmt: skip
TABLE_FORMATS = {
    "fit_time_s": ".2f",
    "transform_time_train_test_s": ".3f",
    "test_sse_per_image": ".2f",
    "test_mse_per_pixel": ".5f",
}


def parse_args(argv=None):
    parser = benchmark_parser(__doc__)
    add_common_arguments(parser)
    parser.add_argument(
        "--n-components",
        type=comma_list(positive_int),
        default=None,
        help="code sizes (default 16,32,64; --quick: 64)",
    )
    parser.add_argument(
        "--methods",
        type=comma_list(str, METHODS),
        default=None,
        help=f"subset of {','.join(METHODS)} (default all; --quick: pca,ae,vae); pca runs "
        "whether listed or not: it is the reference",
    )
    parser.add_argument(
        "--classifiers",
        type=comma_list(str, tuple(CLASSIFIERS)),
        default=list(CLASSIFIERS),
        help="subset of logreg,knn (default both)",
    )
    parser.add_argument(
        "--max-iter",
        type=positive_int,
        default=None,
        help="epochs per autoencoder (default, also with --quick: the estimators' own)",
    )
    parser.add_argument(
        "--n-train",
        type=positive_int,
        default=None,
        help="random training subset (default all; --quick: 10000)",
    )
    parser.add_argument(
        "--n-test",
        type=positive_int,
        default=None,
        help="random test subset (default all, also with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a representative subset run of about {QUICK_RUN_MINUTES} minutes (see above)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="per-epoch progress bars (shown unless --quiet)"
    )
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # PCA first: every other method is compared with it.
    args.methods = ["pca", *(m for m in args.methods if m != "pca")]
    return args


# -- data ----------------------------------------------------------------------------------------


def prepare_data(args) -> tuple[Dataset, tuple[int, int]]:
    """The subsets to run on, and how many train and test images they were drawn from."""
    data = load_dataset(args.dataset, args.data_home, download=not args.no_download, seed=args.seed)
    announce_fallback(data)
    available = (len(data.X_train), len(data.X_test))
    data.X_train, data.y_train = subsample(data.X_train, data.y_train, args.n_train, args.seed)
    data.X_test, data.y_test = subsample(data.X_test, data.y_test, args.n_test, args.seed + 1)
    return data, available


def usable_sizes(sizes, data: Dataset) -> list[int]:
    """The code sizes that compress the data: fewer than its features (and than its training
    rows, for PCA). When none is left, as for digits standing in at 64 components, a quarter
    of the features."""
    limit = min(data.n_features - 1, len(data.X_train))
    kept = sorted({k for k in sizes if k <= limit})
    dropped = sorted(set(sizes) - set(kept))
    if not kept:
        kept = [max(1, data.n_features // 4)]
        print(
            f"n_components {dropped} would not compress the {data.n_features} features of "
            f"{data.name}; using {kept[0]} instead."
        )
    elif dropped:
        print(f"Skipping n_components {dropped}: {data.name} allows at most {limit}.")
    return kept


def example_rows(y: np.ndarray, n: int = N_EXAMPLES) -> np.ndarray:
    """One test image per class where possible (the first of each), else the first n."""
    firsts = [int(np.flatnonzero(y == label)[0]) for label in np.unique(y)][:n]
    rest = [i for i in range(len(y)) if i not in firsts]
    return np.array(sorted(firsts) + rest[: n - len(firsts)])


# -- what kind of run ----------------------------------------------------------------------------


# NamedTuples rather than dataclasses: the tests load this script without registering it in
# sys.modules, which dataclasses need.
class RunInfo(NamedTuple):
    """What every output says about the run: its kind, its data, the machine."""

    kind: str  # "quick", "full" (all images) or "subset"
    dataset: str  # the name for titles, e.g. "digits (standing in for mnist)"
    n_train: int
    n_test: int
    available: tuple[int, int]  # train and test images the subsets were drawn from
    image_shape: tuple[int, int]
    n_classes: int
    machine: dict

    @property
    def banner(self) -> str:
        """For a quick run, a warning for every title: its numbers are not the benchmark's."""
        if self.kind != "quick":
            return ""
        if self.n_train < self.available[0]:
            return f"Quick run on a {self.n_train:,}-image subset"
        return f"Quick run on {self.n_train:,} training images"

    def title(self, what: str) -> str:
        line = f"{self.dataset}: {what}"
        return f"{self.banner} (not the full benchmark)\n{line}" if self.banner else line

    def caption(self, frame: pd.DataFrame) -> str:
        """Data size, epochs and machine, for the small print under a figure."""
        h, w = self.image_shape
        train, test = (
            f"{n:,}" if n == total else f"{n:,} of {total:,}"
            for n, total in zip((self.n_train, self.n_test), self.available, strict=True)
        )
        data = f"{train} training / {test} test images of {h}x{w} pixels"
        return caption(frame, data, self.machine)


def run_info(args, data: Dataset, available: tuple[int, int], machine: dict) -> RunInfo:
    if args.quick:
        kind = "quick"
    elif (len(data.X_train), len(data.X_test)) == available:
        kind = "full"
    else:
        kind = "subset"
    return RunInfo(
        kind=kind,
        dataset=data.label,
        n_train=len(data.X_train),
        n_test=len(data.X_test),
        available=available,
        image_shape=tuple(data.image_shape),
        n_classes=len(np.unique(data.y_train)),
        machine=machine,
    )


def expected_duration(args, n_train: int, sizes: list[int]) -> str:
    """How long this run should take, scaled from the measured default run it resembles."""
    name, base, minutes = (
        ("quick", QUICK, QUICK_RUN_MINUTES) if args.quick else ("full", FULL, FULL_RUN_MINUTES)
    )
    base_images = base["n_train"] or FULL_TRAIN_IMAGES

    def fits(methods, sizes):
        return sum(method != "pca" for method in methods) * len(sizes)

    # The autoencoders' fits dominate. The default budget is a fixed number of optimizer steps,
    # so a fit costs about the same on 10,000 images as on 60,000, and less only where the
    # default batch shrinks with the data; an explicit --max-iter costs images x epochs.
    ratio = fits(args.methods, sizes) / fits(base["methods"], base["n_components"])
    if args.max_iter is None:
        ratio *= min(1, n_train / FULL_BATCH_FROM) / min(1, base_images / FULL_BATCH_FROM)
    else:
        ratio *= n_train * args.max_iter / DEFAULT_BUDGET_IMAGES
    if math.isclose(ratio, 1, rel_tol=0.05) and n_train == base_images:
        return f"{name.capitalize()} run: about {minutes} minutes on {REFERENCE_MACHINE}"
    estimate = minutes * ratio
    if estimate < 1:
        how_long = "under a minute"
    elif estimate < 1.5:
        how_long = "about a minute"
    else:
        how_long = f"roughly {estimate:.0f} minutes"
    return (
        f"This run: {how_long} on {REFERENCE_MACHINE} (scaled from the default {name} run's "
        f"{minutes} minutes by its autoencoder fits and their training budget)"
    )


# -- the protocol --------------------------------------------------------------------------------


def make_reducer(method: str, n_components: int, args):
    if method == "pca":
        return PCA(n_components=n_components, random_state=args.seed)
    cls, params = VARIANTS[method]
    extra = {} if args.max_iter is None else {"max_iter": args.max_iter}
    return cls(
        n_components=n_components, random_state=args.seed, device=args.device, **params, **extra
    )


def settings_of(method: str) -> str:
    params = {} if method == "pca" else VARIANTS[method][1]
    return " ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def run_one(method: str, n_components: int, data: Dataset, args, examples: np.ndarray):
    """Fit one reducer, encode, classify, reconstruct; return (result row, example images)."""
    reducer = make_reducer(method, n_components, args)
    fit = timed_fit(
        reducer, data.X_train, label=f"{method} n_components={n_components}",
        progress=not args.quiet, repeats=PCA_REPEATS if method == "pca" else 1,
    )  # fmt: skip
    start = time.perf_counter()
    codes_train = reducer.transform(data.X_train)
    codes_test = reducer.transform(data.X_test)
    transform_time = time.perf_counter() - start
    reconstruction = reducer.inverse_transform(codes_test)
    squared = np.square(data.X_test.astype(np.float64) - reconstruction)
    row = {
        "dataset": data.name,
        "method": method,
        "n_components": n_components,
        "settings": settings_of(method),
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        "epochs": getattr(reducer, "n_iter_", None),
        **fit.columns(),
        "transform_time_train_test_s": transform_time,
        "test_sse_per_image": float(squared.sum(axis=1).mean()),
        "test_mse_per_pixel": float(squared.mean()),
    }
    for name in args.classifiers:
        model = CLASSIFIERS[name]().fit(codes_train, data.y_train)
        row[f"test_accuracy_{name}"] = float(model.score(codes_test, data.y_test))
    row["epoch_times_s"] = fit.epoch_seconds  # the JSON keeps every epoch's time
    return row, reconstruction[examples]


def run_all(data: Dataset, args, sizes: list[int], report: Report) -> dict:
    """Every (method, n_components) run, each row reported as it ends; returns the example
    reconstructions at the largest size."""
    examples = example_rows(data.y_test)
    warm_up(data.X_train, args.device)
    gallery = {"original": data.X_test[examples]}
    todo = [(method, k) for method in args.methods for k in sizes]
    for method, k in runs(
        todo, desc=data.name, label=lambda run: f"{run[0]} n_components={run[1]}",
        progress=not args.quiet,
    ):  # fmt: skip
        row, images = run_one(method, k, data, args, examples)
        report.add(row)
        if k == sizes[-1]:
            gallery[method] = images
    return gallery


def make_report(data: Dataset, args, run: RunInfo, n_runs: int, argv) -> Report:
    title = f"Autoencoders vs PCA on {data.describe()}"
    if run.banner:
        title = f"{run.banner} (not the full benchmark) — autoencoders vs PCA on {data.describe()}"
    settings = "; ".join(f"{m}: {settings_of(m)}" for m in args.methods if m != "pca")
    training = "the estimators' default training"
    if args.max_iter is not None:
        training = f"max_iter={args.max_iter}"
    quick_note = (
        f"Quick run: {run.n_train:,} of {run.available[0]:,} training images, {training}; run "
        "without --quick for the full benchmark."
    )
    notes = [
        *([quick_note] if run.kind == "quick" else []),
        *([f"Settings: {settings}"] if settings else []),
        f"Machine: {describe_machine(run.machine)}",
    ]
    meta = {
        "title": title,
        "run": run.kind,
        "dataset": data.name,
        "fallback": data.fallback_note,
        "n_train": run.n_train,
        "n_test": run.n_test,
        "n_train_available": run.available[0],
        "n_test_available": run.available[1],
        "command": command_line("benchmarks/compare_pca.py", argv),
        "settings": vars(args),
        "variants": {m: settings_of(m) for m in METHODS},
        "machine": run.machine,
    }
    return Report(
        args.output_dir, f"compare_pca_{data.name}", title=title, meta=meta, notes=notes,
        columns=COLUMNS, formats=TABLE_FORMATS, expected=n_runs,
        table=lambda frame: frame.drop(columns=[c for c in HIDDEN if c in frame]),
    )  # fmt: skip


# -- figures -------------------------------------------------------------------------------------


def make_figures(frame: pd.DataFrame, gallery: dict, run: RunInfo, classifiers) -> dict:
    """The figures by file stem (the dataset's name is appended when saved)."""
    return {
        "accuracy": plot_accuracy(frame, run, classifiers),
        "reconstruction_error": plot_error(frame, run),
        "fit_time": plot_fit_time(frame, run),
        "reconstructions": plot_gallery(gallery, frame, run),
    }


def save_figures(figures: dict, out: Path, dataset: str) -> None:
    for stem, fig in figures.items():
        save_figure(fig, Path(out) / f"{stem}_{dataset}.png")


def plot_accuracy(frame: pd.DataFrame, run: RunInfo, classifiers):
    panels = {f"test_accuracy_{name}": CLASSIFIER_NAMES[name] for name in classifiers}

    def noise(accuracy):
        # Two binomial standard errors of an accuracy on n_test images, in points.
        return 200 * math.sqrt(accuracy * (1 - accuracy) / run.n_test)

    return versus_reference_figure(
        frame, panels, "pca", COLORS, measure="test accuracy", unit="percentage points",
        scale=100, reference_format="{:.1%}".format, noise=noise,
        noise_note=f"Grey band: two standard errors of pca's accuracy on {run.n_test:,} test "
        "images (binomial); a difference inside it is within the test set's sampling noise.",
        title=run.title("test accuracy of classifiers trained on the codes, against PCA's"),
        caption=f"Chance: {1 / run.n_classes:.0%}. {run.caption(frame)}",
    )  # fmt: skip


def plot_error(frame: pd.DataFrame, run: RunInfo):
    n_pixels = run.image_shape[0] * run.image_shape[1]
    return by_size_figure(
        frame, "test_sse_per_image", COLORS, fmt="{:.2f}".format,
        ylabel=f"test SSE per image\n(sum over {n_pixels} pixels in [0, 1]; lower is better)",
        title=run.title("test reconstruction error"), caption=run.caption(frame),
    )  # fmt: skip


def plot_fit_time(frame: pd.DataFrame, run: RunInfo):
    return fit_time_figure(
        frame, COLORS, repeats=PCA_REPEATS, caption=run.caption(frame),
        title=run.title(f"time to fit on {run.n_train:,} training images"),
    )  # fmt: skip


def plot_gallery(gallery: dict, frame: pd.DataFrame, run: RunInfo):
    """Test images, then one row of reconstructions per method, its error in the row label."""
    import matplotlib.pyplot as plt

    n_components = frame["n_components"].max()
    errors = frame[frame["n_components"] == n_components].set_index("method")
    # Rows in the figures' method order, whatever order --methods gave.
    gallery = {key: gallery[key] for key in ("original", *COLORS) if key in gallery}
    n_rows, n_cols = len(gallery), len(next(iter(gallery.values())))
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(1.0 * n_cols + 1.8, 1.0 * n_rows + 1.4),
        squeeze=False,
        layout="constrained",
    )
    for r, (label, images) in enumerate(gallery.items()):
        for c, image in enumerate(images):
            ax = axes[r, c]
            ax.imshow(np.clip(image, 0, 1).reshape(run.image_shape), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        color = COLORS.get(label, "black")
        if label != "original":
            label = f"{label}\nSSE {errors.loc[label, 'test_sse_per_image']:.2f}"
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", color=color)
    title_and_caption(
        fig,
        run.title(f"test images and reconstructions, n_components={n_components}"),
        f"Row labels: test SSE per image, averaged over all {run.n_test:,} test images "
        f"(lower is better).\n{run.caption(frame)}",
    )
    return fig


# -- the whole job -------------------------------------------------------------------------------


class Outcome(NamedTuple):
    """What a run produced, for callers that look further than the files (e.g. tests)."""

    frame: pd.DataFrame
    report: dict
    figures: dict


def benchmark(argv=None) -> Outcome:
    args = parse_args(argv)
    data, available = prepare_data(args)  # first, so a fallback notice is the first line
    sizes = usable_sizes(args.n_components, data)
    print(f"{expected_duration(args, len(data.X_train), sizes)}.", flush=True)
    with limit_threads(args.threads):
        run = run_info(args, data, available, machine_info(args.device))
        report = make_report(data, args, run, len(args.methods) * len(sizes), argv)
        print(f"Results, rewritten after each run: {', '.join(map(str, report.paths))}")
        with report.stopping_on_interrupt():
            gallery = run_all(data, args, sizes, report)
    report.finish()
    figures = make_figures(report.frame, gallery, run, args.classifiers)
    save_figures(figures, args.output_dir, data.name)
    payload = {**report.meta, "complete": True, "results": report.rows}
    return Outcome(report.frame, payload, figures)


def main(argv=None) -> int:
    benchmark(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
