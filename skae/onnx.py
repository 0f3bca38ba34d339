"""Export fitted skae estimators to ONNX, to run them where neither torch nor skae is installed.

Importing this module registers a shape calculator and a converter with skl2onnx for every
public skae estimator, so that ``skl2onnx.to_onnx(pipeline, X[:1])`` converts any pipeline that
holds one; ``skae.onnx.to_onnx`` wraps that call. It needs the ``onnx`` extra
(``pip install "skae[onnx]"``: skl2onnx and onnx to convert, onnxruntime to run the result).

The graphs hold what ``transform`` computes: the input scaling ``(x - input_offset_) /
input_scale_`` followed by the encoder (for the variational autoencoder, the mean of its
Gaussian), in float32 for any number of rows. The networks are written out from plain ONNX
operators with the fitted weights as initializers, as skl2onnx does for scikit-learn's own
MLPs. The torch modules are walked generically: ``MODULE_CONVERTERS`` maps each module type to
the function that writes its nodes, so supporting a new layer or activation is one more entry.

Building blocks for further converters (an outlier detector's scores, an imputer's filled
matrix) are public here: ``GraphBuilder``, ``emit_to_model`` / ``emit_to_user`` (the scaling
both ways), ``emit_encoder``, ``emit_decoder`` and ``emit_reconstruction``.
"""

import math

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

try:
    import skl2onnx
    from onnx import TensorProto
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
    )
    from skl2onnx.common.utils import check_input_and_output_numbers
except ImportError as error:
    raise ImportError(
        "skae.onnx needs the 'onnx' extra: pip install \"skae[onnx]\" (skl2onnx and onnx to "
        f"convert, onnxruntime to run the converted models). Import failed with: {error}"
    ) from error

from torch import nn

from ._autoencoder import AutoEncoderTransformer
from ._imputer import AutoEncoderImputer
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
    "emit_to_model",
    "emit_to_user",
    "to_onnx",
]

# The first opset with a Gelu operator; below it GELU is written from Erf or Tanh.
_GELU_OPSET = 20

# The neighbour term's tolerance for a row's own reference code in float32 (skae's, in
# float64, is 1e-5): the expanded squared distance rounds at about 1e-7 of |z|^2, and a new row
# this close to a training row's code is, to float32, that row.
ONNX_SELF_MATCH_TOLERANCE = 1e-3


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
    if getattr(estimator.fit_plan_, "categorical", ()):
        raise NotImplementedError(
            f"Cannot export {type(estimator).__name__} to ONNX: it was fitted on a table with "
            "categorical columns, whose one-hot encoding and softmax outputs the export does "
            "not write yet. Encode the categories before skae (OneHotEncoder in a pipeline) "
            "to export the whole pipeline."
        )
    fitted = _input_width(estimator.decoder_)
    if fitted != estimator._components_asked():
        raise ValueError(
            f"Cannot export {type(estimator).__name__}: the fitted network has {fitted} "
            f"components but n_components={estimator.n_components}. Set it back, or fit again."
        )


def _check_input(operator, n_outputs):
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=n_outputs)
    estimator, variable = operator.raw_operator, operator.inputs[0]
    check_exportable(estimator)
    if not isinstance(variable.type, FloatTensorType | DoubleTensorType | Int64TensorType):
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


def _output_type(operator):
    # skl2onnx's parser has already typed this output after the input (and the next step's
    # outputs after it), so a double input gives a double output, cast from the float32 result.
    is_double = isinstance(operator.inputs[0].type, DoubleTensorType)
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
    x = emit_to_model(g, estimator, g.as_float32(operator.inputs[0]))
    g.output(emit_encoder(g, estimator, x), operator.outputs[0])


def _imputer_shape(operator):
    """AutoEncoderImputer: (N, n_features) -> (N, n_features_out), in the input's float type."""
    _check_input(operator, n_outputs=1)
    n_rows = operator.inputs[0].get_first_dimension()
    n_out = len(operator.raw_operator.get_feature_names_out())
    operator.outputs[0].type = _output_type(operator)([n_rows, n_out])


def _imputer_converter(scope, operator, container):
    """What AutoEncoderImputer.transform computes: observed values as they are (in the input's
    own float type), missing ones from the network (rows with no observed value: the training
    means), empty features at 0 or dropped, then the indicator's columns."""
    imputer = operator.raw_operator
    g = GraphBuilder(scope, container)
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
    offset."""
    detector = operator.raw_operator
    g = GraphBuilder(scope, container)
    x = g.as_float32(operator.inputs[0])
    n_features = detector.n_features_in_
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

for _estimator, (_alias, _shape, _convert) in CONVERTERS.items():
    update_registered_converter(_estimator, _alias, _shape, _convert, overwrite=True)


def to_onnx(model, X=None, **kwargs):
    """Convert a fitted skae estimator, or a pipeline holding some, to an ONNX model.

    Parameters
    ----------
    model : estimator or Pipeline
        Anything skl2onnx converts, with skae estimators anywhere in it.
    X : array-like of shape (n_samples, n_features), default=None
        A few rows of input, from which the input's width is taken; the model's input is
        float32 with any number of rows either way. A pandas DataFrame is passed to skl2onnx
        as it is (one input per column, as ColumnTransformer needs). When None, the width is
        ``model.n_features_in_``.
    **kwargs
        Passed to ``skl2onnx.to_onnx`` (``target_opset``, ``options``, ``name``, ...).

    Returns
    -------
    onnx.ModelProto
        Save it with ``onnx.save`` or ``model.SerializeToString()``; run it with
        ``onnxruntime.InferenceSession``. Its input is named ``"X"``.
    """
    if X is None:
        check_is_fitted(model)
        kwargs.setdefault("initial_types", [("X", FloatTensorType([None, model.n_features_in_]))])
    elif not hasattr(X, "iloc"):  # not a DataFrame: float32 rows of any count
        X = X[:1].toarray() if sp.issparse(X) else X
        X = np.asarray(X, dtype=np.float32)[:1]
    return skl2onnx.to_onnx(model, X, **kwargs)
