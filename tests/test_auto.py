"""The "auto" parameters: a network and a training budget that fit the data set."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer
from skae._auto import (
    TARGET_STEPS,
    resolve_batch_size,
    resolve_hidden_layer_sizes,
    resolve_init,
    resolve_max_iter,
    resolve_validation_share,
)


@pytest.mark.parametrize(
    "n_samples, batch_size, epochs",
    [
        (60_000, 256, 26),  # MNIST: the design's batch, about its 24 epochs
        (10_000, 256, 150),
        (1_257, 39, 182),  # digits' 70% training split
        (398, 32, 462),  # breast_cancer's
        (20, 20, 6000),  # never a batch larger than the data
        (1_000_000, 256, 2),  # many rows: a couple of passes
    ],
)
def test_the_budget_is_counted_in_optimizer_steps(n_samples, batch_size, epochs):
    assert resolve_batch_size("auto", n_samples) == batch_size
    assert resolve_max_iter("auto", n_samples, batch_size) == epochs
    steps = epochs * math.ceil(n_samples / batch_size)
    assert TARGET_STEPS <= steps < TARGET_STEPS + math.ceil(n_samples / batch_size)


def test_explicit_values_are_kept_and_checked():
    assert resolve_batch_size(100, 1000) == 100
    assert resolve_batch_size(100, 30) == 30  # at most n_samples, as scikit-learn's MLP
    assert resolve_max_iter(7, 1000, 100) == 7
    assert resolve_hidden_layer_sizes((16, 8), 784, 64) == (16, 8)
    with pytest.raises(ValueError, match=r"batch_size=0 is invalid"):
        resolve_batch_size(0, 10)


@pytest.mark.parametrize(
    "n_features, n_components, expected",
    [
        (784, 64, (256, 128)),  # the design's MNIST network
        (784, 200, (400, 200)),  # no hidden layer narrower than the codes
        (64, 16, (256,)),  # digits: one layer
        (30, 8, (256,)),
        (256, 16, (256,)),
        (257, 16, (256, 128)),
    ],
)
def test_hidden_layers_fit_the_input_and_code_widths(n_features, n_components, expected):
    assert resolve_hidden_layer_sizes("auto", n_features, n_components) == expected


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("max_iter", "many", 'expected "auto" or an integer >= 1'),
        ("batch_size", 0, 'expected "auto" or an integer >= 1'),
        ("hidden_layer_sizes", "wide", 'expected "auto" or a sequence of integers'),
    ],
)
def test_invalid_values_name_auto_in_the_error(name, value, message):
    with pytest.raises(ValueError, match=f"{name}=.* is invalid: {message}"):
        AutoEncoderTransformer(**{name: value}).fit(np.zeros((10, 3)))


@pytest.mark.parametrize("cls", [AutoEncoderTransformer, VariationalAutoEncoderTransformer])
def test_a_default_fit_says_what_auto_chose_and_trains_that_long(cls):
    X = (load_digits().data[:600] / 16).astype(np.float32)
    est = cls(n_components=8, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the defaults converge here
        est.fit(X)
    assert est.hidden_layer_sizes_ == (256,)
    assert est.batch_size_ == 32  # 600 // 32 = 18, raised to the least batch
    assert est.max_iter_ == math.ceil(TARGET_STEPS / math.ceil(600 / 32))
    assert est.n_iter_ <= est.max_iter_
    widths = [m.out_features for m in est.encoder_.modules() if isinstance(m, torch.nn.Linear)]
    assert 256 in widths  # the hidden layer (beside a linear path where the start is PCA's)
    # The parameters themselves stay "auto" (what fit chose lives on the fitted attributes).
    params = est.get_params()
    assert params["hidden_layer_sizes"] == params["max_iter"] == params["batch_size"] == "auto"


@pytest.mark.parametrize(
    "n_samples, n_features, init, validation_share",
    [
        (1_797, 64, "pca", 0.1),  # digits
        (398, 30, "pca", 0.1),  # breast_cancer's training split
        (14, 3, "pca", 5 / 14),  # linnerud's: at least 5 rows held out
        (9, 3, "pca", None),  # too few to hold out 5 and train on as many
        (5_000, 784, "pca", 0.1),  # a small image set
        (9_999, 784, "pca", 0.1),
        (10_000, 784, "random", None),  # MNIST-sized: the design's network, every row trains
        (60_000, 784, "random", None),
        (60_000, 100, "pca", None),  # narrow and plentiful
    ],
)
def test_init_and_early_stopping_follow_the_data(n_samples, n_features, init, validation_share):
    assert resolve_init("auto", n_samples, n_features) == init
    assert resolve_validation_share("auto", n_samples) == validation_share
    assert resolve_init("random", n_samples, n_features) == "random"
    assert resolve_validation_share(False, n_samples) is None
    assert resolve_validation_share(True, n_samples, 0.2) == 0.2


def test_partial_fit_chooses_the_batch_from_each_call():
    X = np.random.default_rng(0).random((2000, 5))
    est = AutoEncoderTransformer(n_components=2, random_state=0, device="cpu")
    est.partial_fit(X)
    assert est.batch_size_ == 62 and not hasattr(est, "max_iter_")
    est.partial_fit(X[:100])
    assert est.batch_size_ == 32
