"""Plain PyTorch modules: multilayer perceptrons for encoders and decoders.

Nothing here knows about scikit-learn, so the modules can be used and tested on their own.
"""

import functools
import math

import torch
from torch import nn

ACTIVATIONS = {
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}

# "clip": the output clipped to [0, 1], for data in [0, 1] (see skae._plan's
# resolve_output_activation): piecewise linear, so a network started at PCA starts at PCA's
# reconstruction clipped to [0, 1], which is nowhere farther from data in [0, 1].
OUTPUT_ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
    "clip": functools.partial(nn.Hardtanh, 0.0, 1.0),
}


def mlp(sizes, activation, *, output_activation="identity", generator=None):
    """Build ``Linear -> activation -> ... -> Linear -> output_activation``.

    ``sizes`` lists the widths from input to output. Weights are drawn from ``generator``
    (PyTorch's default rule, uniform in +-1/sqrt(fan_in)), so that building a model never
    touches the global random state. Without a generator the layers stay on the meta device,
    uninitialised: a blueprint of the layers and shapes that costs no memory.
    """
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(_linear(fan_in, fan_out, generator))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    if output_activation != "identity":
        layers.append(OUTPUT_ACTIVATIONS[output_activation]())
    return nn.Sequential(*layers)


def _linear(fan_in, fan_out, generator):
    # Built on the meta device so that nn.Linear's own initialisation draws nothing from the
    # global generator; the weights are then drawn from ours.
    layer = nn.Linear(fan_in, fan_out, device="meta")
    if generator is None:
        return layer
    layer = layer.to_empty(device="cpu")
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def start_at(decoder, target, output_activation, *, margin=1e-3):
    """Set the bias of ``decoder``'s output layer (``last_linear``) so that it outputs
    ``target`` (one value per feature, a tensor) wherever the rest of the network adds nothing:
    the network starts at the constant prediction ``target`` instead of a random one.

    Behind a sigmoid the bias is the logit of ``target``, clipped to ``[margin, 1 - margin]``.
    A random start there can leave the sigmoid saturated at 0: on the MNIST images of the digit
    1 (mostly black), an autoencoder started at random biases stalled at an all-black output
    with 1.8 times the error of the mean image, where the sigmoid's gradient vanishes.
    """
    last = last_linear(decoder)
    if output_activation == "sigmoid":
        target = torch.logit(target.clamp(margin, 1.0 - margin))
    with torch.no_grad():
        last.bias.copy_(target)


class LinearPath(nn.Module):
    """``linear(x) + nonlinear(x)``: an MLP with a linear map beside it.

    With ``init="pca"`` an autoencoder's encoder and decoder are each one of these: the linear
    maps start as PCA's projection and reconstruction and the MLPs' last layers at zero
    (``mlp_beside_a_linear_path``), so the network starts at PCA's solution.
    """

    def __init__(self, linear, nonlinear):
        super().__init__()
        self.linear = linear
        self.nonlinear = nonlinear

    def forward(self, x):
        return self.linear(x) + self.nonlinear(x)


def mlp_beside_a_linear_path(sizes, activation, *, output_activation="identity", generator=None):
    """``LinearPath(Linear(sizes[0], sizes[-1]), mlp(sizes))``, then ``output_activation``.

    The MLP's last layer starts at zero, so that at first the module is its linear map alone;
    the linear map's weights are for the caller to set (see ``skae._pca_start``). Without
    hidden layers the MLP would be a second linear map: the module is then the linear map
    alone, as ``mlp`` builds it.
    """
    if len(sizes) == 2:
        return mlp(sizes, activation, output_activation=output_activation, generator=generator)
    nonlinear = mlp(sizes, activation, generator=generator)
    if generator is not None:
        with torch.no_grad():
            nonlinear[-1].weight.zero_()
            nonlinear[-1].bias.zero_()
    path = LinearPath(_linear(sizes[0], sizes[-1], generator), nonlinear)
    if output_activation == "identity":
        return path
    return nn.Sequential(path, OUTPUT_ACTIVATIONS[output_activation]())


def last_linear(module):
    """The last ``nn.Linear`` of ``module``: the one that feeds its output (for a LinearPath,
    its linear map)."""
    if isinstance(module, LinearPath):
        return module.linear
    if isinstance(module, nn.Sequential) and isinstance(module[0], LinearPath):
        return module[0].linear
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


class GaussianEncoder(nn.Module):
    """An MLP whose output is split into the mean and log-variance of a diagonal Gaussian.

    The log-variance is clamped to [-``logvar_limit``, ``logvar_limit``] so that exp() of it
    can neither overflow nor vanish early in training.
    """

    def __init__(self, body, logvar_limit=10.0):
        super().__init__()
        self.body = body
        self.logvar_limit = logvar_limit

    def forward(self, x):
        mean, logvar = self.body(x).chunk(2, dim=-1)
        return mean, logvar.clamp(-self.logvar_limit, self.logvar_limit)
