"""Export fitted skae estimators to ONNX, to run them where neither torch nor skae is installed.

Importing this module registers a shape calculator and a converter with skl2onnx for every
public skae estimator, so that ``skl2onnx.to_onnx(pipeline, X[:1])`` converts any pipeline that
holds one; ``skae.onnx.to_onnx`` wraps that call. It needs the ``onnx`` extra
(``pip install "skae[onnx]"``: skl2onnx and onnx to convert, onnxruntime to run the result).

The graphs hold what ``transform`` computes: the input scaling ``(x - input_offset_) /
input_scale_`` followed by the encoder (for the variational autoencoder, the mean of its
Gaussian), in float32 for any number of rows. An estimator fitted on a mixed table
(categorical columns) takes one (N, 1) input per column instead, whose categories the graph
one-hot encodes (``emit_table``; the imputer gives one output per column too);
``onnx_inputs`` makes those inputs from a DataFrame. The
networks are written out from plain ONNX operators with the fitted weights as initializers, as
skl2onnx does for scikit-learn's own MLPs. The torch modules are walked generically:
``MODULE_CONVERTERS`` maps each module type to the function that writes its nodes, so
supporting a new layer or activation is one more entry.

Building blocks for further converters (an outlier detector's scores, an imputer's filled
matrix) are public here: ``GraphBuilder``, ``emit_to_model`` / ``emit_to_user`` (the scaling
both ways), ``emit_table`` (a mixed table's columns), ``emit_encoder``, ``emit_decoder`` and
``emit_reconstruction``.
"""

import math

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

try:
    import skl2onnx
    from onnx import TensorProto
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        DoubleTensorType,
        FloatTensorType,
        Int32TensorType,
        Int64TensorType,
        StringTensorType,
        guess_tensor_type,
    )
    from skl2onnx.common.utils import check_input_and_output_numbers
except ImportError as error:
    raise ImportError(
        "skae.onnx needs the 'onnx' extra: pip install \"skae[onnx]\" (skl2onnx and onnx to "
        f"convert, onnxruntime to run the converted models). Import failed with: {error}"
    ) from error

from torch import nn

from ._autoencoder import AutoEncoderTransformer
from ._imputer import AutoEncoderImputer, _numeric_positions
from ._missing import MissingMask
from ._modules import GaussianEncoder, LinearPath
from ._outliers import ENERGY_FLOOR, NEIGHBOURS, AutoEncoderOutlierDetector
from ._vae import VariationalAutoEncoderTransformer

__all__ = [
    "CONVERTERS",
    "MODULE_CONVERTERS",
    "GraphBuilder",
    "UnsupportedModuleError",
    "check_exportable",
    "emit_decoder",
    "emit_encoder",
    "emit_reconstruction",
    "emit_table",
    "emit_to_model",
    "emit_to_user",
    "is_mixed",
    "onnx_inputs",
    "to_onnx",
]

# The first opset with a Gelu operator; below it GELU is written from Erf or Tanh.
_GELU_OPSET = 20

# The neighbour term's tolerance for a row's own reference code in float32 (skae's, in
# float64, is 1e-5): the expanded squared distance rounds at about 1e-7 of |z|^2, and a new row
# this close to a training row's code is, to float32, that row.
ONNX_SELF_MATCH_TOLERANCE = 1e-3


# The input tensor types of numbers (a numeric column, or a whole numeric table).
_NUMBER_TYPES = (FloatTensorType, DoubleTensorType, Int64TensorType, Int32TensorType)


class UnsupportedModuleError(TypeError):
    """A fitted network holds a torch module type that skae.onnx cannot write as ONNX."""


class GraphBuilder:
    """Adds nodes and float32 initializers to the graph of one skl2onnx converter call.

    Every node's output and every initializer gets a name unique in the whole model, from the
    skl2onnx ``scope``, so graphs of several estimators can share one model.

    Parameters
    ----------
    scope : skl2onnx.common._topology.Scope
        The scope skl2onnx passes to a converter.
    container : skl2onnx.common._container.ModelComponentContainer
        The container skl2onnx passes to a converter.
    """

    def __init__(self, scope, container):
        self.scope = scope
        self.container = container
        self._path = []

    @property
    def opset(self):
        """The ONNX opset targeted (skl2onnx's latest tested one when none was asked for)."""
        target = self.container.target_opset
        return skl2onnx.get_latest_tested_opset_version() if target is None else target

    def constant(self, name, value, dtype=np.float32):
        """Add ``value`` as an initializer (float32 unless ``dtype`` says int64); its name."""
        value = np.asarray(value, dtype=dtype)
        onnx_type = TensorProto.INT64 if value.dtype == np.int64 else TensorProto.FLOAT
        unique = self.scope.get_unique_variable_name(name)
        self.container.add_initializer(unique, onnx_type, list(value.shape), value.ravel())
        return unique

    def node(self, op_type, inputs, *, output=None, **attributes):
        """Add one node with one output; return the output's name (``output`` if given)."""
        output = output or self.scope.get_unique_variable_name(op_type.lower())
        name = self.scope.get_unique_operator_name(op_type)
        self.container.add_node(op_type, list(inputs), [output], name=name, **attributes)
        return output

    def module(self, module, x, name):
        """Write the nodes of torch ``module`` applied to ``x`` (named ``name`` in messages)."""
        self._path.append(str(name))
        try:
            convert = MODULE_CONVERTERS.get(type(module))
            if convert is None:
                kind = type(module)
                raise UnsupportedModuleError(
                    f"Cannot export {'.'.join(self._path)} to ONNX: skae.onnx has no converter "
                    f"for the torch module type {kind.__module__}.{kind.__qualname__}. Known "
                    f"types: {', '.join(sorted(t.__name__ for t in MODULE_CONVERTERS))}; add an "
                    "entry to skae.onnx.MODULE_CONVERTERS for a new one."
                )
            return convert(self, module, x)
        finally:
            self._path.pop()

    def output(self, name, variable):
        """Write ``name`` (float32) into ``variable``, an skl2onnx output, cast to its type."""
        if isinstance(variable.type, DoubleTensorType):
            return self.node("Cast", [name], output=variable.full_name, to=TensorProto.DOUBLE)
        return self.node("Identity", [name], output=variable.full_name)

    def as_float32(self, variable):
        """The name of ``variable`` (an skl2onnx input) as float32, cast when it is not."""
        if isinstance(variable.type, FloatTensorType):
            return variable.full_name
        return self.node("Cast", [variable.full_name], to=TensorProto.FLOAT)


# -- torch modules -> ONNX nodes ---------------------------------------------------------------


def _weights(tensor):
    return tensor.detach().cpu().float().numpy()


def _sequential(g, module, x):
    for name, child in module.named_children():
        x = g.module(child, x, name)
    return x


def _linear(g, module, x):
    # Gemm computes x @ W.T + b in one node from the weight as torch stores it (out x in).
    weight = g.constant("weight", _weights(module.weight))
    if module.bias is None:
        return g.node("Gemm", [x, weight], transB=1)
    return g.node("Gemm", [x, weight, g.constant("bias", _weights(module.bias))], transB=1)


def _gelu(g, module, x):
    if g.opset >= _GELU_OPSET:
        return g.node("Gelu", [x], approximate=module.approximate)
    if module.approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Add", [x, g.node("Mul", [cube, g.constant("c", 0.044715)])])
        core = g.node("Tanh", [g.node("Mul", [inner, g.constant("c", math.sqrt(2 / math.pi))])])
    else:  # 0.5 x (1 + erf(x / sqrt(2)))
        core = g.node("Erf", [g.node("Mul", [x, g.constant("c", 1 / math.sqrt(2))])])
    half_x = g.node("Mul", [x, g.constant("half", 0.5)])
    return g.node("Mul", [half_x, g.node("Add", [core, g.constant("one", 1.0)])])


def _silu(g, module, x):
    return g.node("Mul", [x, g.node("Sigmoid", [x])])


def _linear_path(g, module, x):
    linear = g.module(module.linear, x, "linear")
    return g.node("Add", [linear, g.module(module.nonlinear, x, "nonlinear")])


def _missing_mask(g, module, x):
    # [x with NaN at the fill values, the 0/1 mask]: the input of a network fitted with NaN.
    missing = g.node("IsNaN", [x])
    filled = g.node("Where", [missing, g.constant("fill", _weights(module.fill)[None, :]), x])
    mask = g.node("Cast", [missing], to=TensorProto.FLOAT)
    return g.node("Concat", [filled, mask], axis=1)


def _gaussian_mean(g, module, x):
    # The body's output is [mean, log-variance]; transform and the decoder use the mean only.
    out = g.module(module.body, x, "body")
    width = _output_width(module.body) // 2
    starts, ends, axes = (g.constant(n, [v], np.int64) for n, v in
                          (("starts", 0), ("ends", width), ("axes", 1)))  # fmt: skip
    return g.node("Slice", [out, starts, ends, axes])


#: The ONNX nodes of each torch module type: ``function(graph_builder, module, input_name)``
#: returns the name of the module's output. Looked up by exact type, since a subclass may
#: compute something else.
MODULE_CONVERTERS = {
    nn.Sequential: _sequential,
    nn.Linear: _linear,
    nn.Identity: lambda g, module, x: x,
    nn.ReLU: lambda g, module, x: g.node("Relu", [x]),
    nn.LeakyReLU: lambda g, module, x: g.node("LeakyRelu", [x], alpha=module.negative_slope),
    nn.ELU: lambda g, module, x: g.node("Elu", [x], alpha=module.alpha),
    nn.GELU: _gelu,
    nn.SiLU: _silu,
    nn.Tanh: lambda g, module, x: g.node("Tanh", [x]),
    nn.Sigmoid: lambda g, module, x: g.node("Sigmoid", [x]),
    nn.Hardtanh: lambda g, module, x: g.node(
        "Clip", [x, g.constant("min", module.min_val), g.constant("max", module.max_val)]
    ),
    GaussianEncoder: _gaussian_mean,
    MissingMask: _missing_mask,
    LinearPath: _linear_path,
}


def _output_width(module):
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1].out_features


def _input_width(module):
    return next(m for m in module.modules() if isinstance(m, nn.Linear)).in_features


# -- the pieces of an estimator's graphs -------------------------------------------------------


def _input_scale(estimator):
    """``input_scale_`` as a float32 row (one number, or one per feature where the data was
    standardised per column), or None where it is 1 everywhere."""
    scale = np.atleast_1d(np.asarray(estimator.input_scale_, dtype=np.float32))
    return None if np.all(scale == 1.0) else scale[None, :]


def emit_to_model(g, estimator, x):
    """``(x - input_offset_) / input_scale_``: the user's units to the model's (float32 ``x``)."""
    offset = np.asarray(estimator.input_offset_, dtype=np.float32)
    scale = _input_scale(estimator)
    if not offset.any() and scale is None:
        return x  # data in [0, 1] keep their units
    centred = g.node("Sub", [x, g.constant("input_offset", offset[None, :])])
    return centred if scale is None else g.node("Div", [centred, g.constant("input_scale", scale)])


def emit_to_user(g, estimator, x):
    """``x * input_scale_ + input_offset_``: the model's units back to the user's."""
    offset = np.asarray(estimator.input_offset_, dtype=np.float32)
    scale = _input_scale(estimator)
    if not offset.any() and scale is None:
        return x
    scaled = x if scale is None else g.node("Mul", [x, g.constant("input_scale", scale)])
    return g.node("Add", [scaled, g.constant("input_offset", offset[None, :])])


def emit_encoder(g, estimator, x):
    """The codes of ``x`` (model units, float32): the encoder's output, the VAE's mean."""
    return g.module(estimator.encoder_, x, f"{type(estimator).__name__}.encoder_")


def emit_decoder(g, estimator, z):
    """The decoder's output for codes ``z`` (float32), in the model's units."""
    return g.module(estimator.decoder_, z, f"{type(estimator).__name__}.decoder_")


def emit_reconstruction(g, estimator, x):
    """The reconstruction of ``x`` (float32, the user's units) in the user's units: what
    ``inverse_transform(transform(x))`` computes, from the encoder's codes (the VAE's means)."""
    codes = emit_encoder(g, estimator, emit_to_model(g, estimator, x))
    return emit_to_user(g, estimator, emit_decoder(g, estimator, codes))


def emit_table(g, estimator, columns):
    """The encoded matrix of a mixed table given as one input per column (skl2onnx variables,
    in the estimator's column order), float32: what ``skae._tabular.encode`` computes. The
    numeric columns first, cast to float32 (NaN where missing); then each categorical column's
    one-hot block, a NaN block where its cell matches none of the categories (missing, or not
    seen in fit: skae reads both as missing)."""
    layout = estimator._layout()
    parts = [g.as_float32(columns[j]) for j in layout.numeric]
    for j, categories in zip(layout.categorical, estimator.categories_, strict=True):
        if len(categories):  # a column with no observed category has no block
            parts.append(_one_hot(g, columns[j], categories))
    return parts[0] if len(parts) == 1 else g.node("Concat", parts, axis=1)


def _one_hot(g, variable, categories):
    """The (N, k) one-hot block of a categorical input (N, 1), NaN where it is none of the
    ``categories``."""
    k = len(categories)
    if isinstance(variable.type, StringTensorType):
        # Each text's category index (ONNX-ML's LabelEncoder), -1 for any other text.
        codes = g.node(
            "LabelEncoder", [variable.full_name], op_domain="ai.onnx.ml", op_version=2,
            keys_strings=[str(c) for c in categories], values_int64s=list(range(k)),
            default_int64=-1,
        )  # fmt: skip
        hits = g.node(
            "Equal", [codes, g.constant("category_codes", np.arange(k)[None, :], np.int64)]
        )
    elif all(isinstance(c, bool | int | np.integer) for c in categories) and not isinstance(
        variable.type, FloatTensorType | DoubleTensorType
    ):
        values = g.node("Cast", [variable.full_name], to=TensorProto.INT64)
        known = g.constant("categories", np.asarray(categories, dtype=np.int64)[None, :], np.int64)
        hits = g.node("Equal", [values, known])
    else:
        known = g.constant("categories", np.asarray(categories, dtype=np.float32)[None, :])
        hits = g.node("Equal", [g.as_float32(variable), known])
    one_hot = g.node("Cast", [hits], to=TensorProto.FLOAT)
    found = g.node("MatMul", [one_hot, g.constant("block_sums", np.ones((k, 1)))])
    unknown = g.node("Equal", [found, g.constant("zero", [[0.0]])])
    return g.node("Where", [unknown, g.constant("nan_block", np.full((1, k), np.nan)), one_hot])


# -- skl2onnx's shape calculators and converters -----------------------------------------------


def check_exportable(estimator):
    """Raise when ``estimator`` cannot be exported: unfitted, or changed since fit.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError
        If ``n_components`` no longer matches the fitted network.
    """
    check_is_fitted(estimator)
    fitted = _input_width(estimator.decoder_)
    if fitted != estimator._components_asked():
        raise ValueError(
            f"Cannot export {type(estimator).__name__}: the fitted network has {fitted} "
            f"components but n_components={estimator.n_components}. Set it back, or fit again."
        )


def is_mixed(estimator):
    """Whether a fitted skae estimator was fitted on a table with categorical columns, whose
    ONNX graph takes one input per column (see ``emit_table``); False for anything else."""
    return bool(getattr(getattr(estimator, "fit_plan_", None), "categorical", ()))


def _check_input(operator, n_outputs):
    estimator = operator.raw_operator
    check_exportable(estimator)
    if is_mixed(estimator):
        _check_columns(operator, n_outputs)
        return
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=n_outputs)
    variable = operator.inputs[0]
    if not isinstance(variable.type, _NUMBER_TYPES):
        raise TypeError(
            f"{type(estimator).__name__} takes float or integer tensors in ONNX, not "
            f"{type(variable.type).__name__}."
        )
    n_features = variable.get_second_dimension()
    if n_features is not None and n_features != estimator.n_features_in_:
        raise ValueError(
            f"The ONNX input has {n_features} features, but {type(estimator).__name__} is "
            f"expecting {estimator.n_features_in_} features as input."
        )


def _check_columns(operator, n_outputs):
    """The inputs of an estimator fitted on a mixed table: one (N, 1) tensor per column, in
    its columns' order; numbers as float or integer tensors; categories as strings, or, where
    they are all numbers or booleans, as such tensors."""
    estimator = operator.raw_operator
    n_features = estimator.n_features_in_
    if len(operator.inputs) != n_features:
        raise ValueError(
            f"{type(estimator).__name__} was fitted on a table of {n_features} columns, some "
            f"categorical: its ONNX graph takes one input per column, but it was given "
            f"{len(operator.inputs)}. Convert it with a DataFrame of the training columns "
            "(skae.onnx.to_onnx(model, X[:1]))."
        )
    check_input_and_output_numbers(operator, output_count_range=n_outputs)
    categories = iter(estimator.categories_)
    for j, variable in enumerate(operator.inputs):
        name = _column_name(estimator, j)
        if variable.get_second_dimension() not in (None, 1):
            raise ValueError(f"The ONNX input of {name} must have one column (shape (N, 1)).")
        if not estimator.is_categorical_[j]:
            if not isinstance(variable.type, _NUMBER_TYPES):
                raise TypeError(
                    f"{name} is numeric: its ONNX input must be a float or integer tensor, "
                    f"not {type(variable.type).__name__}."
                )
            continue
        known = next(categories)
        if isinstance(variable.type, StringTensorType):
            continue
        if not isinstance(variable.type, _NUMBER_TYPES + (BooleanTensorType,)) or not all(
            _is_number(c) for c in known
        ):
            raise TypeError(
                f"{name} is categorical, with categories {list(known)[:5]}: give its ONNX "
                "input as strings (StringTensorType, each category as its str()), or, for "
                f"categories that are all numbers or booleans, as such a tensor, not "
                f"{type(variable.type).__name__}."
            )


def _column_name(estimator, j):
    names = getattr(estimator, "feature_names_in_", None)
    return f"Feature {names[j]!r}" if names is not None else f"Column {j}"


def _is_number(value):
    return isinstance(value, bool | int | float | np.number)


def _output_type(operator):
    # skl2onnx's parser has already typed this output after the input (and the next step's
    # outputs after it), so a double input gives a double output, cast from the float32 result.
    # A mixed table's columns (several inputs) give float32.
    is_double = len(operator.inputs) == 1 and isinstance(operator.inputs[0].type, DoubleTensorType)
    return DoubleTensorType if is_double else FloatTensorType


def _transform_shape(operator):
    """transform: (N, n_features) -> (N, n_components), double for double input, else float."""
    _check_input(operator, n_outputs=1)
    n_rows = operator.inputs[0].get_first_dimension()
    n_components = operator.raw_operator.n_components
    operator.outputs[0].type = _output_type(operator)([n_rows, n_components])


def _transform_converter(scope, operator, container):
    estimator = operator.raw_operator
    g = GraphBuilder(scope, container)
    if is_mixed(estimator):
        x = emit_to_model(g, estimator, emit_table(g, estimator, operator.inputs))
    else:
        x = emit_to_model(g, estimator, g.as_float32(operator.inputs[0]))
    g.output(emit_encoder(g, estimator, x), operator.outputs[0])


def _imputer_parser(scope, model, inputs, custom_parsers=None):
    """The imputer's outputs: one tensor (N, n_features_out); for a mixed table one (N, 1)
    tensor per output column, named after it (types set by the shape calculator)."""
    check_is_fitted(model)
    operator = scope.declare_local_operator(CONVERTERS[AutoEncoderImputer][0], model)
    operator.inputs = inputs
    if not is_mixed(model):  # typed after the input, as skl2onnx's own parser does
        kind = guess_tensor_type(inputs[0].type)
        operator.outputs.append(scope.declare_local_variable("variable", kind))
        return operator.outputs
    for name in model.get_feature_names_out():
        operator.outputs.append(scope.declare_local_variable(str(name), FloatTensorType()))
    return operator.outputs


def _imputer_shape(operator):
    """AutoEncoderImputer: (N, n_features) -> (N, n_features_out), in the input's float type;
    a mixed table's columns -> each output column (N, 1), in its input's type (the missing
    indicator's columns float32)."""
    imputer = operator.raw_operator
    if is_mixed(imputer):
        _check_input(operator, n_outputs=len(imputer.get_feature_names_out()))
        n_rows = operator.inputs[0].get_first_dimension()
        for variable, source in zip(operator.outputs, _mixed_output_sources(imputer),
                                    strict=True):  # fmt: skip
            kind = FloatTensorType if source is None else type(operator.inputs[source].type)
            variable.type = kind([n_rows, 1])
        return
    _check_input(operator, n_outputs=1)
    n_rows = operator.inputs[0].get_first_dimension()
    n_out = len(operator.raw_operator.get_feature_names_out())
    operator.outputs[0].type = _output_type(operator)([n_rows, n_out])


def _imputer_converter(scope, operator, container):
    """What AutoEncoderImputer.transform computes: observed values as they are (in the input's
    own float type), missing ones from the network, blended with the linear imputer's where
    ``linear_share`` > 0 (rows with no observed value: the training means), empty features at
    0 or dropped, then the indicator's columns."""
    imputer = operator.raw_operator
    g = GraphBuilder(scope, container)
    if is_mixed(imputer):
        _mixed_imputer_converter(g, operator, imputer)
        return
    variable = operator.inputs[0]
    dtype = TensorProto.DOUBLE if isinstance(variable.type, DoubleTensorType) else TensorProto.FLOAT
    x = variable.full_name
    if isinstance(variable.type, Int64TensorType):
        x = g.node("Cast", [x], to=TensorProto.FLOAT)
    missing_values = imputer.missing_values
    if isinstance(missing_values, float) and math.isnan(missing_values):
        missing = g.node("IsNaN", [x])
    else:
        value = g.node("Cast", [g.constant("missing_value", missing_values)], to=dtype)
        missing = g.node("Equal", [x, value])
    empty = np.asarray(imputer._empty_features, dtype=bool)
    # The network's input: float32, NaN where missing, empty features at 0.
    x32 = x if dtype == TensorProto.FLOAT else g.node("Cast", [x], to=TensorProto.FLOAT)
    nan = g.constant("nan", np.full((1, len(empty)), np.nan))
    zero_empty = g.constant("empty_zero", np.where(empty, 0.0, np.nan)[None, :])
    values = g.node("Where", [missing, nan, x32])
    empty_mask = g.constant("empty", empty[None, :].astype(np.float32))
    empty_bool = g.node("Cast", [empty_mask], to=TensorProto.BOOL)
    values = g.node("Where", [empty_bool, zero_empty, values])
    reconstruction = emit_reconstruction(g, imputer, values)
    share = imputer.fit_plan_.linear_share
    if share:  # blended with the linear imputer's fill
        linear = _linear_fill(g, imputer, values)
        reconstruction = g.node(
            "Add",
            [g.node("Mul", [reconstruction, g.constant("network_share", [[1.0 - share]])]),
             g.node("Mul", [linear, g.constant("linear_share", [[share]])])],
        )  # fmt: skip
    # Rows with no observed value (among the non-empty features) take the training means.
    means = g.constant("means", _means(imputer)[None, :])
    observed = g.node("Cast", [g.node("Not", [missing])], to=TensorProto.FLOAT)
    counted = g.constant("counted", (~empty).astype(np.float32)[:, None])
    n_observed = g.node("MatMul", [observed, counted])
    none_observed = g.node("Equal", [n_observed, g.constant("zero", [[0.0]])])
    reconstruction = g.node("Where", [none_observed, means, reconstruction])
    reconstruction = g.node("Where", [empty_bool, g.constant("zeros", np.zeros((1, len(empty)))),
                                      reconstruction])  # fmt: skip
    if dtype != TensorProto.FLOAT:
        reconstruction = g.node("Cast", [reconstruction], to=dtype)
    filled = g.node("Where", [missing, reconstruction, x])
    kept = np.flatnonzero(~empty) if not imputer.keep_empty_features else None
    if kept is not None and len(kept) < len(empty):
        filled = g.node("Gather", [filled, g.constant("kept", kept, np.int64)], axis=1)
    if imputer.indicator_ is not None:
        features = np.asarray(imputer.indicator_.features_, dtype=np.int64)
        indicator = g.node("Gather", [missing, g.constant("features", features, np.int64)], axis=1)
        filled = g.node("Concat", [filled, g.node("Cast", [indicator], to=dtype)], axis=1)
    g.output(filled, operator.outputs[0])


def _mixed_output_sources(imputer):
    """For each output column of a mixed imputer, the input column it comes from (None for the
    missing indicator's columns)."""
    kept = [j for j in range(imputer.n_features_in_)
            if imputer.keep_empty_features or not imputer._empty_features[j]]  # fmt: skip
    n_indicators = 0 if imputer.indicator_ is None else len(imputer.indicator_.features_)
    return kept + [None] * n_indicators


def _mixed_imputer_converter(g, operator, imputer):
    """What AutoEncoderImputer.transform computes on a mixed table, a column at a time: each
    missing number from the network (in the input's type; rounded where the training column
    held integers), each missing category its most probable one, every other cell as it came
    (an unseen category too); rows with no observed value the training means and modes; empty
    numeric columns 0; then the missing indicator's columns. A missing cell is NaN in a float
    input and "" in a string one (``onnx_inputs``); integer and boolean inputs have none."""
    layout, empty = imputer._layout(), np.asarray(imputer._empty_features, dtype=bool)
    columns, sources = operator.inputs, _mixed_output_sources(imputer)
    encoded = emit_table(g, imputer, columns)
    # The network's input: empty numeric columns at 0 (AutoEncoderImputer._network_input).
    blank = np.zeros(layout.width, dtype=np.float32)
    blank[_numeric_positions(layout, empty)] = 1.0
    blank_bool = g.node("Cast", [g.constant("empty_numbers", blank[None, :])], to=TensorProto.BOOL)
    values = g.node("Where", [blank_bool, g.constant("zero", [[0.0]]), encoded])
    rebuilt = emit_reconstruction(g, imputer, values)
    # Rows with no observed value among the shown entries take the training means and modes.
    shown = g.constant("shown", (1.0 - blank)[:, None])
    count = g.node("MatMul", [_observed(g, values), shown])
    nothing = g.node("Equal", [count, g.constant("zero", [[0.0]])])
    rebuilt = g.node("Where", [nothing, g.constant("means", _means(imputer)[None, :]), rebuilt])

    missing, position = {}, dict(zip(layout.numeric, range(layout.n_numeric), strict=True))
    filled_categories = [j for j, k in zip(layout.categorical, layout.n_categories, strict=True)
                         if k]  # fmt: skip
    blocks = dict(zip(filled_categories, layout.blocks, strict=True))
    categories = dict(zip(layout.categorical, imputer.categories_, strict=True))
    for variable, j in zip(operator.outputs, sources, strict=True):
        if j is None:
            continue
        source = columns[j]
        missing[j] = _missing_cells(g, source)
        if missing[j] is None:  # an integer or boolean column: nothing to fill
            g.node("Identity", [source.full_name], output=variable.full_name)
            continue
        if j in position:
            dtypes = imputer._feature_dtypes
            if empty[j]:  # a numeric column with no observed value: 0, as the numeric path
                fill = g.constant("zero", [[0.0]])
            else:
                fill = g.node("Slice", [rebuilt, *_slice(g, position[j], position[j] + 1)])
            if dtypes is not None and pd.api.types.is_integer_dtype(dtypes.iloc[j]):
                fill = g.node("Round", [fill])
            fill = g.node("Cast", [fill], to=_onnx_type(source))
        elif j in blocks:
            start, k = blocks[j]
            block = g.node("Slice", [rebuilt, *_slice(g, start, start + k)])
            fill = _category_of(g, g.node("ArgMax", [block], axis=1, keepdims=1), source,
                                categories[j])  # fmt: skip
        else:  # a categorical column with no category observed: kept as it came
            g.node("Identity", [source.full_name], output=variable.full_name)
            continue
        g.node("Where", [missing[j], fill, source.full_name], output=variable.full_name)
    if imputer.indicator_ is not None:
        indicators = [v for v, j in zip(operator.outputs, sources, strict=True) if j is None]
        for variable, j in zip(indicators, imputer.indicator_.features_, strict=True):
            cells = missing.get(j) or _missing_cells(g, columns[j])
            if cells is None:  # integers and booleans hold no missing cell: zeros
                zeros = [g.as_float32(columns[j]), g.constant("zero", [[0.0]])]
                g.node("Mul", zeros, output=variable.full_name)
            else:
                g.node("Cast", [cells], output=variable.full_name, to=TensorProto.FLOAT)


def _observed(g, values):
    """1.0 where ``values`` (float) is not NaN, else 0.0."""
    return g.node("Cast", [g.node("Not", [g.node("IsNaN", [values])])], to=TensorProto.FLOAT)


def _missing_cells(g, variable):
    """Where a column input is missing: NaN in floats, "" in strings; None for integers and
    booleans, which hold no missing cell."""
    if isinstance(variable.type, StringTensorType):
        return g.node(
            "Cast",
            [g.node("LabelEncoder", [variable.full_name], op_domain="ai.onnx.ml", op_version=2,
                    keys_strings=[""], values_int64s=[1], default_int64=0)],
            to=TensorProto.BOOL,
        )  # fmt: skip
    if isinstance(variable.type, FloatTensorType | DoubleTensorType):
        return g.node("IsNaN", [variable.full_name])
    return None


def _category_of(g, index, variable, categories):
    """The categories at ``index`` (N, 1), as ``variable``'s type: text, or numbers."""
    if isinstance(variable.type, StringTensorType):
        return g.node(
            "LabelEncoder", [index], op_domain="ai.onnx.ml", op_version=2,
            keys_int64s=list(range(len(categories))), values_strings=[str(c) for c in categories],
            default_string="",
        )  # fmt: skip
    known = g.constant("categories", np.asarray(categories, dtype=np.float32))
    return g.node("Cast", [g.node("Gather", [known, index], axis=0)], to=_onnx_type(variable))


def _onnx_type(variable):
    """The ONNX element type of an skl2onnx variable of a number tensor type."""
    return {FloatTensorType: TensorProto.FLOAT, DoubleTensorType: TensorProto.DOUBLE,
            Int64TensorType: TensorProto.INT64, Int32TensorType: TensorProto.INT32,
            BooleanTensorType: TensorProto.BOOL}[type(variable.type)]  # fmt: skip


def _linear_fill(g, imputer, values):
    """The imputer's linear fill of ``values`` (float32, NaN where missing): the column means,
    then each step of its chain of regressions (``AutoEncoderImputer._linear_fill``)."""
    missing = g.node("IsNaN", [values])
    filled = g.node("Where", [missing, g.constant("linear_start", imputer._linear_start[None, :]),
                              values])  # fmt: skip
    n_features = len(imputer._linear_start)
    columns = {}  # each target column's missing cells: missing AND (column == j)
    for j, coef, intercept in zip(imputer._linear_targets, imputer._linear_coefs,
                                  imputer._linear_intercepts, strict=True):  # fmt: skip
        if j not in columns:
            one = np.zeros((1, n_features), dtype=np.float32)
            one[0, j] = 1.0
            column = g.node("Cast", [g.constant("linear_column", one)], to=TensorProto.BOOL)
            columns[j] = g.node("And", [missing, column])
        product = g.node("MatMul", [filled, g.constant("linear_coef", coef[:, None])])
        prediction = g.node("Add", [product, g.constant("linear_intercept", [[intercept]])])
        filled = g.node("Where", [columns[j], prediction, filled])
    return filled


def _means(imputer):
    """The imputer's training means, in the input's units (float32)."""
    modules, scaling = imputer._fitted()
    return scaling.to_user(modules["encoder_"][0].fill).detach().cpu().float().numpy()


def _detector_shape(operator):
    """AutoEncoderOutlierDetector, as skl2onnx's IsolationForest: (N, n_features) -> labels
    (N, 1) int64 and scores (N, 1) = decision_function, double for double input, else float."""
    _check_input(operator, n_outputs=2)
    n_rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = Int64TensorType([n_rows, 1])
    operator.outputs[1].type = _output_type(operator)([n_rows, 1])


def _detector_converter(scope, operator, container):
    """What AutoEncoderOutlierDetector.predict and decision_function compute, in float32: the
    neighbour term (the reconstruction error's squared norm plus the code's neighbour
    distance, relative to the row's root mean square on data in [0, 1]) and the squared
    Mahalanobis distance of the code (unless novelty), each over its training median, and the
    offset. A mixed table's reconstruction error is its rows' mean cell loss."""
    detector = operator.raw_operator
    g = GraphBuilder(scope, container)
    n_features = detector.n_features_in_
    if is_mixed(detector):
        x = emit_to_model(g, detector, emit_table(g, detector, operator.inputs))
        codes = emit_encoder(g, detector, x)
        errors = _mean_cell_loss(g, detector, emit_decoder(g, detector, codes), x)
        _detector_scores(g, operator, detector, codes, errors, relative=None)
        return
    x = g.as_float32(operator.inputs[0])
    codes = emit_encoder(g, detector, emit_to_model(g, detector, x))
    residual = g.node("Sub", [emit_decoder(g, detector, codes), emit_to_model(g, detector, x)])
    # Row means as products with a column of 1 / n (no opset-dependent Reduce* signature).
    if detector._reads_mask():  # the observed entries only
        absent = g.node("IsNaN", [x])
        zero = g.constant("zero", [[0.0]])
        residual = g.node("Where", [absent, zero, residual])
        x = g.node("Where", [absent, zero, x])
        ones = g.constant("ones", np.ones((n_features, 1)))
        observed = g.node("Cast", [g.node("Not", [absent])], to=TensorProto.FLOAT)
        count = g.node("Max", [g.node("MatMul", [observed, ones]), g.constant("one", [[1.0]])])

        def row_mean(values):
            return g.node("Div", [g.node("MatMul", [values, ones]), count])
    else:
        column = g.constant("row_mean", np.full((n_features, 1), 1.0 / n_features))

        def row_mean(values):
            return g.node("MatMul", [values, column])

    errors = row_mean(g.node("Mul", [residual, residual]))
    relative = None  # one over the row's root mean square, on data in [0, 1]
    if detector.unit_interval_:
        energy = row_mean(g.node("Mul", [x, x]))
        floor = g.constant("energy_floor", [[ENERGY_FLOOR]])
        relative = g.node("Reciprocal", [g.node("Sqrt", [g.node("Add", [energy, floor])])])
    _detector_scores(g, operator, detector, codes, errors, relative)


def _detector_scores(g, operator, detector, codes, errors, relative):
    """The detector's outputs from the rows' codes and reconstruction errors (``relative``:
    one over the rows' root mean square, on data in [0, 1], else None)."""
    n_features = detector.n_features_in_
    # (z - mean)^T P (z - mean) as the squared norm of (z - mean) L, with P = L L^T.
    factor = np.linalg.cholesky(detector.code_precision_)
    centred = g.node("Sub", [codes, g.constant("code_mean", detector.code_mean_[None, :])])
    whitened = g.node("MatMul", [centred, g.constant("code_whitening", factor)])
    sums = g.constant("sums", np.ones((detector.n_components_, 1)))
    distances = g.node("MatMul", [g.node("Mul", [whitened, whitened]), sums])
    if detector.reference_codes_ is not None:
        # The neighbour term: the error's squared norm plus the codes' neighbour distance.
        size = g.constant("n_features", [[float(n_features)]])
        term = g.node("Add", [g.node("Mul", [errors, size]), _neighbour_term(g, detector, codes)])
        scale = detector.neighbour_scale_
    else:  # a model file of format 4 or older: the error is a term of its own
        term, scale = errors, detector.error_scale_
    if relative is not None:
        term = g.node("Mul", [term, relative])
    measure = g.node("Mul", [term, g.constant("term_weight", [[1.0 / scale]])])
    if not detector.novelty:
        weight = g.constant("code_weight", [[1.0 / detector.code_scale_]])
        measure = g.node("Add", [measure, g.node("Mul", [distances, weight])])
    # decision_function = score_samples - offset_ = -(measure + offset_)
    decision = g.node("Neg", [g.node("Add", [measure, g.constant("offset", [[detector.offset_]])])])
    outlier = g.node("Cast", [g.node("Less", [decision, g.constant("zero", [[0.0]])])],
                     to=TensorProto.INT64)  # fmt: skip
    labels = g.node(
        "Add",
        [
            g.node("Mul", [outlier, g.constant("minus_two", [[-2]], np.int64)]),
            g.constant("one", [[1]], np.int64),
        ],
    )
    g.node("Identity", [labels], output=operator.outputs[0].full_name)
    g.output(decision, operator.outputs[1])


def _mean_cell_loss(g, detector, output, x):
    """Each row's mean loss over its observed cells (``skae._tabular.cell_losses``): a
    number's squared error, a category's cross-entropy over log(n_categories); ``output`` the
    decoder's (logits for the blocks), ``x`` the encoded rows in model units (NaN missing)."""
    layout = detector._layout()
    zero = g.constant("zero", [[0.0]])

    def sums(values, width):  # row sums as products with a column of ones
        return g.node("MatMul", [values, g.constant("ones", np.ones((width, 1)))])

    terms, cells = [], []
    if layout.n_numeric:
        numbers = g.node("Slice", [x, *_slice(g, 0, layout.n_numeric)])
        residual = g.node("Sub", [g.node("Slice", [output, *_slice(g, 0, layout.n_numeric)]),
                                  numbers])  # fmt: skip
        residual = g.node("Where", [g.node("IsNaN", [numbers]), zero, residual])
        terms.append(sums(g.node("Mul", [residual, residual]), layout.n_numeric))
        cells.append(sums(_observed(g, numbers), layout.n_numeric))
    for start, k in layout.blocks:
        target = g.node("Slice", [x, *_slice(g, start, start + k)])
        log_p = g.node("LogSoftmax", [g.node("Slice", [output, *_slice(g, start, start + k)])],
                       axis=1)  # fmt: skip
        seen = _observed(g, g.node("Slice", [target, *_slice(g, 0, 1)]))
        target = g.node("Where", [g.node("IsNaN", [target]), zero, target])
        # -sum(target log p) / log(max(k, 2)); 0 where the cell is missing.
        scale = g.constant("cross_entropy_scale", [[-1.0 / math.log(max(k, 2))]])
        cross_entropy = g.node("Mul", [sums(g.node("Mul", [target, log_p]), k), scale])
        terms.append(g.node("Mul", [cross_entropy, seen]))
        cells.append(seen)
    total = terms[0] if len(terms) == 1 else g.node("Sum", terms)
    count = cells[0] if len(cells) == 1 else g.node("Sum", cells)
    return g.node("Div", [total, g.node("Max", [count, g.constant("one", [[1.0]])])])


def _neighbour_term(g, detector, codes):
    """The code's part of the detector's neighbour term: its mean squared distance to its
    NEIGHBOURS nearest reference codes, its own (a training row's) left out, as
    ``skae._outliers._nearest_references`` decides it, with a tolerance for float32 (the
    squared distances come from |z|^2 - 2 z.r + |r|^2, which rounds at about 1e-7 of |z|^2)."""
    reference = detector.reference_codes_
    n_neighbours = min(NEIGHBOURS + 1, len(reference))
    ones = g.constant("code_sums", np.ones((detector.n_components_, 1)))
    norms = g.node("MatMul", [g.node("Mul", [codes, codes]), ones])  # (N, 1)
    products = g.node("MatMul", [codes, g.constant("reference_codes_t", reference.T)])  # (N, M)
    reference_norms = g.constant("reference_norms", np.square(reference).sum(axis=1)[None, :])
    squared = g.node(
        "Add",
        [g.node("Sub", [norms, g.node("Mul", [products, g.constant("two", [[2.0]])])]),
         reference_norms],
    )  # fmt: skip
    squared = g.node("Max", [squared, g.constant("zero_distance", [[0.0]])])
    k = g.constant("n_neighbours", [n_neighbours], np.int64)
    # TopK has two outputs (values, indices); the GraphBuilder's nodes have one.
    nearest = g.scope.get_unique_variable_name("nearest")
    indices = g.scope.get_unique_variable_name("nearest_indices")
    name = g.scope.get_unique_operator_name("TopK")
    g.container.add_node("TopK", [squared, k], [nearest, indices], name=name, largest=0, sorted=1)
    if n_neighbours == 1:
        return nearest
    # The row's own code: the nearest, within the tolerance (relative to |z| + the spread).
    spread = float(np.sqrt(np.mean(np.var(reference, axis=0))))
    tolerance = g.node(
        "Mul",
        [g.node("Add", [g.node("Sqrt", [norms]), g.constant("spread", [[spread]])]),
         g.constant("float32_tolerance", [[ONNX_SELF_MATCH_TOLERANCE]])],
    )  # fmt: skip
    first = g.node("Slice", [nearest, *_slice(g, 0, 1)])
    own = g.node("LessOrEqual", [first, g.node("Mul", [tolerance, tolerance])])
    without_first = g.node("Slice", [nearest, *_slice(g, 1, n_neighbours)])
    without_last = g.node("Slice", [nearest, *_slice(g, 0, n_neighbours - 1)])
    kept = g.node("Where", [own, without_first, without_last])
    column = g.constant("neighbour_mean", np.full((n_neighbours - 1, 1), 1.0 / (n_neighbours - 1)))
    return g.node("MatMul", [kept, column])


def _slice(g, start, end):
    """Slice's starts, ends and axes inputs for columns start:end."""
    return (g.constant("starts", [start], np.int64), g.constant("ends", [end], np.int64),
            g.constant("axes", [1], np.int64))  # fmt: skip


#: The registered estimators: class -> (skl2onnx alias, shape calculator, converter).
CONVERTERS = {
    AutoEncoderImputer: ("SkaeAutoEncoderImputer", _imputer_shape, _imputer_converter),
    AutoEncoderOutlierDetector: (
        "SkaeAutoEncoderOutlierDetector",
        _detector_shape,
        _detector_converter,
    ),
    AutoEncoderTransformer: ("SkaeAutoEncoderTransformer", _transform_shape, _transform_converter),
    VariationalAutoEncoderTransformer: (
        "SkaeVariationalAutoEncoderTransformer",
        _transform_shape,
        _transform_converter,
    ),
}

# The estimators whose outputs skl2onnx's own parser does not declare.
PARSERS = {AutoEncoderImputer: _imputer_parser}

for _estimator, (_alias, _shape, _convert) in CONVERTERS.items():
    update_registered_converter(
        _estimator, _alias, _shape, _convert, overwrite=True, parser=PARSERS.get(_estimator)
    )


def to_onnx(model, X=None, **kwargs):
    """Convert a fitted skae estimator, or a pipeline holding some, to an ONNX model.

    Parameters
    ----------
    model : estimator or Pipeline
        Anything skl2onnx converts, with skae estimators anywhere in it.
    X : array-like of shape (n_samples, n_features), default=None
        A few rows of input, from which the input's width is taken; the model's input is
        float32 with any number of rows either way. A pandas DataFrame is passed to skl2onnx
        as it is (one input per column, named after it, as ColumnTransformer needs), but for
        its category columns, which become string inputs. When None, the width is
        ``model.n_features_in_``.
    **kwargs
        Passed to ``skl2onnx.to_onnx`` (``target_opset``, ``options``, ``name``, ...).

    Returns
    -------
    onnx.ModelProto
        Save it with ``onnx.save`` or ``model.SerializeToString()``; run it with
        ``onnxruntime.InferenceSession``. Its input is named ``"X"``; an estimator fitted on
        a table with categorical columns takes one (N, 1) input per column instead (see
        ``onnx_inputs``), named after the columns.
    """
    if X is None:
        check_is_fitted(model)
        if is_mixed(model):
            kwargs.setdefault("initial_types", _column_types(model))
        else:
            kwargs.setdefault(
                "initial_types", [("X", FloatTensorType([None, model.n_features_in_]))]
            )
    elif hasattr(X, "iloc"):  # a DataFrame: one input per column
        X = X.astype(_typeable(X.dtypes))
    else:  # float32 rows of any count
        X = X[:1].toarray() if sp.issparse(X) else X
        X = np.asarray(X, dtype=np.float32)[:1]
    return skl2onnx.to_onnx(model, X, **kwargs)


def _typeable(dtypes):
    """The dtypes that make a DataFrame's columns inputs skl2onnx can type, float32 as the
    graphs compute: category and pandas' nullable boolean columns as objects (string inputs),
    floats and nullable integers as float32 (NaN where missing)."""
    api = pd.api.types
    changed = {}
    for name, dtype in dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):
            changed[name] = object
        elif api.is_extension_array_dtype(dtype) and api.is_bool_dtype(dtype):
            changed[name] = object
        elif api.is_float_dtype(dtype) or (
            api.is_extension_array_dtype(dtype) and api.is_numeric_dtype(dtype)
        ):
            changed[name] = np.float32
    return changed


def _column_types(estimator):
    """skl2onnx's initial types of a mixed table's columns: float32 numbers, string categories,
    named after the columns (``x0``, ``x1``, ... for an array)."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        names = [f"x{j}" for j in range(estimator.n_features_in_)]
    return [
        (str(name), (StringTensorType if categorical else FloatTensorType)([None, 1]))
        for name, categorical in zip(names, estimator.is_categorical_, strict=True)
    ]


def onnx_inputs(session, X):
    """The inputs of an ONNX model with one input per column (a mixed table's), from a
    DataFrame or a 2-D array of its rows: ``session.run(None, onnx_inputs(session, X))``.

    ``session``: an ``onnxruntime.InferenceSession`` (or anything whose ``get_inputs()`` gives
    the inputs' ``name`` and ``type``). Each column becomes an (N, 1) array of its input's
    type: numbers with NaN where missing, strings with "" where missing (no category is ""),
    booleans and integers as they are (they cannot be missing).
    """
    inputs = session.get_inputs()
    if hasattr(X, "iloc"):
        columns = [X.iloc[:, j].to_numpy(dtype=object) for j in range(X.shape[1])]
    else:
        columns = list(np.asarray(X, dtype=object).reshape(len(X), -1).T)
    if len(columns) != len(inputs):
        raise ValueError(f"The ONNX model takes {len(inputs)} columns, but X has {len(columns)}.")
    feeds = {}
    for spec, values in zip(inputs, columns, strict=True):
        missing = np.asarray(pd.isna(values), dtype=bool)
        if spec.type == "tensor(string)":
            column = np.where(missing, "", values.astype(str)).astype(object)
        elif spec.type in _FEED_DTYPES:
            dtype = _FEED_DTYPES[spec.type]
            if missing.any() and not np.issubdtype(dtype, np.floating):
                raise ValueError(
                    f"Column {spec.name!r} has missing values, but its ONNX input is a "
                    f"{spec.type}, which cannot hold them: convert the model with that column "
                    "as floats (or its categories as strings)."
                )
            column = np.where(missing, np.nan, values).astype(dtype)
        else:
            raise TypeError(f"The ONNX input {spec.name!r} is a {spec.type}, not a column.")
        feeds[spec.name] = column.reshape(-1, 1)
    return feeds


# What onnx_inputs makes of each ONNX input type but strings.
_FEED_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}
