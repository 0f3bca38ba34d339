"""Does skae's default autoencoder beat PCA on the data users bring, not only on MNIST?

For each data set and code size, PCA, AutoEncoderTransformer and VariationalAutoEncoderTransformer
(both at their defaults, only n_components and random_state set) are fitted on the training
split without labels. Reported on the held-out split: reconstruction MSE in the data's own units
(mean over all entries) and its ratio to PCA's (same seed), and the accuracy of a standardised
logistic regression trained on the training codes. Also reported: fit time, epochs (n_iter_), the
training budget the estimator chose (batch_size_, max_iter_, hidden_layer_sizes_ where the
estimator has them), the VAE's n_active_components_, and how many ConvergenceWarnings fit raised
(they are counted, not silenced). With several seeds (0, 1, ...) the table gives means and the
min-max of the MSE ratio.

Data sets (--datasets; "small" = digits,breast_cancer,swiss_roll, "all" = small + the images):
  digits          scikit-learn's 8x8 digits / 16, 30% held out (stratified); codes 8, 16
  breast_cancer   30 features standardised on the training split, 30% held out; code 8
  swiss_roll      3,000 points of a noisy swiss roll, embedded in 50 dimensions by a random
                  orthonormal map, 30% held out; code 2; labels: quartile of the roll
                  coordinate, so accuracy shows whether the codes unroll the manifold
  fashion-mnist,  the standard 60,000/10,000 splits (skae.datasets; $SKAE_DATA or --data-home);
  mnist           codes 16, 64. Skipped with a notice when the files are missing and cannot be
                  downloaded: no stand-in here, the point is the real data.

Outputs, in --output-dir: compare_datasets.md (the table printed), compare_datasets.csv (one row
per data set, code size and method), compare_datasets_runs.csv (one row per seed),
compare_datasets.json (all of it with the machine and the command), compare_datasets.png (MSE
relative to PCA per data set and code size).

Usage, from the repository root:
  python benchmarks/compare_datasets.py --datasets small --output-dir /tmp/cd_small
  python benchmarks/compare_datasets.py --datasets all --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from _common import (
    atomic_save,
    comma_list,
    command_line,
    describe_machine,
    limit_threads,
    machine_info,
    markdown_table,
    positive_int,
    resolve_device,
    warm_up,
    write_csv,
    write_json,
    write_text,
)
from sklearn.datasets import load_breast_cancer, load_digits, make_swiss_roll
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer

METHODS = ("pca", "ae", "vae")
ESTIMATORS = {"ae": AutoEncoderTransformer, "vae": VariationalAutoEncoderTransformer}
SMALL = ("digits", "breast_cancer", "swiss_roll")
IMAGES = ("fashion-mnist", "mnist")
DATASETS = SMALL + IMAGES
SHORTHANDS = {"small": SMALL, "all": DATASETS}

TEST_SIZE = 0.3  # share held out for the small sets (the image sets have their own test split)
SPLIT_SEED = 0  # splits stay fixed across --seeds, which vary only the models
SWISS_ROLL_DIM = 50
SWISS_ROLL_SAMPLES = 3000

# Attributes a teammate's change adds (a budget adapted to the data); absent before it.
BUDGET_ATTRIBUTES = ("batch_size_", "max_iter_", "hidden_layer_sizes_")

SUMMARY_COLUMNS = [
    "dataset",
    "n_components",
    "method",
    "seeds",
    "test_mse",
    "mse_ratio_to_pca",
    "mse_ratio_min",
    "mse_ratio_max",
    "logreg_accuracy",
    "fit_time_s",
    "epochs",
    *BUDGET_ATTRIBUTES,
    "n_active_components_",
    "convergence_warnings",
]
TABLE_FORMATS = {
    "test_mse": ".4g",
    "mse_ratio_to_pca": ".3f",
    "logreg_accuracy": ".3f",
    "fit_time_s": ".2f",
}


@dataclass
class Split:
    """A data set's train/held-out split, with what the benchmark runs on it by default."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    code_sizes: tuple[int, ...]
    seeds: int  # default number of seeds
    threads: int  # default threads
    units: str  # what one entry of X is, for the reader of the MSE
    # Row numbers in the full data set (None for the image sets' own fixed splits).
    train_index: np.ndarray | None = field(default=None, repr=False)
    test_index: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def describe(self) -> str:
        return f"{len(self.X_train):,} train / {len(self.X_test):,} held out x {self.n_features}"


class DatasetSkipped(Exception):
    """The data set's files are missing and could not be downloaded: args (notice, detail)."""


# -- data ----------------------------------------------------------------------------------------


def split_rows(X, y, stratify=None) -> tuple:
    """X_train, X_test, y_train, y_test, train_index, test_index: 30% held out, seed 0."""
    index = np.arange(len(X))
    train, test = train_test_split(
        index, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=stratify
    )
    return X[train], X[test], y[train], y[test], train, test


def load_digits_data() -> Split:
    """scikit-learn's digits, pixels 0..16 scaled to [0, 1]."""
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test, train, test = split_rows(X, y, stratify=y)
    return Split(
        "digits", X_train, y_train, X_test, y_test, code_sizes=(8, 16), seeds=3, threads=1,
        units="pixels in [0, 1]", train_index=train, test_index=test,
    )  # fmt: skip


def load_breast_cancer_data() -> Split:
    """Wisconsin breast cancer, standardised with the training split's means and deviations."""
    data = load_breast_cancer()
    X, y = data.data, data.target.astype(np.int64)
    X_train, X_test, y_train, y_test, train, test = split_rows(X, y, stratify=y)
    # Fitted on the training rows only, so nothing of the held-out rows leaks into the data.
    scaler = StandardScaler().fit(X_train)
    X_train = scaler.transform(X_train).astype(np.float32)
    X_test = scaler.transform(X_test).astype(np.float32)
    return Split(
        "breast_cancer", X_train, y_train, X_test, y_test, code_sizes=(8,), seeds=3, threads=1,
        units="standardised features", train_index=train, test_index=test,
    )  # fmt: skip


def swiss_roll(n_samples=SWISS_ROLL_SAMPLES, dim=SWISS_ROLL_DIM):
    """A noisy swiss roll (a 2-D manifold in 3-D) mapped isometrically into dim dimensions.

    Returns X (n_samples x dim, float32) and the roll coordinate t.
    """
    X3, t = make_swiss_roll(n_samples, noise=0.05, random_state=0)
    # Orthonormal columns: distances are kept, so only the ambient dimension grows.
    basis, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, 3)))
    return (X3 @ basis.T).astype(np.float32), t


def load_swiss_roll_data() -> Split:
    """The 50-D swiss roll, labelled by the quartile of its roll coordinate."""
    X, t = swiss_roll()
    # Quartile 0..3 of t: a linear read-out of the codes finds them only if the roll is unrolled.
    y = np.searchsorted(np.quantile(t, [0.25, 0.5, 0.75]), t).astype(np.int64)
    X_train, X_test, y_train, y_test, train, test = split_rows(X, y, stratify=y)
    return Split(
        "swiss_roll", X_train, y_train, X_test, y_test, code_sizes=(2,), seeds=3, threads=1,
        units="coordinates", train_index=train, test_index=test,
    )  # fmt: skip


def load_image_data(name: str, data_home=None) -> Split:
    """MNIST or Fashion-MNIST's own 60,000/10,000 split; DatasetSkipped when unavailable.

    skae's loaders are called directly: _common.load_dataset would substitute digits for
    missing files, which here would answer another question.
    """
    from skae.datasets import load_fashion_mnist, load_mnist

    loader = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}[name]
    try:
        bunch = loader(data_home=data_home, download=True)
    except OSError as exc:  # skae's DatasetUnavailableError is one
        where = getattr(exc, "directory", None)
        hint = f" in {where} (SKAE_DATA or --data-home: a folder holding {name}/)" if where else ""
        notice = f"{name} could neither be found nor downloaded{hint}"
        raise DatasetSkipped(notice, str(exc)) from exc
    return Split(
        name, bunch.X_train, bunch.y_train, bunch.X_test, bunch.y_test, code_sizes=(16, 64),
        seeds=1, threads=2, units="pixels in [0, 1]",
    )  # fmt: skip


LOADERS = {
    "digits": load_digits_data,
    "breast_cancer": load_breast_cancer_data,
    "swiss_roll": load_swiss_roll_data,
}


def load_split(name: str, data_home=None) -> Split:
    if name in LOADERS:
        return LOADERS[name]()
    return load_image_data(name, data_home)


def dataset_list(text: str) -> list[str]:
    """An argparse type: a comma list of data sets and the shorthands small and all."""
    names = []
    for item in comma_list(str, (*DATASETS, *SHORTHANDS))(text):
        for name in SHORTHANDS.get(item, (item,)):
            if name not in names:
                names.append(name)
    return names


# -- command line --------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--datasets",
        type=dataset_list,
        default=list(SMALL),
        help=f"comma list of {','.join(DATASETS)}, or small / all (default small)",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        help="how many seeds (0, 1, ...) per run (default 3 for the small sets, 1 for the images)",
    )
    parser.add_argument(
        "--methods",
        type=comma_list(str, METHODS),
        default=list(METHODS),
        help="subset of pca,ae,vae (default all; PCA is fitted as the reference regardless)",
    )
    parser.add_argument(
        "--n-components",
        type=comma_list(positive_int),
        default=None,
        help="code sizes for every data set (default: each data set's own, see above)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads for torch and BLAS/OpenMP (default 1 for the small sets, 2 for the images)",
    )
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda", "cuda:N", ...')
    parser.add_argument(
        "--data-home",
        default=None,
        help="folder holding <dataset>/ with the IDX files (default: $SKAE_DATA, else "
        "scikit-learn's data home)",
    )
    parser.add_argument(
        "--max-iter",
        type=positive_int,
        default=None,
        help="epochs per autoencoder, overriding the defaults: for tests only",
    )
    parser.add_argument(
        "--output-dir",
        default="benchmark_results",
        help="where results go (default benchmark_results)",
    )
    return parser.parse_args(argv)


# -- one run -------------------------------------------------------------------------------------


def make_reducer(method: str, n_components: int, seed: int, args):
    if method == "pca":
        return PCA(n_components=n_components, random_state=seed)
    extra = {} if args.max_iter is None else {"max_iter": args.max_iter}
    return ESTIMATORS[method](
        n_components=n_components, random_state=seed, device=args.device, **extra
    )


def fit_counting_warnings(reducer, X) -> tuple[float, list[str]]:
    """Fit; return the wall time and the ConvergenceWarnings raised, which are not silenced."""
    with warnings.catch_warnings(record=True) as caught:
        # "always": the default filter would show a repeated warning once per location only.
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        reducer.fit(X)
        fit_time = time.perf_counter() - start
    messages = []
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            messages.append(str(w.message))
        # Pass everything on, as if it had not been recorded.
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return fit_time, messages


def held_out_mse(X: np.ndarray, reconstruction: np.ndarray) -> float:
    return float(np.mean(np.square(X.astype(np.float64) - reconstruction)))


def logreg_accuracy(codes_train, y_train, codes_test, y_test) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(model.fit(codes_train, y_train).score(codes_test, y_test))


def run_one(method: str, n_components: int, seed: int, data: Split, args) -> dict:
    """Fit one reducer on the training rows; measure it on the held-out rows."""
    reducer = make_reducer(method, n_components, seed, args)
    fit_time, messages = fit_counting_warnings(reducer, data.X_train)
    codes_test = reducer.transform(data.X_test)
    row = {
        "dataset": data.name,
        "n_components": n_components,
        "method": method,
        "seed": seed,
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        "n_features": data.n_features,
        "test_mse": held_out_mse(data.X_test, reducer.inverse_transform(codes_test)),
        "logreg_accuracy": logreg_accuracy(
            reducer.transform(data.X_train), data.y_train, codes_test, data.y_test
        ),
        "fit_time_s": fit_time,
        "epochs": getattr(reducer, "n_iter_", None),
    }
    for name in (*BUDGET_ATTRIBUTES, "n_active_components_"):
        value = getattr(reducer, name, None)
        row[name] = str(value) if isinstance(value, tuple | list) else value
    row["convergence_warnings"] = len(messages)
    row["convergence_warning_message"] = messages[0] if messages else None
    return row


def usable_sizes(sizes, data: Split) -> list[int]:
    """The code sizes PCA allows (at most min(n_features, n_train)); says which it drops."""
    limit = min(data.n_features, len(data.X_train))
    kept = sorted({k for k in sizes if k <= limit})
    dropped = sorted(set(sizes) - set(kept))
    if dropped:
        print(f"Skipping n_components {dropped} for {data.name}: it allows at most {limit}.")
    return kept


def run_dataset(data: Split, args) -> tuple[list[dict], dict]:
    """All (code size, seed, method) runs on one data set; returns rows and what it ran with."""
    sizes = usable_sizes(args.n_components or data.code_sizes, data)
    seeds = range(args.seeds or data.seeds)
    threads = args.threads or data.threads
    info = {
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        "n_features": data.n_features,
        "units": data.units,
        "code_sizes": sizes,
        "seeds": list(seeds),
        "threads": threads,
    }
    runs = [(k, seed) for k in sizes for seed in seeds]
    rows = []
    with limit_threads(threads):
        warm_up(data.X_train, args.device)
        with tqdm(runs, desc=data.name, unit="run", file=sys.stderr) as bar:
            for k, seed in bar:
                bar.set_postfix_str(f"n_components={k} seed={seed}")
                # PCA is the reference of every ratio, so it runs even when not reported.
                reference = run_one("pca", k, seed, data, args)
                for method in args.methods:
                    row = reference if method == "pca" else run_one(method, k, seed, data, args)
                    row["mse_ratio_to_pca"] = row["test_mse"] / reference["test_mse"]
                    rows.append({**row, "threads": threads})
    return rows, info


# -- reporting -----------------------------------------------------------------------------------


def same_or_joined(values: pd.Series):
    """The value all seeds agree on, else the distinct values joined by "/" (None when absent)."""
    distinct = list(dict.fromkeys(v for v in values if not pd.isna(v)))
    if not distinct:
        return None
    if len(distinct) == 1:
        return distinct[0]
    return "/".join(map(str, distinct))


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (data set, code size, method): means over seeds, min-max of the ratio."""
    keys = ["dataset", "n_components", "method"]
    grouped = runs.groupby(keys, sort=False)
    summary = grouped.agg(
        seeds=("seed", "size"),
        test_mse=("test_mse", "mean"),
        mse_ratio_to_pca=("mse_ratio_to_pca", "mean"),
        mse_ratio_min=("mse_ratio_to_pca", "min"),
        mse_ratio_max=("mse_ratio_to_pca", "max"),
        logreg_accuracy=("logreg_accuracy", "mean"),
        fit_time_s=("fit_time_s", "mean"),
        epochs=("epochs", "mean"),
        n_active_components_=("n_active_components_", "mean"),
        convergence_warnings=("convergence_warnings", "sum"),
    )
    for name in BUDGET_ATTRIBUTES:
        summary[name] = grouped[name].agg(same_or_joined)
    return summary.reset_index()[SUMMARY_COLUMNS]


def table_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as printed: the ratio's min-max in one column, seeds in the Data line."""
    table = summary.drop(columns=["seeds", "mse_ratio_min", "mse_ratio_max"])
    spread = [
        f"{lo:.3f}-{hi:.3f}"
        for lo, hi in zip(summary["mse_ratio_min"], summary["mse_ratio_max"], strict=True)
    ]
    table.insert(table.columns.get_loc("mse_ratio_to_pca") + 1, "mse_ratio_min-max", spread)
    return table


def markdown_report(summary, datasets: dict, notices: list[str], machine: dict, args) -> str:
    data_lines = "\n".join(
        f"- {name}: {info['n_train']:,} train / {info['n_test']:,} held out rows x "
        f"{info['n_features']} features ({info['units']}); seeds {info['seeds']}, "
        f"{info['threads']} thread(s)"
        for name, info in datasets.items()
    )
    budget = "" if args.max_iter is None else f" Overridden: max_iter={args.max_iter}."
    return "\n\n".join([
        "## Default autoencoders vs PCA on several data sets",
        markdown_table(table_frame(summary), TABLE_FORMATS),
        "test_mse: held-out reconstruction MSE in the data's own units, mean over all entries; "
        "mse_ratio_to_pca: its ratio to PCA's with the same seed, mean and min-max over seeds; "
        "logreg_accuracy: StandardScaler + LogisticRegression trained on the training codes, "
        "scored on the held-out codes; fit_time_s, epochs, n_active_components_: means over "
        "seeds; convergence_warnings: ConvergenceWarnings raised by fit, summed over seeds. "
        f"The autoencoders run at their defaults.{budget}",
        f"Data:\n\n{data_lines}",
        *[f"Skipped: {notice}" for notice in notices],
        f"Machine (library defaults; each data set ran with the threads above): "
        f"{describe_machine(machine)}",
    ])  # fmt: skip


def report(runs, summary, datasets, notices, machine, args, argv) -> str:
    out = Path(args.output_dir)
    text = markdown_report(summary, datasets, notices, machine, args)
    print(text)
    write_text(out / "compare_datasets.md", text + "\n")
    write_csv(out / "compare_datasets.csv", summary)
    write_csv(out / "compare_datasets_runs.csv", runs)
    write_json(
        out / "compare_datasets.json",
        {
            "command": command_line("benchmarks/compare_datasets.py", argv),
            "settings": vars(args),
            "machine": machine,
            "datasets": datasets,
            "skipped": notices,
            "summary": summary.to_dict(orient="records"),
            "runs": runs.to_dict(orient="records"),
        },
    )
    return text


# -- figure --------------------------------------------------------------------------------------


def plot_ratios(summary: pd.DataFrame, datasets: dict, path: Path, max_iter=None) -> None:
    """Per data set and code size, bars of held-out MSE / PCA's, seeds' min-max as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(datasets)
    # Wide enough for a three-line title even with a single code size.
    widths = [1.3 + 1.3 * len(datasets[name]["code_sizes"]) for name in names]
    fig, axes = plt.subplots(
        1, len(names), figsize=(1.4 + sum(widths), 4.4), width_ratios=widths, squeeze=False
    )
    methods = list(dict.fromkeys(summary["method"]))
    width = 0.8 / len(methods)
    for ax, name in zip(axes[0], names, strict=True):
        info = datasets[name]
        sizes = info["code_sizes"]
        for m, method in enumerate(methods):
            rows = summary[(summary["dataset"] == name) & (summary["method"] == method)]
            rows = rows.set_index("n_components").reindex(sizes)
            x = np.arange(len(sizes)) + (m - (len(methods) - 1) / 2) * width
            mean = rows["mse_ratio_to_pca"].to_numpy(float)
            low, high = rows["mse_ratio_min"].to_numpy(float), rows["mse_ratio_max"].to_numpy(float)
            # A fixed colour per method, whichever methods a run includes.
            ax.bar(x, mean, width, color=f"C{METHODS.index(method)}", label=method)
            # PCA is 1 by definition: an error bar there would only draw over the reference line.
            if method != "pca" and len(info["seeds"]) > 1:
                ax.errorbar(
                    x, mean, yerr=[mean - low, high - mean], fmt="none", ecolor="black",
                    capsize=3, lw=1,
                )  # fmt: skip
            for xi, value, top in zip(x, mean, np.fmax(mean, high), strict=True):
                if np.isfinite(value):
                    ax.annotate(
                        f"{value:.2f}", (xi, top), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=8,
                    )  # fmt: skip
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(sizes)), [str(k) for k in sizes])
        ax.set_xlabel("n_components")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)  # room for the value labels
        seeds, threads = len(info["seeds"]), info["threads"]
        ax.set_title(
            f"{name}\n{info['n_train']:,} train / {info['n_test']:,} test rows\n"
            f"{info['n_features']} features, {seeds} seed{'s' * (seeds > 1)}, "
            f"{threads} thread{'s' * (threads > 1)}",
            fontsize=9,
        )
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("held-out MSE / PCA's  (lower is better)")
    override = "" if max_iter is None else f" (max_iter={max_iter})"
    fig.suptitle(
        f"Default autoencoders{override} vs PCA: held-out reconstruction error relative to PCA\n"
        "bars: mean over seeds, whiskers: min-max, dashed line: PCA",
        fontsize=11,
    )
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="center right")
    fig.tight_layout(rect=(0, 0, 1 - 0.8 / fig.get_figwidth(), 1))
    # The temporary name has no .png suffix, so the format is given explicitly.
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    args.device = resolve_device(args.device)
    machine = machine_info(args.device)
    rows, datasets, notices = [], {}, []
    for name in args.datasets:
        try:
            data = load_split(name, args.data_home)
        except DatasetSkipped as exc:
            notice, detail = exc.args
            print(f"NOTICE: {notice}; skipping it.", flush=True)
            if detail:
                print(detail, file=sys.stderr, flush=True)
            notices.append(f"{notice}.")
            continue
        print(f"{name}: {data.describe()}", flush=True)
        dataset_rows, datasets[name] = run_dataset(data, args)
        rows += dataset_rows
    if not rows:
        print("No data set could be run.", file=sys.stderr)
        return 1
    runs = pd.DataFrame(rows).astype({"epochs": "Int64"})
    first = ["dataset", "n_components", "method", "seed", "threads", "test_mse", "mse_ratio_to_pca"]
    runs = runs[first + [c for c in runs.columns if c not in first]]
    # None until the estimators have the attribute; numeric so that seeds can be averaged.
    runs["n_active_components_"] = pd.to_numeric(runs["n_active_components_"])
    summary = summarise(runs)
    report(runs, summary, datasets, notices, machine, args, argv)
    plot_ratios(summary, datasets, Path(args.output_dir) / "compare_datasets.png", args.max_iter)
    return 0


if __name__ == "__main__":
    sys.exit(main())
