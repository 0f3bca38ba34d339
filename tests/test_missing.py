"""Missing values (NaN) in the engine: what is learned from them, and what is refused."""

import copy
import dataclasses
import types

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer
from skae._missing import MissingMask, masked_mse
from skae._modules import mlp
from skae._scaling import ColumnStats, column_statistics
from skae._training import TrainingStep
from skae._training._backprop import BackpropStep, supports

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

DIGITS = (load_digits().data / 16).astype(np.float32)
ESTIMATORS = [AutoEncoderTransformer, VariationalAutoEncoderTransformer]


def with_holes(X, share=0.2, seed=0):
    """X with ``share`` of its entries missing, completely at random."""
    holes = np.random.default_rng(seed).random(X.shape) < share
    return np.where(holes, np.nan, X).astype(X.dtype), holes


def small(cls=AutoEncoderTransformer, **params):
    params = {"n_components": 8, "hidden_layer_sizes": (32,), "max_iter": 10,
              "early_stopping": False, "random_state": 0, "device": "cpu", **params}  # fmt: skip
    if "init" in cls().get_params():
        params.setdefault("init", "random")
    return cls(**params)


# -- statistics ----------------------------------------------------------------------------------


def test_column_statistics_leave_missing_values_out_and_merge_by_blocks():
    X, _ = with_holes(DIGITS[:300].astype(np.float64) * 3 - 1, share=0.3)
    X[:40, 5] = np.nan  # the first block has no value of feature 5
    whole = ColumnStats.of(X)
    blocks = column_statistics(X[i : i + 40] for i in range(0, len(X), 40))
    counts = (~np.isnan(X)).sum(axis=0)
    for stats in (whole, blocks):
        assert_array_equal(stats.counts, counts)
        assert_allclose(stats.mean, np.nanmean(X, axis=0))
        assert_allclose(stats.variance, np.nanvar(X, axis=0), atol=1e-12)
        assert (stats.minimum, stats.maximum) == (np.nanmin(X), np.nanmax(X))
        assert stats.has_missing
    sparse = ColumnStats.of(sp.csr_matrix(X))
    assert_allclose(sparse.mean, whole.mean)
    assert_allclose(sparse.variance, whole.variance, atol=1e-12)
    assert_array_equal(sparse.counts, counts)


def test_complete_data_keep_the_arithmetic_without_counts():
    stats = column_statistics([DIGITS[:100], DIGITS[100:250]])
    assert stats.counts is None and not stats.has_missing
    reference = ColumnStats.of(DIGITS[:250])
    assert_allclose(stats.mean, reference.mean)


# -- the network and its training step -----------------------------------------------------------


def test_missing_mask_fills_with_the_mean_and_marks_what_was_missing():
    module = MissingMask(torch.tensor([10.0, 20.0, 30.0]))
    out = module(torch.tensor([[1.0, float("nan"), 3.0], [float("nan")] * 3]))
    assert_array_equal(out.numpy(), [[1, 20, 3, 0, 1, 0], [10, 20, 30, 1, 1, 1]])


def test_the_masked_loss_ignores_the_missing_entries():
    output = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x = torch.tensor([[1.5, float("nan")], [float("nan"), 2.0]])
    assert float(masked_mse(output, x)) == pytest.approx((0.25 + 4.0) / 2)
    # A diverged network still shows.
    assert torch.isnan(masked_mse(output * float("nan"), x))


@pytest.mark.parametrize("noisy", [False, True])
def test_the_written_out_step_gives_autograds_gradients_with_missing_values(noisy):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(37, 20, generator=generator)
    x[torch.rand(37, 20, generator=generator) < 0.3] = float("nan")
    layers = [
        MissingMask(torch.full((20,), 0.5)),
        mlp([40, 16, 4], "leaky_relu", generator=generator),
        mlp([4, 16, 20], "leaky_relu", output_activation="sigmoid", generator=generator),
    ]
    assert supports(layers)
    hidden = torch.rand(37, 20, generator=generator) < 0.2
    corrupt = (lambda x: x.masked_fill(hidden, float("nan"))) if noisy else None

    def gradients(written_out):
        copied = copy.deepcopy(layers)
        parameters = [p for layer in copied for p in layer.parameters()]
        optimizer = torch.optim.Adam(parameters)
        if written_out:
            step = BackpropStep(copied, optimizer, corrupt)
        else:
            model = torch.nn.Sequential(*copied)
            inputs = corrupt or (lambda x: x)
            step = TrainingStep(lambda x: masked_mse(model(inputs(x)), x), optimizer)
        loss = step.compute_gradients(x.clone())
        return loss.item(), [p.grad.clone() for p in parameters]

    loss, grads = gradients(True)
    expected_loss, expected = gradients(False)
    assert np.isfinite(loss) and loss == pytest.approx(expected_loss, rel=1e-5)
    for grad, reference in zip(grads, expected, strict=True):
        assert torch.isfinite(grad).all()
        assert_allclose(grad.numpy(), reference.numpy(), rtol=1e-4, atol=1e-6)


def test_complete_data_build_the_same_network_as_ever():
    est = small().fit(DIGITS)
    assert est.mask_input_ is False
    assert not any(isinstance(m, MissingMask) for m in est.encoder_.modules())
    assert est.encoder_[0].in_features == DIGITS.shape[1]


# -- estimators fitted on data with missing values -----------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fit_transform_score_with_missing_values(cls):
    X, holes = with_holes(DIGITS)
    est = small(cls).fit(X)
    assert est.mask_input_ is True
    assert isinstance(est.encoder_[0], MissingMask)
    codes = est.transform(X)
    assert codes.shape == (len(X), 8) and np.isfinite(codes).all()
    scores = est.score_samples(X)
    assert np.isfinite(scores).all()
    # score_samples counts the observed entries only.
    reconstruction = est.inverse_transform(codes)
    errors = np.where(holes, 0.0, (reconstruction - np.nan_to_num(X)) ** 2)
    assert_allclose(-scores, errors.sum(axis=1) / (~holes).sum(axis=1), rtol=1e-4)
    assert est.score(X) == pytest.approx(scores.mean(), rel=1e-6)
    assert est.__sklearn_tags__().input_tags.allow_nan
    # More training continues on data with or without holes.
    est.partial_fit(X).partial_fit(DIGITS)
    assert np.isfinite(est.transform(DIGITS)).all()


def test_codes_of_incomplete_rows_are_close_to_those_of_the_complete_rows():
    X, _ = with_holes(DIGITS, share=0.2)
    est = small(n_components=16, max_iter=60, noise_type="masking", noise_level=0.2).fit(X)
    complete, incomplete = est.transform(DIGITS), est.transform(X)
    moved = np.linalg.norm(incomplete - complete, axis=1)
    spread = np.linalg.norm(complete - complete.mean(axis=0), axis=1)
    assert np.median(moved) < 0.5 * np.median(spread)


def test_streamed_and_sparse_inputs_with_missing_values(tmp_path):
    X, _ = with_holes(DIGITS)
    stored = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32,
                                       shape=X.shape)  # fmt: skip
    stored[:] = X
    streamed = small(max_iter=3).fit(stored)
    in_memory = small(max_iter=3).fit(X)
    assert streamed.mask_input_
    assert_allclose(streamed.input_offset_, in_memory.input_offset_, rtol=1e-5)
    assert np.isfinite(streamed.transform(stored)).all()
    sparse = small(max_iter=3).fit(sp.csr_matrix(X))
    assert sparse.mask_input_ and np.isfinite(sparse.transform(sp.csr_matrix(X))).all()


def test_a_model_fitted_on_missing_values_survives_pickling():
    import pickle

    X, _ = with_holes(DIGITS)
    est = small(max_iter=2).fit(X)
    again = pickle.loads(pickle.dumps(est))
    assert_array_equal(again.transform(X), est.transform(X))


# -- what is refused ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_infinity_is_refused_with_or_without_missing_values(cls):
    X, _ = with_holes(DIGITS[:100])
    X[3, 4] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        small(cls).fit(X)


def test_empty_features_are_refused_by_name():
    X, _ = with_holes(DIGITS[:200])
    X[:, [7, 9]] = np.nan
    with pytest.raises(ValueError, match=r"2 feature\(s\) of X have every value missing.*"
                                         r"column\(s\) 7, 9\. Nothing can be learned"):  # fmt: skip
        small().fit(X)
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(64)])
    with pytest.raises(ValueError, match=r"feature\(s\) pixel7, pixel9"):
        small().fit(frame)
    with pytest.raises(ValueError, match="every value missing"):
        small().partial_fit(X)


def test_empty_rows_are_skipped_in_fit_and_refused_in_inference():
    X, _ = with_holes(DIGITS[:300])
    X[[4, 11]] = np.nan
    est = small(max_iter=2).fit(X)  # rows with nothing observed teach nothing, and harm nothing
    assert np.isfinite(est.loss_curve_).all()
    for method in ("transform", "score_samples", "score"):
        with pytest.raises(ValueError, match=r"2 row\(s\) of X have every value missing.*"
                                             r"row\(s\) 4, 11\."):  # fmt: skip
            getattr(est, method)(X)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_model_fitted_on_complete_data_refuses_missing_values(cls):
    est = small(cls, max_iter=2).fit(DIGITS)
    X, _ = with_holes(DIGITS[:50])
    message = "contains NaN, but this .* was fitted on data without missing values"
    for method in ("transform", "score_samples", "score", "partial_fit"):
        with pytest.raises(ValueError, match=message):
            getattr(est, method)(X)
    with pytest.raises(ValueError, match=message):
        est.set_params(warm_start=True).fit(X)
    assert est.mask_input_ is False
    # Refitting from scratch builds the network that reads the mask.
    assert est.set_params(warm_start=False).fit(X).mask_input_ is True


def test_streamed_inference_refuses_missing_values_for_a_complete_model(tmp_path):
    est = small(max_iter=2).fit(DIGITS)
    X, _ = with_holes(DIGITS)
    stored = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32,
                                       shape=X.shape)  # fmt: skip
    stored[:] = DIGITS
    stored[-1, 0] = np.nan  # a late block
    with pytest.raises(ValueError, match="fitted on data without missing values"):
        est.transform(stored)


def test_a_model_fitted_on_missing_values_learns_from_hidden_values_too():
    # With noise_type=None, a share of the observed values is hidden as missing at each step,
    # so that the network learns to encode rows from part of their values.
    from skae._autoencoder import MISSING_NOISE

    X, _ = with_holes(DIGITS)
    est = small(max_iter=1).fit(X)
    assert est.fit_plan_.mask_input
    state = types.SimpleNamespace(plan=est.fit_plan_, scaling=None,
                                  noise_generator=torch.Generator().manual_seed(0))  # fmt: skip
    x = torch.as_tensor(DIGITS)
    hidden = torch.isnan(est._corrupt(state, x)).float().mean()
    assert float(hidden) == pytest.approx(MISSING_NOISE, abs=0.01)
    # A model fitted on complete data: no noise.
    state.plan = dataclasses.replace(est.fit_plan_, mask_input=False)
    assert not torch.isnan(est._corrupt(state, x)).any()


def test_early_stopping_auto_is_off_for_a_network_that_reads_the_mask():
    # Its validation error would watch rebuilt values, while training hides some.
    X, _ = with_holes(DIGITS)
    est = AutoEncoderTransformer(n_components=8, hidden_layer_sizes=(16,), max_iter=3,
                                 random_state=0, device="cpu").fit(X)  # fmt: skip
    assert est.validation_scores_ is None
    complete = AutoEncoderTransformer(n_components=8, hidden_layer_sizes=(16,), max_iter=3,
                                      random_state=0, device="cpu").fit(DIGITS)  # fmt: skip
    assert complete.validation_scores_ is not None  # below 10,000 rows, for complete data
    forced = small(max_iter=3, early_stopping=True).fit(X)
    assert forced.validation_scores_ is not None
