"""skae.onnx: fitted estimators and pipelines holding them, exported to ONNX and run by onnxruntime.

Skipped as a whole without the ``onnx`` extra (skl2onnx, onnx, onnxruntime).
"""

import importlib.util
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch
from torch import nn

import skae
from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer
from skae._modules import ACTIVATIONS

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402

import skae.onnx  # noqa: E402  (after the skips: it needs the extra)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ESTIMATORS = (AutoEncoderTransformer, VariationalAutoEncoderTransformer)
ATOL = 1e-4  # the bound on |onnxruntime - transform|


def fitted(cls, X, **params):
    """A small network trained briefly: the export must match whatever weights it holds. The
    autoencoder is the design's plain MLP, whose output on data in [0, 1] is a sigmoid, unless
    ``init`` says otherwise (test_both_starts_export)."""
    defaults = dict(n_components=3, hidden_layer_sizes=(16, 8), max_iter=2, batch_size=32,
                    random_state=0, device="cpu")  # fmt: skip
    if cls is AutoEncoderTransformer:
        defaults["init"] = "random"
    return cls(**{**defaults, **params}).fit(X)


def session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def run(model, X):
    return session(model).run(None, {"X": X})


def node_types(model):
    return {node.op_type for node in model.graph.node}


@pytest.fixture(scope="module")
def data():
    """Two kinds of data: in [0, 1] (sigmoid output, no input scaling) and real-valued
    (linear output, centred and scaled input), each split into training and test rows."""
    rng = np.random.default_rng(0)
    unit = rng.random((150, 10)).astype(np.float32)
    real = (rng.normal(size=(150, 10)) * 3 + np.arange(10) - 4).astype(np.float32)
    return {"unit": (unit[:100], unit[100:]), "real": (real[:100], real[100:])}


def assert_matches(estimator, model, X_test):
    """onnxruntime's output matches transform for 1 row, 7 rows and the whole test set."""
    sess = session(model)
    for rows in (X_test[:1], X_test[:7], X_test):
        (codes,) = sess.run(None, {"X": rows})
        assert codes.dtype == np.float32
        assert_allclose(codes, estimator.transform(rows), atol=ATOL, rtol=0)


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("kind", ["unit", "real"])
def test_transform_matches_for_every_activation_and_scaling(cls, activation, kind, data):
    X_train, X_test = data[kind]
    estimator = fitted(cls, X_train, activation=activation)
    assert estimator.output_activation_ == ("sigmoid" if kind == "unit" else "identity")
    scaled = bool(estimator.input_offset_.any()) or estimator.input_scale_ != 1.0
    assert scaled == (kind == "real")
    model = skae.onnx.to_onnx(estimator, X_train)
    assert_matches(estimator, model, X_test)
    assert ("Div" in node_types(model)) == scaled


@pytest.mark.parametrize("init", ["pca", "random"])
@pytest.mark.parametrize("kind", ["unit", "real"])
def test_both_starts_export(init, kind, data):
    # "pca" puts a linear path beside the hidden layers (an Add of two branches).
    X_train, X_test = data[kind]
    estimator = fitted(AutoEncoderTransformer, X_train, init=init)
    model = skae.onnx.to_onnx(estimator, X_train)
    assert ("Add" in node_types(model)) == (init == "pca")
    assert_matches(estimator, model, X_test)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_no_hidden_layers(cls, data):
    X_train, X_test = data["real"]
    estimator = fitted(cls, X_train, hidden_layer_sizes=())
    model = skae.onnx.to_onnx(estimator, X_train)
    assert [n.op_type for n in model.graph.node].count("Gemm") == 1
    assert_matches(estimator, model, X_test)


def test_the_vae_exports_the_mean_codes(data):
    X_train, X_test = data["real"]
    vae = fitted(VariationalAutoEncoderTransformer, X_train)
    (codes,) = run(skae.onnx.to_onnx(vae), X_test)
    assert codes.shape == (len(X_test), vae.n_components)
    assert "Slice" in node_types(skae.onnx.to_onnx(vae))


def test_pipeline_gives_the_same_labels():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    pipe = make_pipeline(
        StandardScaler(),
        AutoEncoderTransformer(n_components=8, max_iter=5, random_state=0, device="cpu"),
        LogisticRegression(max_iter=300),
    ).fit(X[:1200], y[:1200])
    # skl2onnx's own entry point, as a user with a pipeline would call it.
    model = skl2onnx.to_onnx(pipe, X[:1])
    labels = session(model).run(["output_label"], {"X": X[1200:]})[0]
    assert_array_equal(labels, pipe.predict(X[1200:]))
    # Codes inside the pipeline match too: the step alone, after the scaler.
    head = pipe[:2]
    assert_matches(head, skl2onnx.to_onnx(head, X[:1]), X[1200:])


def test_double_input_gives_double_output(data):
    X_train, X_test = data["real"]
    estimator = fitted(AutoEncoderTransformer, X_train)
    model = skl2onnx.to_onnx(estimator, X_train[:1].astype(np.float64))
    (codes,) = run(model, X_test.astype(np.float64))
    assert codes.dtype == np.float64
    assert_allclose(codes, estimator.transform(X_test), atol=ATOL, rtol=0)


def test_integer_input_gives_float_output(data):
    X_train, X_test = (np.rint(X).astype(np.int64) for X in data["real"])
    estimator = fitted(AutoEncoderTransformer, X_train)
    (codes,) = run(skl2onnx.to_onnx(estimator, X_train[:1]), X_test)
    assert codes.dtype == np.float32
    assert_allclose(codes, estimator.transform(X_test), atol=ATOL, rtol=0)


def test_model_input_is_float32_with_a_dynamic_first_axis(data):
    X_train, _ = data["unit"]
    estimator = fitted(AutoEncoderTransformer, X_train)
    for model in (skae.onnx.to_onnx(estimator, X_train.astype(np.float64)),
                  skae.onnx.to_onnx(estimator)):  # fmt: skip
        (inp,) = session(model).get_inputs()
        assert (inp.name, inp.type, inp.shape[1]) == ("X", "tensor(float)", 10)
        assert not isinstance(inp.shape[0], int)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("opset", [18, None])
def test_gelu_below_and_from_opset_20(approximate, opset, data):
    """From opset 20 GELU is ONNX's Gelu; below, it is written from Erf (or Tanh)."""
    X_train, X_test = data["real"]
    estimator = fitted(AutoEncoderTransformer, X_train, activation="gelu")
    for i, layer in enumerate(estimator.encoder_):
        if isinstance(layer, nn.GELU):
            estimator.encoder_[i] = nn.GELU(approximate=approximate)
    model = skae.onnx.to_onnx(estimator, X_train, target_opset=opset)
    assert ("Gelu" in node_types(model)) == (opset is None)
    assert_matches(estimator, model, X_test)


def test_runs_without_torch_and_skae(data, tmp_path):
    """The exported file runs in a process where torch and skae cannot be imported."""
    X_train, X_test = data["real"]
    estimator = fitted(VariationalAutoEncoderTransformer, X_train, activation="gelu")
    onnx.save(skae.onnx.to_onnx(estimator, X_train), tmp_path / "model.onnx")
    np.save(tmp_path / "X.npy", X_test)
    script = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any import of torch or skae now raises ImportError
        sys.modules["skae"] = None
        for name in ("torch", "skae"):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                sys.exit(f"{name} was importable")
        import numpy as np
        import onnxruntime as ort

        sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
        np.save("codes.npy", sess.run(None, {"X": np.load("X.npy")})[0])
        assert "torch" not in {m.split(".")[0] for m, v in sys.modules.items() if v}
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    codes = np.load(tmp_path / "codes.npy")
    assert_allclose(codes, estimator.transform(X_test), atol=ATOL, rtol=0)


# -- what cannot be exported -------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_unfitted_estimator(cls, data):
    X_train, _ = data["unit"]
    with pytest.raises(NotFittedError):
        skae.onnx.to_onnx(cls(), X_train)
    with pytest.raises(NotFittedError):
        skl2onnx.to_onnx(cls(), X_train[:1])


def test_unknown_module_is_named(data):
    X_train, _ = data["real"]
    estimator = fitted(AutoEncoderTransformer, X_train)
    estimator.encoder_[1] = nn.Softplus()
    with pytest.raises(skae.onnx.UnsupportedModuleError, match=r"encoder_\.1.*Softplus"):
        skae.onnx.to_onnx(estimator, X_train)


def test_n_components_changed_after_fit(data):
    X_train, _ = data["real"]
    estimator = fitted(AutoEncoderTransformer, X_train).set_params(n_components=5)
    with pytest.raises(ValueError, match="n_components"):
        skae.onnx.to_onnx(estimator, X_train)


def test_wrong_number_of_features(data):
    X_train, _ = data["real"]
    estimator = fitted(AutoEncoderTransformer, X_train)
    wrong = [("X", FloatTensorType([None, 4]))]
    with pytest.raises(ValueError, match="expecting 10 features"):
        skl2onnx.convert_sklearn(estimator, initial_types=wrong)


def test_missing_extra_names_it():
    script = 'import sys; sys.modules["skl2onnx"] = None; import skae.onnx'
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode != 0
    assert "ImportError" in done.stderr
    assert 'pip install "skae[onnx]"' in done.stderr


def test_every_public_estimator_has_a_converter():
    public = [
        obj
        for obj in vars(skae).values()
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator) and obj.__module__[:5] == "skae."
    ]
    assert public
    missing = [cls.__name__ for cls in public if cls not in skae.onnx.CONVERTERS]
    assert not missing, f"no ONNX converter registered for {missing} (see skae/onnx.py)"


# -- the building blocks, reused the way a new estimator's converter would --------------------


class Reconstruction(TransformerMixin, BaseEstimator):
    """X reconstructed ``passes`` times over by a fitted skae estimator: the graph an outlier
    detector (one pass) or an imputer (repeated passes) starts from."""

    def __init__(self, autoencoder, passes=1):
        self.autoencoder = autoencoder
        self.passes = passes

    def fit(self, X, y=None):
        self.n_features_in_ = self.autoencoder.n_features_in_
        return self

    def transform(self, X):
        for _ in range(self.passes):
            X = self.autoencoder.inverse_transform(self.autoencoder.transform(X))
        return X


def _reconstruction_shape(operator):
    n_rows = operator.inputs[0].get_first_dimension()
    n_features = operator.raw_operator.n_features_in_
    operator.outputs[0].type = FloatTensorType([n_rows, n_features])


def _reconstruction_converter(scope, operator, container):
    autoencoder = operator.raw_operator.autoencoder
    g = skae.onnx.GraphBuilder(scope, container)
    x = g.as_float32(operator.inputs[0])
    for _ in range(operator.raw_operator.passes):
        x = skae.onnx.emit_reconstruction(g, autoencoder, x)
    g.output(x, operator.outputs[0])


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("kind", ["unit", "real"])
def test_decoder_graph_reused_for_reconstructions(cls, kind, data):
    skl2onnx.update_registered_converter(
        Reconstruction, "SkaeTestReconstruction", _reconstruction_shape, _reconstruction_converter
    )
    X_train, X_test = data[kind]
    autoencoder = fitted(cls, X_train, activation="elu")
    models = {}
    for passes in (1, 2):
        reconstruction = Reconstruction(autoencoder, passes).fit(X_train)
        models[passes] = model = skl2onnx.to_onnx(reconstruction, X_train[:1])
        for rows in (X_test[:1], X_test[:7], X_test):
            (recon,) = run(model, rows)
            assert_allclose(recon, reconstruction.transform(rows), atol=ATOL, rtol=0)
    assert ("Sigmoid" in node_types(models[1])) == (kind == "unit")
    # A network emitted twice into one graph holds its weights once (skl2onnx merges equal
    # initializers), so an imputer's repeated passes cost no model size.
    assert len(models[2].graph.initializer) == len(models[1].graph.initializer)
    gemms = {p: [n.op_type for n in m.graph.node].count("Gemm") for p, m in models.items()}
    assert gemms[2] == 2 * gemms[1]


def test_a_clipped_output_exports(data):
    # A PCA start on narrow data in [0, 1] gets an output clipped to [0, 1]: a Clip node.
    skl2onnx.update_registered_converter(
        Reconstruction, "SkaeTestReconstruction", _reconstruction_shape, _reconstruction_converter
    )
    X_train, X_test = data["unit"]
    autoencoder = fitted(AutoEncoderTransformer, X_train, init="pca", max_iter=5)
    assert autoencoder.output_activation_ == "clip"
    reconstruction = Reconstruction(autoencoder, 1).fit(X_train)
    model = skl2onnx.to_onnx(reconstruction, X_train[:1])
    assert "Clip" in node_types(model)
    for rows in (X_test[:1], X_test[:7], X_test):
        (recon,) = run(model, rows)
        assert_allclose(recon, reconstruction.transform(rows), atol=ATOL, rtol=0)
    assert_matches(autoencoder, skae.onnx.to_onnx(autoencoder, X_train), X_test)


@pytest.mark.filterwarnings("ignore:n_components=64 is not smaller:UserWarning")  # digits' 64
def test_benchmark_script_runs(tmp_path, monkeypatch, capsys):
    """benchmarks/bench_onnx.py end to end, on digits standing in for MNIST."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_onnx.py"
    spec = importlib.util.spec_from_file_location("bench_onnx", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    X = (load_digits().data / 16).astype(np.float32)
    mnist = Bunch(X_train=X[:1000], X_test=X[1000:])
    monkeypatch.setattr(bench, "load_mnist", lambda **kwargs: mnist)
    output = tmp_path / "out" / "bench.json"
    bench.main(["--repeats", "2", "--single-rows", "3", "--fit-rows", "300", "--max-iter", "1",
                "--output", str(output)])  # fmt: skip
    assert "| `AutoEncoderTransformer()` | 797 |" in capsys.readouterr().out
    payload = json.loads(output.read_text())
    assert payload["threads"] == 1 and payload["test_rows"] == 797
    for result in payload["results"].values():
        assert result["max_abs_difference"] < ATOL
        assert len(result["onnxruntime"]["all_rows_runs_s"]) == 2


# -- missing values: the imputer, and transformers fitted on data with NaN ---------------------


def data_with_holes(seed=0):
    """150 rows in [0, 1] with 20% missing, a feature with no observed value in the first 100
    (the training rows), and a test row with no observed value at all."""
    rng = np.random.default_rng(seed)
    X = rng.random((150, 10))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:100, 3] = np.nan
    X[120] = np.nan
    return X


@pytest.mark.parametrize(
    "params",
    [{}, {"add_indicator": True}, {"keep_empty_features": True, "add_indicator": True},
     {"init": "pca"}, {"missing_values": -1.0}, {"units": True}, {"linear_share": 0.0}],
    ids=str,
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_imputer_matches_transform(params, dtype):
    X = data_with_holes().astype(dtype)
    params = dict(params)
    if params.pop("units", False):  # columns in units of their own: standardised per column
        X = (X * np.geomspace(0.01, 1000, X.shape[1]) + 50).astype(dtype)
    if "missing_values" in params:
        X = np.where(np.isnan(X), params["missing_values"], X).astype(dtype)
    imputer = skae.AutoEncoderImputer(
        **{"n_components": 3, "hidden_layer_sizes": (16,), "max_iter": 2, "init": "random",
           "random_state": 0, "device": "cpu", **params}
    ).fit(X[:100])  # fmt: skip
    # "auto" blends in the linear imputer's fill (10 numeric columns): its chain is in the graph.
    assert imputer.fit_plan_.linear_share == params.get("linear_share", 0.3)
    model = skl2onnx.to_onnx(imputer, X[:1])
    assert ("And" in node_types(model)) == bool(imputer.fit_plan_.linear_share)
    sess = session(model)
    for rows in (X[100:101], X[100:107], X[100:]):
        (out,) = sess.run(None, {"X": rows})
        expected = imputer.transform(rows)
        assert out.dtype == dtype and out.shape == expected.shape
        assert_allclose(out, expected, atol=ATOL, rtol=0)
        observed = ~np.isnan(rows) if "missing_values" not in params else rows != -1
        kept = np.flatnonzero(~imputer._empty_features | imputer.keep_empty_features)
        # Observed values pass through bit for bit, in the input's own type.
        columns = np.searchsorted(kept, np.arange(rows.shape[1]))
        for j in kept:
            rows_observed = observed[:, j]
            assert_array_equal(out[rows_observed, columns[j]], rows[rows_observed, j])


def test_transformer_fitted_with_missing_values_exports():
    X = data_with_holes().astype(np.float32)
    X[:, 3] = X[:, 4]  # no empty feature: the transformer refuses those
    X[120, 0] = 0.5  # nor rows with nothing observed, at inference
    for cls in ESTIMATORS:
        estimator = fitted(cls, X[:100])
        assert estimator.mask_input_
        model = skl2onnx.to_onnx(estimator, X[:1])
        assert {"IsNaN", "Where", "Concat"} <= node_types(model)
        assert_matches(estimator, model, X[100:])


# -- AutoEncoderOutlierDetector: labels and scores, as skl2onnx's IsolationForest -------------


def assert_detector_matches(detector, model, X_test, double=False):
    """onnxruntime's labels and scores match predict and decision_function (float32 against
    the detector's float64: labels may differ only for rows at the threshold)."""
    rows = X_test.astype(np.float64) if double else X_test
    labels, scores = session(model).run(None, {"X": rows})
    assert labels.shape == scores.shape == (len(X_test), 1)
    assert labels.dtype == np.int64
    assert scores.dtype == (np.float64 if double else np.float32)
    decision = detector.decision_function(X_test)
    assert_allclose(scores[:, 0], decision, atol=ATOL * (1 + np.abs(decision).max()), rtol=0)
    differ = labels[:, 0] != detector.predict(X_test)
    assert np.all(np.abs(decision[differ]) < 1e-3)


@pytest.mark.parametrize("novelty", [False, True])
@pytest.mark.parametrize("init", ["pca", "random"])
@pytest.mark.parametrize("kind", ["unit", "real"])
def test_detector_labels_and_scores_match(init, kind, novelty, data):
    X_train, X_test = data[kind]
    detector = fitted(skae.AutoEncoderOutlierDetector, X_train, init=init, contamination=0.2,
                      novelty=novelty)  # fmt: skip
    assert detector.unit_interval_ == (kind == "unit")
    model = skae.onnx.to_onnx(detector, X_train)
    assert [output.name for output in model.graph.output] == ["label", "scores"]
    assert_detector_matches(detector, model, np.r_[X_test, X_test[:5] * 3])
    double = skl2onnx.to_onnx(detector, X_train[:1].astype(np.float64))
    assert_detector_matches(detector, double, X_test, double=True)
    # The training rows: each one's own code is left out of its neighbours, as in skae.
    assert_detector_matches(detector, model, X_train)


def test_detector_fitted_on_missing_values(data):
    X_train, X_test = (X.copy() for X in data["real"])
    rng = np.random.default_rng(0)
    X_train[rng.random(X_train.shape) < 0.1] = np.nan
    X_test[rng.random(X_test.shape) < 0.1] = np.nan
    detector = fitted(skae.AutoEncoderOutlierDetector, X_train)
    assert detector._reads_mask()
    assert_detector_matches(detector, skae.onnx.to_onnx(detector, X_train), X_test)


def test_detector_in_a_pipeline(data):
    X_train, X_test = data["real"]
    pipe = make_pipeline(StandardScaler(), skae.AutoEncoderOutlierDetector(
        n_components=3, max_iter=5, contamination=0.1, random_state=0, device="cpu")
    ).fit(X_train)  # fmt: skip
    labels, scores = session(skl2onnx.to_onnx(pipe, X_train[:1])).run(None, {"X": X_test})
    assert_allclose(scores[:, 0], pipe.decision_function(X_test), atol=1e-3, rtol=0)
    assert (labels[:, 0] == pipe.predict(X_test)).mean() > 0.95


# -- mixed tables: one input per column --------------------------------------------------------


def mixed_frame(n, seed, holes=0.0):
    """Numbers beside text, category, boolean and integer-coded categories; "kind" follows a."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    frame = pd.DataFrame({
        "a": a,
        "kind": pd.Categorical(np.where(a > 0, "up", "down")),
        "colour": rng.choice(["red", "green", "blue"], n).astype(object),
        "big": a + rng.normal(size=n) > 0,
        "grade": rng.integers(1, 4, n),  # categorical by name
        "b": rng.normal(size=n) * 50 + 300,
    })  # fmt: skip
    if holes:
        hide = rng.random(frame.shape) < holes
        frame = frame.astype({"big": object, "grade": "Int64"})
        for j, name in enumerate(frame.columns):
            frame.loc[hide[:, j], name] = None
    return frame


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("holes", [0.0, 0.15])
def test_transformer_of_a_mixed_table(cls, holes):
    frame = mixed_frame(200, seed=0, holes=holes)
    ae = fitted(cls, frame, categorical_features=["kind", "colour", "big", "grade"])
    assert ae.fit_plan_.categorical == (1, 2, 3, 4) and ae._reads_mask() == bool(holes)
    model = skae.onnx.to_onnx(ae, frame[:1])
    inputs = session(model).get_inputs()
    assert [i.name for i in inputs] == list(frame.columns)
    assert inputs[1].type == inputs[2].type == "tensor(string)"  # category and text
    new = mixed_frame(60, seed=1, holes=holes)
    codes = session(model).run(None, skae.onnx.onnx_inputs(session(model), new))[0]
    assert_allclose(codes, ae.transform(new), atol=ATOL, rtol=0)
    # An unseen category: read as missing where the network reads the mask (as transform
    # does), else NaN codes (transform refuses the row).
    new.loc[0, "colour"] = "purple"
    codes = session(model).run(None, skae.onnx.onnx_inputs(session(model), new))[0]
    if holes:
        assert_allclose(codes, ae.transform(new), atol=ATOL, rtol=0)
    else:
        assert np.isnan(codes[0]).all() and not np.isnan(codes[1:]).any()


def test_mixed_table_without_sample_rows_and_in_a_pipeline():
    frame = mixed_frame(200, seed=0)
    y = frame.pop("kind").to_numpy()
    frame = frame[["colour", *frame.columns.drop("colour")]]  # a categorical column first
    pipe = make_pipeline(
        AutoEncoderTransformer(n_components=3, max_iter=5, random_state=0, device="cpu"),
        LogisticRegression(),
    ).fit(frame, y)
    new = mixed_frame(60, seed=1)[frame.columns]
    model = session(skae.onnx.to_onnx(pipe, frame[:1]))
    labels, probabilities = model.run(None, skae.onnx.onnx_inputs(model, new))
    assert (labels == pipe.predict(new)).mean() > 0.95
    assert_allclose(pd.DataFrame(probabilities)[pipe.classes_], pipe.predict_proba(new), atol=1e-3)
    # Without sample rows: float32 numbers and string categories, named after the columns.
    ae = pipe[0]
    model = skae.onnx.to_onnx(ae)
    inputs = session(model).get_inputs()
    assert [(i.name, i.type) for i in inputs][:3] == [
        ("colour", "tensor(string)"), ("a", "tensor(float)"), ("big", "tensor(string)")
    ]  # fmt: skip
    codes = session(model).run(None, skae.onnx.onnx_inputs(session(model), new))[0]
    assert_allclose(codes, ae.transform(new), atol=ATOL, rtol=0)


def test_onnx_inputs_from_an_array_and_refusals():
    frame = mixed_frame(80, seed=0)
    ae = fitted(AutoEncoderTransformer, frame)
    model = session(skae.onnx.to_onnx(ae, frame[:1]))  # "big" a bool input, "grade" int64
    from_array = skae.onnx.onnx_inputs(model, frame.to_numpy(dtype=object))
    from_frame = skae.onnx.onnx_inputs(model, frame)
    for name, values in from_frame.items():
        assert_array_equal(from_array[name], values)
    assert from_frame["big"].dtype == np.bool_ and from_frame["grade"].dtype == np.int64
    gappy = frame.astype({"grade": "Int64"})
    gappy.loc[0, "grade"] = None
    with pytest.raises(ValueError, match="'grade' has missing values, but its ONNX input"):
        skae.onnx.onnx_inputs(model, gappy)
    with pytest.raises(ValueError, match="takes 6 columns, but X has 5"):
        skae.onnx.onnx_inputs(model, frame.iloc[:, :5])


def test_mixed_inputs_that_do_not_fit_are_named():
    frame = mixed_frame(80, seed=0)
    ae = fitted(AutoEncoderTransformer, frame)
    from skl2onnx.common.data_types import StringTensorType

    types = [(name, FloatTensorType([None, 1])) for name in frame.columns]
    with pytest.raises(TypeError, match="Feature 'kind' is categorical, with categories"):
        skae.onnx.to_onnx(ae, initial_types=types)
    types = [(name, StringTensorType([None, 1])) for name in frame.columns]
    with pytest.raises(TypeError, match="Feature 'a' is numeric"):
        skae.onnx.to_onnx(ae, initial_types=types)
    with pytest.raises(ValueError, match="one input per column, but it was given 1"):
        skae.onnx.to_onnx(ae, initial_types=[("X", FloatTensorType([None, 6]))])


@pytest.mark.parametrize("novelty", [False, True])
@pytest.mark.parametrize("holes", [0.0, 0.15])
def test_detector_of_a_mixed_table(holes, novelty):
    frame = mixed_frame(200, seed=0, holes=holes)
    detector = fitted(skae.AutoEncoderOutlierDetector, frame, novelty=novelty, contamination=0.1,
                      categorical_features=["kind", "colour", "big", "grade"])  # fmt: skip
    model = session(skae.onnx.to_onnx(detector, frame[:1]))
    new = mixed_frame(60, seed=1, holes=holes)
    new.loc[:4, "kind"] = np.where(new.loc[:4, "a"] > 0, "down", "up")  # contradicting rows
    labels, scores = model.run(None, skae.onnx.onnx_inputs(model, new))
    assert_allclose(scores[:, 0], detector.decision_function(new), atol=ATOL, rtol=0)
    assert (labels[:, 0] == detector.predict(new)).mean() > 0.95


@pytest.mark.parametrize(
    "params", [{}, {"add_indicator": True, "keep_empty_features": True}], ids=str
)
def test_imputer_of_a_mixed_table(params):
    frame = mixed_frame(200, seed=0, holes=0.15)
    frame["empty"] = np.nan  # a numeric column with no observed value
    imputer = fitted(skae.AutoEncoderImputer, frame, **params,
                     categorical_features=["kind", "colour", "big", "grade"])  # fmt: skip
    model = session(skae.onnx.to_onnx(imputer, frame[:1]))
    names = list(imputer.get_feature_names_out())
    assert len(model.get_outputs()) == len(names)
    new = mixed_frame(60, seed=1, holes=0.15)
    new["empty"] = np.nan
    new.loc[0, "colour"] = "purple"  # unseen: kept as it came
    new.loc[1, :] = None  # nothing observed: the training means and modes
    outputs = model.run(None, skae.onnx.onnx_inputs(model, new))
    expected = imputer.transform(new)
    assert list(expected.columns) == names
    for name, out in zip(names, outputs, strict=True):
        column = expected[name]
        if not pd.api.types.is_numeric_dtype(column):  # categories, as text
            assert out[:, 0].tolist() == [str(v) for v in column], name
        else:
            assert_allclose(out[:, 0].astype(np.float64), column.astype(np.float64),
                            atol=ATOL, rtol=1e-5, err_msg=name)  # fmt: skip
