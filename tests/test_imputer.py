"""AutoEncoderImputer: observed values kept, missing ones filled well, scikit-learn's API."""

import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

import skae
from skae import AutoEncoderImputer
from skae._imputer import LINEAR_SHARE, OBSERVED_CELLS_PER_STEP
from skae._plan import FEWEST_STEPS, TARGET_STEPS

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

DIGITS, LABELS = load_digits(return_X_y=True)
DIGITS = DIGITS / 16


def with_holes(X, share=0.2, seed=0):
    holes = np.random.default_rng(seed).random(X.shape) < share
    return np.where(holes, np.nan, X), holes


def small(**params):
    """A small, short fit: these tests are about the API, except where they say otherwise."""
    defaults = dict(n_components=8, hidden_layer_sizes=(32,), max_iter=5, random_state=0,
                    device="cpu")  # fmt: skip
    return AutoEncoderImputer(**{**defaults, **params})


@pytest.fixture(scope="module")
def fitted():
    X, _ = with_holes(DIGITS[:400])
    return small().fit(X), X


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_observed_values_pass_and_missing_ones_are_filled(fitted, dtype):
    imputer, X = fitted
    X = X.astype(dtype)
    out = imputer.transform(X)
    assert out.dtype == dtype and out.shape == X.shape
    assert not np.isnan(out).any()
    observed = ~np.isnan(X)
    assert_array_equal(out[observed], X[observed])  # bit for bit


def test_imputes_digits_better_than_the_column_means():
    # The quality check: a short default-sized fit on 20% missing digits.
    X, holes = with_holes(DIGITS, seed=1)
    filled = AutoEncoderImputer(max_iter=40, random_state=0, device="cpu").fit_transform(X)
    error = np.sqrt(np.mean((filled[holes] - DIGITS[holes]) ** 2))
    means = SimpleImputer().fit_transform(X)
    mean_error = np.sqrt(np.mean((means[holes] - DIGITS[holes]) ** 2))
    assert error < 0.7 * mean_error


def test_columns_in_their_own_units_are_standardised_and_filled_in_them():
    """Numbers outside [0, 1] are standardised per column: with one overall scale, the widest
    columns drown the others (the narrowest ones then filled worse than their mean)."""
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(500, 2))
    X = factors @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(500, 6))
    X = X * np.array([0.01, 0.1, 1, 10, 100, 1000]) + 5  # same structure, different units
    X_missing, holes = with_holes(X)
    imputer = AutoEncoderImputer(max_iter=30, random_state=0, device="cpu").fit(X_missing)
    assert imputer.fit_plan_.scaling == "standardised" and imputer.input_scale_.shape == (6,)
    filled = imputer.transform(X_missing)
    errors = np.sqrt((((filled - X) * holes) ** 2).sum(axis=0) / holes.sum(axis=0)) / X.std(axis=0)
    assert errors.max() < 1  # every column, the narrowest too, below its mean (centred: 41)
    assert_array_equal(filled[~holes], X[~holes])
    # Data in [0, 1] (pixels) share their units, as before.
    assert small().fit(with_holes(DIGITS[:200])[0]).fit_plan_.scaling == "centred"


@pytest.mark.parametrize(
    ("n_rows", "n_features", "expected"),
    [(999, 20, (256,)), (1000, 20, (256, 256)), (999, 300, (256, 128)), (1000, 300, (256, 256))],
)
def test_auto_network_has_two_equal_hidden_layers_from_1000_rows(n_rows, n_features, expected):
    X, _ = with_holes(np.random.default_rng(0).random((n_rows, n_features)))
    imputer = AutoEncoderImputer(max_iter=1, random_state=0, device="cpu").fit(X)
    assert imputer.hidden_layer_sizes_ == expected
    wide = AutoEncoderImputer(n_components=200, max_iter=1, device="cpu")
    if n_rows >= 1000:  # no hidden layer narrower than twice the codes
        assert wide.fit(X).hidden_layer_sizes_ == (400, 400)


@pytest.mark.parametrize("n_components, weight", [(8, 3.0), (4, 1.0)])
def test_auto_hidden_weight_is_3_where_the_codes_are_as_wide_as_the_rows(n_components, weight):
    X = np.random.default_rng(0).random((60, 8))
    X[np.random.default_rng(1).random(X.shape) < 0.2] = np.nan

    def filled(hidden_weight):
        imputer = AutoEncoderImputer(n_components=n_components, hidden_weight=hidden_weight,
                                     max_iter=3, random_state=0, device="cpu")  # fmt: skip
        return imputer.fit_transform(X)

    other = 1.0 if weight == 3.0 else 3.0
    assert_array_equal(filled("auto"), filled(weight))
    assert not np.allclose(filled("auto"), filled(other))


def test_a_short_schedule_does_not_warn():
    # The training loss still falls after 2 epochs, which warns for the transformer; the
    # imputer's loss does not measure its fills, so more epochs are not what it needs.
    X, _ = with_holes(DIGITS[:300])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skae.AutoEncoderTransformer(n_components=8, hidden_layer_sizes=(32,), max_iter=2,
                                    early_stopping=False, device="cpu").fit(X)  # fmt: skip
    assert any("consider raising max_iter" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small(max_iter=2).fit(X)


def test_a_row_with_no_observed_value_gets_the_training_means(fitted):
    imputer, X = fitted
    row = np.full((1, X.shape[1]), np.nan)
    assert_allclose(imputer.transform(row)[0], np.nanmean(X, axis=0), atol=1e-5)


def test_complete_training_data_still_impute_later_holes():
    imputer = small().fit(DIGITS[:300])
    X, holes = with_holes(DIGITS[300:400])
    out = imputer.transform(X)
    assert not np.isnan(out).any() and imputer.mask_input_


def test_other_missing_values_placeholder():
    X, holes = with_holes(DIGITS[:300])
    X = np.where(holes, -1.0, X)
    imputer = small(missing_values=-1).fit(X)
    out = imputer.transform(X)
    assert not (out == -1).any()
    assert_array_equal(out[~holes], X[~holes])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        imputer.transform(np.where(holes, np.nan, X))
    assert not imputer.__sklearn_tags__().input_tags.allow_nan
    assert AutoEncoderImputer().__sklearn_tags__().input_tags.allow_nan


@pytest.mark.parametrize("keep_empty_features", [False, True])
@pytest.mark.parametrize("add_indicator", [False, True])
def test_features_and_names_as_scikit_learns_imputers(keep_empty_features, add_indicator):
    X, _ = with_holes(DIGITS[:300])
    X[:, 3] = np.nan  # a feature with no observed value
    X[:, 5] = DIGITS[:300, 5]  # and one with none missing
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(64)])
    params = dict(keep_empty_features=keep_empty_features, add_indicator=add_indicator)
    ours, reference = small(**params).fit(frame), SimpleImputer(**params).fit(frame)
    assert_array_equal(ours.get_feature_names_out(), reference.get_feature_names_out())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SimpleImputer warns that it skips the empty feature
        expected = reference.transform(frame)
    out = ours.transform(frame)
    assert out.shape == expected.shape
    if keep_empty_features:
        assert_array_equal(out[:, 3], 0.0)
    if add_indicator:
        n_indicator = len(reference.indicator_.features_)
        assert_array_equal(ours.indicator_.features_, reference.indicator_.features_)
        assert_array_equal(out[:, -n_indicator:], expected[:, -n_indicator:])
    assert_array_equal(ours.set_output(transform="pandas").transform(frame).columns,
                       reference.get_feature_names_out())  # fmt: skip


def test_every_feature_empty_is_refused():
    with pytest.raises(ValueError, match="Every feature of X is entirely missing"):
        small().fit(np.full((5, 3), np.nan))


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("masking_rate", 1.0, r"masking_rate=1.0 is invalid: expected a real number in \[0, 1\)"),
        ("missing_values", "NA", "missing_values='NA' is invalid: expected a number or np.nan"),
        ("add_indicator", "yes", "add_indicator='yes' is invalid"),
        ("hidden_weight", 0, 'hidden_weight=0 is invalid: expected "auto" or a real number > 0'),
        ("hidden_weight", "high", "hidden_weight='high' is invalid"),
        ("linear_share", 1.5, r"linear_share=1.5 is invalid: expected a real number in \[0, 1\]"),
        ("linear_share", "half", "linear_share='half' is invalid"),
    ],
)
def test_invalid_parameters(param, value, message):
    with pytest.raises(ValueError, match=message):
        small(**{param: value}).fit(DIGITS[:50])


def test_no_partial_fit():
    assert not hasattr(AutoEncoderImputer(), "partial_fit")


def test_pipeline_grid_search_clone_pickle_and_model_files(tmp_path):
    X, _ = with_holes(DIGITS[:500])
    pipe = make_pipeline(small(), LogisticRegression(max_iter=200))
    search = GridSearchCV(pipe, {"autoencoderimputer__masking_rate": [0.1, 0.3]}, cv=2)
    search.fit(X, LABELS[:500])
    assert search.best_score_ > 0.7
    imputer = search.best_estimator_[0]
    twin = clone(imputer)
    assert twin.get_params() == imputer.get_params() and not hasattr(twin, "n_iter_")
    again = pickle.loads(pickle.dumps(imputer))
    assert_array_equal(again.transform(X), imputer.transform(X))
    imputer.set_params(add_indicator=True, keep_empty_features=True).fit(X)
    imputer.save(tmp_path / "imputer.safetensors")
    loaded = skae.load(tmp_path / "imputer.safetensors")
    assert type(loaded) is AutoEncoderImputer
    assert_array_equal(loaded.transform(X), imputer.transform(X))
    assert_array_equal(loaded.get_feature_names_out(), imputer.get_feature_names_out())


def test_a_model_file_with_inconsistent_imputer_state_is_refused():
    imputer = AutoEncoderImputer()
    with pytest.raises(ValueError, match="expected 3 booleans"):
        imputer._saved_array_shapes(3, {"_empty_features": [True], "_indicator_features": None})
    with pytest.raises(ValueError, match="Invalid _indicator_features"):
        imputer._saved_array_shapes(2, {"_empty_features": [False, False],
                                        "_indicator_features": [5]})  # fmt: skip


@pytest.mark.filterwarnings("ignore::UserWarning")  # tiny budgets, three-row bar charts
def test_benchmark_script_runs(tmp_path, monkeypatch, capsys):
    """benchmarks/compare_imputers.py end to end, on breast_cancer with tiny budgets."""
    import importlib.util
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))
    path = folder / "compare_imputers.py"
    spec = importlib.util.spec_from_file_location("compare_imputers", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "out"
    status = bench.main(["--cases", "breast_cancer", "--methods", "mean,knn,autoencoder",
                         "--seeds", "2", "--max-iter", "2", "--no-downstream", "--quiet",
                         "--output-dir", str(out)])  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "| breast_cancer | MCAR      | autoencoder |     2 |" in printed
    payload = json.loads((out / "compare_imputers.json").read_text())
    assert payload["complete"] and len(payload["runs"]) == 6
    assert all(0 < run["rmse"] < 0.5 for run in payload["runs"])
    assert (out / "compare_imputers.png").stat().st_size > 0


@pytest.mark.parametrize("mixed", [False, True])
def test_the_auto_budget_follows_the_observed_cells(mixed):
    # One step per two observed cells of the table (a categorical cell counts once, not once
    # per one-hot column), between FEWEST_STEPS and TARGET_STEPS.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 6)), columns=list("abcdef"))
    if mixed:
        frame["kind"] = pd.Categorical(rng.choice(["x", "y", "z"], size=300))
    frame = frame.mask(rng.random(frame.shape) < 0.2)
    imputer = AutoEncoderImputer(random_state=0, device="cpu").fit(frame)
    steps = frame.notna().to_numpy().sum() // OBSERVED_CELLS_PER_STEP
    assert FEWEST_STEPS < steps < TARGET_STEPS
    assert imputer.max_iter_ == math.ceil(steps / math.ceil(300 / imputer.batch_size_))
    assert imputer.n_iter_ == imputer.max_iter_


def test_linear_share_blends_the_network_with_iterative_imputer():
    X, holes = with_holes(DIGITS[:300, 20:32])  # 12 columns, 3 of them nearly constant
    X[:, 5] = np.nan  # an empty feature, kept
    fills = {
        share: small(linear_share=share, keep_empty_features=True).fit(X).transform(X)
        for share in (0.0, 0.3, 1.0)
    }
    # All linear: IterativeImputer(BayesianRidge)'s own fills, from the chain it keeps.
    expected = IterativeImputer(random_state=0, keep_empty_features=True).fit_transform(X)
    assert_allclose(fills[1.0][holes], expected[holes], atol=1e-5)
    # The same network, trained alike whatever the share: the fills are the weighted average.
    blend = 0.7 * fills[0.0] + 0.3 * fills[1.0]
    assert_allclose(fills[0.3][holes], blend[holes], atol=1e-6)
    observed = ~np.isnan(X)
    assert_array_equal(fills[0.3][observed], X[observed])
    assert not np.allclose(fills[0.0][holes], fills[1.0][holes], atol=1e-2)


def test_auto_linear_share_on_narrow_numeric_tables_only():
    X, _ = with_holes(DIGITS[:200])
    imputer = small().fit(X)
    plan = imputer.fit_plan_
    assert plan.linear_share == LINEAR_SHARE == 0.3 and "linear_share" in plan.auto
    assert "30% IterativeImputer(BayesianRidge)'s*" in str(plan)
    assert imputer._linear_coefs.shape == (len(imputer._linear_targets), 64)
    wide, _ = with_holes(np.hstack([DIGITS[:60]] * 5))  # 320 columns: the network alone
    assert small(max_iter=1).fit(wide).fit_plan_.linear_share == 0.0
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0] * 10, "b": ["x", "y", None, "x"] * 10})
    mixed = small(max_iter=1).fit(frame)
    assert mixed.fit_plan_.linear_share == 0.0 and mixed._linear_coefs is None
    assert "fills" not in str(mixed.fit_plan_)
    with pytest.raises(ValueError, match="linear_share=0.3 needs a numeric table"):
        small(max_iter=1, linear_share=0.3).fit(frame)


def test_model_file_keeps_the_linear_chain(tmp_path):
    X, _ = with_holes(DIGITS[:200, 10:30])
    imputer = small().fit(X)
    imputer.save(tmp_path / "imputer.safetensors")
    loaded = skae.load(tmp_path / "imputer.safetensors")
    assert loaded.fit_plan_.linear_share == 0.3
    assert_array_equal(loaded.transform(X), imputer.transform(X))
    # An imputer without the linear part saves none.
    alone = small(linear_share=0.0).fit(X)
    alone.save(tmp_path / "alone.safetensors")
    assert skae.load(tmp_path / "alone.safetensors")._linear_coefs is None
