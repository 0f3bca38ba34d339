"""Model files that hold no pickle: ``BaseAutoEncoder.save`` and ``skae.load``.

A skae model file is one safetensors file: an 8-byte little-endian header length, a JSON header,
then the raw tensor bytes. Reading it runs no code from the file (unlike pickle or
``torch.load``). It holds

* tensors, all float32: ``encoder_.<key>`` and ``decoder_.<key>`` (the modules' state dicts),
  ``input_offset_``, and ``_optimizer.<i>.<key>`` (the optimizer's state for parameter ``i``:
  Adam's ``step``, ``exp_avg`` and ``exp_avg_sq``), so that ``partial_fit`` continues exactly
  where it stopped;
* the estimator's own fitted arrays (``_saved_arrays``), as float32 tensors under their names;
* one entry ``"skae"`` in the header's ``__metadata__``: a JSON document with ``format``
  (``"skae-model"``), ``format_version``, ``skae_version``, ``estimator`` (the class name),
  ``params`` (``get_params()``) and ``fitted`` (the fitted attributes other than tensors:
  ``hidden_layer_sizes_`` among them since format version 2, the estimator's own
  ``_saved_values`` since version 3, and since version 4 the fit plan, ``fit_plan_``, in place
  of the attributes it holds: ``hidden_layer_sizes_``, ``init_``, ``output_activation_``,
  ``mask_input_``, ``batch_size_``), with ``set_output``'s configuration. Version 5 adds
  categorical columns (``categorical_features``, the plan's layout, ``categories_``, the
  training frame's dtypes, a per-column ``input_scale_`` tensor) and the outlier detector's
  ``novelty`` parameter and neighbour term (``reference_codes_``, ``neighbour_scale_``); a
  detector from an older file scores without that term. Version 6 adds the plan's
  ``noisy_share`` (older files' denoisers corrupted every row: 1). Version 7 adds the
  imputer's ``linear_share`` (parameter and plan; older files' imputers filled with the network
  alone: 0) and the linear imputer's chain of regressions (``_linear_*`` arrays).
  Tuples are written as ``{"__tuple__": [...]}`` so that they come back as tuples. The
  optimizer's options (learning rate, fused kernels) are not stored: as when training resumes
  in ``partial_fit``, they are those of a new optimizer for the device the model lands on.

Loading builds the estimator from a registry of skae's classes (each registers itself with
``register``; nothing is imported by name from the file), describes its network from
the stored parameters on the meta device (no memory), and checks every stored tensor's name,
shape and dtype against that description before allocating anything: a file that declares a huge
network it does not hold is refused at once, and what loading allocates is bounded by the size of
the file.
"""

import json
import math
import numbers
import os
import secrets
import warnings

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _serialize
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from ._modules import OUTPUT_ACTIVATIONS
from ._plan import STEPS, UNIT_INTERVAL_OUTPUTS, FitPlan, is_auto
from ._scaling import AffineScaling
from ._training import TrainingState, load_optimizer_state
from ._validation import restore_device

FORMAT = "skae-model"
FORMAT_VERSION = 7
# Version 1 (skae 0.1.0, before the "auto" parameters) had no hidden_layer_sizes_: its network
# is the one its params describe. Version 2 had no n_threads nor init parameter. Versions 1 to
# 3 had no fit plan: what they hold of it is read from the attributes they stored.
# Version 4 had no categorical columns (no categorical_features, fit plans without them) and
# no neighbour term in the outlier detector (no novelty parameter). Version 5 had no
# noisy_share in its fit plans; version 6 no linear_share (parameter and plan).
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7)
# Parameters added in a format version, and the value that describes files of older versions:
# their networks were built at random ("random"), whatever init's default is now.
_PARAMS_SINCE = {"n_threads": (3, "auto"), "init": (3, "random"),
                 "categorical_features": (5, "from_dtype"), "novelty": (5, False),
                 "linear_share": (7, 0.0)}  # fmt: skip
# Fitted attributes that are integers set only by some calls or some estimators.
_OPTIONAL_INT_ATTRIBUTES = ("max_iter_", "n_active_components_")
_METADATA_KEY = "skae"
# What set_output(transform=...) may be set to.
_OUTPUTS = (None, "default", "pandas", "polars")
_OPTIMIZER_PREFIX = "_optimizer."
# safetensors' own limit on the JSON header: a longer "header" means this is another format.
_MAX_HEADER_BYTES = 100_000_000


# The classes a model file may name: skae's public estimators, each registered where it is
# defined (importing skae registers them all).
_REGISTRY = {}


def register(cls):
    """Class decorator: let model files name ``cls`` (by its class name)."""
    _REGISTRY[cls.__name__] = cls
    return cls


# -- saving ------------------------------------------------------------------------------------


def save(estimator, path):
    """Write a fitted skae estimator to ``path`` (see ``BaseAutoEncoder.save``)."""
    name = type(estimator).__name__
    if _REGISTRY.get(name) is not type(estimator):
        raise TypeError(
            f"Only skae's own estimators can be saved, not {type(estimator).__qualname__}."
        )
    check_is_fitted(estimator)
    modules = {name: getattr(estimator, name) for name in estimator._module_names}
    # The file is read back by rebuilding the network from the parameters: parameters changed
    # after fit (n_components, hidden_layer_sizes, activation) would not describe these weights.
    differing = estimator._module_unlike_params()
    if differing is not None:
        raise ValueError(
            f"Cannot save {name}: its parameters no longer describe the fitted network "
            f"({differing} differs), so the file could not be read back. Were "
            "n_components, hidden_layer_sizes or activation changed after fit? Set them "
            "back, or fit again."
        )

    tensors = {}
    for module_name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{module_name}.{key}"] = _cpu_float32(value)
    tensors["input_offset_"] = _cpu_float32(torch.as_tensor(estimator.input_offset_))
    # A mixed table's scaling is per column (see skae._scaling.input_scaling).
    per_column_scale = np.ndim(estimator.input_scale_) > 0
    if per_column_scale:
        tensors["input_scale_"] = _cpu_float32(torch.as_tensor(estimator.input_scale_))
    for array_name in estimator._saved_arrays:
        # None: an attribute that the file this estimator was loaded from did not have.
        if getattr(estimator, array_name) is not None:
            tensors[array_name] = _cpu_float32(torch.as_tensor(getattr(estimator, array_name)))
    optimizer_state = estimator._optimizer.state_dict()
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"Cannot save the optimizer's state {key!r}={value!r}: only tensors are "
                    "supported."
                )
            tensors[f"{_OPTIMIZER_PREFIX}{index}.{key}"] = _cpu_float32(value)

    feature_names = getattr(estimator, "feature_names_in_", None)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "skae_version": _skae_version(),
        "estimator": name,
        # set_output's configuration, which pickling keeps too (since format version 4).
        "set_output": dict(getattr(estimator, "_sklearn_output_config", {})),
        "params": {
            key: _jsonable_param(key, value)
            for key, value in estimator.get_params(deep=False).items()
        },
        "fitted": {
            "n_features_in_": int(estimator.n_features_in_),
            "feature_names_in_": None if feature_names is None else [str(f) for f in feature_names],
            "n_iter_": int(estimator.n_iter_),
            "loss_curve_": [float(v) for v in estimator.loss_curve_],
            "validation_scores_": (
                None
                if estimator.validation_scores_ is None
                else [float(v) for v in estimator.validation_scores_]
            ),
            "best_loss_": float(estimator.best_loss_),
            "input_scale_": None if per_column_scale else float(estimator.input_scale_),
            **_table_attributes(estimator),
            "device_": str(estimator.device_),
            "_seed": int(estimator._seed),
            "fit_plan_": estimator.fit_plan_.to_dict(),
            **{
                name: int(getattr(estimator, name))
                for name in _OPTIONAL_INT_ATTRIBUTES
                if getattr(estimator, name, None) is not None
            },
            **{
                value_name: _to_json(getattr(estimator, value_name), value_name)
                for value_name in estimator._saved_values
            },
        },
    }
    data = _serialize(tensors, metadata={_METADATA_KEY: json.dumps(document)})
    _write_atomically(os.fspath(path), data)


def _table_attributes(estimator):
    """The fitted attributes of a table's categorical columns, as JSON (since format 5)."""
    mask = getattr(estimator, "is_categorical_", None)
    if mask is None or not mask.any():
        return {}
    dtypes = getattr(estimator, "_feature_dtypes", None)
    return {
        "is_categorical_": [bool(v) for v in mask],
        "categories_": [_categories_to_json(c) for c in estimator.categories_],
        "feature_dtypes": None if dtypes is None else [_dtype_to_json(d) for d in dtypes],
    }


def _categories_to_json(categories):
    values = list(categories)
    if not all(isinstance(v, (str, bool, int, float)) for v in values):
        raise TypeError(
            f"Cannot save the categories {values[:5]!r}: a model file holds categories that are "
            "strings, booleans or numbers only. Pickle the estimator instead."
        )
    return values


def _dtype_to_json(dtype):
    if isinstance(dtype, pd.CategoricalDtype):
        return {"categories": _categories_to_json(dtype.categories), "ordered": dtype.ordered}
    return str(dtype)


def _dtype_from_json(value):
    if isinstance(value, dict) and set(value) == {"categories", "ordered"}:
        return pd.CategoricalDtype(value["categories"], ordered=bool(value["ordered"]))
    if not isinstance(value, str):
        raise ValueError(f"Invalid feature dtype {value!r} in the model file.")
    try:
        return pd.api.types.pandas_dtype(value)
    except TypeError:
        raise ValueError(f"Invalid feature dtype {value!r} in the model file.") from None


def _restored_table(fitted, n_features, plan):
    """``is_categorical_``, ``categories_`` and ``_feature_dtypes`` from the file, checked
    against the fit plan's categorical columns."""
    if not plan.categorical:
        return {"is_categorical_": np.zeros(n_features, dtype=bool), "categories_": []}
    mask, categories = fitted["is_categorical_"], fitted["categories_"]
    if (
        not isinstance(mask, list)
        or len(mask) != n_features
        or tuple(j for j, v in enumerate(mask) if v is True) != plan.categorical
        or not isinstance(categories, list)
        or tuple(len(c) if isinstance(c, list) else -1 for c in categories) != plan.n_categories
    ):
        raise ValueError(
            "Invalid is_categorical_ or categories_ in the model file: they do not describe "
            "the categorical columns of its fit plan."
        )
    dtypes = fitted.get("feature_dtypes")
    if dtypes is not None:
        if not isinstance(dtypes, list) or len(dtypes) != n_features:
            raise ValueError("Invalid feature_dtypes in the model file.")
        names = fitted["feature_names_in_"] or list(range(n_features))
        dtypes = pd.Series([_dtype_from_json(d) for d in dtypes], index=names, dtype=object)
    cats = []
    for values in categories:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        cats.append(array)
    return {"is_categorical_": np.asarray(mask, dtype=bool), "categories_": cats,
            "_feature_dtypes": dtypes}  # fmt: skip


def _write_atomically(path, data):
    """Write ``data`` to a new file beside ``path`` and rename it into place.

    Readers see the old file or the whole new one, never a partial one, and a failure
    removes the temporary file.
    """
    directory, base = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{base}.{secrets.token_hex(8)}.tmp")
    # 0o666 and the umask, as for any new file (mkstemp would make it private to the user).
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
    )
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def _jsonable_param(key, value):
    if key == "random_state" and isinstance(value, (np.random.RandomState, np.random.Generator)):
        warnings.warn(
            f"random_state={value!r} cannot be stored in a model file; it is saved as None. "
            "It only matters to a future fit from scratch: pass an int for reproducible ones.",
            UserWarning,
            stacklevel=4,
        )
        return None
    return _to_json(value, key)


def _to_json(value, what):
    """``value`` as JSON-able data: tuples tagged, numpy scalars and arrays as Python values."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return _to_json(value.item(), what)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v, what) for v in value]}
    if isinstance(value, (list, np.ndarray)):
        return [_to_json(v, what) for v in value]
    if isinstance(value, torch.device):
        return str(value)
    raise TypeError(f"{what}={value!r} cannot be stored in a skae model file.")


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {"__tuple__"} and isinstance(value["__tuple__"], list):
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {key: _from_json(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


# -- loading -----------------------------------------------------------------------------------


def load(path):
    """Load an estimator saved with its ``save`` method.

    Nothing in the file is executed: the estimator class is looked up by name among skae's own,
    the network is rebuilt from the stored parameters, and every stored tensor is checked
    against it before the weights are loaded. Pickles, ``torch.save`` files and other files
    are refused. A model fitted on a GPU that is not available here is loaded onto the CPU,
    with a warning.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``AutoEncoderTransformer.save`` or
        ``VariationalAutoEncoderTransformer.save``.

    Returns
    -------
    estimator : AutoEncoderTransformer or VariationalAutoEncoderTransformer
        The fitted estimator, with the same parameters, weights and optimizer state: its
        transforms equal the saved estimator's, and ``partial_fit`` continues its training.

    Raises
    ------
    ValueError
        If the file is not a skae model file, is in another format version, or its tensors
        do not match its parameters.

    Examples
    --------
    >>> import numpy as np, tempfile, os, skae
    >>> X = np.random.default_rng(0).random((50, 6))
    >>> ae = skae.AutoEncoderTransformer(n_components=2, hidden_layer_sizes=(8,), max_iter=2,
    ...                                  random_state=0, device="cpu").fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "ae.safetensors")
    >>> ae.save(path)
    >>> np.array_equal(skae.load(path).transform(X), ae.transform(X))
    True
    """
    path = os.fspath(path)
    _check_header(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            if _METADATA_KEY not in metadata:
                raise ValueError(
                    f"{path!r} is not a skae model file: it is a safetensors file without skae's "
                    "metadata."
                )
            document = _parse_document(path, metadata[_METADATA_KEY])
            try:
                # The header's shapes and dtypes are checked before any tensor is read.
                layout = {key: file.get_slice(key) for key in file.keys()}
                estimator, plan, blueprint = _describe(document, layout)
                tensors = {key: file.get_tensor(key) for key in file.keys()}
            except (KeyError, TypeError, AttributeError) as error:
                raise ValueError(f"{path!r} is a damaged skae model file: {error!r}") from None
    except SafetensorError as error:
        raise ValueError(f"{path!r} is not a skae model file: {error}") from None
    try:
        return _restore(estimator, plan, blueprint, document, tensors)
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path!r} is a damaged skae model file: {error!r}") from None


def _check_header(path):
    """Refuse anything that does not start like a safetensors file (pickles, torch.save zips)."""
    with open(path, "rb") as file:
        prefix = file.read(9)
        size = os.fstat(file.fileno()).st_size
    if len(prefix) < 9:
        raise ValueError(f"{path!r} is not a skae model file: it is too short.")
    header_bytes = int.from_bytes(prefix[:8], "little")
    if header_bytes > min(size - 8, _MAX_HEADER_BYTES) or prefix[8:9] != b"{":
        raise ValueError(
            f"{path!r} is not a skae model file (skae writes safetensors files; pickles and "
            "torch.save files are never loaded)."
        )


def _parse_document(path, text):
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError(f"{path!r} is not a skae model file: its metadata is not JSON.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a skae model file: its metadata has no skae format tag.")
    version = document.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(
            f"{path!r} is a skae model file in format version {version!r}, written by skae "
            f"{document.get('skae_version')!r}; this skae ({_skae_version()}) reads format "
            f"versions {', '.join(map(str, READABLE_VERSIONS))} only."
        )
    return _from_json(document)


def _describe(document, layout):
    """The estimator the document describes, its fit plan, and its network on the meta
    device, after checking the file's tensor layout (``{name: safetensors slice}``) against it."""
    registry = _REGISTRY
    name = document["estimator"]
    if not isinstance(name, str) or name not in registry:
        raise ValueError(
            f"Unknown estimator {name!r} in the model file; skae loads only "
            f"{', '.join(sorted(registry))}."
        )
    cls = registry[name]
    params = document["params"]
    expected_params = set(cls().get_params(deep=False))
    if isinstance(params, dict):
        version = document["format_version"]
        older = {key: value for key, (since, value) in _PARAMS_SINCE.items() if version < since}
        params = {**{key: older[key] for key in older.keys() & expected_params}, **params}
    if not isinstance(params, dict) or set(params) != expected_params:
        raise ValueError(
            f"The model file's parameters for {name} are not {name}'s parameters: "
            f"unexpected {sorted(set(params) - expected_params)}, missing "
            f"{sorted(expected_params - set(params))}."
        )
    estimator = cls(**params)
    # All parameters are checked as fit would, except the device: a model fitted on a GPU must
    # load on a machine without one.
    try:
        clone(estimator).set_params(device="cpu")._check_params()
    except ValueError as error:
        raise ValueError(f"The model file holds an invalid parameter: {error}") from None

    fitted = document["fitted"]
    n_features = _expect_int(fitted, "n_features_in_", low=1)
    plan = _fitted_plan(estimator, document, n_features)
    try:
        blueprint = estimator._blueprint(plan)
    except ValueError as error:
        raise ValueError(f"The model file describes an invalid network: {error}") from None
    expected = {
        f"{module_name}.{key}": tuple(value.shape)
        for module_name, module in blueprint.items()
        for key, value in module.state_dict().items()
    }
    expected["input_offset_"] = (plan.width,)
    if plan.scaling == "standardised":
        expected["input_scale_"] = (plan.width,)
    expected.update(estimator._saved_array_shapes(n_features, fitted))
    stored = {
        key: (tuple(part.get_shape()), part.get_dtype())
        for key, part in layout.items()
        if not key.startswith(_OPTIMIZER_PREFIX)
    }
    _check_tensors(stored, expected, f"{name}(**params) with {n_features} features")
    return estimator, plan, blueprint


def _fitted_plan(estimator, document, n_features):
    """The fit plan of the stored network, checked: stored since format version 4; for older
    files, what the attributes they stored tell of it (the rest None: not recorded)."""
    params, fitted, version = document["params"], document["fitted"], document["format_version"]
    if version >= 4:
        values = fitted["fit_plan_"]
        if version == 4 and isinstance(values, dict):
            values = {**FitPlan.SINCE_VERSION_5, **values}
        if version <= 5 and isinstance(values, dict):
            values = {**FitPlan.SINCE_VERSION_6, **values}
        if version <= 6 and isinstance(values, dict):
            values = {**FitPlan.SINCE_VERSION_7, **values}
        plan = FitPlan.from_dict(values)
    else:
        planned = estimator._planned_params()
        output_activation = fitted["output_activation_"]
        validation_scores = fitted["validation_scores_"]
        hidden = params["hidden_layer_sizes"] if version == 1 else fitted["hidden_layer_sizes_"]
        # Version 1 had no batch_size="auto": the parameter is the batch size.
        batch_size = params["batch_size"] if version == 1 else fitted.get("batch_size_")
        plan = FitPlan(
            n_samples=None,
            n_features=n_features,
            n_components=planned["n_components"],
            # Networks of files written before init existed were started at random.
            init=fitted.get("init_", "random"),
            hidden_layer_sizes=tuple(hidden) if isinstance(hidden, (list, tuple)) else hidden,
            activation=planned["activation"],
            output_activation=output_activation,
            scaling="none" if output_activation in UNIT_INTERVAL_OUTPUTS else "centred",
            mask_input=fitted.get("mask_input_", False),
            hidden_weight=estimator._plan_rules().hidden_weight(
                planned.get("hidden_weight", 1.0), n_features, planned["n_components"]
            ),
            batch_size=batch_size,
            max_iter=fitted.get("max_iter_"),
            learning_rate_init=planned["learning_rate_init"],
            learning_rate=planned["learning_rate"],
            validation_fraction=(
                None if validation_scores is None else planned["validation_fraction"]
            ),
            stop_on_plateau=None,
            n_iter_no_change=planned["n_iter_no_change"],
            tol=planned["tol"],
            step=None,
            device=fitted["device_"],
            n_threads=None,
            n_processes=None,
        )
    _check_plan(plan, params, n_features)
    return plan


def _check_plan(plan, params, n_features):
    """Refuse a plan that does not describe a network these params and features build (the
    network is built from it) or whose recorded values are not of their kinds."""

    def refuse(name):
        raise ValueError(f"Invalid fit_plan_.{name}={getattr(plan, name)!r} in the model file.")

    def is_int(value, low):
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    def is_real(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    hidden = plan.hidden_layer_sizes
    if not isinstance(hidden, tuple) or not all(is_int(size, 1) for size in hidden):
        refuse("hidden_layer_sizes")
    declared = params["hidden_layer_sizes"]
    if declared != "auto" and tuple(declared) != hidden:
        raise ValueError(
            f"The model file's hidden_layer_sizes={declared!r} does not describe its network, "
            f"whose hidden layers are {hidden!r}."
        )
    if plan.n_features != n_features or type(plan.n_features) is not int:
        refuse("n_features")
    for name in ("n_components", "activation"):
        declared, built = params[name], getattr(plan, name)
        if name == "n_components" and is_auto(declared):
            # The size the fit chose, which the plan records (as the rule of its version said).
            if not is_int(built, 1):
                refuse(name)
            continue
        if declared != built or type(declared) is not type(built):
            raise ValueError(
                f"The model file's {name}={declared!r} does not describe its network, whose "
                f"{name} is {built!r}."
            )
    choices = {"init": ("pca", "random"), "output_activation": tuple(OUTPUT_ACTIVATIONS),
               "scaling": ("none", "centred", "standardised"), "mask_input": (True, False),
               "learning_rate": ("constant", "cosine"), "step": (None, *STEPS),
               "stop_on_plateau": (None, True, False)}  # fmt: skip
    for name, options in choices.items():
        value = getattr(plan, name)
        if not any(value is opt or (isinstance(value, str) and value == opt) for opt in options):
            refuse(name)
    for name in ("n_samples", "batch_size", "max_iter", "n_iter_no_change", "n_threads",
                 "n_processes"):  # fmt: skip
        value = getattr(plan, name)
        if value is not None and not is_int(value, 1):
            refuse(name)
    for name in ("hidden_weight", "learning_rate_init", "tol", "validation_fraction"):
        value = getattr(plan, name)
        if not (value is None and name == "validation_fraction") and not (
            is_real(value) and math.isfinite(value) and value >= 0
        ):
            refuse(name)
    if not (is_real(plan.noisy_share) and 0 < plan.noisy_share <= 1):
        refuse("noisy_share")
    if not (is_real(plan.linear_share) and 0 <= plan.linear_share <= 1):
        refuse("linear_share")
    if not isinstance(plan.device, str):
        refuse("device")
    categorical, n_categories = plan.categorical, plan.n_categories
    if (
        not isinstance(categorical, tuple)
        or not all(is_int(j, 0) and j < n_features for j in categorical)
        or list(categorical) != sorted(set(categorical))
    ):
        refuse("categorical")
    if (
        not isinstance(n_categories, tuple)
        or len(n_categories) != len(categorical)
        or not all(is_int(k, 0) for k in n_categories)
    ):
        refuse("n_categories")
    # Mixed tables are standardised; so may numeric ones be (the imputer's).
    if categorical and plan.scaling != "standardised":
        refuse("scaling")
    if not isinstance(plan.auto, tuple) or not all(isinstance(a, str) for a in plan.auto):
        refuse("auto")


def _restore(estimator, plan, blueprint, document, tensors):
    """The fitted estimator: ``blueprint``'s network with the file's (checked) tensors."""
    fitted = document["fitted"]
    n_features = fitted["n_features_in_"]
    n_iter = _expect_int(fitted, "n_iter_", low=0)
    seed = _expect_int(fitted, "_seed", low=0)
    loss_curve = _expect_floats(fitted, "loss_curve_")
    validation_scores = (
        None
        if fitted["validation_scores_"] is None
        else _expect_floats(fitted, "validation_scores_")
    )
    best_loss = _expect_float(fitted, "best_loss_")
    if plan.scaling == "standardised":
        input_scale = tensors["input_scale_"].numpy().astype(np.float64)
        if not np.all((input_scale > 0) & (input_scale < math.inf)):
            raise ValueError("Invalid input_scale_ in the model file.")
    else:
        input_scale = _expect_float(fitted, "input_scale_")
        if not (0 < input_scale < math.inf):
            raise ValueError(f"Invalid input_scale_={input_scale!r} in the model file.")
    feature_names = fitted["feature_names_in_"]
    if feature_names is not None and (
        not isinstance(feature_names, list)
        or len(feature_names) != n_features
        or not all(isinstance(f, str) for f in feature_names)
    ):
        raise ValueError(
            f"Invalid feature_names_in_ in the model file: expected {n_features} strings."
        )
    extras = {
        name: _expect_int(fitted, name, low=0)
        for name in _OPTIONAL_INT_ATTRIBUTES
        if fitted.get(name) is not None
    }

    # Every stored tensor's shape was checked against the blueprint: this allocates no more
    # than the file holds, and the weights need no initialisation since the file's replace them.
    modules = {name: module.to_empty(device="cpu") for name, module in blueprint.items()}
    stored = {key: value for key, value in tensors.items() if not key.startswith(_OPTIMIZER_PREFIX)}
    for module_name, module in modules.items():
        prefix = f"{module_name}."
        module.load_state_dict(
            {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}, strict=True
        )

    device = _restore_device(fitted["device_"], estimator.device)
    state = TrainingState(
        modules={module_name: module.to(device) for module_name, module in modules.items()},
        optimizer=None,
        scaling=AffineScaling(stored["input_offset_"], input_scale, device),
        plan=plan,
        device=device,
        seed=seed,
        n_iter=n_iter,
        loss_curve=loss_curve,
        validation_scores=validation_scores,
        best_loss=best_loss,
        attributes={
            **extras,
            **_restored_table(fitted, n_features, plan),
            **estimator._restored_attributes(
                {name: stored[name].numpy() for name in estimator._saved_arrays if name in stored},
                {name: fitted[name] for name in estimator._saved_values if name in fitted},
            ),
        },
    )
    parameters = state.parameters()
    state.optimizer = estimator._make_optimizer(parameters, device)
    # As partial_fit resumes: the stored moments, this device's own optimizer options.
    load_optimizer_state(state.optimizer, {"state": _optimizer_state(parameters, tensors)})
    estimator._adopt(state)
    estimator.n_features_in_ = n_features
    if feature_names is not None:
        estimator.feature_names_in_ = np.asarray(feature_names, dtype=object)
    output = document.get("set_output", {})
    if output:
        if set(output) != {"transform"} or output["transform"] not in _OUTPUTS:
            raise ValueError(f"Invalid set_output={output!r} in the model file.")
        estimator.set_output(transform=output["transform"])
    return estimator


def _check_tensors(stored, expected, described):
    """``stored`` maps names to (shape, safetensors dtype), ``expected`` names to shapes."""
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"The model file's tensors do not match {described}: missing {missing}, "
            f"unexpected {unexpected}."
        )
    for key, shape in expected.items():
        stored_shape, dtype = stored[key]
        # A None in an expected shape: any length (the detector's reference codes).
        fits = len(stored_shape) == len(shape) and all(
            want is None or want == have for want, have in zip(shape, stored_shape, strict=True)
        )
        if not fits or dtype != "F32":
            raise ValueError(
                f"The model file's tensor {key!r} has shape {stored_shape} and dtype "
                f"{_DTYPE_NAMES.get(dtype, dtype)}, but {described} needs shape {shape} and "
                "dtype torch.float32."
            )


# safetensors' dtype names, as torch names them.
_DTYPE_NAMES = {"F64": "torch.float64", "F32": "torch.float32", "F16": "torch.float16"}


def _optimizer_state(parameters, tensors):
    """The optimizer's per-parameter state from the file, each tensor checked."""
    state = {}
    for key, value in tensors.items():
        if not key.startswith(_OPTIMIZER_PREFIX):
            continue
        index_text, _, state_key = key[len(_OPTIMIZER_PREFIX) :].partition(".")
        if not index_text.isdigit() or int(index_text) >= len(parameters) or not state_key:
            raise ValueError(f"Unexpected optimizer tensor {key!r} in the model file.")
        shape = parameters[int(index_text)].shape
        if value.dtype != torch.float32 or value.shape not in (torch.Size([]), shape):
            raise ValueError(
                f"The model file's optimizer tensor {key!r} has shape {tuple(value.shape)}; "
                f"expected () or {tuple(shape)}."
            )
        state.setdefault(int(index_text), {})[state_key] = value
    return state


def _restore_device(stored, requested):
    """The stored device when it is available here, else the CPU with a warning."""
    if not isinstance(stored, str):
        raise ValueError(f"Invalid device_={stored!r} in the model file.")
    return restore_device(stored, requested, stacklevel=4)


def _cpu_float32(tensor):
    return tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()


def _expect_int(fitted, key, *, low):
    value = fitted[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"Invalid {key}={value!r} in the model file: expected an int >= {low}.")
    return value


def _expect_float(fitted, key):
    value = fitted[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"Invalid {key}={value!r} in the model file: expected a number.")
    return float(value)


def _expect_floats(fitted, key):
    values = fitted[key]
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(f"Invalid {key} in the model file: expected a list of numbers.")
    return [float(v) for v in values]


def _skae_version():
    from . import __version__

    return __version__
