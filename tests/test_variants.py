"""The autoencoder family: each variant's defining effect against the plain autoencoder.

Every variant is trained with the same settings and seed as the plain autoencoder on
scikit-learn's digits (scaled to [0, 1]) and compared with it on held-out rows. The margins
were checked on three seeds; the measured ranges are noted next to each assertion.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from torch.func import jacrev, vmap

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer
from skae._autoencoder import _encode_with_jvp, contraction_penalty, sparsity_penalty
from skae._modules import mlp

SEED = 0

pytestmark = pytest.mark.filterwarnings(
    # torch scripts its forward-mode decompositions on first use, with a deprecated API
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)
# Pinned so that changes to the estimators' defaults do not move these comparisons.
FIT = dict(
    n_components=16,
    hidden_layer_sizes=(64,),
    max_iter=30,
    batch_size=32,
    learning_rate_init=3e-3,
    learning_rate="cosine",
    random_state=SEED,
    device="cpu",
)


@pytest.fixture(scope="module")
def digits():
    X = (load_digits().data / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    return X[order[:1300]], X[order[1300:]]


def fit(X, estimator=AutoEncoderTransformer, **params):
    params = {**FIT, **params}
    if estimator is AutoEncoderTransformer:
        # Pinned to the design's network (random start, no validation split) for the plain
        # autoencoder and the variants alike; the variants as "auto" starts them are tested
        # against the plain default further down.
        params = {"init": "random", "early_stopping": False, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator(**params).fit(X)


@pytest.fixture(scope="module")
def plain(digits):
    return fit(digits[0])


# -- measures -----------------------------------------------------------------------------------


def mse(model, X_in, X_target):
    return float(np.mean((model.inverse_transform(model.transform(X_in)) - X_target) ** 2))


def hoyer_sparsity(codes):
    """Mean Hoyer sparsity of the codes after dividing each component by its RMS, so that
    rescaling components (which a decoder can undo) does not change it."""
    codes = codes / np.sqrt(np.mean(codes**2, axis=0))
    k = codes.shape[1]
    ratio = np.abs(codes).sum(axis=1) / np.linalg.norm(codes, axis=1)
    return float(np.mean((np.sqrt(k) - ratio) / (np.sqrt(k) - 1)))


def relative_sensitivity(model, X, sigma=0.01, seed=3):
    """Mean ||C^(-1/2) (f(x + d) - f(x))|| / ||d|| for Gaussian d, C the codes' covariance:
    how far codes move, in units of their spread, unchanged by invertible linear maps."""
    delta = (sigma * np.random.default_rng(seed).standard_normal(X.shape)).astype(np.float32)
    codes = model.transform(X).astype(np.float64)
    moved = model.transform(X + delta).astype(np.float64) - codes
    whitened = np.linalg.solve(np.linalg.cholesky(np.cov(codes, rowvar=False)), moved.T).T
    return float(np.mean(np.linalg.norm(whitened, axis=1) / np.linalg.norm(delta, axis=1)))


def corrupt(X, noise_type, level, seed=5):
    rng = np.random.default_rng(seed)
    if noise_type == "gaussian":
        return (X + level * rng.standard_normal(X.shape)).astype(np.float32)
    return np.where(rng.random(X.shape) < level, np.float32(0.0), X)


# -- the penalties on their own -------------------------------------------------------------------


def test_sparsity_penalty_is_scale_free_and_bounded():
    rng = np.random.default_rng(0)
    codes = torch.as_tensor(rng.standard_normal((50, 8)))
    value = float(sparsity_penalty(codes))
    scales = torch.as_tensor(rng.uniform(0.01, 100.0, 8))
    assert float(sparsity_penalty(codes * scales)) == pytest.approx(value, rel=1e-12)
    assert float(sparsity_penalty(codes * 1e3)) == pytest.approx(value, rel=1e-12)
    # One active component per sample is the minimum, equal magnitudes everywhere the maximum.
    one_hot = torch.as_tensor(np.eye(8)[rng.integers(8, size=50)] * rng.uniform(1, 2, (50, 1)))
    assert float(sparsity_penalty(one_hot)) == pytest.approx(1 / np.sqrt(8), rel=1e-9)
    signs = torch.as_tensor(rng.choice([-1.0, 1.0], size=(50, 8)))
    assert float(sparsity_penalty(signs)) == pytest.approx(1.0, rel=1e-9)


def test_contraction_penalty_is_invariant_to_linear_maps_of_the_codes():
    rng = np.random.default_rng(0)
    codes = torch.as_tensor(rng.standard_normal((60, 5)))
    probe = torch.as_tensor(rng.standard_normal((60, 5)))
    value = float(contraction_penalty(codes, probe, ridge=0.0))
    mixing = torch.as_tensor(rng.standard_normal((5, 5)) + 3 * np.eye(5))
    shift = torch.as_tensor(rng.standard_normal(5))
    moved = contraction_penalty(codes @ mixing.T + shift, probe @ mixing.T, ridge=0.0)
    assert float(moved) == pytest.approx(value, rel=1e-9)
    # It measures sensitivity against spread: codes twice as spread, same Jacobian, a quarter.
    assert float(contraction_penalty(2 * codes, probe, ridge=0.0)) == pytest.approx(value / 4)


def test_contraction_penalty_is_unbiased_for_the_exact_jacobian_norm():
    """The mean of the one-probe estimate matches the exact mean of tr(J_i^T S_(-i)^-1 J_i),
    with J_i from torch.func.jacrev and S_(-i) the covariance of the other samples' codes."""
    encoder = mlp([10, 16, 4], "tanh", generator=torch.Generator().manual_seed(0)).double()
    x = torch.as_tensor(np.random.default_rng(1).standard_normal((40, 10)))
    with torch.no_grad():
        codes = encoder(x)
        jacobians = vmap(jacrev(encoder))(x).numpy()  # (40, 4, 10)
    exact = np.mean(
        [
            np.trace(J.T @ np.linalg.solve(np.cov(np.delete(codes.numpy(), i, 0).T), J))
            for i, J in enumerate(jacobians)
        ]
    )
    generator = torch.Generator().manual_seed(2)
    estimates = []
    with torch.no_grad():
        for _ in range(400):
            probe_codes, tangent = _encode_with_jvp(encoder, x, generator)
            estimates.append(float(contraction_penalty(probe_codes, tangent, ridge=0.0)))
    np.testing.assert_allclose(probe_codes.numpy(), codes.numpy())
    standard_error = np.std(estimates) / np.sqrt(len(estimates))
    assert standard_error < 0.03 * exact  # the comparison below is a sharp one
    assert abs(np.mean(estimates) - exact) < 4 * standard_error


def test_contractive_fit_with_batches_smaller_than_the_codes(digits):
    # A batch of 4 rows cannot give a covariance of 8 components: it adds no penalty.
    X = digits[0][:50]
    model = fit(X, n_components=8, batch_size=4, max_iter=2, contractive_penalty=1e-3)
    assert np.all(np.isfinite(model.loss_curve_))


# -- the variants against the plain autoencoder -----------------------------------------------


def test_sparse_codes_are_sparser_at_a_moderate_cost(digits, plain):
    X_train, X_test = digits
    sparse = fit(X_train, l1_penalty=0.03)
    # Seeds 0-2: Hoyer sparsity 1.73-1.91 times the plain autoencoder's; error 0.96-1.05 times.
    assert hoyer_sparsity(sparse.transform(X_test)) > 1.5 * hoyer_sparsity(plain.transform(X_test))
    assert mse(sparse, X_test, X_test) < 1.25 * mse(plain, X_test, X_test)


@pytest.mark.parametrize("noise_type", ["gaussian", "masking"])
def test_denoising_reconstructs_corrupted_inputs_better(digits, plain, noise_type):
    X_train, X_test = digits
    denoising = fit(X_train, noise_type=noise_type, noise_level=0.3)
    X_noisy = corrupt(X_test, noise_type, 0.3)  # fresh noise, not the training noise
    # Seeds 0-2: 0.74-0.77 times the plain autoencoder's error.
    assert mse(denoising, X_noisy, X_test) < 0.85 * mse(plain, X_noisy, X_test)


def test_contractive_codes_are_less_sensitive_relative_to_their_spread(digits, plain):
    X_train, X_test = digits
    contractive = fit(X_train, contractive_penalty=1e-5)
    # Seeds 0-2: 0.74-0.76 times the plain autoencoder's; error 0.97-1.10 times.
    assert relative_sensitivity(contractive, X_test) < 0.85 * relative_sensitivity(plain, X_test)
    assert mse(contractive, X_test, X_test) < 1.25 * mse(plain, X_test, X_test)


# -- the variants as "auto" starts and trains them -----------------------------------------------

VARIANTS = {
    "sparse": dict(l1_penalty=0.02),
    "gaussian": dict(noise_type="gaussian", noise_level=0.3),
    "masking": dict(noise_type="masking", noise_level=0.3),
    "contractive": dict(contractive_penalty=1e-6),
}
PLAIN = dict(l1_penalty=0.0, noise_type=None, contractive_penalty=0.0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_auto_starts_a_variant_at_pca_in_its_datas_units(digits, variant):
    X = digits[0][:400]
    # tol=0.5: the plateau rule ends a fit after its second epoch.
    params = dict(n_components=8, hidden_layer_sizes=(16,), max_iter=6, n_iter_no_change=1,
                  tol=0.5, random_state=SEED, device="cpu", **VARIANTS[variant])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = AutoEncoderTransformer(**params).fit(X)
        plain = AutoEncoderTransformer(**{**params, **PLAIN}).fit(X)
        explicit = AutoEncoderTransformer(**params, early_stopping=False).fit(X)
    # The plain autoencoder's start, but in the data's units (a sigmoid for pixels in [0, 1],
    # not the clipped linear output of the plain model's PCA start), without a validation split.
    assert est.init_ == "pca" and est.output_activation_ == "sigmoid"
    assert est.validation_scores_ is None
    assert plain.init_ == "pca" and plain.output_activation_ == "clip"
    assert plain.validation_scores_ is not None
    # The denoisers run the whole schedule, the others keep the plateau rule; asked for
    # explicitly, early_stopping=False keeps it for all.
    whole = variant in ("gaussian", "masking")
    assert (est.n_iter_ == est.max_iter_ == 6) == whole
    assert explicit.n_iter_ < 6


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_each_variant_shows_its_effect_at_the_defaults_near_the_plain_defaults_error(digits):
    X_train, X_test = digits
    common = dict(n_components=16, random_state=SEED, device="cpu")  # the defaults otherwise
    plain = AutoEncoderTransformer(**common).fit(X_train)
    models = {name: AutoEncoderTransformer(**common, **params).fit(X_train)
              for name, params in VARIANTS.items()}  # fmt: skip
    error = {name: mse(model, X_test, X_test) for name, model in models.items()}
    # Against the plain default (started at PCA, its output clipped to [0, 1]), each effect
    # shows, at issue 27's bound of 1.5 times its test error. Here sparse and contractive cost
    # 1.19 and 1.03 times; the denoisers (noise 0.3, half of each batch's rows corrupted)
    # 1.15 (Gaussian) and 1.19 (masking), seeds 0-2 1.15 and 1.17-1.19, at 0.41-0.46 and 0.24
    # times its noisy -> clean error. Corrupting every row, they cost 1.65 and 1.57 times.
    sparsity = hoyer_sparsity(models["sparse"].transform(X_test))
    assert sparsity > hoyer_sparsity(plain.transform(X_test)) + 0.05
    for noise_type in ("gaussian", "masking"):
        X_noisy = corrupt(X_test, noise_type, 0.3)
        assert mse(models[noise_type], X_noisy, X_test) < 0.9 * mse(plain, X_noisy, X_test)
    contractive = relative_sensitivity(models["contractive"], X_test)
    assert contractive < 0.95 * relative_sensitivity(plain, X_test)
    for name in VARIANTS:
        assert error[name] < 1.5 * mse(plain, X_test, X_test), name


# -- the variational autoencoder --------------------------------------------------------------


@pytest.fixture(scope="module")
def vaes(digits):
    params = dict(estimator=VariationalAutoEncoderTransformer, n_components=4)
    return {beta: fit(digits[0], beta=beta, **params) for beta in (0.0, 1.0)}


def aggregate_kl(model, X):
    """KL from N(0, I) of a diagonal Gaussian moment-matched to the aggregate posterior."""
    with torch.no_grad():
        mean, logvar = model.encoder_(torch.as_tensor(X))
    mean, var = mean.double().numpy(), logvar.double().exp().numpy()
    m, v = mean.mean(axis=0), mean.var(axis=0) + var.mean(axis=0)
    return 0.5 * float(np.sum(v + m**2 - 1.0 - np.log(v)))


def test_vae_kl_term_pulls_the_codes_toward_the_prior(digits, vaes):
    X_test = digits[1]
    # Seeds 0-2: KL 0.17 with beta=1 against 12-20 with beta=0 (0.009-0.014 times); the
    # largest |mean| of a component 0.09-0.10 against 1.9-3.3. (A decoder of fixed variance
    # collapsed the codes onto the prior, KL 0.001; the calibrated one keeps them informative.)
    assert aggregate_kl(vaes[1.0], X_test) < 0.05 * aggregate_kl(vaes[0.0], X_test)
    means = {beta: np.abs(vae.transform(X_test).mean(axis=0)).max() for beta, vae in vaes.items()}
    assert means[1.0] < 0.1 * means[0.0]


def test_vae_reports_its_active_code_dimensions(digits, vaes):
    X_train = digits[0]
    # Burda et al.'s measure, recomputed: the variance of each posterior mean over the data.
    variances = vaes[1.0].transform(X_train).astype(np.float64).var(axis=0)
    assert vaes[1.0].n_active_components_ == int((variances > 0.01).sum())
    # Seeds 0-2: all 4 dimensions active, with variances 1.2-1.5.
    assert vaes[1.0].n_active_components_ == 4
    # A KL term weighted 30 times over collapses them all onto the prior (seeds 0-2).
    collapsed = fit(X_train, VariationalAutoEncoderTransformer, n_components=4, beta=30.0)
    assert collapsed.n_active_components_ == 0


def test_vae_samples_are_reproducible_and_shaped_like_the_data(digits, vaes):
    vae = vaes[1.0]
    numpy_state = np.random.get_state()[1].copy()  # noqa: NPY002 (the global state is the point)
    torch_state = torch.get_rng_state().clone()
    first, again = vae.sample(20, random_state=0), vae.sample(20, random_state=0)
    other = vae.sample(20, random_state=1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert first.shape == (20, digits[0].shape[1]) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0  # sigmoid output for data in [0, 1]
    assert first.std(axis=0).max() > 0.05  # different codes, different images
    # Only local generators were used.
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)  # noqa: NPY002
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_vae_transform_is_the_deterministic_mean_and_score_its_reconstruction(digits, vaes):
    vae, X_test = vaes[1.0], digits[1]
    codes = vae.transform(X_test)
    np.testing.assert_array_equal(codes, vae.transform(X_test))
    with torch.no_grad():
        mean, _ = vae.encoder_(torch.as_tensor(X_test))
    np.testing.assert_allclose(codes, mean.numpy(), rtol=1e-5, atol=1e-6)
    reconstruction = vae.inverse_transform(codes)
    assert reconstruction.shape == X_test.shape
    assert vae.score(X_test) == pytest.approx(-np.mean((reconstruction - X_test) ** 2), rel=1e-4)


# -- grid search ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_regularisers_are_ordinary_grid_search_parameters():
    X, y = load_digits(return_X_y=True)
    X, y = (X[:240] / 16.0).astype(np.float32), y[:240]
    ae = AutoEncoderTransformer(
        n_components=8, hidden_layer_sizes=(16,), max_iter=2, random_state=0, device="cpu"
    )
    pipeline = Pipeline([("ae", ae), ("clf", LogisticRegression(max_iter=200))])
    grid = [
        {"ae__l1_penalty": [0.0, 0.03]},
        {"ae__noise_type": ["gaussian", "masking"], "ae__noise_level": [0.2]},
        {"ae__contractive_penalty": [1e-5]},
    ]
    search = GridSearchCV(pipeline, grid, cv=2, error_score="raise").fit(X, y)
    assert len(search.cv_results_["params"]) == 5
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    chosen = search.best_estimator_.named_steps["ae"].get_params()
    for name, value in search.best_params_.items():
        assert chosen[name.removeprefix("ae__")] == value
    assert search.best_estimator_.named_steps["ae"].n_iter_ == 2
