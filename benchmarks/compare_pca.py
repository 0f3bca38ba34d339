"""Benchmark skae's autoencoders against PCA as unsupervised dimensionality reducers.

For each method and code size, the reducer is fitted on the training images without labels;
the train and test images are encoded, and each classifier is trained on the train codes and
scored on the test codes. The test images are also reconstructed from their codes. Reported per
run: test accuracy per classifier, reconstruction error (SSE per image and MSE per pixel, pixels
in [0, 1]), fit and transform wall times, and the autoencoder's epochs.

Outputs, in --output-dir (the dataset's name is in every file name):
  compare_pca_<dataset>.csv / .json   the results (the JSON adds machine, settings, command)
  compare_pca_<dataset>.md            the markdown table printed on stdout
  reconstructions_<dataset>.png       10 test images, then their reconstructions per method
  accuracy_<dataset>.png              test accuracy vs n_components, one panel per classifier
  reconstruction_error_<dataset>.png  test SSE per image vs n_components
When the dataset can neither be found nor downloaded, the first line printed says so and
everything runs on scikit-learn's 8x8 digits instead.

--quick is a smoke run of about two minutes on 2 CPU cores: 5,000 random training and 1,000
test images, n_components 16 and 64, 10 epochs per autoencoder, all methods, one thread (torch
and BLAS, so a busy machine does not slow it down tenfold). Explicit options still win, e.g.
--quick --methods pca,ae --threads 2.

Usage, from the repository root:
  python benchmarks/compare_pca.py --quick --data-home ../shared/data
  python benchmarks/compare_pca.py --dataset fashion-mnist --n-components 8,16,32,64,128
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import (
    Dataset,
    add_common_arguments,
    announce_fallback,
    atomic_save,
    comma_list,
    command_line,
    describe_machine,
    fixed_epoch_budget,
    limit_threads,
    load_dataset,
    machine_info,
    markdown_table,
    positive_int,
    subsample,
    warm_up,
    write_csv,
    write_json,
    write_text,
)
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer

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

CLASSIFIERS = {
    "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "knn": lambda: KNeighborsClassifier(n_neighbors=5),
}

# Defaults of the full run and of --quick; options given explicitly win over both.
FULL = {
    "n_train": None,
    "n_test": None,
    "n_components": [16, 32, 64],
    "max_iter": None,
    "threads": None,
}
QUICK = {"n_train": 5000, "n_test": 1000, "n_components": [16, 64], "max_iter": 10, "threads": 1}

N_EXAMPLES = 10  # test images in the reconstruction grid

# Column order of the CSV; units are in the names (pixels lie in [0, 1]).
COLUMNS = [
    "dataset",
    "method",
    "n_components",
    "settings",
    "n_train",
    "n_test",
    "epochs",
    "fit_time_s",
    "transform_time_train_test_s",
    "test_sse_per_image",
    "test_mse_per_pixel",
]
TABLE_FORMATS = {
    "fit_time_s": ".2f",
    "transform_time_train_test_s": ".3f",
    "test_sse_per_image": ".2f",
    "test_mse_per_pixel": ".5f",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser, default_output="benchmark_results")
    parser.add_argument(
        "--n-components",
        type=comma_list(positive_int),
        default=None,
        help="code sizes (default 16,32,64; --quick: 16,64)",
    )
    parser.add_argument(
        "--methods",
        type=comma_list(str, METHODS),
        default=list(METHODS),
        help=f"subset of {','.join(METHODS)} (default all)",
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
        help="epochs per autoencoder (default: the estimators' own; --quick: 10)",
    )
    parser.add_argument(
        "--n-train",
        type=positive_int,
        default=None,
        help="random training subset (default all; --quick: 5000)",
    )
    parser.add_argument(
        "--n-test",
        type=positive_int,
        default=None,
        help="random test subset (default all; --quick: 1000)",
    )
    parser.add_argument("--quick", action="store_true", help="a ~2 minute smoke run (see above)")
    parser.add_argument("--verbose", action="store_true", help="per-epoch progress bars")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# -- data ----------------------------------------------------------------------------------------


def prepare_data(args) -> Dataset:
    data = load_dataset(args.dataset, args.data_home, download=not args.no_download, seed=args.seed)
    announce_fallback(data)
    data.X_train, data.y_train = subsample(data.X_train, data.y_train, args.n_train, args.seed)
    data.X_test, data.y_test = subsample(data.X_test, data.y_test, args.n_test, args.seed + 1)
    return data


def usable_sizes(sizes, data: Dataset) -> list[int]:
    """The code sizes that fit the data (PCA needs n_components <= n_features, n_samples)."""
    limit = min(data.n_features, len(data.X_train))
    kept = sorted({k for k in sizes if k <= limit})
    if len(kept) < len(set(sizes)):
        dropped = sorted(set(sizes) - set(kept))
        print(f"Skipping n_components {dropped}: {data.name} allows at most {limit}.")
    if not kept:
        raise SystemExit(f"No usable n_components for {data.name} (at most {limit}).")
    return kept


def example_rows(y: np.ndarray, n: int = N_EXAMPLES) -> np.ndarray:
    """One test image per class where possible (the first of each), else the first n."""
    firsts = [int(np.flatnonzero(y == label)[0]) for label in np.unique(y)][:n]
    rest = [i for i in range(len(y)) if i not in firsts]
    return np.array(sorted(firsts) + rest[: n - len(firsts)])


# -- one run -------------------------------------------------------------------------------------


def make_reducer(method: str, n_components: int, args):
    if method == "pca":
        return PCA(n_components=n_components, random_state=args.seed)
    cls, params = VARIANTS[method]
    extra = {} if args.max_iter is None else {"max_iter": args.max_iter}
    return cls(
        n_components=n_components,
        random_state=args.seed,
        device=args.device,
        verbose=int(args.verbose),
        **params,
        **extra,
    )


def settings_of(method: str) -> str:
    params = {} if method == "pca" else VARIANTS[method][1]
    return " ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def run_one(method: str, n_components: int, data: Dataset, args, examples: np.ndarray):
    """Fit one reducer, encode, classify, reconstruct; return (result row, example images)."""
    reducer = make_reducer(method, n_components, args)
    with fixed_epoch_budget():
        start = time.perf_counter()
        reducer.fit(data.X_train)
        fit_time = time.perf_counter() - start
    start = time.perf_counter()
    codes_train = reducer.transform(data.X_train)
    codes_test = reducer.transform(data.X_test)
    transform_time = time.perf_counter() - start
    reconstruction = reducer.inverse_transform(codes_test)
    row = {
        "dataset": data.name,
        "method": method,
        "n_components": n_components,
        "settings": settings_of(method),
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        "epochs": getattr(reducer, "n_iter_", None),
        "fit_time_s": fit_time,
        "transform_time_train_test_s": transform_time,
        **reconstruction_errors(data.X_test, reconstruction),
        **accuracies(codes_train, data.y_train, codes_test, data.y_test, args.classifiers),
    }
    return row, reconstruction[examples]


def reconstruction_errors(X: np.ndarray, reconstruction: np.ndarray) -> dict:
    squared = np.square(X.astype(np.float64) - reconstruction)
    return {
        "test_sse_per_image": float(squared.sum(axis=1).mean()),
        "test_mse_per_pixel": float(squared.mean()),
    }


def accuracies(codes_train, y_train, codes_test, y_test, classifiers) -> dict:
    scores = {}
    for name in classifiers:
        model = CLASSIFIERS[name]().fit(codes_train, y_train)
        scores[f"test_accuracy_{name}"] = float(model.score(codes_test, y_test))
    return scores


def run_all(data: Dataset, args, sizes: list[int]):
    """All (method, n_components) runs; keeps example reconstructions at the largest size."""
    examples = example_rows(data.y_test)
    warm_up(data.X_train, args.device)
    runs = [(method, k) for method in args.methods for k in sizes]
    rows, gallery = [], {}
    with tqdm(runs, desc=f"{data.name}", unit="run", file=sys.stderr) as bar:
        for method, k in bar:
            bar.set_postfix_str(f"{method} n_components={k}")
            row, images = run_one(method, k, data, args, examples)
            rows.append(row)
            if k == sizes[-1]:
                gallery[method] = images
    gallery = {"original": data.X_test[examples], **gallery}
    return rows, gallery


# -- reporting -----------------------------------------------------------------------------------


def results_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c not in COLUMNS]
    frame = frame[COLUMNS + extra]
    return frame.astype({"epochs": "Int64"})


def report(frame: pd.DataFrame, rows, data: Dataset, args, machine: dict, argv) -> None:
    out = Path(args.output_dir)
    stem = f"compare_pca_{data.name}"
    table_columns = [
        c for c in frame.columns if c not in ("dataset", "settings", "n_train", "n_test")
    ]
    title = f"## Autoencoders vs PCA on {data.describe()}"
    settings = "; ".join(f"{m}: {settings_of(m)}" for m in args.methods if m != "pca")
    text = "\n\n".join([
        title,
        markdown_table(frame[table_columns], TABLE_FORMATS),
        *([f"Settings: {settings}"] if settings else []),
        f"Machine: {describe_machine(machine)}",
    ])  # fmt: skip
    print(text)
    write_text(out / f"{stem}.md", text + "\n")
    write_csv(out / f"{stem}.csv", frame)
    write_json(
        out / f"{stem}.json",
        {
            "dataset": data.name,
            "fallback": data.fallback_note,
            "command": command_line("benchmarks/compare_pca.py", argv),
            "settings": vars(args),
            "variants": {m: settings_of(m) for m in METHODS},
            "machine": machine,
            "results": rows,
        },
    )


# -- figures -------------------------------------------------------------------------------------


def plot_all(frame: pd.DataFrame, gallery: dict, data: Dataset, args, n_components: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    out = Path(args.output_dir)
    save_figure(plot_gallery(gallery, data, n_components), out / f"reconstructions_{data.name}.png")
    save_figure(plot_accuracy(frame, data, args.classifiers), out / f"accuracy_{data.name}.png")
    save_figure(plot_error(frame, data), out / f"reconstruction_error_{data.name}.png")


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    # The temporary name has no .png suffix, so the format is given explicitly.
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def plot_gallery(gallery: dict, data: Dataset, n_components: int):
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(gallery), len(next(iter(gallery.values())))
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.1 * n_cols + 1.2, 1.15 * n_rows + 0.6), squeeze=False
    )
    for r, (label, images) in enumerate(gallery.items()):
        for c, image in enumerate(images):
            ax = axes[r, c]
            ax.imshow(np.clip(image, 0, 1).reshape(data.image_shape), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=11)
    fig.suptitle(f"{data.label}: test images and reconstructions, n_components={n_components}")
    fig.tight_layout()
    return fig


def plot_accuracy(frame: pd.DataFrame, data: Dataset, classifiers):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(classifiers), figsize=(5.5 * len(classifiers), 4), squeeze=False, sharey=True
    )
    for ax, name in zip(axes[0], classifiers, strict=True):
        plot_lines(ax, frame, f"test_accuracy_{name}")
        ax.set_title(name)
        ax.set_ylabel("test accuracy")
    fig.suptitle(f"{data.label}: accuracy of classifiers trained on the codes")
    legend_beside(fig, axes[0, 0])
    return fig


def plot_error(frame: pd.DataFrame, data: Dataset):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.3, 4))
    plot_lines(ax, frame, "test_sse_per_image")
    ax.set_ylabel(f"test SSE per image (sum over {data.n_features} pixels in [0, 1])")
    ax.set_title(f"{data.label}: reconstruction error")
    legend_beside(fig, ax)
    return fig


def legend_beside(fig, ax) -> None:
    # Outside the axes, where it cannot hide a line.
    fig.legend(*ax.get_legend_handles_labels(), loc="center right")
    fig.tight_layout(rect=(0, 0, 1 - 1.3 / fig.get_figwidth(), 1))


def plot_lines(ax, frame: pd.DataFrame, column: str) -> None:
    for method, runs in frame.groupby("method", sort=False):
        runs = runs.sort_values("n_components")
        # A fixed colour per method, whichever methods a run includes.
        color = f"C{METHODS.index(method)}"
        ax.plot(runs["n_components"], runs[column], marker="o", color=color, label=method)
    sizes = sorted(frame["n_components"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.set_xlabel("n_components")
    ax.grid(alpha=0.3)


def main(argv=None) -> int:
    args = parse_args(argv)
    data = prepare_data(args)  # first, so a fallback notice is the first line printed
    sizes = usable_sizes(args.n_components, data)
    with limit_threads(args.threads):
        machine = machine_info(args.device)
        rows, gallery = run_all(data, args, sizes)
    frame = results_frame(rows)
    report(frame, rows, data, args, machine, argv)
    plot_all(frame, gallery, data, args, sizes[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
