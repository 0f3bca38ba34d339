"""Tune an autoencoder and the classifier on its codes together, with GridSearchCV.

The pipeline is AutoEncoderTransformer -> StandardScaler -> LogisticRegression, searched over
ae__n_components, ae__noise_type (plain vs denoising autoencoder) and clf__C by stratified
k-fold cross-validation on a random subset of the training images. The refitted best pipeline
is then scored on the test split. The scaler puts the codes on the footing that lbfgs needs to
converge in a reasonable number of iterations, as in compare_pca.py's logreg.

Prints the best parameters and the cross-validation table (markdown); writes
grid_search_<dataset>.csv / .json (with machine, settings and command) to --output-dir. When the
dataset can neither be found nor downloaded, the first line printed says so and the search runs
on scikit-learn's 8x8 digits instead.

With --n-jobs > 1 the folds run in separate processes; joblib then limits each worker's threads
so that torch does not oversubscribe the cores.

Usage, from the repository root (the dataset is read from, or downloaded into,
<data home>/<dataset>/, the data home being --data-home, else $SKAE_DATA, else scikit-learn's
data home):
  python benchmarks/grid_search.py
  python benchmarks/grid_search.py --n-samples 10000 --n-components 16,32,64 --C 0.01,0.1,1
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from _harness import (
    Dataset,
    add_common_arguments,
    announce_fallback,
    benchmark_parser,
    comma_list,
    command_line,
    describe_load,
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
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skae import AutoEncoderTransformer

NOISE_TYPES = {"none": None, "masking": "masking", "gaussian": "gaussian"}


def parse_args(argv=None):
    parser = benchmark_parser(__doc__)
    add_common_arguments(parser, quiet=False)
    parser.add_argument(
        "--n-samples",
        type=positive_int,
        default=5000,
        help="random training images searched over (default 5000)",
    )
    parser.add_argument("--cv", type=positive_int, default=3, help="folds (default 3)")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel fits (default 1)")
    parser.add_argument(
        "--max-iter",
        type=lambda text: text if text == "auto" else positive_int(text),
        default="auto",
        help='epochs per autoencoder (default "auto", the estimator\'s own budget; a small '
        "number makes a fast search of undertrained models)",
    )
    parser.add_argument(
        "--n-components",
        type=comma_list(positive_int),
        default=[16, 32],
        help="grid of ae__n_components (default 16,32)",
    )
    parser.add_argument(
        "--noise-types",
        type=comma_list(str, tuple(NOISE_TYPES)),
        default=["none", "masking"],
        help="grid of ae__noise_type: none, masking, gaussian (default none,masking)",
    )
    parser.add_argument(
        "--C",
        dest="C",
        type=comma_list(float),
        default=[0.1, 1.0],
        help="grid of clf__C (default 0.1,1)",
    )
    return parser.parse_args(argv)


def make_search(args) -> GridSearchCV:
    autoencoder = AutoEncoderTransformer(
        max_iter=args.max_iter, random_state=args.seed, device=args.device
    )
    pipeline = Pipeline(
        [
            ("ae", autoencoder),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    grid = {
        "ae__n_components": args.n_components,
        "ae__noise_type": [NOISE_TYPES[name] for name in args.noise_types],
        "clf__C": args.C,
    }
    folds = StratifiedKFold(n_splits=args.cv, shuffle=True, random_state=args.seed)
    # error_score="raise": a failing fit is a bug to see, not a NaN to rank last.
    return GridSearchCV(pipeline, grid, cv=folds, n_jobs=args.n_jobs, error_score="raise")


def cv_table(search: GridSearchCV) -> pd.DataFrame:
    results = pd.DataFrame(search.cv_results_)
    params = [c for c in results.columns if c.startswith("param_")]
    table = results[
        [
            "rank_test_score",
            *params,
            "mean_test_score",
            "std_test_score",
            "mean_fit_time",
            "mean_score_time",
        ]
    ]
    table = table.rename(columns={c: c.removeprefix("param_") for c in params})
    table = table.rename(
        columns={"mean_fit_time": "mean_fit_time_s", "mean_score_time": "mean_score_time_s"}
    )
    return table.sort_values(["rank_test_score", "mean_fit_time_s"]).reset_index(drop=True)


TABLE_FORMATS = {
    "mean_test_score": ".4f",
    "std_test_score": ".4f",
    "mean_fit_time_s": ".2f",
    "mean_score_time_s": ".3f",
}


def run_search(search: GridSearchCV, X, y, device: str) -> float:
    """Fit the search; return its wall time in seconds."""
    n_fits = search.cv.get_n_splits() * len(ParameterGrid(search.param_grid))
    print(f"Grid search on {len(X)} training images: {n_fits} fits + 1 refit ...", flush=True)
    warm_up(X, device)
    start = time.perf_counter()
    with fixed_epoch_budget():
        search.fit(X, y)
    return time.perf_counter() - start


def report(search: GridSearchCV, wall: float, data: Dataset, n_samples: int, args, argv,
           machine: dict) -> None:  # fmt: skip
    table = cv_table(search)
    best = dict(search.best_params_)
    test_accuracy = float(search.score(data.X_test, data.y_test))
    text = "\n\n".join([
        f"## Grid search on {data.label}: {n_samples} of the {len(data.X_train)} training "
        f"images, {args.cv}-fold CV",
        f"Best parameters: {best}",
        f"Best CV accuracy: {search.best_score_:.4f} (std {table.loc[0, 'std_test_score']:.4f})",
        f"Test accuracy of the refitted best pipeline on {len(data.X_test)} test images: "
        f"{test_accuracy:.4f}",
        f"Search wall time: {wall:.1f} s",
        # None (the plain autoencoder) would print as an empty cell.
        markdown_table(table.fillna({"ae__noise_type": "none"}), TABLE_FORMATS),
        f"Machine: {describe_machine(machine)}. {describe_load(machine)}.",
    ])  # fmt: skip
    print(text)
    out = Path(args.output_dir)
    stem = f"grid_search_{data.name}"
    write_text(out / f"{stem}.md", text + "\n")
    write_csv(out / f"{stem}.csv", table.assign(dataset=data.name))
    write_json(out / f"{stem}.json", {
        "dataset": data.name,
        "fallback": data.fallback_note,
        "command": command_line("benchmarks/grid_search.py", argv),
        "settings": vars(args),
        "n_samples": n_samples,
        "best_params": best,
        "best_cv_accuracy": search.best_score_,
        "test_accuracy": test_accuracy,
        "n_test": len(data.X_test),
        "search_wall_time_s": wall,
        "machine": machine,
        "cv_results": table.to_dict(orient="records"),
    })  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    data = load_dataset(args.dataset, args.data_home, download=not args.no_download, seed=args.seed)
    announce_fallback(data)  # first, so a fallback notice is the first line printed
    X, y = subsample(data.X_train, data.y_train, args.n_samples, args.seed)
    with limit_threads(args.threads):
        machine = machine_info(args.device)
        search = make_search(args)
        wall = run_search(search, X, y, args.device)
        report(search, wall, data, len(X), args, argv, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
