"""Outlier detection: AutoEncoderOutlierDetector at its defaults against the usual baselines.

Two public benchmarks, in one run:

One-class images (Ruff et al., 2018, "Deep One-Class Classification"): for each digit, every
method is fitted on the training images of that digit alone and scores the whole test set, that
digit normal and the other nine anomalies; the AUROC per class and its mean over the classes.
--dataset fashion-mnist runs the same protocol on Fashion-MNIST's ten classes. Methods: the
detector at its defaults and with novelty=True; PCA's reconstruction error at 8, 16 and 32
components (those below the number of features); IsolationForest; kNN (mean distance to the 5
nearest training rows); LocalOutlierFactor(novelty=True); PyOD's AutoEncoder at its defaults, if
PyOD is installed (optional).

ADBench's classical tables (Han et al., NeurIPS 2022), read from DATA_HOME/adbench/*.npz, in two
protocols, --seeds splits each (see _harness/adbench.py):
  unsupervised  a stratified 70/30 split (at most 10,000 rows); every method fits the 70% with
                its anomalies, without labels, and scores the 30%
  novelty       half of the normal rows train; the other half and every anomaly test
Methods: the detector at its defaults (and with novelty=True on clean rows), IsolationForest,
LocalOutlierFactor(novelty=True), kNN (largest of the 5 distances, as PyOD's KNN), PCA's
Mahalanobis distance, and ECOD and COPOD if PyOD is installed. The tables that the defaults were
tuned on are marked (tuned_on); the others of the 28 development tables confirmed them.

Outputs, in --output-dir: compare_outliers_<dataset>.md/.csv/.json and compare_outliers.png
(one-class: methods x classes), compare_outliers_adbench.md/.csv/.json (per protocol: methods x
tables, mean AUROC, mean rank, total seconds) and compare_outliers_adbench.png (each table's
difference from IsolationForest or kNN, and from the best baseline), rewritten after every fit.
--quick: 1,000 training images per class and 2,000 test images, 2 table seeds.

Usage, from the repository root:
  python benchmarks/compare_outliers.py --quick
  python benchmarks/compare_outliers.py --threads 1
  python benchmarks/compare_outliers.py --classes none          # ADBench only
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
from _harness.adbench import (
    ADBenchUnavailable,
    adbench_tables,
    load_adbench,
    novelty_split,
    unsupervised_split,
)
from _harness.figures import method_colors, new_figure, save_figure, title_and_caption
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from skae import AutoEncoderOutlierDetector

DETECTOR = "skae detector"
TRUSTING = "skae, novelty=True"  # the detector told its training rows are clean
PCA_SIZES = (8, 16, 32)
METHODS = (DETECTOR, TRUSTING, *(f"PCA-{k}" for k in PCA_SIZES), "IsolationForest", "kNN-5",
           "LOF", "PyOD AutoEncoder")  # fmt: skip
COLORS = method_colors(METHODS)
QUICK_TRAIN, QUICK_TEST, QUICK_SEEDS = 1000, 2000, 2


def parse_args(argv=None):
    parser = benchmark_parser(__doc__)
    add_data_arguments(parser, datasets=("mnist", "fashion-mnist"))
    classes = comma_list(int, range(10))
    parser.add_argument(
        "--classes",
        type=lambda text: [] if text == "none" else classes(text),
        default=list(range(10)),
        help="the one-class runs' normal classes, or none (default: all ten)",
    )
    parser.add_argument(
        "--tables",
        type=comma_list(str),
        default=None,
        help="comma list of ADBench tables (as 2_annthyroid) in DATA_HOME/adbench/, or none "
        "(default: every table there)",
    )
    parser.add_argument("--protocols", type=comma_list(str, ("unsupervised", "novelty")),
                        default=["unsupervised", "novelty"], help="(default: both)")  # fmt: skip
    parser.add_argument("--seeds", type=positive_int, default=3, help="splits per table (3)")
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
        detector = AutoEncoderOutlierDetector(
            random_state=seed, device=args.device, novelty=method == TRUSTING
        )
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


# -- ADBench tables ---------------------------------------------------------------------------

# Baselines of the tables (each fitted on the training part, scoring the test part, higher =
# more outlying): kNN is PyOD's KNN default (the largest of the 5 distances); PCA's score is the
# Mahalanobis distance in its whitened space (every component above 1e-10 of the largest).
TABLE_BASELINES = ("IsolationForest", "LOF", "kNN", "PCA-Mahalanobis", "ECOD", "COPOD")
NOVELTY = TRUSTING
# The development tables held out of the choice of the defaults, to confirm them (ADBench's
# order, every third from the third): the others were tuned on.
CONFIRMING = ("5_campaign", "10_cover", "15_Hepatitis", "19_landsat", "24_mnist",
              "30_satellite", "34_smtp", "39_vertebral", "45_wine")  # fmt: skip
TABLE_COLORS = method_colors((DETECTOR, NOVELTY, *TABLE_BASELINES))


def table_method(method, seed, args):
    """(fit, outlier scores) functions of one method, or None (PyOD missing or left out)."""
    if method in (DETECTOR, NOVELTY):
        detector = AutoEncoderOutlierDetector(
            random_state=seed, device=args.device, novelty=method == NOVELTY
        )
        return detector.fit, lambda rows: -detector.score_samples(rows)
    if method == "IsolationForest":
        forest = IsolationForest(random_state=seed)
        return forest.fit, lambda rows: -forest.score_samples(rows)
    if method == "LOF":
        lof = LocalOutlierFactor(novelty=True)
        return lof.fit, lambda rows: -lof.score_samples(rows)
    if method == "kNN":
        neighbours = NearestNeighbors(n_neighbors=5)
        return neighbours.fit, lambda rows: neighbours.kneighbors(rows)[0][:, -1]
    if method == "PCA-Mahalanobis":
        pca = PCA(whiten=True, random_state=seed)

        def whitened(rows):
            kept = pca.explained_variance_ > 1e-10 * pca.explained_variance_.max()
            return np.square(pca.transform(rows)[:, kept]).sum(axis=1)

        return pca.fit, whitened
    if args.no_pyod:
        return None
    try:
        from pyod.models.copod import COPOD
        from pyod.models.ecod import ECOD
    except ImportError:
        return None
    model = ECOD() if method == "ECOD" else COPOD()
    return model.fit, model.decision_function


def adbench_runs(args, report):
    """Every table, protocol, seed and method: AUROC on the test part, and the time of the fit
    and the scoring."""
    todo = [(name, protocol, seed) for name in args.tables for protocol in args.protocols
            for seed in range(args.seeds)]  # fmt: skip
    label = lambda run: " ".join(map(str, run))  # noqa: E731
    for name, protocol, seed in runs(todo, desc="ADBench", label=label, progress=not args.quiet):
        X, y = load_adbench(name, args.data_home)
        split = unsupervised_split if protocol == "unsupervised" else novelty_split
        X_train, X_test, y_test = split(X, y, seed)
        ours = (DETECTOR, NOVELTY) if protocol == "novelty" else (DETECTOR,)
        for method in (*ours, *TABLE_BASELINES):
            functions = table_method(method, seed, args)
            if functions is None:
                continue
            fit, scores = functions
            start = time.perf_counter()
            with warnings.catch_warnings():
                # Narrow tables warn that 8 codes can learn the identity map: detection does
                # not need a compressed code (see the notes), and each fit would say so.
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", ConvergenceWarning)
                fit(X_train)
                outlier_scores = scores(X_test)
            seconds = time.perf_counter() - start
            report.add({
                "table": name, "protocol": protocol, "seed": seed, "method": method,
                "auroc": roc_auc_score(y_test, outlier_scores), "seconds": seconds,
                "n_train": len(X_train), "n_test": len(X_test), "n_features": X.shape[1],
                "tuned_on": name not in CONFIRMING,
            })  # fmt: skip


def tables_table(frame):
    """Per protocol: methods x tables, mean AUROC over the seeds, with each method's mean
    AUROC, mean rank (1 = best) and total seconds."""
    blocks = []
    for protocol, rows in frame.groupby("protocol", sort=False):
        wide = rows.pivot_table(index="table", columns="method", values="auroc", sort=False)
        ranks = wide.rank(axis=1, ascending=False).mean()
        table = wide.T
        table.insert(0, "total (s)", rows.groupby("method")["seconds"].sum())
        table.insert(0, "mean rank", ranks)
        table.insert(0, "mean AUROC", wide.mean())
        table.insert(0, "protocol", protocol)
        blocks.append(table.sort_values("mean AUROC", ascending=False).reset_index())
    return pd.concat(blocks, ignore_index=True)


def table_verdicts(frame):
    """The issue's targets for the tables, each with what the run measured."""
    lines = []
    for protocol, ours, reference in (("unsupervised", DETECTOR, "IsolationForest"),
                                      ("novelty", NOVELTY, "kNN")):  # fmt: skip
        rows = frame[frame["protocol"] == protocol]
        if not len(rows) or ours not in set(rows["method"]):
            continue
        wide = rows.pivot_table(index="table", columns="method", values="auroc")
        baselines = [m for m in TABLE_BASELINES if m in wide]
        for label, subset in (("all", wide), ("confirming", wide[wide.index.isin(CONFIRMING)])):
            if not len(subset):
                continue
            best = subset[baselines].mean().idxmax()
            gap = subset[ours] - subset[reference]
            lines.append(
                f"{protocol} ({label}, {len(subset)} tables): {ours} mean AUROC "
                f"{subset[ours].mean():.3f}, best baseline {best} {subset[best].mean():.3f} "
                f"({subset[ours].mean() - subset[best].mean():+.3f}); worst table against "
                f"{reference} {gap.min():+.3f} ({gap.idxmin()}), {(gap < -0.05).sum()} more "
                "than 0.05 below"
            )
    seconds = frame.groupby("method")["seconds"].sum()
    if "IsolationForest" in seconds and DETECTOR in seconds:
        ours = seconds[[m for m in (DETECTOR, NOVELTY) if m in seconds]].sum()
        forest = seconds["IsolationForest"]
        n_ours = frame["method"].isin([DETECTOR, NOVELTY]).sum()
        n_forest = (frame["method"] == "IsolationForest").sum()
        lines.append(
            f"time: skae's {n_ours} fits {ours:.1f} s, IsolationForest's {n_forest} "
            f"{forest:.1f} s: {ours / n_ours / (forest / n_forest):.1f}x per fit"
        )
    return lines


def tables_plot(frame, machine, args):
    """Per protocol, each table's AUROC difference of skae from the reference baseline
    (IsolationForest unsupervised, kNN on clean rows), and from the best baseline on it."""
    pairs = [(p, o, r) for p, o, r in (("unsupervised", DETECTOR, "IsolationForest"),
             ("novelty", NOVELTY, "kNN")) if (frame["protocol"] == p).any()]  # fmt: skip
    fig, axes = new_figure(len(pairs), panel_width=7.0, height=5.0, sharey=False)
    for ax, (protocol, ours, reference) in zip(axes, pairs, strict=True):
        rows = frame[frame["protocol"] == protocol]
        wide = rows.pivot_table(index="table", columns="method", values="auroc")
        baselines = [m for m in TABLE_BASELINES if m in wide]
        order = (wide[ours] - wide[reference]).sort_values().index
        positions = np.arange(len(order))
        ax.barh(positions - 0.2, (wide[ours] - wide[reference])[order], 0.4,
                color=TABLE_COLORS[reference], label=f"minus {reference}")  # fmt: skip
        ax.barh(positions + 0.2, (wide[ours] - wide[baselines].max(axis=1))[order], 0.4,
                color="0.6", label="minus the best baseline on the table")  # fmt: skip
        ax.set_yticks(positions, [f"{t}{'' if t in CONFIRMING else ' *'}" for t in order],
                      fontsize=7)  # fmt: skip
        ax.axvline(0, color="0.2", lw=0.8)
        ax.axvline(-0.05, color="0.4", ls=":", lw=0.8)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(f"AUROC of {ours}, minus the baseline's")
        ax.set_title(f"{protocol} (mean over seeds)")
        ax.legend(fontsize=8, loc="lower right")
    quick = " (quick run)" if args.quick else ""
    caption = machine_caption(machine) + "\n* a table the defaults were tuned on"
    title_and_caption(fig, f"ADBench: where skae wins and loses, table by table{quick}", caption)
    return fig


def one_class_verdicts(one_class):
    """The issue's one-class targets, each with what the run measured."""
    wide = one_class.pivot_table(index="method", columns="class", values="auroc")
    mean = wide.mean(axis=1)
    best_other = mean.drop([DETECTOR, TRUSTING], errors="ignore")
    lines = []
    for method in (DETECTOR, TRUSTING):
        if method in mean:
            lines.append(
                f"one-class mean AUROC, {method}: {mean[method]:.3f} (target >= 0.98 with "
                f"novelty=True); best baseline {best_other.idxmax()} {best_other.max():.3f}; "
                f"worst class {wide.loc[method].min():.3f} (class {wide.loc[method].idxmin()})"
            )
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
    if args.tables is None:
        try:
            args.tables = adbench_tables(args.data_home)
        except ADBenchUnavailable as exc:
            print(f"Skipping the ADBench tables: {exc}", file=sys.stderr)
            args.tables = []
    args.tables = [name for name in args.tables if name != "none"]
    if args.quick:
        args.seeds = min(args.seeds, QUICK_SEEDS)
    args.device = resolve_device(args.device)
    machine = machine_info(args.device)
    command = command_line("benchmarks/compare_outliers.py", argv)
    meta = {"command": command, "settings": vars(args), "machine": machine}
    notes = [f"Command: `{command}`. Machine: {describe_machine(machine)}."]
    quick = " (quick run)" if args.quick else ""
    folder = None
    with limit_threads(args.threads):
        warm_up(np.random.default_rng(0).random((300, 8), dtype=np.float32), args.device)
        if args.classes:
            data = load_dataset(args.dataset, args.data_home, download=not args.no_download)
            announce_fallback(data)
            print(data.describe(), flush=True)
            report = Report(
                args.output_dir, f"compare_outliers_{data.name}", meta=meta, notes=notes,
                title=f"One-class {data.label}: AUROC per normal class{quick}",
                table=one_class_table, formats={"fit (s)": ".1f"},
                expected=len(args.classes) * len(methods_for(data.n_features, args)),
            )  # fmt: skip
            with report.stopping_on_interrupt():
                one_class_runs(data, args, report)
            report.finish()
            for line in one_class_verdicts(report.frame):
                print(f"- {line}")
            folder = report.folder
            save_figure(plot(report.frame, None, args.dataset, machine, args),
                        folder / "compare_outliers.png")  # fmt: skip
        if args.tables:
            report = Report(
                args.output_dir, "compare_outliers_adbench", meta=meta, notes=notes,
                title=f"ADBench: AUROC per table (mean over {args.seeds} seeds){quick}",
                table=tables_table, formats={"total (s)": ".1f", "mean rank": ".2f"},
            )  # fmt: skip
            with report.stopping_on_interrupt():
                adbench_runs(args, report)
            report.finish()
            for line in table_verdicts(report.frame):
                print(f"- {line}")
            save_figure(tables_plot(report.frame, machine, args),
                        report.folder / "compare_outliers_adbench.png")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
