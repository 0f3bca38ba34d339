"""Outliers: the transformers' score_samples, and AutoEncoderOutlierDetector's API, scores,
contamination rule, robust training, model files and input checks."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from test_reliability import BAD_INPUTS

import skae
from skae import (
    AutoEncoderOutlierDetector,
    AutoEncoderTransformer,
    VariationalAutoEncoderTransformer,
)
from skae._outliers import (
    FENCE,
    NEIGHBOURS,
    NOVELTY_COMPONENTS,
    NOVELTY_STEPS,
    TARGET_STEPS,
    _nearest_references,
)

# Short test fits end before convergence on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TRANSFORMERS = [AutoEncoderTransformer, VariationalAutoEncoderTransformer]


def planar(n=400, n_features=12, seed=0, plane=0):
    """Rows near a 2-D plane (drawn from ``plane``) in n_features dimensions."""
    basis = np.linalg.qr(np.random.default_rng(plane).normal(size=(n_features, 2)))[0].T
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)) @ basis * 2 + 0.1 * rng.normal(size=(n, n_features)), basis


def detector(**params):
    defaults = dict(n_components=2, hidden_layer_sizes=(16,), max_iter=30, random_state=0,
                    device="cpu")  # fmt: skip
    return AutoEncoderOutlierDetector(**{**defaults, **params})


@pytest.fixture(scope="module")
def data():
    """Training rows near a plane; new rows near it (normal), off it, and on it but far out."""
    X, basis = planar()
    rng = np.random.default_rng(1)
    normal, _ = planar(100, seed=2)  # new rows, same plane
    off_plane = normal[:50] + 1.5 * rng.normal(size=(50, X.shape[1]))
    directions = rng.normal(size=(50, 2))
    far_on_plane = directions / np.linalg.norm(directions, axis=1, keepdims=True) * 12 @ basis
    return X, normal, off_plane, far_on_plane


@pytest.fixture(scope="module")
def fitted(data):
    return detector().fit(data[0])


# -- the transformers' score_samples -----------------------------------------------------------


@pytest.mark.parametrize("cls", TRANSFORMERS)
def test_transformer_score_samples(cls):
    rng = np.random.default_rng(0)
    X = rng.random((200, 10)) * 0.2 + np.linspace(0.2, 0.6, 10)
    est = cls(n_components=3, hidden_layer_sizes=(16,), max_iter=20, random_state=0,
              device="cpu").fit(X)  # fmt: skip
    scores = est.score_samples(X)
    assert scores.shape == (200,) and scores.dtype == np.float32
    assert est.score(X) == pytest.approx(float(np.mean(scores, dtype=np.float64)), rel=1e-6)
    assert (scores <= 0).all()
    corrupted = X.copy()
    corrupted[:, ::2] = rng.random((200, 5))  # half of each row replaced by noise
    assert np.median(est.score_samples(corrupted)) < np.percentile(scores, 5)
    assert roc_auc_score(np.r_[np.ones(200), np.zeros(200)],
                         np.r_[scores, est.score_samples(corrupted)]) > 0.95  # fmt: skip


# -- the detector's API ------------------------------------------------------------------------


def test_outputs_follow_scikit_learn(fitted, data):
    X = data[0]
    scores = fitted.score_samples(X)
    decision = fitted.decision_function(X)
    labels = fitted.predict(X)
    assert scores.dtype == decision.dtype == np.float64
    assert scores.shape == decision.shape == labels.shape == (len(X),)
    assert labels.dtype.kind == "i" and set(np.unique(labels)) <= {-1, 1}
    assert_allclose(decision, scores - fitted.offset_)
    assert_array_equal(labels, np.where(decision < 0, -1, 1))
    # A typical training row scores about -2: each of the two terms is divided by its
    # training median.
    assert np.median(scores) == pytest.approx(-2, abs=0.3)
    assert not hasattr(fitted, "transform")


def test_fit_predict_is_fit_then_predict(data):
    X = data[0]
    assert_array_equal(detector().fit_predict(X), detector().fit(X).predict(X))


def test_both_kinds_of_outliers_score_low(fitted, data):
    """Off the plane (high reconstruction error) and on it but far out (typical error, an
    unusual code): the two terms of the score each catch their own kind."""
    _, normal, off_plane, far_on_plane = data
    normal_scores = fitted.score_samples(normal)
    for outliers in (off_plane, far_on_plane):
        scores = fitted.score_samples(outliers)
        labels = np.r_[np.ones(len(normal)), np.zeros(len(outliers))]
        assert roc_auc_score(labels, np.r_[normal_scores, scores]) > 0.97
        assert (fitted.predict(outliers) == -1).mean() > 0.9
    assert (fitted.predict(normal) == 1).mean() > 0.9


def test_reconstruction_error_alone_misses_outliers_on_the_manifold(fitted, data):
    _, normal, _, far_on_plane = data
    labels = np.r_[np.ones(len(normal)), np.zeros(len(far_on_plane))]
    transformer = AutoEncoderTransformer(n_components=2, hidden_layer_sizes=(16,), max_iter=30,
                                         random_state=0, device="cpu").fit(data[0])  # fmt: skip
    error_only = np.r_[transformer.score_samples(normal), transformer.score_samples(far_on_plane)]
    assert roc_auc_score(labels, error_only) < 0.8


@pytest.mark.parametrize("contamination", [0.01, 0.05, 0.1, 0.25, 0.5])
def test_float_contamination_flags_that_share_of_the_training_rows(data, contamination):
    X = data[0]
    labels = detector(contamination=contamination).fit_predict(X)
    assert (labels == -1).sum() == round(contamination * len(X))


def test_auto_contamination_is_tukeys_far_out_fence(fitted, data):
    X = data[0]
    scores = fitted.score_samples(X)
    q1, q3 = np.percentile(np.sqrt(-scores), [25, 75])
    assert fitted.offset_ == pytest.approx(-np.square(q3 + FENCE * (q3 - q1)))
    # On clean rows near a plane it flags few of them.
    assert (fitted.predict(X) == -1).mean() < 0.03


# scikit-learn's check, at the defaults: 8 codes for 2 features, which the warning says.
@pytest.mark.filterwarnings("ignore:n_components=8 is not smaller than the 2:UserWarning")
def test_auto_contamination_flags_at_least_one_training_row():
    """Where the fence holds every training row (light tails), "auto" flags the most outlying
    one alone, as scikit-learn's detectors flag some of theirs (its check_outliers_train)."""
    est = AutoEncoderOutlierDetector()
    scores = -np.linspace(1.0, 2.0, 101)  # uniform: the far-out fence holds them all
    q1, q3 = np.percentile(np.sqrt(-scores), [25, 75])
    assert np.sqrt(-scores).max() < q3 + FENCE * (q3 - q1)
    offset = est._offset(scores)
    assert_array_equal(np.flatnonzero(scores < offset), [np.argmin(scores)])
    # Three Gaussian blobs (that check's data): a few training rows flagged, and new rows from
    # the same blobs as rarely.
    X, _, centers = make_blobs(n_samples=300, random_state=0, return_centers=True)
    est = AutoEncoderOutlierDetector(max_iter=3, random_state=0, device="cpu").fit(X)
    assert 1 <= (est.predict(X) == -1).sum() <= 6
    new, _ = make_blobs(n_samples=3000, centers=centers, random_state=1)
    assert (est.predict(new) == -1).mean() < 0.03


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("contamination", 0.0, "contamination"),
        ("contamination", 0.6, "contamination"),
        ("contamination", "high", "contamination"),
        ("contamination", None, "contamination"),
        ("support_fraction", 0.0, "support_fraction"),
        ("support_fraction", 1.5, "support_fraction"),
        ("n_components", 0, "n_components"),
    ],
)
def test_invalid_parameters_are_named(data, name, value, message):
    est = detector(**{name: value})
    with pytest.raises(ValueError, match=message):
        est.fit(data[0])
    assert not hasattr(est, "offset_")


def test_every_autoencoder_parameter_is_a_detector_parameter():
    transformer = AutoEncoderTransformer().get_params()
    detector_params = AutoEncoderOutlierDetector().get_params()
    assert set(transformer) <= set(detector_params)
    assert set(detector_params) - set(transformer) == {
        "contamination",
        "novelty",
        "support_fraction",
    }


def test_partial_fit_updates_the_statistics(data):
    X = data[0]
    est = detector()
    for block in np.array_split(X, 4):
        est.partial_fit(block)
    assert est.n_iter_ == 4
    assert np.isfinite(est.score_samples(X)).all()
    assert est.code_mean_.shape == (2,) and est.code_precision_.shape == (2, 2)


def test_unfitted_detector_raises_not_fitted(data):
    for method in ("score_samples", "decision_function", "predict"):
        with pytest.raises(NotFittedError):
            getattr(AutoEncoderOutlierDetector(), method)(data[0])


def test_default_budget_is_the_detectors_own():
    X, _ = planar(600)
    est = AutoEncoderOutlierDetector(random_state=0, device="cpu", max_iter="auto").fit(X)
    steps_per_epoch = -(-len(X) // est.batch_size_)
    assert est.max_iter_ == -(-TARGET_STEPS // steps_per_epoch)


@pytest.mark.parametrize(
    "novelty, codes, steps",
    [(False, 8, TARGET_STEPS), (True, NOVELTY_COMPONENTS, NOVELTY_STEPS)],
)
def test_auto_codes_and_budget_follow_novelty(novelty, codes, steps, tmp_path):
    """novelty=True (clean rows): "auto" gives NOVELTY_COMPONENTS codes (at most the features)
    and NOVELTY_STEPS steps; a detector with "auto" codes saves and loads."""
    X, _ = planar(600, n_features=40)
    est = AutoEncoderOutlierDetector(novelty=novelty, random_state=0, device="cpu").fit(X)
    assert est.n_components_ == codes and est.reference_codes_.shape[1] == codes
    assert est.max_iter_ == -(-steps // -(-len(X) // est.batch_size_))
    est.save(tmp_path / "detector.safetensors")
    loaded = skae.load(tmp_path / "detector.safetensors")
    assert loaded.n_components_ == codes
    assert_allclose(loaded.score_samples(X), est.score_samples(X), rtol=1e-6)
    narrow = AutoEncoderOutlierDetector(novelty=novelty, device="cpu", max_iter=1).fit(X[:, :6])
    assert narrow.n_components_ == 6


@pytest.mark.parametrize("novelty", [False, True])
def test_an_exact_start_trains_one_epoch(novelty):
    """Codes as wide as the data: PCA's start rebuilds every row, so "auto" trains one epoch,
    and with novelty=True the measure is kNN's mean squared distance to the 5 nearest training
    rows, up to a constant factor."""
    X, _ = planar(300, n_features=6)
    est = AutoEncoderOutlierDetector(novelty=novelty, random_state=0, device="cpu").fit(X)
    assert est.n_components_ == 6 and est.max_iter_ == 1
    if novelty:  # proportional: the model's units divide the data by one overall scale
        new = np.random.default_rng(1).normal(size=(50, 6))
        distances = NearestNeighbors(n_neighbors=5).fit(X).kneighbors(new)[0]
        ratio = -est.score_samples(new) / np.square(distances).mean(axis=1)
        assert_allclose(ratio, ratio.mean(), rtol=1e-3)
    # Narrower codes, missing values (the network learns to fill hidden ones) and a
    # regularised loss keep the budget.
    assert AutoEncoderOutlierDetector(3, novelty=novelty, device="cpu").fit(X).max_iter_ > 1
    holes = X.copy()
    holes[::7, 2] = np.nan
    assert AutoEncoderOutlierDetector(novelty=novelty, device="cpu").fit(holes).max_iter_ > 1
    noisy = AutoEncoderOutlierDetector(novelty=novelty, noise_type="gaussian", device="cpu")
    assert noisy.fit(X).max_iter_ > 1


# -- robust training ---------------------------------------------------------------------------


def test_trimmed_training_ignores_the_worst_reconstructed_rows():
    """With support_fraction < 1 the loss is the mean error of the best reconstructed rows of
    each batch: the rows left out do not move the network at all."""
    import torch

    est = detector(support_fraction=0.75, max_iter=1)
    X, _ = planar(64)
    est.fit(X)
    state = est._resume(est.fit_plan_, est.device_, keep_optimizer=False)
    x = torch.as_tensor(X[:8], dtype=torch.float32)
    x[0] += 100  # the worst reconstructed row of the batch
    loss = est._loss(state, x)
    loss.backward()
    gradient = state.optimizer.param_groups[0]["params"][0].grad.clone()
    state.optimizer.zero_grad()
    x[0] += 100  # changing the trimmed row changes nothing
    est._loss(state, x).backward()
    assert_allclose(state.optimizer.param_groups[0]["params"][0].grad, gradient)


def test_robust_fit_on_contaminated_rows_finds_them():
    """The unsupervised case: 5% of the training rows are outliers, and fit_predict must find
    them among the rows it was trained on."""
    X, basis = planar(380, seed=3)
    rng = np.random.default_rng(4)
    outliers = rng.normal(size=(20, X.shape[1])) * 2.5
    rows = np.r_[X, outliers]
    labels = np.r_[np.zeros(len(X)), np.ones(20)]
    est = detector(contamination=0.05).fit(rows)
    assert roc_auc_score(labels, -est.score_samples(rows)) > 0.97
    flagged = est.predict(rows) == -1
    assert labels[flagged].mean() > 0.8


# -- data in [0, 1] ----------------------------------------------------------------------------


def test_errors_are_relative_on_data_in_the_unit_interval():
    rng = np.random.default_rng(0)
    X = rng.random((300, 20)) * rng.random((300, 1))  # rows of varied brightness
    est = detector().fit(X)
    assert est.unit_interval_
    assert not detector().fit(X - 0.5).unit_interval_
    # An all-zero row does not divide by zero.
    assert np.isfinite(est.score_samples(np.zeros((1, 20)))).all()


# -- scikit-learn's machinery, files -----------------------------------------------------------


def test_pipeline_clone_pickle_and_pandas(data):
    X, normal, off_plane, _ = data
    columns = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=columns)
    pipe = make_pipeline(StandardScaler(), clone(detector())).set_output(transform="pandas")
    pipe.fit(frame)
    assert_array_equal(pipe[-1].feature_names_in_, columns)
    test = pd.DataFrame(np.r_[normal, off_plane], columns=columns)
    scores = pipe.score_samples(test)
    assert_array_equal(pipe.predict(test), np.where(pipe.decision_function(test) < 0, -1, 1))
    restored = pickle.loads(pickle.dumps(pipe))
    assert_array_equal(restored.score_samples(test), scores)
    with pytest.warns(UserWarning, match="feature names"):
        pipe[-1].score_samples(test.to_numpy())


def test_grid_search_over_the_detector(data):
    X, normal, off_plane, _ = data
    rows = np.r_[normal, off_plane]
    truth = np.r_[np.ones(len(normal)), -np.ones(len(off_plane))].astype(int)

    def auroc(estimator, X, y):
        return roc_auc_score(y, estimator.score_samples(X))

    folds = StratifiedKFold(2, shuffle=True, random_state=0)
    search = GridSearchCV(detector(), {"n_components": [1, 2]}, scoring=auroc, cv=folds)
    search.fit(rows, truth)
    assert search.best_params_["n_components"] in (1, 2)
    assert search.best_score_ > 0.9


def test_saved_and_loaded_detector_scores_the_same(fitted, data, tmp_path):
    X = data[0]
    fitted.save(tmp_path / "detector.safetensors")
    loaded = skae.load(tmp_path / "detector.safetensors")
    assert type(loaded) is AutoEncoderOutlierDetector
    assert loaded.get_params() == fitted.get_params()
    for name in ("offset_", "error_scale_", "code_scale_", "unit_interval_"):
        assert getattr(loaded, name) == getattr(fitted, name)
    assert_array_equal(loaded.code_precision_, fitted.code_precision_.astype(np.float32))
    assert_allclose(loaded.score_samples(X), fitted.score_samples(X), rtol=1e-6)
    assert_array_equal(loaded.predict(X), fitted.predict(X))


def test_model_file_with_a_bad_statistic_is_refused(fitted, tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tmp_path / "detector.safetensors"
    fitted.save(path)
    with safe_open(path, framework="pt") as file:
        document = json.loads(file.metadata()["skae"])
        tensors = {key: file.get_tensor(key) for key in file.keys()}
    document["fitted"]["offset_"] = "low"
    save_file(tensors, path, metadata={"skae": json.dumps(document)})
    with pytest.raises(ValueError, match="offset_"):
        skae.load(path)
    tensors["code_precision_"] = tensors["code_precision_"][:1]
    save_file(tensors, path, metadata={"skae": json.dumps(document)})
    with pytest.raises(ValueError, match="code_precision_"):
        skae.load(path)


# -- input checks: what the transformer refuses is refused here, with the same errors ----------


@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
def test_fit_refuses_what_the_transformer_refuses(case):
    make, error, message = BAD_INPUTS[case]
    est = detector()
    with pytest.raises(error, match=message):
        est.fit(make(5))
    assert not hasattr(est, "offset_")


@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
@pytest.mark.parametrize("method", ["score_samples", "decision_function", "predict"])
def test_inference_refuses_what_the_transformer_refuses(case, method):
    make, error, message = BAD_INPUTS[case]
    est = detector(max_iter=2).fit(np.random.default_rng(0).random((30, 5)))
    with pytest.raises(error, match=message):
        getattr(est, method)(make(5))


def test_wrong_number_of_features_is_named(fitted):
    with pytest.raises(ValueError, match="expecting 12 features"):
        fitted.score_samples(np.ones((3, 4)))


def test_missing_values_are_scored_over_the_observed_entries(data):
    X = data[0].copy()
    rng = np.random.default_rng(0)
    X[rng.random(X.shape) < 0.1] = np.nan
    est = detector().fit(X)
    scores = est.score_samples(X)
    assert np.isfinite(scores).all()
    complete = detector().fit(data[0])
    with pytest.raises(ValueError, match="NaN"):
        complete.score_samples(X)


def test_sparse_input(data):
    X = np.where(np.abs(data[0]) > 1, data[0], 0.0)
    dense = detector().fit(X)
    sparse = detector().fit(sp.csr_matrix(X))
    assert_allclose(sparse.score_samples(sp.csr_matrix(X)), dense.score_samples(X), rtol=1e-5)


def test_no_warning_at_the_defaults_on_clean_data(data):
    from sklearn.datasets import load_digits

    images = load_digits().data / 16  # its short budget ends while the loss still falls
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AutoEncoderOutlierDetector(random_state=0, device="cpu").fit(data[0])
        AutoEncoderOutlierDetector(random_state=0, device="cpu").fit(images)
        AutoEncoderOutlierDetector(random_state=0, device="cpu").fit(data[0][:, :5])  # narrow


# -- the benchmark -----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")  # digits' tiny classes, PCA sizes
def test_benchmark_script_runs(tmp_path, monkeypatch, capsys):
    """benchmarks/compare_outliers.py end to end: digits standing in for MNIST (two classes),
    and one ADBench-format table of planar rows with outliers in tmp_path/adbench/ (both
    protocols, one seed, no PyOD)."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))
    spec = importlib.util.spec_from_file_location(
        "compare_outliers", folder / "compare_outliers.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from _harness import digits_images

    X, _ = planar(300)
    outliers = np.random.default_rng(3).normal(size=(20, X.shape[1])) * 3
    (tmp_path / "adbench").mkdir()
    np.savez(tmp_path / "adbench" / "99_planar.npz", X=np.r_[X, outliers],
             y=np.r_[np.zeros(len(X)), np.ones(len(outliers))])  # fmt: skip
    monkeypatch.setattr(bench, "load_dataset", lambda *args, **kwargs: digits_images(0))
    monkeypatch.setattr(sys, "argv", ["compare_outliers.py"])
    out_dir = tmp_path / "out"
    arguments = ["--classes", "0,1", "--seeds", "1", "--no-pyod", "--quiet", "--data-home",
                 str(tmp_path), "--output-dir", str(out_dir)]  # fmt: skip
    assert bench.main(arguments) == 0
    out = capsys.readouterr().out
    assert "| skae detector" in out and "one-class mean AUROC" in out
    assert "| skae, novelty=True" in out
    frame = pd.read_csv(out_dir / "compare_outliers_digits.csv")
    assert set(frame["class"]) == {0, 1} and frame["auroc"].between(0, 1).all()
    tables = pd.read_csv(out_dir / "compare_outliers_adbench.csv")
    assert set(tables["protocol"]) == {"unsupervised", "novelty"}
    assert set(tables["table"]) == {"99_planar"}
    ours = tables[tables["method"] == "skae detector"]
    assert (ours["auroc"] > 0.9).all()  # outliers far off the plane
    assert "unsupervised (all, 1 tables)" in out and "time:" in out
    assert (out_dir / "compare_outliers.png").stat().st_size > 0
    assert (out_dir / "compare_outliers_adbench.png").stat().st_size > 0


def test_distributed_training_is_refused_before_training(data, monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    est = detector()
    with pytest.raises(NotImplementedError, match="torch.distributed"):
        est.fit(data[0])
    assert not hasattr(est, "n_iter_")


@pytest.mark.parametrize("width", [8, 20])  # scipy's k-d tree below 16 dimensions, brute above
def test_nearest_reference_codes_are_the_nearest(width):
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, width))
    codes = np.vstack([reference[:50], rng.normal(size=(50, width))])  # 50 own codes, 50 new
    squared, indices, own = _nearest_references(codes, reference)
    assert_array_equal(own, np.r_[np.arange(50), np.full(50, -1)])
    distances = np.sum((codes[:, None, :] - reference[None, :, :]) ** 2, axis=2)
    distances[np.arange(50), np.arange(50)] = np.inf  # a row's own code is left out
    expected = np.sort(distances, axis=1)[:, :NEIGHBOURS]
    assert_allclose(squared, expected, rtol=1e-10)
    assert_allclose(np.take_along_axis(distances, indices, axis=1), expected, rtol=1e-10)
