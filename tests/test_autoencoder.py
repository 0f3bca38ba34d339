"""AutoEncoderTransformer as a scikit-learn citizen: pipelines, search, persistence, input kinds."""

import pickle
import warnings
from types import SimpleNamespace

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler

from skae import AutoEncoderTransformer
from skae._pca_start import principal_axes
from skae._training import InMemoryRows
from skae._training._distributed import SingleProcess


def small_ae(**params):
    # Pinned rather than the library's defaults (tuned for MNIST-sized data): these small
    # fits need the smaller batches' extra steps.
    # The design's network, started at random, with no validation split: these tests are of
    # the API around it (the PCA start has its own tests, in test_convergence and test_plan).
    defaults = dict(
        init="random",
        early_stopping=False,
        n_components=8,
        hidden_layer_sizes=(32,),
        max_iter=10,
        batch_size=128,
        learning_rate_init=1e-3,
        learning_rate="constant",
        random_state=0,
        device="cpu",
    )
    return AutoEncoderTransformer(**{**defaults, **params})


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


@pytest.fixture(autouse=True)
def _quiet_convergence():
    # Short test fits end before convergence on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def test_pipeline_with_logistic_regression(digits):
    X, y = digits
    ae = small_ae(max_iter=60, learning_rate_init=3e-3)
    pipe = Pipeline([("ae", ae), ("clf", LogisticRegression(max_iter=1000))])
    pipe.fit(X[:1200], y[:1200])
    # Eight learned codes carry most of the class information of 64 pixels (chance is 0.1).
    assert pipe.score(X[1200:], y[1200:]) > 0.8


def test_grid_search_gives_the_same_scores_with_one_and_two_jobs(digits):
    X, y = digits
    pipe = Pipeline([("ae", small_ae(max_iter=3)), ("clf", LogisticRegression(max_iter=200))])
    grid = {"ae__n_components": [4, 8], "clf__C": [0.1, 1.0]}
    serial = GridSearchCV(pipe, grid, cv=2, n_jobs=1).fit(X[:400], y[:400])
    parallel = GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(X[:400], y[:400])
    assert_allclose(serial.cv_results_["mean_test_score"], parallel.cv_results_["mean_test_score"])


def test_unsupervised_grid_search_prefers_more_components(digits):
    X, _ = digits
    search = GridSearchCV(small_ae(max_iter=20), {"n_components": [1, 16]}, cv=2).fit(X[:600])
    assert search.best_params_ == {"n_components": 16}
    scores = search.cv_results_["mean_test_score"]
    assert np.all(scores < 0)


def test_score_is_negative_mean_squared_error_in_input_units(digits):
    X, _ = digits
    ae = small_ae().fit(X[:300])
    recon = ae.inverse_transform(ae.transform(X[:300]))
    assert_allclose(ae.score(X[:300]), -np.mean((recon - X[:300]) ** 2), rtol=1e-5)


def test_cross_val_score(digits):
    X, y = digits
    pipe = Pipeline([("ae", small_ae(max_iter=3)), ("clf", LogisticRegression(max_iter=200))])
    scores = cross_val_score(pipe, X[:300], y[:300], cv=3)
    assert scores.shape == (3,)
    assert np.all((scores > 0.1) & (scores <= 1.0))


def test_clone_before_and_after_fit_gives_the_same_model(digits):
    X, _ = digits
    ae = small_ae(max_iter=3)
    fitted = clone(ae).fit(X[:200])
    refitted = clone(fitted)
    assert not hasattr(refitted, "n_iter_")
    assert refitted.get_params() == ae.get_params()
    assert_array_equal(refitted.fit(X[:200]).transform(X[:50]), fitted.transform(X[:50]))


@pytest.mark.parametrize("dump, load", [(pickle.dumps, pickle.loads), ("joblib", "joblib")])
def test_pickle_and_joblib_round_trips_give_identical_transforms(digits, tmp_path, dump, load):
    X, _ = digits
    ae = small_ae(max_iter=3).fit(X[:200])
    if dump == "joblib":
        joblib.dump(ae, tmp_path / "ae.joblib")
        restored = joblib.load(tmp_path / "ae.joblib")
    else:
        restored = load(dump(ae))
    assert_array_equal(restored.transform(X), ae.transform(X))
    assert_array_equal(
        restored.inverse_transform(ae.transform(X[:5])), ae.inverse_transform(ae.transform(X[:5]))
    )
    # Training goes on from the restored optimizer state exactly as from the original.
    assert_array_equal(
        restored.partial_fit(X[:200]).transform(X[:5]), ae.partial_fit(X[:200]).transform(X[:5])
    )


def test_model_fitted_on_cuda_unpickles_onto_the_cpu(digits, monkeypatch):
    X, _ = digits
    ae = small_ae(max_iter=2).fit(X[:100])
    state = ae.__getstate__()
    state["device_"] = "cuda:0"  # as written by a model fitted on a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    restored = AutoEncoderTransformer.__new__(AutoEncoderTransformer)
    with pytest.warns(RuntimeWarning, match="loaded onto the CPU"):
        restored.__setstate__(state)
    assert restored.device_ == torch.device("cpu")
    assert_array_equal(restored.transform(X[:10]), ae.transform(X[:10]))


def test_dataframe_in_pandas_out_with_feature_names(digits):
    X, _ = digits
    columns = [f"px{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X[:200], columns=columns, index=np.arange(1000, 1200))
    ae = small_ae(n_components=3, max_iter=2).set_output(transform="pandas").fit(frame)
    assert list(ae.feature_names_in_) == columns
    codes = ae.transform(frame)
    assert isinstance(codes, pd.DataFrame)
    assert list(codes.columns) == [f"autoencodertransformer{i}" for i in range(3)]
    assert_array_equal(codes.index, frame.index)
    assert list(ae.get_feature_names_out()) == list(codes.columns)


def test_column_transformer_and_feature_union(digits):
    X, _ = digits
    frame = pd.DataFrame(X[:200], columns=[f"px{i}" for i in range(64)])
    columns = ColumnTransformer(
        [("ae", small_ae(n_components=3, max_iter=2), [f"px{i}" for i in range(32)])],
        remainder="drop",
    )
    assert columns.fit_transform(frame).shape == (200, 3)
    union = FeatureUnion([("ae", small_ae(n_components=3, max_iter=2)), ("pca", PCA(2))])
    out = union.fit_transform(X[:200])
    assert out.shape == (200, 5)
    assert list(union.get_feature_names_out())[:2] == [
        "ae__autoencodertransformer0",
        "ae__autoencodertransformer1",
    ]


def test_same_random_state_gives_identical_codes_and_leaves_global_rng_alone(digits):
    X, _ = digits
    # The legacy global numpy state is exactly what must stay untouched.
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    first = small_ae(max_iter=3).fit(X[:300]).transform(X)
    second = clone(small_ae(max_iter=3)).fit(X[:300]).transform(X)
    small_ae(max_iter=1, random_state=None).fit(X[:50])
    assert_array_equal(first, second)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(np.random.get_state(), numpy_state, strict=True)  # noqa: NPY002
    )
    other = small_ae(max_iter=3, random_state=1).fit(X[:300]).transform(X)
    assert not np.allclose(first, other)


def test_partial_fit_lowers_the_error(digits):
    X, _ = digits
    # At the default learning rate: a network that starts at the column means (see
    # test_convergence) moves away from them slowly at 1e-3 (4% in these 40 steps).
    ae = small_ae(learning_rate_init=3e-3)
    errors = []
    for _ in range(5):
        ae.partial_fit(X[:1000])
        errors.append(-ae.score(X[1000:]))
    assert ae.n_iter_ == 5
    assert errors[-1] < 0.8 * errors[0]


def test_reconstructs_a_curved_manifold_better_than_pca():
    # A one-dimensional curve in ten dimensions: PCA needs many directions for it, a
    # nonlinear encoder needs one.
    t = np.random.default_rng(0).uniform(-1.5, 1.5, size=(2000, 1))
    X = np.hstack([t, t**2, np.sin(3 * t), np.cos(2 * t), t**3, np.sin(t) * t] * 2)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    ae = small_ae(n_components=1, hidden_layer_sizes=(64, 32), max_iter=60).fit(X)
    pca = PCA(1).fit(X)
    pca_error = np.mean((pca.inverse_transform(pca.transform(X)) - X) ** 2)
    assert -ae.score(X) < 0.25 * pca_error


@pytest.mark.parametrize("n_features", [40, 1200])  # LAPACK's eigh; Lanczos from 1,000 on
def test_the_pca_start_has_pcas_axes(n_features):
    rng = np.random.default_rng(0)
    scales = 1.0 / np.arange(1, n_features + 1)  # distinct variances, a clear order
    X = rng.normal(size=(300, n_features)) * scales + 3.0
    axes = principal_axes(
        X, X.mean(axis=0), SimpleNamespace(scale=2.0), 6, SingleProcess(), check_block=None
    )
    components = PCA(6, svd_solver="full").fit(X).components_
    # Up to sign (the start fixes each axis's largest coordinate positive).
    signs = np.sign(np.sum(axes * components, axis=1))[:, None]
    assert_allclose(axes, signs * components, atol=1e-8)
    largest = np.argmax(np.abs(axes), axis=1)
    assert (axes[np.arange(6), largest] > 0).all()


def test_standardized_data_use_a_linear_output_and_reconstruct_well(digits):
    X, _ = digits
    Xs = StandardScaler().fit_transform(X)
    ae = small_ae(n_components=16, max_iter=30).fit(Xs[:1500])
    assert ae.output_activation_ == "identity"
    pca = PCA(16).fit(Xs[:1500])
    pca_error = np.mean((pca.inverse_transform(pca.transform(Xs[1500:])) - Xs[1500:]) ** 2)
    # Within reach of PCA's held-out error after a short training.
    assert -ae.score(Xs[1500:]) < 1.5 * pca_error


def test_constant_features_cannot_blow_up_on_new_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    X[:, 0] = 5.0  # constant in training
    X[:, 1] = 1e-9 * rng.normal(size=300)  # near-constant
    ae = small_ae(n_components=2, max_iter=5).fit(X)
    new = rng.normal(size=(50, 6))
    new[:, 0] = 5.0 + rng.normal(size=50)
    new[:, 1] = rng.normal(size=50)
    base_codes, new_codes = ae.transform(X), ae.transform(new)
    assert np.all(np.isfinite(new_codes))
    # Unseen variation in the (near-)constant features moves the codes no more than the
    # ordinary features do: nothing is divided by a vanishing scale.
    assert np.abs(new_codes).max() < 10 * np.abs(base_codes).max()


def test_image_like_data_use_a_sigmoid_output(digits):
    X, _ = digits
    ae = small_ae(max_iter=2).fit(X[:100])
    assert ae.output_activation_ == "sigmoid"
    recon = ae.inverse_transform(np.full((3, 8), 100.0, dtype=np.float32))
    assert recon.min() >= 0.0 and recon.max() <= 1.0


def test_sparse_input_matches_dense_input(digits):
    X, _ = digits
    dense = small_ae(max_iter=3).fit(X[:300])
    sparse = small_ae(max_iter=3).fit(sp.csr_matrix(X[:300]))
    assert_allclose(sparse.transform(sp.csr_matrix(X[:20])), dense.transform(X[:20]), atol=1e-5)
    assert_allclose(sparse.score(sp.csc_matrix(X[:20])), dense.score(X[:20]), rtol=1e-4)


def test_float64_input_gives_float32_codes(digits):
    X, _ = digits
    ae = small_ae(max_iter=1).fit(X[:50].astype(np.float64))
    assert ae.transform(X[:5].astype(np.float64)).dtype == np.float32


def test_last_partial_batch_is_trained_on(digits, monkeypatch):
    X, _ = digits
    ae = small_ae(max_iter=1, batch_size=128)
    batch_sizes = []
    original = InMemoryRows.take

    def recording_take(self, index):
        batch_sizes.append(index.numel())
        return original(self, index)

    monkeypatch.setattr(InMemoryRows, "take", recording_take)
    ae.fit(X[:130])
    assert sorted(batch_sizes) == [2, 128]
    batch_sizes.clear()
    ae.fit(X[:5])  # fewer samples than batch_size still train
    assert batch_sizes == [5]


def test_convergence_warning_while_loss_still_falls(digits):
    X, _ = digits
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        with warnings.catch_warnings():
            warnings.simplefilter("default", ConvergenceWarning)
            small_ae(max_iter=2).fit(X[:300])


def test_a_cosine_schedule_warns_only_when_clearly_too_short(digits):
    # The loss falls until the end of a cosine schedule by design; it warns when the last
    # quarter still brought more than 10% of the fall (digits: 18% at 3 epochs, under 10% at 4).
    X, _ = digits
    for max_iter, warns in ((3, True), (30, False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            AutoEncoderTransformer(n_components=16, max_iter=max_iter, random_state=0).fit(X)
        messages = [str(w.message) for w in caught if w.category is ConvergenceWarning]
        assert len(messages) == int(warns)
        if warns:
            assert "last quarter of the cosine schedule brought" in messages[0]
            assert "max_iter=3" in messages[0]


def test_a_loss_that_does_not_fall_warns_and_names_the_learning_rate(digits):
    X, _ = digits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ae = small_ae(learning_rate_init=10.0, max_iter=5).fit(X[:300])
    assert not ae.loss_curve_[-1] < ae.loss_curve_[0]  # it really collapsed
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(messages) == 1
    assert "did not fall" in messages[0] and "learning_rate_init (it is 10.0)" in messages[0]
    assert caught[0].filename == __file__  # pointed at the caller's fit


@pytest.mark.parametrize(
    "params, warns",
    [
        (dict(n_components=64), True),  # digits have 64 features
        (dict(n_components=80), True),
        (dict(n_components=63), False),
        (dict(n_components=64, noise_type="masking", noise_level=0.2), False),
        (dict(n_components=64, l1_penalty=0.01), False),
        (dict(n_components=64, contractive_penalty=1e-6), False),
    ],
)
def test_an_overcomplete_autoencoder_without_a_regulariser_warns(digits, params, warns):
    X, _ = digits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small_ae(max_iter=1, **params).fit(X[:100])
    identity = [w for w in caught if "learn the identity map" in str(w.message)]
    assert len(identity) == int(warns)
    if warns:
        assert identity[0].category is UserWarning and identity[0].filename == __file__


def test_verbose_shows_progress_and_silence_by_default(digits, capsys):
    X, _ = digits
    small_ae(max_iter=2).fit(X[:100])
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    small_ae(max_iter=2, verbose=1).fit(X[:100])
    shown = capsys.readouterr().err
    assert "epoch" in shown and "loss=" in shown


def test_early_stopping_keeps_the_best_validation_epoch(digits):
    X, _ = digits
    ae = small_ae(early_stopping=True, max_iter=40, n_iter_no_change=3, tol=0.05)
    ae.fit(X[:500])
    assert len(ae.validation_scores_) == ae.n_iter_ == len(ae.loss_curve_)
    assert ae.n_iter_ < 40
    assert ae.best_loss_ == pytest.approx(-max(ae.validation_scores_))


def test_warm_start_continues_training(digits):
    X, _ = digits
    ae = small_ae(max_iter=3, warm_start=True).fit(X[:300])
    first_error = -ae.score(X[:300])
    ae.fit(X[:300])
    assert ae.n_iter_ == 6 and len(ae.loss_curve_) == 6
    assert -ae.score(X[:300]) < first_error


def test_device_cpu_and_invalid_devices(digits):
    X, _ = digits
    assert small_ae(max_iter=1).fit(X[:20]).device_ == torch.device("cpu")
    with pytest.raises(ValueError, match="device='tpu'"):
        small_ae(device="tpu").fit(X[:20])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            small_ae(device="cuda").fit(X[:20])
