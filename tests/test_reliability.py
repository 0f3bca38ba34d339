"""Reliability: input and parameter validation, divergence, interruption, memory, fuzzing."""

import contextlib
import json
import subprocess
import sys
import textwrap
import warnings
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _failures import interrupt_at, make_loss_nan_from_epoch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer

ESTIMATORS = [AutoEncoderTransformer, VariationalAutoEncoderTransformer]
N_FEATURES = 5
N_COMPONENTS = 2
X = np.random.default_rng(0).random((30, N_FEATURES))


def tiny(cls, **params):
    defaults = dict(
        n_components=N_COMPONENTS,
        hidden_layer_sizes=(4,),
        max_iter=2,
        random_state=0,
        device="cpu",
    )
    return cls(**{**defaults, **params})


def warns_of_identity_map(est, n_features):
    """The autoencoder warns that codes as wide as X can learn the identity map (the VAE's
    sampled codes cannot): pytest.warns for it where it applies."""
    if isinstance(est, AutoEncoderTransformer) and est.n_components >= n_features:
        return pytest.warns(UserWarning, match=r"n_components=\d+ is not smaller than the")
    return contextlib.nullcontext()


# Short test fits end before convergence on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def fitted():
    """Tiny estimators fitted on X, shared by the tests that only call inference on them."""
    return {cls: tiny(cls).fit(X) for cls in ESTIMATORS}


def fitted_attributes(est):
    return sorted(k for k in vars(est) if k.endswith("_") and not k.startswith("__"))


def weights(est):
    return {
        f"{name}.{key}": value.detach().clone()
        for name in ("encoder_", "decoder_")
        for key, value in getattr(est, name).state_dict().items()
    }


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


def optimizer_state(est):
    state = est._optimizer.state_dict()["state"]
    return {f"{i}.{k}": v.clone() for i, s in state.items() for k, v in s.items()}


# -- input validation --------------------------------------------------------------------------


def _with_nan(n_columns):
    # A feature with no observed value: refused by fit; a model fitted on complete data
    # refuses any NaN.
    A = np.ones((3, n_columns))
    A[:, 0] = np.nan
    return A


def _with_value(n_columns, value, sparse=False):
    A = np.ones((3, n_columns))
    A[2, -1] = value
    return sp.csr_matrix(A) if sparse else A


# name -> (input builder given the expected number of columns, error, message)
BAD_INPUTS = {
    "nan": (_with_nan, ValueError, "Input X contains NaN|every value missing"),
    "inf": (lambda n: _with_value(n, np.inf), ValueError, "Input X contains infinity"),
    "-inf": (lambda n: _with_value(n, -np.inf), ValueError, "Input X contains infinity"),
    "sparse nan": (
        lambda n: sp.csr_matrix(_with_nan(n)),
        ValueError,
        "Input X contains NaN|every value missing",
    ),
    "beyond float32": (
        lambda n: _with_value(n, -1e300),
        ValueError,
        r"magnitude up to 1e\+300, beyond float32's range",
    ),
    "sparse beyond float32": (
        lambda n: _with_value(n, 1e39, sparse=True),
        ValueError,
        "beyond float32's range",
    ),
    "no samples": (lambda n: np.empty((0, n)), ValueError, r"Found array with 0 sample\(s\)"),
    "no features": (lambda n: np.empty((3, 0)), ValueError, r"Found array with 0 feature\(s\)"),
    "1-D": (lambda n: np.ones(n), ValueError, "Expected 2D array, got 1D array"),
    "3-D": (lambda n: np.ones((3, n, 2)), ValueError, "Found array with dim 3"),
    "scalar": (lambda n: 1.0, ValueError, "Expected 2D array, got scalar array"),
    "None": (lambda n: None, ValueError, "Expected 2D array"),
    "strings": (
        lambda n: np.array([["a"] * n] * 3),
        ValueError,
        "Input X holds text in column",
    ),
    "objects": (
        lambda n: np.array([[object()] * n] * 3, dtype=object),
        TypeError,
        "must be a string or a real number, not 'object'",
    ),
    "complex": (lambda n: np.ones((3, n)) + 1j, ValueError, "Complex data not supported"),
    "ragged": (lambda n: [[1.0] * n, [1.0] * (n + 1)], ValueError, "inhomogeneous"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fitting_refuses_bad_input_and_stays_unfitted(cls, method, case):
    make, error, message = BAD_INPUTS[case]
    est = tiny(cls)
    with pytest.raises(error, match=message):
        getattr(est, method)(make(N_FEATURES))
    assert fitted_attributes(est) == []


@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
@pytest.mark.parametrize("method", ["transform", "score", "inverse_transform"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_inference_refuses_bad_input(fitted, cls, method, case):
    make, error, message = BAD_INPUTS[case]
    est = fitted[cls]
    n_columns = N_COMPONENTS if method == "inverse_transform" else N_FEATURES
    data = make(n_columns)
    if method == "inverse_transform" and sp.issparse(data):
        # Codes are dense: sparse ones are refused before their values are looked at.
        error, message = TypeError, "Sparse data was passed for X, but dense data is required"
    if method == "inverse_transform" and case == "strings":
        # Codes are no table of features to encode: numpy's own message stands.
        message = "could not convert string to float"
    with pytest.raises(error, match=message):
        getattr(est, method)(data)


@pytest.mark.parametrize("case", ["nan", "beyond float32", "1-D", "no samples"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_failed_fit_keeps_the_previous_fit(cls, case):
    make, error, message = BAD_INPUTS[case]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(N_FEATURES)])
    est = tiny(cls).fit(frame)
    before = weights(est)
    with pytest.raises(error, match=message):
        # A different number of columns too: validate_data would otherwise have reset
        # n_features_in_ before the failure.
        est.fit(make(N_FEATURES + 1))
    assert est.n_features_in_ == N_FEATURES
    assert_array_equal(est.feature_names_in_, frame.columns)
    assert_same_weights(weights(est), before)
    assert est.transform(frame).shape == (len(X), N_COMPONENTS)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_wrong_number_of_features(cls):
    est = tiny(cls).fit(X)
    wrong = np.ones((3, N_FEATURES - 1))
    message = f"X has {N_FEATURES - 1} features, but {cls.__name__} is expecting {N_FEATURES}"
    for method in ("transform", "score", "partial_fit"):
        with pytest.raises(ValueError, match=message):
            getattr(est, method)(wrong)
    with pytest.raises(ValueError, match=message):
        est.set_params(warm_start=True).fit(wrong)
    assert est.n_features_in_ == N_FEATURES


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_wrong_number_of_code_columns(fitted, cls):
    est = fitted[cls]
    with pytest.raises(
        ValueError,
        match=(
            f"expects codes with n_components={N_COMPONENTS} columns, but got an array with "
            f"{N_COMPONENTS + 1} columns"
        ),
    ):
        est.inverse_transform(np.ones((3, N_COMPONENTS + 1)))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_feature_names_must_match(cls):
    columns = [f"f{i}" for i in range(N_FEATURES)]
    est = tiny(cls).fit(pd.DataFrame(X, columns=columns))
    renamed = pd.DataFrame(X, columns=columns[::-1])
    with pytest.raises(ValueError, match="The feature names should match"):
        est.transform(renamed)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_changed_n_components_after_fit_is_named(cls):
    est = tiny(cls).fit(X)
    codes = est.transform(X)
    est.set_params(n_components=N_COMPONENTS + 1)
    message = f"has {N_COMPONENTS} components but n_components={N_COMPONENTS + 1}"
    with pytest.raises(ValueError, match=message):
        est.transform(X)
    for wrong_width in (codes, np.hstack([codes, codes[:, :1]])):
        with pytest.raises(ValueError, match=message):
            est.inverse_transform(wrong_width)
    with pytest.raises(ValueError, match=message):
        est.score(X)


@pytest.mark.parametrize("method", ["warm_start", "partial_fit"])
@pytest.mark.parametrize(
    "param, value",
    [("n_components", N_COMPONENTS + 1), ("hidden_layer_sizes", (5, 3)), ("activation", "tanh")],
)
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_continuing_after_the_network_parameters_changed_is_refused(cls, param, value, method):
    est = tiny(cls, max_iter=2).fit(X)
    before, before_n_iter = weights(est), est.n_iter_
    est.set_params(**{param: value})
    with pytest.raises(ValueError, match="no longer describe the fitted network"):
        if method == "warm_start":
            est.set_params(warm_start=True).fit(X)
        else:
            est.partial_fit(X)
    assert est.n_iter_ == before_n_iter
    assert_same_weights(weights(est), before)
    est.set_params(warm_start=False).fit(X)  # a new fit builds the network the parameters ask
    assert est.transform(X).shape[1] == est.n_components


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_unfitted_estimator_raises_not_fitted(cls):
    est = tiny(cls)
    for method, argument in [
        ("transform", X),
        ("score", X),
        ("inverse_transform", X[:, :N_COMPONENTS]),
        ("get_feature_names_out", None),
    ]:
        with pytest.raises(NotFittedError, match="is not fitted yet"):
            getattr(est, method)(argument)
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        est.save("never-written.safetensors")
    if cls is VariationalAutoEncoderTransformer:
        with pytest.raises(NotFittedError, match="is not fitted yet"):
            est.sample(2)


# -- parameter validation ----------------------------------------------------------------------

COMMON_BAD_PARAMS = [
    ("n_components", 0, "an integer >= 1"),
    ("n_components", -3, "an integer >= 1"),
    ("n_components", 2.5, "an integer >= 1"),
    ("n_components", 2.0, "an integer >= 1"),
    ("n_components", "2", "an integer >= 1"),
    ("n_components", None, "an integer >= 1"),
    ("n_components", True, "an integer >= 1"),
    ("hidden_layer_sizes", (0,), "every size must be an integer >= 1"),
    ("hidden_layer_sizes", (8, -1), "every size must be an integer >= 1"),
    ("hidden_layer_sizes", (4.0,), "every size must be an integer >= 1"),
    ("hidden_layer_sizes", ("a",), "every size must be an integer >= 1"),
    ("hidden_layer_sizes", None, "expected a sequence of integers >= 1"),
    ("hidden_layer_sizes", 5, r"such as \(5,\) for one hidden layer"),
    ("activation", "ReLU", "expected one of 'leaky_relu', 'relu', 'elu', 'gelu', 'silu'"),
    ("activation", None, "expected one of 'leaky_relu'"),
    ("output_activation", "softmax", "expected one of 'auto', 'sigmoid', 'identity'"),
    ("max_iter", 0, "an integer >= 1"),
    ("max_iter", np.inf, "an integer >= 1"),
    ("batch_size", 0, "an integer >= 1"),
    ("batch_size", -1, "an integer >= 1"),
    ("batch_size", 1.5, "an integer >= 1"),
    ("learning_rate_init", 0, r"a real number in \(0, inf\]"),
    ("learning_rate_init", -1e-3, r"a real number in \(0, inf\]"),
    ("learning_rate_init", np.nan, r"a real number in \(0, inf\]"),
    ("learning_rate_init", np.inf, r"a real number in \(0, inf\]"),
    ("learning_rate_init", "1e-3", r"a real number in \(0, inf\]"),
    ("learning_rate", "adaptive", "expected one of 'constant', 'cosine'"),
    ("early_stopping", "yes", "expected one of 'auto', True, False"),
    ("early_stopping", 1, "expected one of 'auto', True, False"),
    ("validation_fraction", 0.0, r"a real number in \(0, 1\)"),
    ("validation_fraction", 1.0, r"a real number in \(0, 1\)"),
    ("n_iter_no_change", 0, "an integer >= 1"),
    ("tol", -1e-4, r"a real number in \[0, inf\]"),
    ("tol", np.nan, r"a real number in \[0, inf\]"),
    ("warm_start", "no", "expected one of True, False"),
    ("random_state", -1, "an integer >= 0"),
    ("random_state", 1.5, "an integer >= 0"),
    ("random_state", "seed", "an integer >= 0"),
    ("device", "tpu", "expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ("verbose", -1, "an integer >= 0"),
    ("verbose", True, "an integer >= 0"),
]
AE_BAD_PARAMS = [
    ("l1_penalty", -0.1, r"a real number in \[0, inf\]"),
    ("l1_penalty", np.nan, r"a real number in \[0, inf\]"),
    ("noise_type", "Gaussian", "expected one of None, 'gaussian', 'masking'"),
    ("noise_type", "salt", "expected one of None, 'gaussian', 'masking'"),
    ("noise_level", -0.1, r"a real number in \[0, inf\]"),
    ("contractive_penalty", -1.0, r"a real number in \[0, inf\]"),
]
VAE_BAD_PARAMS = [
    ("beta", -1.0, r"a real number in \[0, inf\]"),
    ("beta", np.nan, r"a real number in \[0, inf\]"),
]
BAD_PARAMS = [(AutoEncoderTransformer, *case) for case in COMMON_BAD_PARAMS + AE_BAD_PARAMS] + [
    (VariationalAutoEncoderTransformer, *case) for case in COMMON_BAD_PARAMS + VAE_BAD_PARAMS
]


@pytest.mark.parametrize(
    "cls, name, value, valid",
    BAD_PARAMS,
    ids=[f"{c.__name__[:3]}-{n}={v!r}" for c, n, v, _ in BAD_PARAMS],
)
def test_invalid_parameter_raises_at_fit_naming_it(cls, name, value, valid):
    est = tiny(cls, **{name: value})  # constructing never raises
    clone(est)
    with pytest.raises(ValueError, match=rf"^{name}=.* is invalid: .*{valid}"):
        est.fit(X)
    with pytest.raises(ValueError, match=rf"^{name}=.* is invalid: .*{valid}"):
        est.partial_fit(X)
    assert fitted_attributes(est) == []


def test_masking_noise_level_must_be_below_one():
    est = tiny(AutoEncoderTransformer, noise_type="masking", noise_level=1.0)
    with pytest.raises(ValueError, match=r"^noise_level=1.0 is invalid: .*\[0, 1\)"):
        est.fit(X)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_device_is_named():
    with pytest.raises(ValueError, match="device='cuda' is unavailable: torch finds no CUDA"):
        tiny(AutoEncoderTransformer, device="cuda").fit(X)


@pytest.mark.parametrize(
    "params",
    [
        dict(batch_size=1000),  # fewer samples than batch_size
        dict(n_components=8),  # more components than features
        dict(hidden_layer_sizes=()),
        dict(hidden_layer_sizes=[4, 3]),
        dict(hidden_layer_sizes=np.array([4, 3])),
        dict(n_components=np.int64(2), max_iter=np.int32(2), learning_rate_init=np.float32(1e-3)),
        dict(early_stopping=np.True_, warm_start=np.False_),
    ],
    ids=str,
)
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_unusual_but_valid_settings_work(cls, params):
    est = tiny(cls, **params)
    with warns_of_identity_map(est, N_FEATURES):
        est.fit(X)
    Z = est.transform(X)
    assert Z.shape == (len(X), est.n_components)
    assert np.isfinite(Z).all()


@pytest.mark.parametrize(
    "data",
    [
        X[:1],  # one sample
        X[:, :1],  # one feature
        X[:1, :1],  # one value
        np.full((4, 3), 7.0),  # constant
        np.array([[0, 1], [1, 0]], dtype=bool),
        np.arange(12, dtype=np.int8).reshape(4, 3),
        X.astype(np.float16),
        [[0.1, 0.2], [0.3, 0.4]],
        sp.csr_matrix(np.eye(4)),
        np.asfortranarray(X),
        X[::2, ::2],  # not contiguous
    ],
    ids=lambda a: f"{type(a).__name__}{getattr(a, 'shape', '')}{getattr(a, 'dtype', '')}",
)
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_small_and_odd_inputs_work(cls, data):
    est = tiny(cls, n_components=1)
    with warns_of_identity_map(est, np.shape(data)[1]):
        est.fit(data)
    est.partial_fit(data)
    Z = est.transform(data)
    assert Z.shape == (np.shape(data)[0], 1) and Z.dtype == np.float32
    assert np.isfinite(Z).all()
    X_rec = est.inverse_transform(Z)
    assert X_rec.shape == np.shape(data) and np.isfinite(X_rec).all()
    assert np.isfinite(est.score(data))


# -- divergence --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_divergence_in_a_first_fit_leaves_the_estimator_unfitted(cls):
    est = tiny(cls, max_iter=5)
    make_loss_nan_from_epoch(est, 3)
    with pytest.raises(
        FloatingPointError,
        match=r"loss became nan in epoch 3: training diverged. Try a smaller learning_rate_init",
    ):
        est.fit(X)
    assert fitted_attributes(est) == []
    with pytest.raises(NotFittedError):
        est.transform(X)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_natural_divergence_is_reported(cls):
    # A huge step size blows up a linear output layer within two epochs. (The design's network:
    # one started at PCA grows huge but finite in 10 epochs, and early stopping keeps PCA.)
    est = tiny(cls, max_iter=10, learning_rate_init=1e6, output_activation="identity")
    if cls is AutoEncoderTransformer:
        est.set_params(init="random", early_stopping=False)
    with pytest.raises(FloatingPointError, match=r"training diverged.*\(it is 1000000.0\)"):
        est.fit((X * 1e30).astype(np.float32))
    assert fitted_attributes(est) == []


@pytest.mark.parametrize("method", ["warm_start", "partial_fit"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_divergence_when_continuing_keeps_the_previous_fit(cls, method):
    est = tiny(cls, max_iter=3).fit(X)
    before = weights(est)
    before_state = optimizer_state(est)
    before_optimizer, before_curve, before_n_iter = est._optimizer, list(est.loss_curve_), 3
    make_loss_nan_from_epoch(est, before_n_iter + 2)
    with pytest.raises(FloatingPointError, match=f"in epoch {before_n_iter + 2}"):
        if method == "warm_start":
            est.set_params(warm_start=True).fit(X)
        else:
            est.partial_fit(X)  # epoch 4 is fine
            before, before_state = weights(est), optimizer_state(est)
            before_optimizer, before_curve = est._optimizer, list(est.loss_curve_)
            before_n_iter += 1
            est.partial_fit(X)  # epoch 5 diverges
    assert est.n_iter_ == before_n_iter
    assert est.loss_curve_ == before_curve
    assert_same_weights(weights(est), before)
    assert est._optimizer is before_optimizer
    assert_same_weights(optimizer_state(est), before_state)
    assert all(torch.isfinite(w).all() for w in weights(est).values())
    del est._make_step
    est.partial_fit(X)
    assert est.n_iter_ == before_n_iter + 1
    assert np.isfinite(est.transform(X)).all()


# -- interruption ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_interrupted_fit_keeps_the_last_batch_and_stays_usable(cls):
    # 30 samples in batches of 10: the interrupt comes after one of epoch 3's three steps.
    est = tiny(cls, max_iter=5, batch_size=10)
    at_interrupt = interrupt_at(est, epoch=3, batch=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X)
    messages = [str(w.message) for w in caught]
    assert any("interrupted in epoch 3" in m for m in messages), messages
    interrupted = next(w for w in caught if "interrupted" in str(w.message))
    assert interrupted.filename == __file__  # pointed at the caller's fit
    assert not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert est.n_iter_ == 2
    assert len(est.loss_curve_) == 2
    assert_same_weights(weights(est), at_interrupt)
    assert np.isfinite(est.transform(X)).all()
    del est._make_step
    est.partial_fit(X)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_interrupt_in_the_first_batch_gives_the_initial_network(cls):
    est = tiny(cls, max_iter=5, batch_size=10)
    at_interrupt = interrupt_at(est, epoch=1, batch=1)
    with pytest.warns(RuntimeWarning, match="interrupted in epoch 1"):
        est.fit(X)
    assert est.n_iter_ == 0 and est.loss_curve_ == []
    assert_same_weights(weights(est), at_interrupt)
    assert np.isfinite(est.transform(X)).all()


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_interrupt_before_training_propagates_and_changes_nothing(cls):
    est = tiny(cls).fit(X)
    before = weights(est)
    validate = est._validate_input

    def validate_then_interrupt(data, reset, **policy):
        validate(data, reset=reset, **policy)  # resets n_features_in_ to the new data's
        raise KeyboardInterrupt

    est._validate_input = validate_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        est.fit(X[:, :3])
    assert est.n_features_in_ == N_FEATURES
    assert_same_weights(weights(est), before)


# -- memory ------------------------------------------------------------------------------------

MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from skae import AutoEncoderTransformer

    def peak_mib():
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB

    rng = np.random.default_rng(0)
    # Standard-normal data: a linear output with centring and scaling, the costlier path.
    est = AutoEncoderTransformer(
        n_components=8, hidden_layer_sizes=(16,), max_iter=1, random_state=0, device="cpu"
    ).fit(rng.standard_normal((200, 784), dtype=np.float32))
    block = rng.standard_normal((8192, 784), dtype=np.float32)
    est.inverse_transform(est.transform(block))  # warm up torch's kernels
    # Filled in place from one block: no temporary of the input's size inflates the peak.
    X = np.empty((400_000, 784), dtype=np.float32)
    for start in range(0, len(X), len(block)):
        X[start : start + len(block)] = block[: len(X) - start]
    before = peak_mib()
    Z = est.transform(X)
    after_transform = peak_mib()
    X_rec = est.inverse_transform(Z)  # X stays alive, so the peak must rise by X_rec
    after_inverse = peak_mib()
    print(json.dumps(dict(
        transform=after_transform - before,
        transform_output=Z.nbytes / 2**20,
        inverse=after_inverse - after_transform,
        inverse_output=X_rec.nbytes / 2**20,
        input=X.nbytes / 2**20,
        finite=bool(np.isfinite(Z).all() and np.isfinite(X_rec).all()),
    )))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="the resource module is POSIX-only")
def test_transform_and_inverse_transform_work_in_bounded_memory():
    # A subprocess: peak RSS is per process, and the other tests' peaks would hide ours.
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    growth = json.loads(result.stdout.splitlines()[-1])
    assert growth["finite"]
    working_set = 300  # MiB beyond the output; the input alone is 1196 MiB
    assert growth["transform"] <= growth["transform_output"] + working_set, growth
    assert growth["inverse"] <= growth["inverse_output"] + working_set, growth


# -- property-based ----------------------------------------------------------------------------

FUZZ_SETTINGS = settings(max_examples=30, deadline=timedelta(seconds=10))
# numpy warns while sklearn looks for non-finite values (inf + -inf) or casts huge objects to
# float32, before the ValueError that these tests expect; and the random shapes include X with
# no more features than codes, of which the autoencoder rightly warns.
fuzz_warnings = pytest.mark.filterwarnings(
    "ignore:invalid value encountered:RuntimeWarning",
    "ignore:overflow encountered:RuntimeWarning",
    "ignore:n_components=2 is not smaller:UserWarning",
)
FLOAT_DTYPES = ["float16", "float32", "float64"]
OTHER_DTYPES = ["int8", "int64", "uint8", "bool", "complex128"]
FLOAT32_MAX = float(np.finfo(np.float32).max)


@st.composite
def arrays(draw, n_features=None, moderate=True):
    """2-D arrays of random shape, dtype and values; a quarter of the float ones hold a NaN or
    an infinity."""
    n_samples = draw(st.integers(0, 12))
    if n_features is None:
        # Mostly the fitted number, so that inference gets past the shape checks often.
        n_features = draw(st.one_of(st.just(N_FEATURES), st.integers(0, N_FEATURES + 1)))
    dtype = np.dtype(draw(st.sampled_from(FLOAT_DTYPES + OTHER_DTYPES)))
    elements = None
    if dtype.kind == "f":
        bound = dict(min_value=-1e4, max_value=1e4) if moderate else {}
        elements = st.floats(
            width=dtype.itemsize * 8, allow_nan=False, allow_infinity=False, **bound
        )
    elif dtype.kind == "c":
        elements = st.complex_numbers(max_magnitude=1e4, allow_nan=False, allow_infinity=False)
    A = draw(hnp.arrays(dtype, (n_samples, n_features), elements=elements))
    if dtype.kind == "f" and A.size and draw(st.integers(0, 3)) == 0:
        row, column = draw(st.integers(0, n_samples - 1)), draw(st.integers(0, n_features - 1))
        A[row, column] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return A


def expected_error(A, method):
    """The error and message that ``method`` of a fitted tiny estimator must give for A, or
    None if A is valid for it. The checks are in the order in which validation makes them."""
    if A.dtype.kind == "c":
        return ValueError, "Complex data not supported"
    if A.shape[0] == 0:
        return ValueError, r"0 sample\(s\)"
    if A.shape[1] == 0:
        return ValueError, r"0 feature\(s\)"
    missing = np.isnan(A) if A.dtype.kind == "f" else np.zeros(A.shape, bool)
    if A.dtype.kind == "f":
        if missing.any() and method == "inverse_transform":
            return ValueError, "Input X contains NaN"  # codes are never missing
        if np.isinf(A).any():
            return ValueError, "Input X contains infinity"
    if method in ("transform", "score") and A.shape[1] != N_FEATURES:
        return ValueError, f"X has {A.shape[1]} features, but .* is expecting {N_FEATURES}"
    if method == "inverse_transform" and A.shape[1] != N_COMPONENTS:
        return ValueError, f"expects codes with n_components={N_COMPONENTS} columns"
    if missing.any() and method in ("transform", "score"):
        # The fitted estimators saw complete data: their networks do not read missing values.
        return ValueError, "Input X contains NaN, but this .* was fitted on data without"
    observed = A[~missing]
    if A.dtype == np.float64 and observed.size and np.abs(observed).max() > FLOAT32_MAX:
        return ValueError, "beyond float32's range"
    if missing.all(axis=0).any():  # fit, partial_fit: a feature with no observed value
        return ValueError, "every value missing"
    return None


@fuzz_warnings
@FUZZ_SETTINGS
@given(cls=st.sampled_from(ESTIMATORS), A=arrays())
def test_fuzz_fit(cls, A):
    est = tiny(cls, max_iter=1)
    expected = expected_error(A, "fit")
    if expected is not None:
        with pytest.raises(expected[0], match=expected[1]):
            est.fit(A)
        assert fitted_attributes(est) == []
        return
    est.fit(A)
    if A.dtype.kind == "f" and np.isnan(A).all(axis=1).any():
        with pytest.raises(ValueError, match=r"row\(s\) of X have every value missing"):
            est.transform(A)
        return
    Z = est.transform(A)
    assert Z.shape == (A.shape[0], 2) and Z.dtype == np.float32
    assert np.isfinite(Z).all()
    assert np.isfinite(est.score(A))


@fuzz_warnings
@FUZZ_SETTINGS
@given(cls=st.sampled_from(ESTIMATORS), A=arrays(), method=st.sampled_from(["transform", "score"]))
def test_fuzz_transform_and_score(fitted, cls, A, method):
    est = fitted[cls]
    expected = expected_error(A, method)
    if expected is not None:
        with pytest.raises(expected[0], match=expected[1]):
            getattr(est, method)(A)
        return
    result = getattr(est, method)(A)
    if method == "transform":
        assert result.shape == (A.shape[0], N_COMPONENTS)
    assert np.isfinite(result).all()


@fuzz_warnings
@FUZZ_SETTINGS
@given(cls=st.sampled_from(ESTIMATORS), Z=arrays(n_features=N_COMPONENTS))
def test_fuzz_inverse_transform(fitted, cls, Z):
    est = fitted[cls]
    expected = expected_error(Z, "inverse_transform")
    if expected is not None:
        with pytest.raises(expected[0], match=expected[1]):
            est.inverse_transform(Z)
        return
    X_rec = est.inverse_transform(Z)
    assert X_rec.shape == (Z.shape[0], N_FEATURES) and X_rec.dtype == np.float32
    assert np.isfinite(X_rec).all()


@fuzz_warnings
@FUZZ_SETTINGS
@given(
    cls=st.sampled_from(ESTIMATORS),
    A=arrays(moderate=False),
    method=st.sampled_from(["fit", "partial_fit", "transform", "inverse_transform"]),
)
def test_fuzz_extreme_values_never_crash(fitted, cls, A, method):
    # Finite values up to float64's limits: a result, or one of the documented errors.
    est = tiny(cls, max_iter=1) if method in ("fit", "partial_fit") else fitted[cls]
    expected = expected_error(A, method)
    if expected is not None:
        with pytest.raises(expected[0], match=expected[1]):
            getattr(est, method)(A)
        return
    try:
        result = getattr(est, method)(A)
    except FloatingPointError as error:
        assert "training diverged" in str(error)
        return
    if method in ("transform", "inverse_transform"):
        assert result.shape[0] == A.shape[0]


@fuzz_warnings
@FUZZ_SETTINGS
@given(
    cls=st.sampled_from(ESTIMATORS),
    cells=st.lists(
        st.lists(st.one_of(st.text(max_size=4), st.floats(), st.none()), min_size=3, max_size=3),
        min_size=1,
        max_size=4,
    ),
)
def test_fuzz_text_and_mixed_cells(fitted, cls, cells):
    A = np.array(cells, dtype=object)
    try:
        Z = fitted[cls].transform(A)
    except (ValueError, TypeError):
        return
    # Accepted only when every cell was a number or a numeric string.
    assert Z.shape == (len(cells), N_COMPONENTS)
    assert np.isfinite(Z).all()
