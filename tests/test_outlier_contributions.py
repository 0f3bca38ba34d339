"""AutoEncoderOutlierDetector.outlier_contributions (each feature's share of a row's outlier
measure) and plot_outlier_contributions."""

import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skae
from skae import AutoEncoderOutlierDetector, plot_outlier_contributions
from skae._outliers import _mahalanobis, _neighbour_distances, _relative_errors

# Short test fits end before convergence on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N_FEATURES = 8


def rows(n, seed):
    """Standardised rows of 8 features: feature 0 a factor of its own, features 1-7 mixtures of
    two others (correlated), plus a little noise. The data's manifold is 3-D and holds the axis
    of feature 0: moving feature 0 alone stays on it, moving any other leaves it."""
    mixing = np.random.default_rng(0).normal(size=(2, N_FEATURES - 1))
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 3))
    X = np.c_[factors[:, :1], factors[:, 1:] @ mixing] + 0.1 * rng.normal(size=(n, N_FEATURES))
    return X / np.sqrt(np.r_[1.0, (mixing**2).sum(axis=0)])


def detector(**params):
    defaults = dict(n_components=3, hidden_layer_sizes=(16,), max_iter=30, random_state=0,
                    device="cpu")  # fmt: skip
    return AutoEncoderOutlierDetector(**{**defaults, **params})


@pytest.fixture(scope="module")
def X():
    return rows(300, seed=1)


@pytest.fixture(scope="module")
def new():
    return rows(40, seed=2)


@pytest.fixture(scope="module")
def fitted(X):
    return detector().fit(X)


def split(est, X):
    """The two terms' shares, as outlier_contributions computes them."""
    modules, scaling = est._fitted()
    missing = est._inference_missing()
    X = est._validate_input(X, reset=False, missing=missing)
    return est._feature_parts(modules, scaling, est.device_, X, missing, 32)


def terms(est, X):
    """The measure's error term and code terms per row, as score_samples computes them."""
    modules, scaling = est._fitted()
    missing = est._inference_missing()
    X = est._validate_input(X, reset=False, missing=missing)
    parts = est._row_parts(modules, scaling, est.device_, X, est._reads_mask(), missing)
    neighbours = _neighbour_distances(parts, est.reference_codes_, est.unit_interval_, X.shape[1])
    # The error's share of the neighbour term, and the rest of the measure (the code terms).
    errors = _relative_errors(parts, est.unit_interval_) * X.shape[1] / est.neighbour_scale_
    codes = neighbours / est.neighbour_scale_ - errors
    if not est.novelty:
        codes += _mahalanobis(parts[:, 2:], est.code_mean_, est.code_precision_) / est.code_scale_
    return errors, codes


# -- what it returns ---------------------------------------------------------------------------


def test_shape_dtype_and_new_rows(fitted, X, new):
    for rows_ in (X, new, new[:1]):
        contributions = fitted.outlier_contributions(rows_)
        assert contributions.shape == rows_.shape and contributions.dtype == np.float64
        assert np.isfinite(contributions).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda X: (detector(), X),  # PCA's start: a nearly linear encoder
        lambda X: (detector(init="random", hidden_layer_sizes=(32,), max_iter=100), X),
        lambda X: (detector(), 1 / (1 + np.exp(-X))),  # data in [0, 1]: relative errors
    ],
    ids=["pca-start", "nonlinear", "unit-interval"],
)
def test_contributions_add_up_to_the_outlier_measure(make, X, new):
    """Completeness: the error's shares add up to its term exactly, the code's (integrated
    gradients, plus the reference's term shared equally) to its term within the integral's
    discretisation, and so each row's contributions to -score_samples."""
    est, data = make(X)
    est.fit(data)
    test = data[:50] if data is not X else np.r_[X[:25], new[:25]]
    error_shares, code_shares = split(est, test)
    error_term, code_term = terms(est, test)
    assert est.unit_interval_ == (data is not X)
    assert (error_shares >= 0).all()
    assert_allclose(error_shares.sum(axis=1), error_term, rtol=1e-10)
    assert_allclose(code_shares.sum(axis=1), code_term, rtol=1e-8)
    measure = -est.score_samples(test)
    assert_allclose(est.outlier_contributions(test).sum(axis=1), measure, rtol=1e-8)


def test_more_steps_converge(X):
    # The shares converge as the integral's steps grow: what is shared equally shrinks.
    est = detector(init="random", hidden_layer_sizes=(32,), max_iter=100).fit(X)
    exact = est.outlier_contributions(X[:50], n_steps=512)
    gaps = [np.abs(est.outlier_contributions(X[:50], n_steps=n) - exact).mean() for n in (2, 64)]
    assert gaps[1] < gaps[0] / 5


# -- what it finds -----------------------------------------------------------------------------


@pytest.mark.parametrize("feature", [1, 4, 7])
@pytest.mark.parametrize("shift", [4.0, -4.0])
def test_a_feature_moved_off_the_manifold_ranks_first(fitted, X, new, feature, shift):
    moved = new.copy()
    moved[:, feature] += shift
    # Outliers: each scores below 99% of the training rows.
    assert (fitted.score_samples(moved) < np.percentile(fitted.score_samples(X), 1)).all()
    contributions = fitted.outlier_contributions(moved)
    assert_array_equal(contributions.argmax(axis=1), feature)


@pytest.mark.parametrize("shift", [6.0, -6.0])
def test_a_feature_moved_along_the_manifold_ranks_first(fitted, new, shift):
    """Feature 0 is an axis of the manifold: moved far along it, a row reconstructs well, and
    only the code term, through the integrated gradients, can point at it."""
    moved = new.copy()
    moved[:, 0] += shift
    assert (fitted.predict(moved) == -1).mean() > 0.9
    error_shares, code_shares = split(fitted, moved)
    assert_array_equal((error_shares + code_shares).argmax(axis=1), 0)
    assert (code_shares[:, 0] > 3 * error_shares.sum(axis=1)).all()


def test_rows_are_independent_of_chunking(fitted, X, monkeypatch, tmp_path):
    """Chunks of 2 rows (and an out-of-core memmap, read in its own blocks) give the same
    numbers as one chunk, row by row."""
    whole = fitted.outlier_contributions(X[:9])
    monkeypatch.setattr(skae._outliers, "INFERENCE_CHUNK_ROWS", 64)  # 64 // 32 steps: 2 rows
    assert_allclose(fitted.outlier_contributions(X[:9]), whole, rtol=1e-12, atol=1e-15)
    memmap = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", shape=(9, N_FEATURES))
    memmap[:] = X[:9]
    assert_allclose(fitted.outlier_contributions(memmap), whole, rtol=1e-12, atol=1e-15)


# -- inputs ------------------------------------------------------------------------------------


def test_dataframes_give_the_same_numbers(X, new):
    columns = [f"f{i}" for i in range(N_FEATURES)]
    est = detector().fit(pd.DataFrame(X, columns=columns))
    contributions = est.outlier_contributions(pd.DataFrame(new, columns=columns))
    assert isinstance(contributions, np.ndarray)
    assert_allclose(contributions, detector().fit(X).outlier_contributions(new))
    with pytest.warns(UserWarning, match="feature names"):
        est.outlier_contributions(new)


def test_missing_values(X, new):
    """Fitted on data with NaN: rows with NaN get contributions that still add up, and a
    missing value has no share of the reconstruction error."""
    rng = np.random.default_rng(0)
    holey = X.copy()
    holey[rng.random(X.shape) < 0.1] = np.nan
    est = detector().fit(holey)
    test = new.copy()
    absent = rng.random(test.shape) < 0.2
    test[absent] = np.nan
    test[0] = np.nan
    with pytest.raises(ValueError, match="every value missing"):
        est.outlier_contributions(test)
    test[0, 0] = 1.0
    absent[0] = True
    absent[0, 0] = False
    error_shares, code_shares = split(est, test)
    assert np.isfinite(error_shares).all() and np.isfinite(code_shares).all()
    assert (error_shares[absent] == 0).all() and (error_shares[~absent] > 0).all()
    assert_allclose(
        est.outlier_contributions(test).sum(axis=1), -est.score_samples(test), rtol=1e-2
    )
    with pytest.raises(ValueError, match="NaN"):
        detector().fit(X).outlier_contributions(test)


def test_unfitted_detector_raises_not_fitted(X):
    with pytest.raises(NotFittedError):
        AutoEncoderOutlierDetector().outlier_contributions(X)


def test_wrong_inputs_are_refused(fitted):
    with pytest.raises(ValueError, match="expecting 8 features"):
        fitted.outlier_contributions(np.ones((3, 4)))
    with pytest.raises(ValueError, match="n_steps"):
        fitted.outlier_contributions(np.ones((3, N_FEATURES)), n_steps=0)


def test_saved_loaded_and_pickled_detectors_give_the_same_numbers(fitted, new, tmp_path):
    contributions = fitted.outlier_contributions(new)
    assert_array_equal(pickle.loads(pickle.dumps(fitted)).outlier_contributions(new),
                       contributions)  # fmt: skip
    fitted.save(tmp_path / "detector.safetensors")
    loaded = skae.load(tmp_path / "detector.safetensors")
    # The file holds the codes' statistics in float32.
    assert_allclose(loaded.outlier_contributions(new), contributions, rtol=1e-5, atol=1e-6)


def test_model_files_of_older_formats_give_contributions():
    """The reference row is the decoding of code_mean_, which every detector file holds: files
    written before outlier_contributions existed (format 3) give them too."""
    loaded = skae.load(
        Path(__file__).parent / "model_files_v3" / "AutoEncoderOutlierDetector.safetensors"
    )
    data = np.random.default_rng(0).random((40, 6)).astype(np.float32)  # what make.py fitted
    contributions = loaded.outlier_contributions(data)
    assert contributions.shape == (40, 6) and np.isfinite(contributions).all()
    assert_allclose(contributions.sum(axis=1), -loaded.score_samples(data), rtol=1e-2)


# -- the plot ----------------------------------------------------------------------------------


def test_plot_shows_the_largest_contributions(X, new):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [f"f{i}" for i in range(N_FEATURES)]
    est = detector().fit(pd.DataFrame(X, columns=columns))
    row = pd.Series(new[0], index=columns)
    row["f4"] += 4.0
    ax = plot_outlier_contributions(est, row, top=3)
    try:
        labels = [label.get_text() for label in ax.get_yticklabels()]
        widths = [bar.get_width() for bar in ax.patches]
        expected = est.outlier_contributions(row.to_frame().T)[0]
        assert len(labels) == len(widths) == 3 and labels[0] == "f4"
        assert_allclose(widths, np.sort(expected)[::-1][:3])
        # On given axes, with given names, every feature.
        figure, axes = plt.subplots()
        names = [f"g{i}" for i in range(N_FEATURES)]
        with pytest.warns(UserWarning, match="feature names"):  # an array: no names
            plotted = plot_outlier_contributions(est, row.to_numpy()[None],
                                                 feature_names=names, top=20, ax=axes)  # fmt: skip
        assert plotted is axes and len(axes.patches) == N_FEATURES
        assert axes.get_yticklabels()[0].get_text() == "g4"
    finally:
        plt.close("all")
    with pytest.raises(ValueError, match="one row"):
        plot_outlier_contributions(est, new[:2])
    with pytest.raises(ValueError, match="feature_names"):
        plot_outlier_contributions(est, row, feature_names=["a"])


def test_plot_explains_the_detector_of_a_pipeline(X, new):
    pytest.importorskip("matplotlib").use("Agg")
    import matplotlib.pyplot as plt

    columns = [f"f{i}" for i in range(N_FEATURES)]
    pipe = make_pipeline(StandardScaler(), detector()).fit(pd.DataFrame(3 * X + 1, columns=columns))
    row = pd.DataFrame(3 * new[:1] + 1, columns=columns)
    row["f6"] += 12.0
    try:
        ax = plot_outlier_contributions(pipe, row, top=2)
        labels = [label.get_text() for label in ax.get_yticklabels()]
        assert labels[0] == "f6"  # the scaler's names for its outputs
        expected = pipe[-1].outlier_contributions(pipe[:-1].transform(row))[0]
        assert_allclose([bar.get_width() for bar in ax.patches], np.sort(expected)[::-1][:2])
    finally:
        plt.close("all")


def test_plot_without_matplotlib_says_what_to_install(fitted, new, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_outlier_contributions(fitted, new[0])
