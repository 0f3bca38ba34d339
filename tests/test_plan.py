"""The fit plan: what the "auto" parameters choose (a network and a training budget that fit
the data set), decided once, kept and shown."""

import dataclasses
import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skae
from skae import (
    AutoEncoderImputer,
    AutoEncoderOutlierDetector,
    AutoEncoderTransformer,
    VariationalAutoEncoderTransformer,
)
from skae._plan import (
    EARLY_STOPPING_STEPS,
    TARGET_STEPS,
    DataSummary,
    default_hidden_layer_sizes,
    make_plan,
    resolve_batch_size,
    resolve_init,
    resolve_max_iter,
    resolve_validation_share,
)
from skae._training import process_group


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


def test_a_fit_with_a_validation_split_gets_twice_the_steps():
    # The split ends a fit that stops improving; one still improving uses the longer budget.
    assert EARLY_STOPPING_STEPS == 2 * TARGET_STEPS
    assert resolve_max_iter("auto", 1_257, 39, EARLY_STOPPING_STEPS) == 364  # digits'
    assert resolve_max_iter(7, 1_257, 39, EARLY_STOPPING_STEPS) == 7


def test_explicit_values_are_kept_and_checked():
    assert resolve_batch_size(100, 1000) == 100
    assert resolve_batch_size(100, 30) == 30  # at most n_samples, as scikit-learn's MLP
    assert resolve_max_iter(7, 1000, 100) == 7
    assert default_hidden_layer_sizes((16, 8), 1000, 784, 64) == (16, 8)
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
    assert default_hidden_layer_sizes("auto", 1000, n_features, n_components) == expected


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
    # The autoencoder holds out a validation split here ("auto"), the VAE does not.
    steps = EARLY_STOPPING_STEPS if cls is AutoEncoderTransformer else TARGET_STEPS
    assert est.max_iter_ == math.ceil(steps / math.ceil(600 / 32))
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


# -- the fit plan ------------------------------------------------------------------------------

CPU = torch.device("cpu")


def plan_of(est, n_samples, n_features, *, unit=True, missing=False, full=True, previous=None):
    """``make_plan`` called as fit calls it, on a summary of data of the given shape."""
    return make_plan(
        est._plan_rules(),
        est._planned_params(),
        DataSummary(n_samples, n_features, in_unit_interval=unit, has_missing=missing),
        device=CPU,
        group=process_group(CPU),
        blueprint=est._blueprint,
        full=full,
        previous=previous,
    )


def test_the_plan_is_made_by_a_plain_function_from_the_parameters_and_the_data():
    est = AutoEncoderTransformer(n_components=16)
    digits = plan_of(est, 1257, 64)
    assert (digits.init, digits.hidden_layer_sizes, digits.output_activation) == (
        "pca",
        (256,),
        "clip",  # a PCA start on narrow data in [0, 1]: a linear output, clipped to [0, 1]
    )
    assert digits.scaling == "none"
    assert (digits.batch_size, digits.max_iter, digits.validation_fraction) == (39, 364, 0.1)
    unbounded = plan_of(est, 1257, 64, unit=False)
    assert (unbounded.output_activation, unbounded.scaling) == ("identity", "centred")
    assert digits.step == "backprop" and digits.n_threads == 1 and not digits.mask_input
    assert set(digits.auto) >= {"init", "hidden_layer_sizes", "batch_size", "max_iter"}
    mnist = plan_of(est, 60_000, 784)
    assert (mnist.init, mnist.hidden_layer_sizes, mnist.output_activation, mnist.scaling) == (
        "random",
        (256, 128),
        "sigmoid",
        "none",
    )
    assert mnist.validation_fraction is None and mnist.batch_size == 256
    # Data with missing values: the mask input, no split watching rebuilt values, and the
    # 6,000 steps of a fit without one; a linear output (clipped, the imputer filled worse).
    holes = plan_of(est, 1257, 64, missing=True)
    assert holes.mask_input and holes.validation_fraction is None
    assert holes.max_iter == 182 and holes.output_activation == "identity"


@pytest.mark.parametrize(
    "params",
    [
        {"l1_penalty": 0.02},
        {"noise_type": "gaussian", "noise_level": 0.3},
        {"contractive_penalty": 1e-6},
    ],  # fmt: skip
)
def test_each_estimator_states_its_own_rules(params):
    variant = plan_of(AutoEncoderTransformer(n_components=16, **params), 1257, 64)
    # The plain model's start, in the data's units, without a validation split.
    assert variant.init == "pca" and variant.output_activation == "sigmoid"
    assert variant.validation_fraction is None and variant.max_iter == 182
    assert variant.stop_on_plateau == ("noise_type" not in params)  # denoisers: every epoch
    # Denoisers corrupt half of each batch's rows; the detector's and the imputer's every row.
    assert variant.noisy_share == (0.5 if "noise_type" in params else 1.0)
    assert plan_of(AutoEncoderOutlierDetector(**params), 1257, 64).noisy_share == 1.0
    detector = plan_of(AutoEncoderOutlierDetector(), 1257, 64)
    assert detector.max_iter == math.ceil(150 / math.ceil(1257 / 39))  # its own budget
    assert detector.output_activation == "identity"  # not clipped: it detected worse
    assert detector.step == "backprop"  # the trimmed loss has a hand-written backward pass
    assert detector.n_components == 8 and "n_components" in detector.auto
    assert plan_of(AutoEncoderOutlierDetector(), 500, 6).n_components == 6  # narrow data
    imputer = plan_of(AutoEncoderImputer(), 1257, 64)
    assert imputer.mask_input and imputer.hidden_layer_sizes == (256, 256)
    assert imputer.hidden_weight == 3.0 and not imputer.stop_on_plateau
    assert imputer.noisy_share == 1.0
    vae = plan_of(VariationalAutoEncoderTransformer(), 1257, 64)
    assert vae.init == "random" and vae.step == "autograd"


def test_the_plan_is_immutable_and_explicit_values_are_not_marked_auto():
    plan = plan_of(AutoEncoderTransformer(n_components=4, init="random", batch_size=50), 500, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.batch_size = 10
    assert plan.init == "random" and plan.batch_size == 50
    assert "init" not in plan.auto and "batch_size" not in plan.auto


def test_verbose_prints_the_plan_in_one_short_block_as_a_fit_starts(capsys):
    X = (load_digits().data[:300] / 16).astype(np.float32)
    est = AutoEncoderTransformer(n_components=4, max_iter=2, verbose=1, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
        printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0] == 'AutoEncoderTransformer: fit plan (* chosen by "auto"):'
    assert len(printed) <= 10
    block = "\n".join(printed)
    assert "start     PCA's solution" in block and "300 rows x 64 features" in block
    assert str(est.fit_plan_) in block
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_params(verbose=0).fit(X)
    assert capsys.readouterr().out == ""


def test_the_html_repr_of_a_fitted_estimator_shows_the_plan():
    X = np.random.default_rng(0).random((60, 5))
    est = AutoEncoderTransformer(n_components=2, max_iter=2, device="cpu")
    assert "Fit plan" not in est._repr_html_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    html = est._repr_html_()
    assert "Fit plan" in html and "PCA&#x27;s solution" in html
    # Inside a pipeline too.
    assert "Fit plan" in make_pipeline(StandardScaler(), est)._repr_html_()


def test_partial_fit_warm_start_save_load_and_pickle_agree_on_the_plan(tmp_path):
    X = np.random.default_rng(0).random((200, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        streamed = AutoEncoderTransformer(n_components=2, device="cpu", random_state=0)
        streamed.partial_fit(X)
        first = streamed.fit_plan_
        streamed.partial_fit(X[:100])  # continues: the network's choices stay
        assert streamed.fit_plan_.network() == first.network()
        assert first.init == "random"  # partial_fit's start (see plan_network)
        assert (streamed.fit_plan_.batch_size, streamed.fit_plan_.max_iter) == (32, 1)
        warm = AutoEncoderTransformer(n_components=2, max_iter=3, warm_start=True,
                                      device="cpu", random_state=0).fit(X)  # fmt: skip
        started = warm.fit_plan_
        warm.fit(X[:50])  # 50 rows would start at PCA, with a split: the network stays
        assert warm.fit_plan_.network() == started.network()
        assert warm.fit_plan_.n_samples == 50
    for est in (streamed, warm):
        est.save(tmp_path / "model.safetensors")
        loaded = skae.load(tmp_path / "model.safetensors")
        assert loaded.fit_plan_ == est.fit_plan_
        assert pickle.loads(pickle.dumps(est)).fit_plan_ == est.fit_plan_
    assert loaded.hidden_layer_sizes_ == loaded.fit_plan_.hidden_layer_sizes
