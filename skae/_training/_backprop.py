"""Backpropagation written out for an MLP autoencoder trained on the squared error.

Autograd records every operation of every step and walks that record backwards. For a few small
layers the bookkeeping is a large share of the step: on a 2-core CPU, 784-256-128-64 at batch
128 spends over 40% of an autograd step outside the matrix products, and writing the backward
pass out makes the step about 16% faster. As in scikit-learn's MLPRegressor, each activation's
derivative is taken from the activation's output, so activations are applied in place and no
pre-activation is kept.

A network started at PCA's solution (``init="pca"``) has a ``LinearPath`` where an MLP has a
Linear layer: a linear map beside an MLP, whose gradients add at their shared input. A network
fitted on data with missing values starts with a ``MissingMask`` (the values beside their
missing-value mask) and is trained on the error of the observed entries only.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._missing import MissingMask, entry_weights
from .._modules import LinearPath
from ._steps import TrainingStep

aten = torch.ops.aten


class _Activation(NamedTuple):
    apply_: Callable  # h -> h, activated in place
    input_grad: Callable  # (output grad, output) -> input grad


# For each supported activation module, its _Activation with the module's constants bound.
# GELU and SiLU are missing: their derivatives need the input, not the output.
_ACTIVATIONS = {
    nn.ReLU: lambda module: _Activation(
        torch.relu_,
        lambda grad, out: aten.threshold_backward(grad, out, 0),
    ),
    nn.LeakyReLU: lambda module: _Activation(
        lambda h: F.leaky_relu_(h, module.negative_slope),
        lambda grad, out: aten.leaky_relu_backward(grad, out, module.negative_slope, True),
    ),
    nn.ELU: lambda module: _Activation(
        lambda h: F.elu_(h, module.alpha),
        lambda grad, out: aten.elu_backward(grad, module.alpha, 1, 1, True, out),
    ),
    nn.Tanh: lambda module: _Activation(torch.tanh_, aten.tanh_backward),
    nn.Sigmoid: lambda module: _Activation(torch.sigmoid_, aten.sigmoid_backward),
    # Its derivative from the output: 1 strictly between the bounds, where the input was too.
    nn.Hardtanh: lambda module: _Activation(
        lambda h: F.hardtanh_(h, module.min_val, module.max_val),
        lambda grad, out: aten.hardtanh_backward(grad, out, module.min_val, module.max_val),
    ),
}


def supports(layers):
    """Whether ``layers`` (a list of modules, nn.Sequential ones taken apart) is a network that
    BackpropStep can train: biased Linear layers and LinearPaths (whose MLP is such a network
    too), the first one first (after at most a MissingMask), each followed by at most one
    supported activation."""
    return _blocks(_split_input(layers)[1]) is not None


def _flatten(layers):
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            yield from _flatten(layer)
        else:
            yield layer


def _split_input(layers):
    """(the leading MissingMask or None, the layers after it), nn.Sequential taken apart."""
    layers = list(_flatten(layers))
    if layers and isinstance(layers[0], MissingMask):
        return layers[0], layers[1:]
    return None, layers


def _blocks(layers):
    """``layers`` as a list of _Dense and _Beside blocks, or None if they are no such network."""
    blocks = []
    for layer in layers:
        if isinstance(layer, nn.Linear) and layer.bias is not None:
            blocks.append(_Dense(layer))
        elif isinstance(layer, LinearPath):
            inner = _blocks(list(_flatten([layer.nonlinear])))
            if inner is None or layer.linear.bias is None:
                return None
            blocks.append(_Beside(_Dense(layer.linear), inner))
        elif type(layer) in _ACTIVATIONS and blocks and blocks[-1].activation is None:
            blocks[-1].activation = _ACTIVATIONS[type(layer)](layer)
        elif not isinstance(layer, nn.Identity):
            return None
    return blocks or None


# Each block keeps what its backward pass needs from the last forward pass (its input, its
# output): a step runs one forward pass, then one backward pass.


class _Dense:
    """A biased Linear layer, then at most one activation."""

    def __init__(self, linear):
        # The parameters themselves, looked up once: they are updated in place.
        self.weight, self.bias = linear.weight, linear.bias
        self.activation = None

    def forward(self, x):
        self.input = x
        h = F.linear(x, self.weight, self.bias)
        self.output = h if self.activation is None else self.activation.apply_(h)
        return self.output

    def backward(self, grad, input_grad=True):
        """Set the parameters' gradients from the gradient at the block's output; return the
        gradient at its input (when ``input_grad``)."""
        if self.activation is not None:
            grad = self.activation.input_grad(grad, self.output)
        torch.mm(grad.t(), self.input, out=_grad_buffer(self.weight))
        torch.sum(grad, 0, out=_grad_buffer(self.bias))
        return grad.mm(self.weight) if input_grad else None


class _Beside:
    """A LinearPath (``linear(x) + nonlinear(x)``), then at most one activation."""

    def __init__(self, linear, nonlinear):
        self.linear, self.nonlinear = linear, nonlinear
        self.activation = None

    def forward(self, x):
        h = x
        for block in self.nonlinear:
            h = block.forward(h)
        out = self.linear.forward(x).add_(h)
        self.output = out if self.activation is None else self.activation.apply_(out)
        return self.output

    def backward(self, grad, input_grad=True):
        if self.activation is not None:
            grad = self.activation.input_grad(grad, self.output)
        through_linear = self.linear.backward(grad, input_grad)
        for index in reversed(range(len(self.nonlinear))):
            grad = self.nonlinear[index].backward(grad, input_grad or index > 0)
        return through_linear.add_(grad) if input_grad else None


class BackpropStep(TrainingStep):
    """A TrainingStep for the mean squared error between ``layers(corrupt(x))`` and ``x``,
    its gradients computed without autograd (the same ones, up to rounding).

    ``corrupt`` (a denoising autoencoder's noise) is applied to the input, never the target.
    When the layers start with a MissingMask, x may hold NaN (missing values), and the error is
    the mean over the observed entries of x; with ``hidden_weight`` other than 1, a weighted
    mean, the entries that ``corrupt`` hid (NaN in the input only) weighing ``hidden_weight``
    (see skae._missing.entry_weights).

    With ``keep_fraction`` below 1, the error is the mean over the rows of the batch's
    ``keep_fraction`` best-reconstructed rows (each row's error the mean over its observed
    entries): the trimmed loss of the outlier detector.
    """

    def __init__(self, layers, optimizer, corrupt=None, hidden_weight=1.0, keep_fraction=1.0):
        self.input_layer, layers = _split_input(layers)
        self.blocks = _blocks(layers)
        if self.blocks is None:
            raise ValueError(f"BackpropStep cannot train {layers}; see supports().")
        # No loss closure: compute_gradients evaluates the loss itself.
        super().__init__(compute_loss=None, optimizer=optimizer)
        self.corrupt = corrupt
        self.hidden_weight = hidden_weight
        self.keep_fraction = keep_fraction

    @torch.no_grad()
    def compute_gradients(self, x):
        x_in = x if self.corrupt is None else self.corrupt(x)
        h = x_in
        if self.input_layer is not None:
            h = self.input_layer(h)
        for block in self.blocks:
            h = block.forward(h)
        # The output is no block's saved output once the residual is computed, and the
        # residual (a new tensor) becomes the gradient in place.
        residual = h - x
        weighted, n = residual, residual.numel()
        if self.input_layer is not None:
            # Missing entries of x add nothing; NaN output (divergence) still shows in the loss.
            missing = torch.isnan(x)
            residual.masked_fill_(missing, 0.0)
            if self.hidden_weight == 1.0:
                n = (missing.numel() - missing.sum()).clamp_min(1)
            else:
                weights = entry_weights(x_in, missing, self.hidden_weight)
                weighted, n = residual * weights, weights.sum().clamp_min(1e-12)
        if self.keep_fraction < 1.0:
            missing = torch.isnan(x) if self.input_layer is not None else None
            weighted, n = _trimmed(residual, weighted, self.keep_fraction, missing)
        loss = torch.dot(residual.view(-1), weighted.view(-1)) / n
        # Backward, from d loss / d output = 2 weights (output - x) / n (in the place of the
        # weighted residual, or of the residual itself when every weight is 1).
        grad = weighted.mul_(2.0 / n)
        for index in reversed(range(len(self.blocks))):
            grad = self.blocks[index].backward(grad, input_grad=index > 0)
        return loss


def _trimmed(residual, weighted, keep_fraction, missing):
    """(the weighted residual, 1) of the trimmed loss: the mean over the kept rows of their
    mean squared error over their observed entries (``missing``: None, or where x is NaN; the
    residual is 0 there)."""
    if missing is None:
        observed = residual.new_full((residual.shape[0],), residual.shape[1])
    else:
        observed = (~missing).sum(dim=1).to(residual.dtype).clamp_min(1)
    row_errors = (residual * weighted).sum(dim=1) / observed
    keep = max(1, math.ceil(keep_fraction * residual.shape[0]))
    dropped = torch.topk(row_errors, residual.shape[0] - keep, largest=True, sorted=False).indices
    row_weights = (1.0 / (keep * observed)).index_fill_(0, dropped, 0.0)
    return weighted * row_weights[:, None], 1


def _grad_buffer(parameter):
    if parameter.grad is None:
        parameter.grad = torch.empty_like(parameter)
    return parameter.grad
