"""Does AutoEncoderImputer fill missing values better than scikit-learn's imputers?

GAIN's protocol (Yoon, Jordon & van der Schaar, 2018): every column is scaled to [0, 1] (min-max
over the whole data set), a share of the entries is removed completely at random (seeds 0, 1,
2: the holes and the models), every imputer fills the same holes in the same run, and the root
mean squared error over the removed entries is reported, mean and min-max over the seeds, with
the imputer's fit time and the time to fill (transform), after a warm-up fit that pays
torch's one-off costs.

Imputers, each at scikit-learn's or skae's defaults unless said:
  mean              SimpleImputer(strategy="mean")
  knn               KNNImputer(n_neighbors=5)
  iterative         IterativeImputer(BayesianRidge) (max_iter=10)
  iterative_trees   IterativeImputer(ExtraTreesRegressor(n_estimators=10)), a MissForest
                    stand-in (the estimator of scikit-learn's own imputation example)
  autoencoder       skae.AutoEncoderImputer(random_state=seed)
On MNIST's 784 pixels the iterative imputers regress each pixel on its 50 nearest pixels
(n_nearest_features=50, scikit-learn's speed-up for wide data) for 3 rounds; at full size they
would take hours. Even so, BayesianRidge takes about 10 minutes a fit there (on 2 busy cores)
and the tree imputer longer, so the latter runs on MNIST only with --trees-on-mnist.

Cases (--cases): breast_cancer (569 x 30) and digits (1,797 x 64) with 20% missing; mnist: the
first 4,000 training images (784 pixels) with 20% and with 50% missing (skipped with a notice
when MNIST's files are missing: $SKAE_DATA or --data-home).

Downstream (--downstream, on by default): digits with 20% missing, split 70/30 (stratified,
per seed); each imputer is fitted on the training rows and fills both splits; a StandardScaler +
LogisticRegression is trained on the filled training rows and scored on the filled test rows.
Also the codes of skae.AutoEncoderTransformer(n_components=16) fitted on the incomplete rows,
against its codes of the complete rows (same split and seed).

--quick: seed 0 only, MNIST's first 1,000 images without the iterative imputers, no 50% case,
the iterative imputers for 3 rounds elsewhere; about 2 minutes on 2 cores.

Outputs, in --output-dir: compare_imputers.md (the table printed), .csv (means over seeds),
_runs.csv (one row per seed), .json (all of it with the machine and the command), rewritten
after every run, and compare_imputers.png (RMSE per case and method, downstream accuracy) at
the end. Threads: 1 for the small tables, 2 for MNIST (--threads overrides).

Usage, from the repository root:
  python benchmarks/compare_imputers.py --quick
  python benchmarks/compare_imputers.py
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import pandas as pd
from _harness import (
    DatasetUnavailable,
    Report,
    add_data_arguments,
    add_machine_arguments,
    add_output_arguments,
    benchmark_parser,
    comma_list,
    command_line,
    describe_load,
    describe_machine,
    limit_threads,
    load_dataset,
    machine_info,
    positive_int,
    resolve_device,
    runs,
    timed_fit,
    warm_up,
)
from _harness.figures import (
    grouped_bars,
    method_colors,
    new_figure,
    save_figure,
    title_and_caption,
)
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, minmax_scale

from skae import AutoEncoderImputer, AutoEncoderTransformer

METHODS = ("mean", "knn", "iterative", "iterative_trees", "autoencoder")
COLORS = method_colors(METHODS)
CASES = ("breast_cancer", "digits", "mnist", "mnist_50")
# Each case: its data set, the share of entries removed, and the threads it runs with.
CASE_SETTINGS = {
    "breast_cancer": ("breast_cancer", 0.2, 1),
    "digits": ("digits", 0.2, 1),
    "mnist": ("mnist", 0.2, 2),
    "mnist_50": ("mnist", 0.5, 2),
}
MNIST_ROWS, QUICK_MNIST_ROWS = 4000, 1000
# The iterative imputers on MNIST: each pixel from its 50 nearest pixels, 3 rounds.
WIDE_ITERATIVE = {"n_nearest_features": 50, "max_iter": 3}
DOWNSTREAM_COMPONENTS = 16

RUN_COLUMNS = ["case", "method", "seed", "rmse", "fit_time_s", "transform_time_s"]
TABLE_FORMATS = {"rmse": ".4f", "rmse_min": ".4f", "rmse_max": ".4f", "fit_time_s": ".2f",
                 "transform_time_s": ".2f", "accuracy": ".3f"}  # fmt: skip


def parse_args(argv=None):
    parser = benchmark_parser(__doc__)
    add = parser.add_argument
    add("--cases", type=comma_list(str, CASES), default=list(CASES),
        help=f"comma list of {','.join(CASES)} (default all)")  # fmt: skip
    add("--methods", type=comma_list(str, METHODS), default=list(METHODS),
        help=f"comma list of {','.join(METHODS)} (default all)")  # fmt: skip
    add("--seeds", type=positive_int, default=3, help="seeds 0, 1, ... (default 3)")
    add("--quick", action="store_true", help="the quick run (see above)")
    add("--trees-on-mnist", action="store_true",
        help="run iterative_trees on MNIST too (about 8 minutes a fit)")  # fmt: skip
    add("--no-downstream", dest="downstream", action="store_false",
        help="skip the logistic regression on digits")  # fmt: skip
    add("--max-iter", type=positive_int, default=None,
        help="the autoencoders' epochs, overriding their defaults: for tests")  # fmt: skip
    add_data_arguments(parser, datasets=None, download=False)
    add_machine_arguments(parser, device="cpu",
                          threads_help="threads for torch and BLAS (default: 1 for the small "
                          "tables, 2 for MNIST)")  # fmt: skip
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = 1
        args.cases = [case for case in args.cases if case != "mnist_50"]
    return args


# -- data ------------------------------------------------------------------------------------


def load_case(case, args):
    """(X scaled to [0, 1] per column, y, a description) for a case's data set."""
    name, _, _ = CASE_SETTINGS[case]
    if name == "breast_cancer":
        X, y = load_breast_cancer(return_X_y=True)
    elif name == "digits":
        X, y = load_digits(return_X_y=True)
    else:
        data = load_dataset("mnist", args.data_home, download=False, fallback=False)
        rows = QUICK_MNIST_ROWS if args.quick else MNIST_ROWS
        X, y = data.X_train[:rows].astype(np.float64), data.y_train[:rows]
    return minmax_scale(X), y, f"{name} ({X.shape[0]:,} x {X.shape[1]})"


def remove_at_random(X, share, seed):
    """X with ``share`` of its entries removed completely at random, and where."""
    holes = np.random.default_rng(seed).random(X.shape) < share
    return np.where(holes, np.nan, X), holes


# -- the imputers ------------------------------------------------------------------------------


def make_imputer(method, seed, wide, args):
    iterative = {"random_state": seed, **({"max_iter": 3} if args.quick else {})}
    iterative.update(WIDE_ITERATIVE if wide else {})
    if method == "mean":
        return SimpleImputer()
    if method == "knn":
        return KNNImputer()
    if method == "iterative":
        return IterativeImputer(**iterative)
    if method == "iterative_trees":
        trees = ExtraTreesRegressor(n_estimators=10, random_state=seed, n_jobs=1)
        return IterativeImputer(estimator=trees, **iterative)
    extra = {} if args.max_iter is None else {"max_iter": args.max_iter}
    return AutoEncoderImputer(random_state=seed, device=args.device, **extra)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def run_one(case, method, seed, X, args, quiet):
    _, share, _ = CASE_SETTINGS[case]
    X_missing, holes = remove_at_random(X, share, seed)
    imputer = make_imputer(method, seed, X.shape[1] > 256, args)
    with warnings.catch_warnings():
        # IterativeImputer warns when its rounds end before its tolerance: it is reported as
        # it is, at its defaults.
        warnings.filterwarnings("ignore", message=".*early stopping criterion not reached")
        fit = timed_fit(imputer, X_missing, label=f"{case} {method} seed={seed}",
                        progress=not quiet)  # fmt: skip
        filled, transform_seconds = timed(lambda: imputer.transform(X_missing))
    return {
        "case": case,
        "method": method,
        "seed": seed,
        "missing_share": share,
        "n_rows": X.shape[0],
        "n_features": X.shape[1],
        "rmse": float(np.sqrt(np.mean((filled[holes] - X[holes]) ** 2))),
        "fit_time_s": fit.seconds,
        "transform_time_s": transform_seconds,
        "epochs": getattr(imputer, "n_iter_", None),
        "convergence_warnings": len(fit.convergence_warnings),
    }


def downstream(seed, args, quiet):
    """Accuracy of logistic regression on digits with 20% missing, after each imputer; and on
    an autoencoder's codes of the incomplete and of the complete digits."""
    X, y, _ = load_case("digits", args)
    X_missing, _ = remove_at_random(X, 0.2, seed)
    train, test = train_test_split(np.arange(len(X)), test_size=0.3, stratify=y,
                                   random_state=seed)  # fmt: skip

    def accuracy(step, data):
        model = make_pipeline(step, StandardScaler(), LogisticRegression(max_iter=2000))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*early stopping criterion not reached")
            model.fit(data[train], y[train])
        return float(model.score(data[test], y[test]))

    rows = []
    for method in args.methods:
        imputer = make_imputer(method, seed, False, args)
        rows.append({"method": method, "seed": seed, "accuracy": accuracy(imputer, X_missing)})
    extra = {} if args.max_iter is None else {"max_iter": args.max_iter}
    for label, data in (("codes, 20% missing", X_missing), ("codes, complete", X)):
        codes = AutoEncoderTransformer(DOWNSTREAM_COMPONENTS, random_state=seed, **extra)
        rows.append({"method": label, "seed": seed, "accuracy": accuracy(codes, data)})
    return rows


# -- reporting ---------------------------------------------------------------------------------


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    grouped = frame.groupby(["case", "method"], sort=False)
    summary = grouped.agg(
        seeds=("seed", "size"), rmse=("rmse", "mean"), rmse_min=("rmse", "min"),
        rmse_max=("rmse", "max"), fit_time_s=("fit_time_s", "mean"),
        transform_time_s=("transform_time_s", "mean"), epochs=("epochs", "mean"),
    )  # fmt: skip
    return summary.reset_index()


def make_report(args, machine, argv, cases, downstream_rows):
    def notes():
        described = "\n".join(f"- {case}: {info}" for case, info in cases.items())
        lines = [
            "rmse: root mean squared error over the removed entries (data scaled to [0, 1] per "
            "column), mean and min-max over seeds; fit_time_s: the imputer's fit; "
            "transform_time_s: filling the same rows (KNNImputer does its work there). "
            "Wall-clock times on a machine shared with other work unless said otherwise.",
            *([f"Cases:\n\n{described}"] if cases else []),
        ]
        if downstream_rows:
            frame = pd.DataFrame(downstream_rows).groupby("method", sort=False)["accuracy"]
            table = frame.agg(["mean", "min", "max", "size"]).reset_index()
            table.columns = ["method", "accuracy", "min", "max", "seeds"]
            lines.append(
                "Downstream: StandardScaler + LogisticRegression on digits with 20% missing "
                "(70/30 split), after each imputer, and on AutoEncoderTransformer"
                f"(n_components={DOWNSTREAM_COMPONENTS}) codes of the incomplete and of the "
                "complete digits; held-out accuracy:\n\n"
                + _markdown(table, {"accuracy": ".3f", "min": ".3f", "max": ".3f"})
            )
        lines.append(f"Machine: {describe_machine(machine)}")
        return lines

    meta = {
        "command": command_line("benchmarks/compare_imputers.py", argv),
        "settings": vars(args),
        "machine": machine,
        "cases": cases,
        "downstream": downstream_rows,
    }
    title = "Imputers on GAIN's protocol" + (" (quick run)" if args.quick else "")
    return Report(
        args.output_dir, "compare_imputers", meta=meta, notes=notes, columns=RUN_COLUMNS,
        title=title, summarise=summarise, formats=TABLE_FORMATS, rows_key="runs",
    )  # fmt: skip


def _markdown(frame, formats):
    from _harness import markdown_table

    return markdown_table(frame, formats)


def plot(summary, downstream_rows, caption):
    cases = list(dict.fromkeys(summary["case"]))
    n_panels = len(cases) + bool(downstream_rows)
    fig, axes = new_figure(n_panels, panel_width=3.4, height=4.2, sharey=False)
    for ax, case in zip(axes, cases, strict=False):
        rows = summary[summary["case"] == case]
        many = rows["seeds"].max() > 1
        whiskers = {"low": "rmse_min", "high": "rmse_max"} if many else {}
        grouped_bars(ax, rows, "case", "rmse", COLORS, fmt=lambda v: f"{v:.3f}", **whiskers)
        ax.set_title(case, fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("RMSE over the removed entries (lower is better)")
    if downstream_rows:
        ax = axes[-1]
        frame = pd.DataFrame(downstream_rows).groupby("method", sort=False)["accuracy"].mean()
        colors = [COLORS.get(m, "0.5") for m in frame.index]
        ax.bar(range(len(frame)), frame.to_numpy(), color=colors)
        ax.set_xticks(range(len(frame)), frame.index, rotation=30, ha="right",
                      rotation_mode="anchor")  # fmt: skip
        for i, value in enumerate(frame.to_numpy()):
            ax.annotate(f"{value:.3f}", (i, value), xytext=(0, 3), textcoords="offset points",
                        ha="center", fontsize=8)  # fmt: skip
        ax.set_ylim(min(0.8, frame.min() - 0.02), 1.0)
        ax.set_title("digits, 20% missing:\nlogistic regression accuracy", fontsize=10)
    title_and_caption(fig, "Imputation error on GAIN's protocol", caption)
    return fig


def _skipped(method, case, args):
    """The iterative imputers' fits that take too long on MNIST (see the docstring)."""
    if not case.startswith("mnist"):
        return False
    if method == "iterative_trees":
        return not args.trees_on_mnist
    return method == "iterative" and args.quick


# -- main --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    args.device = resolve_device(args.device)
    machine = machine_info(args.device)
    cases, downstream_rows = {}, []
    report = make_report(args, machine, argv, cases, downstream_rows)
    seeds = list(range(args.seeds))
    # Not timed: torch's one-off costs, among them the import of its compiler stack that the
    # first torch.optim optimizer triggers (1.5-2 s here), which would go to the first fit.
    with limit_threads(args.threads or 1):
        warm_up(np.random.default_rng(0).random((300, 8), dtype=np.float32), args.device)
    with report.stopping_on_interrupt():
        for case in args.cases:
            try:
                X, _, described = load_case(case, args)
            except DatasetUnavailable as exc:
                print(f"NOTICE: {exc.args[0]}; skipping {case}.", flush=True)
                continue
            _, share, threads = CASE_SETTINGS[case]
            threads = args.threads or threads
            cases[case] = f"{described}, {share:.0%} missing, {threads} thread(s)"
            print(cases[case], flush=True)
            methods = [m for m in args.methods if not _skipped(m, case, args)]
            methods.sort(key=lambda m: m.startswith("iterative") and case.startswith("mnist"))
            todo = [(seed, method) for seed in seeds for method in methods]
            with limit_threads(threads):
                for seed, method in runs(todo, desc=case, label=lambda r: f"{r[1]} seed={r[0]}",
                                         progress=not args.quiet):  # fmt: skip
                    report.add(run_one(case, method, seed, X, args, args.quiet))
        if args.downstream:
            with limit_threads(args.threads or 1):
                for seed in runs(seeds, desc="downstream", progress=not args.quiet):
                    downstream_rows.extend(downstream(seed, args, args.quiet))
    if not report.rows:
        print("No case could be run.", file=sys.stderr)
        return 1
    report.finish()
    caption = f"{'; '.join(cases.values())}\n{describe_machine(machine)}\n{describe_load(machine)}."
    save_figure(plot(report.summary(), downstream_rows, caption),
                report.folder / "compare_imputers.png")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
