"""Model files: est.save(path) and skae.load(path), a safetensors file that holds no pickle."""

import json
import os
import pathlib
import pickle
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from _failures import interrupt_at
from numpy.testing import assert_array_equal
from safetensors import safe_open
from safetensors.torch import save_file

import skae
from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer

ESTIMATORS = [AutoEncoderTransformer, VariationalAutoEncoderTransformer]
X = np.random.default_rng(0).random((40, 6))
COLUMNS = [f"pixel{i}" for i in range(X.shape[1])]

# Short test fits end before convergence on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def tiny(cls, **params):
    defaults = dict(
        n_components=3, hidden_layer_sizes=(8, 5), max_iter=3, random_state=0, device="cpu"
    )
    if cls is AutoEncoderTransformer:
        # The design's plain MLPs, whose tensor names these tests edit; the PCA start's linear
        # paths are tested in test_both_starts_round_trip.
        defaults["init"] = "random"
    return cls(**{**defaults, **params})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One fitted estimator of each class and the file it was saved to."""
    directory = tmp_path_factory.mktemp("models")
    result = {}
    for cls in ESTIMATORS:
        est = tiny(cls).fit(X)
        path = directory / f"{cls.__name__}.safetensors"
        est.save(path)
        result[cls] = est, path
    return result


def read(path):
    with safe_open(path, framework="pt") as file:
        document = json.loads(file.metadata()["skae"])
        tensors = {key: file.get_tensor(key) for key in file.keys()}
    return document, tensors


def rewrite(source, target, edit_document=None, edit_tensors=None):
    """Copy a model file with its JSON document and / or its tensors edited."""
    document, tensors = read(source)
    if edit_document is not None:
        edit_document(document)
    if edit_tensors is not None:
        edit_tensors(tensors)
    save_file(tensors, target, metadata={"skae": json.dumps(document)})
    return target


def state(module):
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def optimizer_state(est):
    return {
        f"{i}.{k}": v.cpu().numpy()
        for i, s in est._optimizer.state_dict()["state"].items()
        for k, v in s.items()
    }


def assert_same_fit(a, b):
    assert type(a) is type(b)
    for name in ("encoder_", "decoder_"):
        sa, sb = state(getattr(a, name)), state(getattr(b, name))
        assert sa.keys() == sb.keys()
        for key in sa:
            assert_array_equal(sa[key], sb[key], err_msg=f"{name}{key}")
    oa, ob = optimizer_state(a), optimizer_state(b)
    assert oa.keys() == ob.keys()
    for key in oa:
        assert_array_equal(oa[key], ob[key], err_msg=key)
    for attr in ("n_features_in_", "n_iter_", "loss_curve_", "validation_scores_", "best_loss_"):
        assert getattr(a, attr) == getattr(b, attr), attr
    for attr in ("output_activation_", "input_scale_", "device_", "_seed", "fit_plan_"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert_array_equal(a.input_offset_, b.input_offset_)
    assert a.input_offset_.dtype == b.input_offset_.dtype
    assert hasattr(a, "feature_names_in_") == hasattr(b, "feature_names_in_")
    if hasattr(a, "feature_names_in_"):
        assert_array_equal(a.feature_names_in_, b.feature_names_in_)


# -- round trip --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_loaded_model_is_the_saved_model(saved, cls):
    est, path = saved[cls]
    loaded = skae.load(path)
    assert loaded.get_params() == est.get_params()
    assert isinstance(loaded.hidden_layer_sizes, tuple)
    assert_same_fit(loaded, est)
    Z = est.transform(X)
    assert_array_equal(loaded.transform(X), Z)
    assert_array_equal(loaded.inverse_transform(Z), est.inverse_transform(Z))
    assert loaded.score(X) == est.score(X)
    assert_array_equal(loaded.get_feature_names_out(), est.get_feature_names_out())


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_loaded_model_continues_training_exactly(saved, cls):
    est, path = saved[cls]
    loaded = skae.load(path)
    original = pickle.loads(pickle.dumps(est))  # the fixture's estimator stays untouched
    for _ in range(2):
        loaded.partial_fit(X)
        original.partial_fit(X)
    assert loaded.n_iter_ == est.n_iter_ + 2
    assert_same_fit(loaded, original)
    assert_array_equal(loaded.transform(X), original.transform(X))


def test_vae_samples_the_same_after_loading(saved):
    est, path = saved[VariationalAutoEncoderTransformer]
    assert_array_equal(skae.load(path).sample(5, random_state=1), est.sample(5, random_state=1))


@pytest.mark.parametrize(
    "cls, params",
    [
        (AutoEncoderTransformer, dict(early_stopping=True, validation_fraction=0.25)),
        (
            AutoEncoderTransformer,
            dict(
                hidden_layer_sizes=[7],
                activation="tanh",
                output_activation="identity",
                l1_penalty=0.1,
                noise_type="masking",
                noise_level=0.2,
                contractive_penalty=0.01,
                warm_start=np.True_,
                n_components=np.int64(2),
            ),
        ),
        (VariationalAutoEncoderTransformer, dict(beta=0.5, hidden_layer_sizes=(), verbose=0)),
    ],
)
def test_round_trip_of_unusual_parameters(tmp_path, cls, params):
    est = tiny(cls, **params).fit(pd.DataFrame(X, columns=COLUMNS))
    est.save(tmp_path / "model.safetensors")
    loaded = skae.load(tmp_path / "model.safetensors")
    expected = est.get_params()
    # JSON has no numpy scalars or lists-as-tuples; values must still be equal.
    assert loaded.get_params() == expected
    assert type(loaded.hidden_layer_sizes) is type(est.hidden_layer_sizes)
    assert_same_fit(loaded, est)
    frame = pd.DataFrame(X, columns=COLUMNS)
    assert_array_equal(loaded.transform(frame), est.transform(frame))


def test_interrupted_first_epoch_round_trips(tmp_path):
    # n_iter_ == 0 and best_loss_ == inf (no validation error measured before the first
    # epoch, without early stopping): JSON must carry the infinity.
    est = tiny(AutoEncoderTransformer, early_stopping=False)
    interrupt_at(est, epoch=1, batch=1)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        est.fit(X)
    del est._make_step
    est.save(tmp_path / "model.safetensors")
    loaded = skae.load(tmp_path / "model.safetensors")
    assert loaded.n_iter_ == 0 and loaded.best_loss_ == np.inf and loaded.loss_curve_ == []
    assert_array_equal(loaded.transform(X), est.transform(X))


def test_random_state_generator_is_saved_as_none(tmp_path):
    est = tiny(AutoEncoderTransformer, random_state=np.random.RandomState(0)).fit(X)
    with pytest.warns(UserWarning, match="random_state=RandomState.* saved as None"):
        est.save(tmp_path / "model.safetensors")
    loaded = skae.load(tmp_path / "model.safetensors")
    assert loaded.random_state is None
    assert loaded._seed == est._seed
    assert_array_equal(loaded.transform(X), est.transform(X))


# -- the file ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_file_is_plain_safetensors_with_a_json_document(saved, cls):
    est, path = saved[cls]
    document, tensors = read(path)
    assert document["format"] == "skae-model"
    assert document["format_version"] == 7
    assert document["fitted"]["fit_plan_"] == est.fit_plan_.to_dict()
    assert document["fitted"]["fit_plan_"]["hidden_layer_sizes"] == [8, 5]
    assert document["skae_version"] == skae.__version__
    assert document["estimator"] == cls.__name__
    assert document["params"]["hidden_layer_sizes"] == {"__tuple__": [8, 5]}
    assert document["fitted"]["n_iter_"] == est.n_iter_
    assert document["fitted"]["device_"] == "cpu"
    module_keys = {
        f"{name}.{key}"
        for name in ("encoder_", "decoder_")
        for key in getattr(est, name).state_dict()
    }
    optimizer_keys = {f"_optimizer.{key}" for key in optimizer_state(est)}
    assert set(tensors) == module_keys | optimizer_keys | {"input_offset_"}
    assert all(t.dtype == torch.float32 for t in tensors.values())
    # Nothing but safetensors' layout: an 8-byte header length, the JSON header, the tensors.
    raw = path.read_bytes()
    header = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{"
    assert len(raw) == 8 + header + sum(4 * t.numel() for t in tensors.values())


def test_save_accepts_str_and_path_and_replaces_an_existing_file(saved, tmp_path):
    est, _ = saved[AutoEncoderTransformer]
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old contents")
    est.save(str(target))
    assert_array_equal(skae.load(str(target)).transform(X), est.transform(X))
    est.save(target)
    assert_array_equal(skae.load(target).transform(X), est.transform(X))
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_saved_file_gets_ordinary_permissions(saved, tmp_path):
    est, _ = saved[AutoEncoderTransformer]
    est.save(tmp_path / "model.safetensors")
    (tmp_path / "plain").write_bytes(b"")
    mode = (tmp_path / "model.safetensors").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain").stat().st_mode & 0o777


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_save_leaves_no_partial_file(saved, tmp_path, monkeypatch, failing):
    est, _ = saved[AutoEncoderTransformer]
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous model")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="disk full"):
        est.save(target)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
    assert target.read_bytes() == b"previous model"


def test_failed_save_of_a_new_file_leaves_nothing(saved, tmp_path, monkeypatch):
    est, _ = saved[AutoEncoderTransformer]
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        est.save(tmp_path / "model.safetensors")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "param, value",
    [("n_components", 4), ("hidden_layer_sizes", (8,)), ("activation", "relu")],
)
def test_save_refuses_parameters_changed_after_fit(tmp_path, param, value):
    est = tiny(AutoEncoderTransformer).fit(X).set_params(**{param: value})
    with pytest.raises(ValueError, match="parameters no longer describe the fitted network"):
        est.save(tmp_path / "model.safetensors")
    assert os.listdir(tmp_path) == []


def test_save_refuses_estimators_that_are_not_skaes(tmp_path):
    class Custom(AutoEncoderTransformer):
        pass

    est = Custom(n_components=2, hidden_layer_sizes=(4,), max_iter=1, device="cpu").fit(X)
    with pytest.raises(TypeError, match="Only skae's own estimators can be saved"):
        est.save(tmp_path / "model.safetensors")


# -- refusing other files ----------------------------------------------------------------------


class _Payload:
    """Unpickling this creates a marker file: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize(
    "write",
    [
        lambda path, marker: path.write_bytes(pickle.dumps(_Payload(marker))),
        lambda path, marker: torch.save({"model": _Payload(marker)}, path),
        lambda path, marker: torch.save({"weight": torch.ones(3)}, path),
        lambda path, marker: path.write_bytes(pickle.dumps(tiny(AutoEncoderTransformer))),
        lambda path, marker: path.write_bytes(b""),
        lambda path, marker: path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00"),
        lambda path, marker: path.write_text("just some text, long enough for a header\n"),
        lambda path, marker: path.write_bytes(np.random.default_rng(0).bytes(4096)),
        # A header length that claims more bytes than the file has.
        lambda path, marker: path.write_bytes(b"\xff\x00\x00\x00\x00\x00\x00\x00{}"),
    ],
    ids=[
        "crafted-pickle",
        "crafted-torch-save",
        "torch-save",
        "pickled-estimator",
        "empty",
        "header-only",
        "text",
        "random-bytes",
        "truncated",
    ],
)
def test_load_refuses_files_that_are_not_model_files_without_running_them(tmp_path, write):
    path, marker = tmp_path / "model.safetensors", tmp_path / "code-ran"
    write(path, marker)
    with pytest.raises(ValueError, match="is not a skae model file"):
        skae.load(path)
    assert not marker.exists()


def as_version_3(document):
    """A version 6 document as version 3 wrote it: the plan's network choices and batch size
    as attributes of their own, no plan (tests/model_files_v3 holds files written by skae)."""
    plan = document["fitted"].pop("fit_plan_")
    document["format_version"] = 3
    document["fitted"].update(
        hidden_layer_sizes_={"__tuple__": plan["hidden_layer_sizes"]},
        output_activation_=plan["output_activation"],
        mask_input_=plan["mask_input"],
        batch_size_=plan["batch_size"],
    )
    if "init" in document["params"]:
        document["fitted"]["init_"] = plan["init"]


def test_version_1_files_still_load(saved, tmp_path):
    # skae 0.1.0 wrote no hidden_layer_sizes_ (its parameter was always explicit) nor budget.
    est, source = saved[AutoEncoderTransformer]

    def as_version_1(document):
        as_version_3(document)
        document["format_version"] = 1
        for name in ("hidden_layer_sizes_", "batch_size_", "max_iter_"):
            del document["fitted"][name]
        del document["params"]["n_threads"], document["params"]["init"]
        del document["fitted"]["init_"], document["fitted"]["mask_input_"]
        document["params"]["batch_size"] = 256
        document["params"]["max_iter"] = 3

    loaded = skae.load(rewrite(source, tmp_path / "v1.safetensors", edit_document=as_version_1))
    assert loaded.hidden_layer_sizes_ == (8, 5) and loaded.batch_size_ == 256
    assert loaded.n_threads == "auto"
    assert_array_equal(loaded.transform(X), est.transform(X))


def test_version_2_files_load_with_the_parameters_added_since_at_their_defaults(saved, tmp_path):
    est, source = saved[AutoEncoderTransformer]

    def as_version_2(document):
        as_version_3(document)
        document["format_version"] = 2
        del document["params"]["n_threads"], document["params"]["init"]
        del document["fitted"]["init_"], document["fitted"]["mask_input_"]

    loaded = skae.load(rewrite(source, tmp_path / "v2.safetensors", edit_document=as_version_2))
    # Version 2's networks were the design's, started at random.
    assert loaded.get_params() == {**est.get_params(), "n_threads": "auto", "init": "random"}
    assert loaded.init_ == "random" and loaded.mask_input_ is False
    assert_array_equal(loaded.transform(X), est.transform(X))
    # A file of the current version must name every parameter.
    with pytest.raises(ValueError, match=r"missing \['n_threads'\]"):
        skae.load(
            rewrite(
                source,
                tmp_path / "v3.safetensors",
                edit_document=lambda document: document["params"].pop("n_threads"),
            )
        )


def test_version_4_files_load_without_categorical_columns(saved, tmp_path):
    # Version 4 had no categorical_features parameter, nor categorical columns in its plans.
    est, source = saved[AutoEncoderTransformer]

    def as_version_4(document):
        document["format_version"] = 4
        del document["params"]["categorical_features"]
        for name in ("categorical", "n_categories", "noisy_share", "linear_share"):
            del document["fitted"]["fit_plan_"][name]

    loaded = skae.load(rewrite(source, tmp_path / "v4.safetensors", edit_document=as_version_4))
    assert loaded.categorical_features == "from_dtype" and loaded.fit_plan_ == est.fit_plan_
    assert not loaded.is_categorical_.any() and loaded.categories_ == []
    assert_array_equal(loaded.transform(X), est.transform(X))


def test_version_5_files_load_with_every_row_noisy(saved, tmp_path):
    # Version 5 had no noisy_share in its plans: its denoisers corrupted every row.
    est, source = saved[AutoEncoderTransformer]

    def as_version_5(document):
        document["format_version"] = 5
        del document["fitted"]["fit_plan_"]["noisy_share"]
        del document["fitted"]["fit_plan_"]["linear_share"]

    loaded = skae.load(rewrite(source, tmp_path / "v5.safetensors", edit_document=as_version_5))
    assert loaded.fit_plan_.noisy_share == 1.0 and loaded.fit_plan_ == est.fit_plan_
    assert_array_equal(loaded.transform(X), est.transform(X))


def test_version_6_imputers_load_filling_with_the_network_alone(tmp_path):
    # Version 6 had no linear_share (parameter and plan): its imputers blended nothing in.
    rng = np.random.default_rng(0)
    data = np.where(rng.random(X.shape) < 0.2, np.nan, X)
    est = tiny(skae.AutoEncoderImputer, linear_share=0.0).fit(data)
    est.save(tmp_path / "v7.safetensors")

    def as_version_6(document):
        document["format_version"] = 6
        del document["params"]["linear_share"]
        del document["fitted"]["fit_plan_"]["linear_share"]

    loaded = skae.load(rewrite(tmp_path / "v7.safetensors", tmp_path / "v6.safetensors",
                               edit_document=as_version_6))  # fmt: skip
    assert loaded.linear_share == 0.0 and loaded.fit_plan_ == est.fit_plan_
    assert_array_equal(loaded.transform(data), est.transform(data))


@pytest.mark.parametrize("init", ["pca", "random"])
def test_both_starts_round_trip(tmp_path, init):
    est = tiny(AutoEncoderTransformer, init=init).fit(X)
    est.save(tmp_path / "model.safetensors")
    document, tensors = read(tmp_path / "model.safetensors")
    assert document["fitted"]["fit_plan_"]["init"] == init
    assert ("encoder_.linear.weight" in tensors) == (init == "pca")
    loaded = skae.load(tmp_path / "model.safetensors")
    assert loaded.init_ == init
    assert_array_equal(loaded.transform(X), est.transform(X))
    # A file whose init_ does not describe its tensors is refused before anything is read.
    other = "random" if init == "pca" else "pca"
    target = rewrite(
        tmp_path / "model.safetensors",
        tmp_path / "edited.safetensors",
        edit_document=lambda document: document["fitted"]["fit_plan_"].update(init=other),
    )
    with pytest.raises(ValueError, match="tensors do not match"):
        skae.load(target)
    bad = rewrite(
        tmp_path / "model.safetensors",
        tmp_path / "bad.safetensors",
        edit_document=lambda document: document["fitted"]["fit_plan_"].update(init="__import__"),
    )
    with pytest.raises(ValueError, match="Invalid fit_plan_.init='__import__'"):
        skae.load(bad)


def test_load_refuses_a_declared_network_it_does_not_hold_before_allocating(saved, tmp_path):
    # A tiny file that declares a network of two 30,000-wide layers (7.5 GB of weights): it must
    # be refused from the header alone, in far less time than allocating it would take.
    _, source = saved[AutoEncoderTransformer]

    def huge(document):
        document["params"]["hidden_layer_sizes"] = {"__tuple__": [30000, 30000]}
        document["fitted"]["fit_plan_"]["hidden_layer_sizes"] = [30000, 30000]

    target = rewrite(source, tmp_path / "huge.safetensors", edit_document=huge)
    assert target.stat().st_size < 50_000
    allocated = []
    original_to_empty = torch.nn.Module.to_empty

    def recording_to_empty(module, *args, **kwargs):
        allocated.append(sum(p.numel() for p in module.parameters()))
        return original_to_empty(module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.Module, "to_empty", recording_to_empty)
        started = time.perf_counter()
        with pytest.raises(ValueError, match=r"has shape \(8, 6\).*needs shape \(30000, 6\)"):
            skae.load(target)
        elapsed = time.perf_counter() - started
    assert allocated == []  # no parameter was ever materialised
    assert elapsed < 1.0


def test_load_refuses_safetensors_files_of_other_programs(tmp_path):
    save_file({"weight": torch.ones(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a skae model file: it is a safetensors file without"):
        skae.load(tmp_path / "other.safetensors")
    save_file({"weight": torch.ones(2)}, tmp_path / "bad.safetensors", metadata={"skae": "{oops"})
    with pytest.raises(ValueError, match="not a skae model file: its metadata is not JSON"):
        skae.load(tmp_path / "bad.safetensors")


def test_load_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        skae.load(tmp_path / "nothing.safetensors")


def _set(*keys_then_value):
    *keys, value = keys_then_value

    def edit(document):
        target = document
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def _delete(*keys):
    def edit(document):
        target = document
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("format", "other"), "not a skae model file: its metadata has no skae format tag"),
        (
            _set("format_version", 8),
            "in format version 8, written by skae .*reads format versions 1, 2, 3, 4, 5, 6, 7 only",
        ),
        (_set("estimator", "Pipeline"), "Unknown estimator 'Pipeline'.*skae loads only"),
        (_set("estimator", "os.system"), "Unknown estimator 'os.system'"),
        (_set("estimator", ["AutoEncoderTransformer"]), "Unknown estimator"),
        (_set("params", "n_components", 4), "n_components=4 does not describe its network"),
        (
            _set("params", "hidden_layer_sizes", {"__tuple__": [8]}),
            r"hidden_layer_sizes=\(8,\) does not describe its network",
        ),
        (
            _set("fitted", "fit_plan_", "hidden_layer_sizes", [8]),
            r"hidden_layer_sizes=\(8, 5\) does not describe its network",
        ),
        (
            _set("fitted", "fit_plan_", "hidden_layer_sizes", "85"),
            "Invalid fit_plan_.hidden_layer_sizes",
        ),
        (_delete("fitted", "fit_plan_", "step"), "Invalid fit_plan_ in the model file"),
        (_set("fitted", "fit_plan_", "mask_input", 1), "Invalid fit_plan_.mask_input=1"),
        (_set("fitted", "fit_plan_", "batch_size", -3), "Invalid fit_plan_.batch_size=-3"),
        (_set("params", "n_components", -1), "invalid parameter: n_components=-1 is invalid"),
        (_set("params", "activation", "__import__"), "invalid parameter: activation="),
        (_set("params", "evil", 1), r"unexpected \['evil'\]"),
        (_delete("params", "max_iter"), r"missing \['max_iter'\]"),
        (_set("fitted", "n_features_in_", 7), "Invalid fit_plan_.n_features=6"),
        (_set("fitted", "n_features_in_", "6"), "Invalid n_features_in_='6'"),
        (_set("fitted", "n_iter_", -1), "Invalid n_iter_=-1"),
        (_set("fitted", "loss_curve_", ["x"]), "Invalid loss_curve_"),
        (_set("fitted", "input_scale_", 0.0), "Invalid input_scale_=0.0"),
        (
            _set("fitted", "fit_plan_", "output_activation", "softmax"),
            "Invalid fit_plan_.output_activation",
        ),
        (_set("fitted", "feature_names_in_", ["a"]), "Invalid feature_names_in_"),
        (_set("fitted", "device_", 0), "Invalid device_=0"),
        (_delete("fitted", "_seed"), "damaged skae model file: KeyError"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_load_refuses_inconsistent_documents(saved, tmp_path, cls, edit, message):
    _, source = saved[cls]
    target = rewrite(source, tmp_path / "edited.safetensors", edit_document=edit)
    with pytest.raises(ValueError, match=message):
        skae.load(target)


def _drop(key):
    return lambda tensors: tensors.pop(key)


def _replace(key, make):
    def edit(tensors):
        tensors[key] = make(tensors[key])

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_drop("decoder_.0.bias"), r"missing \['decoder_\.0\.bias'\]"),
        (_drop("input_offset_"), r"missing \['input_offset_'\]"),
        (
            lambda tensors: tensors.update({"encoder_.9.weight": torch.ones(1)}),
            r"unexpected \['encoder_\.9\.weight'\]",
        ),
        (_replace("decoder_.0.bias", lambda t: t[:-1].clone()), r"'decoder_\.0\.bias' has shape"),
        (_replace("input_offset_", lambda t: t.double()), "dtype torch.float64"),
        (
            lambda tensors: tensors.update({"_optimizer.99.exp_avg": torch.ones(1)}),
            "Unexpected optimizer tensor '_optimizer.99.exp_avg'",
        ),
        (
            _replace("_optimizer.0.exp_avg", lambda t: torch.ones(2)),
            r"optimizer tensor '_optimizer\.0\.exp_avg' has shape \(2,\)",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_load_checks_every_tensor(saved, tmp_path, edit, message):
    _, source = saved[AutoEncoderTransformer]
    target = rewrite(source, tmp_path / "edited.safetensors", edit_tensors=edit)
    with pytest.raises(ValueError, match=message):
        skae.load(target)


def test_model_fitted_on_cuda_loads_on_the_cpu_with_a_warning(saved, tmp_path, monkeypatch):
    est, source = saved[AutoEncoderTransformer]
    target = rewrite(
        source, tmp_path / "cuda.safetensors", edit_document=_set("fitted", "device_", "cuda:0")
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="fitted on cuda:0, which is not available here"):
        loaded = skae.load(target)
    assert loaded.device_ == torch.device("cpu")
    assert_array_equal(loaded.transform(X), est.transform(X))
    loaded.partial_fit(X)
    assert loaded.n_iter_ == est.n_iter_ + 1


def test_cuda_device_parameter_gets_a_hint_on_a_cpu_machine(saved, tmp_path, monkeypatch):
    _, source = saved[AutoEncoderTransformer]

    def to_cuda(document):
        document["fitted"]["device_"] = "cuda"
        document["params"]["device"] = "cuda"

    target = rewrite(source, tmp_path / "cuda.safetensors", edit_document=to_cuda)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match=r"Set device='cpu' \(it is 'cuda'\) to train it"):
        loaded = skae.load(target)
    with pytest.raises(ValueError, match="device='cuda' is unavailable"):
        loaded.partial_fit(X)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_model_saved_on_cuda_round_trips(tmp_path, monkeypatch, cls):
    est = tiny(cls, device="cuda").fit(X)
    est.save(tmp_path / "model.safetensors")
    loaded = skae.load(tmp_path / "model.safetensors")
    assert loaded.device_.type == "cuda"
    assert_array_equal(loaded.transform(X), est.transform(X))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="not available here; it was loaded onto the CPU"):
        on_cpu = skae.load(tmp_path / "model.safetensors")
    # CPU and GPU kernels round differently.
    np.testing.assert_allclose(on_cpu.transform(X), est.transform(X), rtol=1e-4, atol=1e-5)


# -- files written before the fit plan (format 3) -------------------------------------------

# Written by skae at commit 425af19 (format 3) with tests/model_files_v3/make.py.
V3_FILES = pathlib.Path(__file__).parent / "model_files_v3"


@pytest.mark.parametrize(
    "name",
    ["AutoEncoderTransformer", "AutoEncoderTransformer_missing",
     "VariationalAutoEncoderTransformer", "AutoEncoderOutlierDetector", "AutoEncoderImputer"],
)  # fmt: skip
def test_format_3_files_written_before_the_fit_plan_still_load_and_compute_the_same(name, tmp_path):
    expected = json.loads((V3_FILES / "expected.json").read_text())[name]
    rng = np.random.default_rng(0)  # the data make.py fitted
    X_v3 = rng.random((40, 6)).astype(np.float32)
    X_missing = X_v3.copy()
    X_missing[rng.random(X_v3.shape) < 0.15] = np.nan
    data = X_missing if expected["missing"] else X_v3
    loaded = skae.load(V3_FILES / f"{name}.safetensors")
    output = getattr(loaded, expected["method"])(data)
    np.testing.assert_allclose(output, expected["output"], rtol=1e-6, atol=1e-7)
    # Saved again in today's format, it computes the same (a detector: without the neighbour
    # term its file did not have).
    loaded.save(tmp_path / "again.safetensors")
    again = getattr(skae.load(tmp_path / "again.safetensors"), expected["method"])(data)
    np.testing.assert_allclose(again, output, rtol=1e-6, atol=1e-7)
    # What the file's attributes tell of the plan; the rest was not recorded.
    plan = loaded.fit_plan_
    assert (plan.n_features, plan.n_components, plan.hidden_layer_sizes) == (6, 2, (8,))
    assert plan.mask_input == expected["missing"] and loaded.mask_input_ == expected["missing"]
    assert plan.n_samples is None and plan.step is None
    assert "? rows x 6 features" in str(plan)
    if hasattr(loaded, "partial_fit"):  # it trains further from the reconstructed plan
        loaded.partial_fit(data)
        assert loaded.fit_plan_.network() == plan.network() and loaded.fit_plan_.n_samples == 40


def test_set_output_survives_saving_as_it_survives_pickling(tmp_path):
    est = tiny(AutoEncoderTransformer).set_output(transform="pandas").fit(X)
    est.save(tmp_path / "model.safetensors")
    loaded = skae.load(tmp_path / "model.safetensors")
    codes = loaded.transform(X)
    assert isinstance(codes, pd.DataFrame)
    pd.testing.assert_frame_equal(codes, est.transform(X))
    pd.testing.assert_frame_equal(codes, pickle.loads(pickle.dumps(est)).transform(X))
    plain = tiny(AutoEncoderTransformer).fit(X)
    plain.save(tmp_path / "plain.safetensors")
    assert isinstance(skae.load(tmp_path / "plain.safetensors").transform(X), np.ndarray)
    edited = rewrite(
        tmp_path / "model.safetensors",
        tmp_path / "edited.safetensors",
        edit_document=lambda document: document.update(set_output={"transform": "os.system"}),
    )
    with pytest.raises(ValueError, match="Invalid set_output"):
        skae.load(edited)
