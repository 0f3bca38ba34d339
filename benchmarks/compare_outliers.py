"""Outlier detection: AutoEncoderOutlierDetector at its defaults against the usual baselines.

Two public protocols, in one run:

One-class images (Ruff et al., 2018, "Deep One-Class Classification"): for each digit, every
method is fitted on the training images of that digit alone and scores the whole test set, that
digit normal and the other nine anomalies; the AUROC per class and its mean over the classes.
--dataset fashion-mnist runs the same protocol on Fashion-MNIST's ten classes.

Unsupervised tables (as ADBench): every method is fitted on all rows, outliers included, and
scores those same rows; AUROC against the outlier labels, mean over --seeds subsamples (each
seed draws the outliers kept and seeds the models):
  breast_cancer  357 benign rows and malignant ones subsampled to 5% of the rows (19)
  wine           classes 1 and 2 (119 rows) and 10 rows of class 0, as ODDS' "wine"
  digits         scikit-learn's 8x8 digits 1-9 (1,619 rows) and digit 0 subsampled to 3% (50),
                 as ODDS' "optdigits" (which uses the larger UCI set)
Features are standardised (digits: pixels / 16) for every method.

Methods: the detector at its defaults (only random_state set), and with support_fraction=1.0
(every training row trusted: the setting for clean training rows, as novelty=True is LOF's);
the reconstruction error of PCA with 8, 16 and 32 components (those below the number of
features); IsolationForest; kNN (mean distance to the 5 nearest training rows, other than the
row itself on the tables); LocalOutlierFactor (novelty=True on the images, its
negative_outlier_factor_ on the tables); PyOD's AutoEncoder at its defaults, if PyOD is
installed (an optional comparison). Also reported: each fit's time, and for the detector the
share of rows fit_predict flags with contamination set to the true share of outliers (tables).

Outputs, in --output-dir: compare_outliers_<dataset>.md/.csv/.json (one-class: methods x classes)
and compare_outliers_tables.md/.csv/.json, rewritten after every fit; compare_outliers.png
(AUROC per class and per table). --quick: 1,000 training images per class and 2,000 test images,
2 table seeds, under 2 minutes on 2 cores.

Usage, from the repository root:
  python benchmarks/compare_outliers.py --quick
  python benchmarks/compare_outliers.py --threads 2
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import pandas as pd
from _harness import (
    Report,
    add_data_arguments,
    add_machine_arguments,
    add_output_arguments,
    announce_fallback,
    benchmark_parser,
    comma_list,
    command_line,
    describe_machine,
    limit_threads,
    load_dataset,
    machine_caption,
    machine_info,
    positive_int,
    resolve_device,
    runs,
    timed_fit,
    warm_up,
)
from _harness.figures import method_colors, new_figure, save_figure, title_and_caption
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.preprocessing import StandardScaler

from skae import AutoEncoderOutlierDetector

TABLES = ("breast_cancer", "wine", "digits")
DETECTOR = "skae detector"
TRUSTING = "skae, support_fraction=1"  # the detector trusting every training row
PCA_SIZES = (8, 16, 32)
METHODS = (DETECTOR, TRUSTING, *(f"PCA-{k}" for k in PCA_SIZES), "IsolationForest", "kNN-5",
           "LOF", "PyOD AutoEncoder")  # fmt: skip
COLORS = method_colors(METHODS)
QUICK_TRAIN, QUICK_TEST, QUICK_SEEDS = 1000, 2000, 2


def parse_args(argv=None):
    parser = benchmark_parser(__doc__)
    add_data_arguments(parser, datasets=("mnist", "fashion-mnist"))
    parser.add_argument("--classes", type=comma_list(int, range(10)), default=list(range(10)),
                        help="the one-class runs' normal classes (default all ten)")  # fmt: skip
    tables = comma_list(str, (*TABLES, "none"))
    parser.add_argument(
        "--tables",
        type=tables,
        default=list(TABLES),
        help=f"comma list of {','.join(TABLES)}, or none (default: all)",
    )
    parser.add_argument("--seeds", type=positive_int, default=5, help="table subsamples (5)")
    parser.add_argument("--quick", action="store_true", help="a representative run, < 2 min")
    parser.add_argument("--no-pyod", action="store_true", help="leave PyOD out even if found")
    add_machine_arguments(parser)
    add_output_arguments(parser)
    return parser.parse_args(argv)


# -- the methods: each fits on X_train and returns a function giving scores (higher = normal) --


def pyod_autoencoder(seed):
    """PyOD's AutoEncoder at its defaults, or None when PyOD is not installed."""
    try:
        from pyod.models.auto_encoder import AutoEncoder
    except ImportError:
        return None
    return AutoEncoder(random_state=seed, verbose=0, device="cpu")


def fit_method(method, X, seed, args, *, in_sample):
    """Fit ``method`` on X; return (score function, fit seconds, fitted estimator or None).
    ``in_sample``: the rows scored are the training rows (the tables), so kNN leaves each
    row out of its own neighbours and LOF scores them as fitted."""
    start = time.perf_counter()
    if method in (DETECTOR, TRUSTING):
        support = {"support_fraction": 1.0} if method == TRUSTING else {}
        detector = AutoEncoderOutlierDetector(random_state=seed, device=args.device, **support)
        fit = timed_fit(detector, X, label=f"{method} seed={seed}", progress=not args.quiet)
        return detector.score_samples, fit.seconds, detector if method == DETECTOR else None
    if method.startswith("PCA-"):
        pca = PCA(int(method[4:]), random_state=seed).fit(X)

        def pca_scores(rows):
            return -np.square(rows - pca.inverse_transform(pca.transform(rows))).sum(axis=1)

        return pca_scores, time.perf_counter() - start, None
    if method == "IsolationForest":
        forest = IsolationForest(random_state=seed).fit(X)
        return forest.score_samples, time.perf_counter() - start, None
    if method == "kNN-5":
        neighbours = NearestNeighbors(n_neighbors=5 + in_sample).fit(X)

        def knn_scores(rows):
            distances, _ = neighbours.kneighbors(rows)
            return -distances[:, int(in_sample) :].mean(axis=1)

        return knn_scores, time.perf_counter() - start, None
    if method == "LOF":
        lof = LocalOutlierFactor(novelty=not in_sample).fit(X)
        if in_sample:
            return (lambda rows: lof.negative_outlier_factor_), time.perf_counter() - start, None
        return lof.score_samples, time.perf_counter() - start, None
    if method == "PyOD AutoEncoder":
        model = pyod_autoencoder(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X)
        return (lambda rows: -model.decision_function(rows)), time.perf_counter() - start, None
    raise ValueError(method)


def methods_for(n_features, args):
    chosen = [m for m in METHODS if not m.startswith("PCA-") or int(m[4:]) < n_features]
    if args.no_pyod or pyod_autoencoder(0) is None:
        chosen.remove("PyOD AutoEncoder")
    return chosen


# -- one-class images --------------------------------------------------------------------------


def one_class_runs(data, args, report):
    X_train, y_train, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
    if args.quick:  # a fixed subset of the test set, every class in proportion
        rows = np.sort(np.random.default_rng(0).permutation(len(X_test))[:QUICK_TEST])
        X_test, y_test = X_test[rows], y_test[rows]
    methods = methods_for(X_train.shape[1], args)
    todo = [(c, m) for c in args.classes for m in methods]
    for c, method in runs(todo, desc=data.name, label=lambda run: f"class {run[0]} {run[1]}",
                          progress=not args.quiet):  # fmt: skip
        X = X_train[y_train == c]
        if args.quick:
            X = X[np.random.default_rng(c).permutation(len(X))[:QUICK_TRAIN]]
        scores, seconds, _ = fit_method(method, X, 0, args, in_sample=False)
        report.add({
            "dataset": data.name, "class": c, "method": method, "n_train": len(X),
            "n_test": len(X_test), "auroc": roc_auc_score(y_test == c, scores(X_test)),
            "fit_time_s": seconds,
        })  # fmt: skip


def one_class_table(frame):
    """Methods x classes, with the mean and the worst class."""
    wide = frame.pivot_table(index="method", columns="class", values="auroc", sort=False)
    wide.columns = [str(c) for c in wide.columns]
    table = wide.assign(mean=wide.mean(axis=1), worst=wide.min(axis=1))
    fit = frame.groupby("method", sort=False)["fit_time_s"].mean()
    table["fit (s)"] = fit
    return table.reset_index().sort_values("mean", ascending=False)


# -- unsupervised tables -----------------------------------------------------------------------


def make_table(name, seed):
    """(X, is_outlier) of one subsample: the inliers and a seeded draw of outliers."""
    rng = np.random.default_rng(seed)
    if name == "breast_cancer":
        X, y = load_breast_cancer(return_X_y=True)
        outlier, n_outliers = y == 0, None  # malignant, to 5% of the rows
        share = 0.05
    elif name == "wine":
        X, y = load_wine(return_X_y=True)
        outlier, n_outliers, share = y == 0, 10, None
    else:
        X, y = load_digits(return_X_y=True)
        outlier, n_outliers, share = y == 0, None, 0.03
    inliers, candidates = np.flatnonzero(~outlier), np.flatnonzero(outlier)
    if n_outliers is None:
        n_outliers = round(share * len(inliers) / (1 - share))
    rows = np.r_[inliers, rng.choice(candidates, n_outliers, replace=False)]
    X = X[rows] / 16.0 if name == "digits" else StandardScaler().fit_transform(X[rows])
    return X.astype(np.float32), np.r_[np.zeros(len(inliers)), np.ones(n_outliers)].astype(bool)


def table_runs(args, report):
    todo = [(name, seed) for name in args.tables for seed in range(args.seeds)]
    for name, seed in runs(todo, desc="tables", label=lambda run: f"{run[0]} seed {run[1]}",
                           progress=not args.quiet):  # fmt: skip
        X, is_outlier = make_table(name, seed)
        for method in methods_for(X.shape[1], args):
            scores, seconds, detector = fit_method(method, X, seed, args, in_sample=True)
            row = {
                "dataset": name, "seed": seed, "method": method, "n_rows": len(X),
                "n_features": X.shape[1], "outlier_share": float(is_outlier.mean()),
                "auroc": roc_auc_score(~is_outlier, scores(X)), "fit_time_s": seconds,
            }  # fmt: skip
            if detector is not None:
                row["flagged_auto"] = float((detector.predict(X) == -1).mean())
                share = float(is_outlier.mean())
                labels = detector.set_params(contamination=share).fit_predict(X)
                row["flagged_at_true_share"] = float((labels == -1).mean())
            report.add(row)


def tables_table(frame):
    """Methods x tables: mean AUROC over the seeds (and the worst seed)."""
    grouped = frame.groupby(["method", "dataset"], sort=False)["auroc"]
    mean = grouped.mean().unstack()
    worst = grouped.min().unstack().add_suffix(" worst")
    table = pd.concat([mean, worst], axis=1)
    order = [c for name in frame["dataset"].unique() for c in (name, f"{name} worst")]
    return table[order].reset_index()


# -- the targets -------------------------------------------------------------------------------


def verdicts(one_class, tables):
    """The issue's targets, each with what the run measured."""
    lines = []
    if one_class is not None and len(one_class):
        wide = one_class.pivot_table(index="method", columns="class", values="auroc")
        mean = wide.mean(axis=1)
        best_other = mean.drop([DETECTOR, TRUSTING], errors="ignore").max()
        labels = {DETECTOR: "", TRUSTING: " with support_fraction=1 (not the default)"}
        for method, label in labels.items():
            if method not in mean:
                continue
            lines.append(
                f"one-class mean AUROC{label} {mean[method]:.3f} (target >= 0.97; best baseline "
                f"{best_other:.3f}: "
                f"{'above' if mean[method] > best_other else 'NOT above'} every baseline); "
                f"worst class {wide.loc[method].min():.3f} (class {wide.loc[method].idxmin()}, "
                "target >= 0.90)"
            )
        if DETECTOR in mean:
            fit = one_class[one_class["method"] == DETECTOR]["fit_time_s"]
            lines.append(f"detector fit per class: {fit.mean():.1f} s mean, {fit.max():.1f} s max")
    if tables is not None and len(tables):
        auroc = tables.groupby(["dataset", "method"])["auroc"].mean().unstack()
        for name, row in auroc.iterrows():
            if DETECTOR not in row:
                continue
            rivals = [m for m in row.index if m == "IsolationForest" or m.startswith("PCA-")]
            gap = row[DETECTOR] - row[rivals].max()
            lines.append(
                f"{name}: detector {row[DETECTOR]:.3f}, best of IsolationForest and PCA "
                f"{row[rivals].max():.3f} (difference {gap:+.3f}; target >= -0.02)"
            )
        detector = tables[tables["method"] == DETECTOR]
        if "flagged_at_true_share" in detector:
            miss = (100 * (detector["flagged_at_true_share"] - detector["outlier_share"])).abs()
            lines.append(f"fit_predict at the true share: off by at most {miss.max():.2f} points")
    return lines


# -- figure ------------------------------------------------------------------------------------


def plot(one_class, tables, dataset, machine, args):
    panels = [p for p in (one_class, tables) if p is not None and len(p)]
    fig, axes = new_figure(len(panels), panel_width=6.5, height=4.2, sharey=False)
    for ax, frame in zip(axes, panels, strict=True):
        key = "class" if "class" in frame else "dataset"
        means = frame.groupby([key, "method"], sort=False)["auroc"].mean().reset_index()
        groups = list(dict.fromkeys(means[key]))
        methods = [m for m in COLORS if m in set(means["method"])]
        width = 0.8 / len(methods)
        for i, method in enumerate(methods):
            rows = means[means["method"] == method].set_index(key).reindex(groups)
            positions = np.arange(len(groups)) + (i - (len(methods) - 1) / 2) * width
            ax.bar(positions, rows["auroc"], width, color=COLORS[method], label=method)
        ax.set_xticks(np.arange(len(groups)), [str(g) for g in groups])
        low = max(0.0, float(means["auroc"].min()) - 0.05)
        ax.set_ylim(low, 1.0)
        ax.axhline(0.5, color="0.3", ls=":", lw=1) if low < 0.5 else None
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylabel("AUROC")
        ax.set_xlabel("normal class" if key == "class" else "table (mean over seeds)")
        ax.set_title(f"{dataset} one-class" if key == "class" else "unsupervised tables")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=9)
    quick = " (quick run)" if args.quick else ""
    title_and_caption(fig, f"Outlier detection: AUROC per class and per table{quick}",
                      machine_caption(machine))  # fmt: skip
    return fig


# -- main --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    args.tables = [name for name in args.tables if name != "none"]
    if args.quick:
        args.seeds = min(args.seeds, QUICK_SEEDS)
    args.device = resolve_device(args.device)
    machine = machine_info(args.device)
    command = command_line("benchmarks/compare_outliers.py", argv)
    meta = {"command": command, "settings": vars(args), "machine": machine}
    notes = [f"Command: `{command}`. Machine: {describe_machine(machine)}."]
    one_class = tables = None
    with limit_threads(args.threads):
        warm_up(np.random.default_rng(0).random((300, 8), dtype=np.float32), args.device)
        if args.classes:
            data = load_dataset(args.dataset, args.data_home, download=not args.no_download)
            announce_fallback(data)
            print(data.describe(), flush=True)
            report = Report(
                args.output_dir, f"compare_outliers_{data.name}", meta=meta, notes=notes,
                title=f"One-class {data.label}: AUROC per normal class"
                + (" (quick run)" if args.quick else ""),
                table=one_class_table, formats={"fit (s)": ".1f"},
                expected=len(args.classes) * len(methods_for(data.n_features, args)),
            )  # fmt: skip
            with report.stopping_on_interrupt():
                one_class_runs(data, args, report)
            report.finish()
            one_class = report.frame
        if args.tables:
            report = Report(
                args.output_dir, "compare_outliers_tables", meta=meta, notes=notes,
                title="Unsupervised tables: AUROC (mean over seeds, and the worst seed)"
                + (" (quick run)" if args.quick else ""), table=tables_table,
            )  # fmt: skip
            with report.stopping_on_interrupt():
                table_runs(args, report)
            report.finish()
            tables = report.frame
    for line in verdicts(one_class, tables):
        print(f"- {line}")
    name = args.dataset if args.classes else "tables"
    save_figure(plot(one_class, tables, name, machine, args),
                report.folder / "compare_outliers.png")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
