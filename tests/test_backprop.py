"""The hand-written backward pass: the same gradients as autograd, and the same training."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose
from sklearn.datasets import load_digits
from torch import nn

from skae import AutoEncoderTransformer
from skae._missing import MissingMask, hidden_weighted_mse
from skae._modules import ACTIVATIONS, mlp, mlp_beside_a_linear_path
from skae._training import TrainingStep, _backprop
from skae._training._backprop import BackpropStep, supports

SUPPORTED = ["leaky_relu", "relu", "elu", "tanh"]


def autoencoder_layers(activation, output_activation, hidden=(16, 8), seed=0):
    generator = torch.Generator().manual_seed(seed)
    encoder = mlp([20, *hidden, 4], activation, generator=generator)
    decoder = mlp(
        [4, *reversed(hidden), 20],
        activation,
        output_activation=output_activation,
        generator=generator,
    )
    return [*encoder, *decoder]


def linear_path_layers(activation, output_activation, hidden=(16, 8), seed=0, mask=False):
    """A PCA start's network: encoder and decoder each a linear map beside an MLP (random
    weights throughout, so that every gradient is nonzero)."""
    generator = torch.Generator().manual_seed(seed)
    n_inputs = 40 if mask else 20
    encoder = mlp_beside_a_linear_path([n_inputs, *hidden, 4], activation, generator=generator)
    decoder = mlp_beside_a_linear_path(
        [4, *reversed(hidden), 20],
        activation,
        output_activation=output_activation,
        generator=generator,
    )
    for module in (encoder, decoder):
        for parameter in module.parameters():
            with torch.no_grad():
                parameter.uniform_(-0.5, 0.5, generator=generator)
    return ([MissingMask(torch.full((20,), 0.5))] if mask else []) + [encoder, decoder]


def gradients(step_class, layers, x, corrupt=None):
    """The loss and parameter gradients that one step of ``step_class`` computes on x."""
    layers = copy.deepcopy(layers)
    parameters = [p for layer in layers for p in layer.parameters()]
    optimizer = torch.optim.Adam(parameters)
    if step_class is BackpropStep:
        step = BackpropStep(layers, optimizer, corrupt)
    else:
        model = nn.Sequential(*layers)
        inputs = (lambda x: x) if corrupt is None else corrupt

        def loss(x):
            observed = ~torch.isnan(x)
            return F.mse_loss(model(inputs(x))[observed], x[observed])

        step = TrainingStep(loss, optimizer)
    loss = step.compute_gradients(x)
    return float(loss.detach()), [p.grad.clone() for p in parameters]


@pytest.mark.parametrize("activation", SUPPORTED)
@pytest.mark.parametrize("output_activation", ["sigmoid", "identity", "clip"])
@pytest.mark.parametrize("hidden", [(16, 8), ()])
@pytest.mark.parametrize("noisy", [False, True])
def test_gradients_equal_autograds(activation, output_activation, hidden, noisy):
    layers = autoencoder_layers(activation, output_activation, hidden)
    x = torch.rand(37, 20, generator=torch.Generator().manual_seed(1))
    noise = 0.3 * torch.randn(37, 20, generator=torch.Generator().manual_seed(2))
    corrupt = (lambda x: x + noise) if noisy else None
    loss, grads = gradients(BackpropStep, layers, x, corrupt)
    expected_loss, expected_grads = gradients(TrainingStep, layers, x, corrupt)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert len(grads) == len(expected_grads) == 2 * (2 * len(hidden) + 2)
    for grad, expected in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)
        assert expected.abs().max() > 0  # every gradient is really compared


@pytest.mark.parametrize("activation", SUPPORTED)
@pytest.mark.parametrize("output_activation", ["sigmoid", "identity", "clip"])
@pytest.mark.parametrize("hidden", [(16, 8), (16,)])
@pytest.mark.parametrize("mask", [False, True])
def test_linear_path_gradients_equal_autograds(activation, output_activation, hidden, mask):
    layers = linear_path_layers(activation, output_activation, hidden, mask=mask)
    x = torch.rand(37, 20, generator=torch.Generator().manual_seed(1))
    if mask:
        x[torch.rand(37, 20, generator=torch.Generator().manual_seed(2)) < 0.3] = float("nan")
    assert supports(layers)
    loss, grads = gradients(BackpropStep, layers, x)
    expected_loss, expected_grads = gradients(TrainingStep, layers, x)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    # Per module: the linear map's weight and bias, then the MLP's.
    assert len(grads) == len(expected_grads) == 2 * (2 + 2 * (len(hidden) + 1))
    for grad, expected in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)
        assert expected.abs().max() > 0


@pytest.mark.parametrize("hidden_weight", [3.0, 0.5])
def test_weighted_hidden_values_gradients_equal_autograds(hidden_weight):
    # The imputer's loss: the values that masking hid from the network weigh hidden_weight,
    # those it was shown 1, the missing ones 0.
    layers = linear_path_layers("leaky_relu", "sigmoid", (16,), mask=True)
    x = torch.rand(37, 20, generator=torch.Generator().manual_seed(1))
    x[torch.rand(37, 20, generator=torch.Generator().manual_seed(2)) < 0.3] = float("nan")
    hide = torch.rand(37, 20, generator=torch.Generator().manual_seed(3)) < 0.2

    def corrupt(x):
        return x.masked_fill(hide, float("nan"))

    backprop_layers = copy.deepcopy(layers)
    parameters = [p for layer in backprop_layers for p in layer.parameters()]
    step = BackpropStep(
        backprop_layers, torch.optim.Adam(parameters), corrupt, hidden_weight=hidden_weight
    )
    loss = float(step.compute_gradients(x))
    grads = [p.grad.clone() for p in parameters]

    model = nn.Sequential(*copy.deepcopy(layers))
    weights = torch.where(hide, hidden_weight, 1.0).masked_fill(torch.isnan(x), 0.0)
    squared = (model(corrupt(x)) - torch.nan_to_num(x)).square()
    expected_loss = (weights * squared).sum() / weights.sum()
    # The loss that autograd trains on (devices other than the CPU) is the same.
    autograd_loss = hidden_weighted_mse(model(corrupt(x)), x, corrupt(x), hidden_weight)
    assert autograd_loss.item() == pytest.approx(expected_loss.item(), rel=1e-6)
    expected_loss.backward()
    assert loss == pytest.approx(expected_loss.item(), rel=1e-5)
    for grad, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(grad, p.grad, rtol=1e-5, atol=1e-7)
        assert p.grad.abs().max() > 0


@pytest.mark.parametrize("mask", [False, True])
def test_trimmed_loss_gradients_equal_autograds(mask):
    # The outlier detector's loss: the mean over the batch's 80% best-reconstructed rows of
    # their mean squared error over their observed entries.
    layers = linear_path_layers("leaky_relu", "identity", (16,), mask=mask)
    x = torch.rand(37, 20, generator=torch.Generator().manual_seed(1))
    x[:4] += 3.0  # rows the trimming drops
    if mask:
        x[torch.rand(37, 20, generator=torch.Generator().manual_seed(2)) < 0.3] = float("nan")
    backprop_layers = copy.deepcopy(layers)
    parameters = [p for layer in backprop_layers for p in layer.parameters()]
    step = BackpropStep(backprop_layers, torch.optim.Adam(parameters), keep_fraction=0.8)
    loss = float(step.compute_gradients(x))
    grads = [p.grad.clone() for p in parameters]

    model = nn.Sequential(*copy.deepcopy(layers))
    observed = ~torch.isnan(x)
    squared = (model(x) - torch.nan_to_num(x)).square() * observed
    row_errors = squared.sum(dim=1) / observed.sum(dim=1)
    kept = torch.topk(row_errors, 30, largest=False).values  # ceil(0.8 * 37)
    expected_loss = kept.mean()
    expected_loss.backward()
    assert loss == pytest.approx(expected_loss.item(), rel=1e-5)
    for grad, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(grad, p.grad, rtol=1e-5, atol=1e-7)
        assert p.grad.abs().max() > 0


def test_supports_only_what_it_can_differentiate():
    assert supports(autoencoder_layers("leaky_relu", "sigmoid"))
    assert supports([nn.Linear(3, 2), nn.Identity()])
    for activation in sorted(set(ACTIVATIONS) - set(SUPPORTED)):  # need their input
        assert not supports(autoencoder_layers(activation, "sigmoid"))
    assert not supports([nn.Linear(3, 2, bias=False)])
    assert not supports([nn.Tanh(), nn.Linear(3, 2)])
    assert not supports([nn.Linear(3, 2), nn.Tanh(), nn.Sigmoid()])
    assert not supports([nn.Linear(3, 2), nn.Dropout()])
    assert not supports([])
    with pytest.raises(ValueError, match="cannot train"):
        BackpropStep([nn.Linear(3, 2), nn.GELU()], optimizer=None)


@pytest.fixture(scope="module")
def X():
    return (load_digits().data[:400] / 16).astype(np.float32)


# The fits below compare two ways of computing one training's steps: a few epochs, on purpose.
short_fits = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"noise_type": "gaussian", "noise_level": 0.2},
        {"noise_type": "masking", "noise_level": 0.3, "activation": "tanh"},
        {"output_activation": "identity", "hidden_layer_sizes": ()},
        {"init": "pca"},
        {"init": "pca", "output_activation": "identity", "missing": True},
    ],
    ids=["plain", "gaussian-noise", "masking-noise-tanh", "linear", "pca-start", "pca-nan"],
)
@short_fits
def test_training_matches_autograd_training(X, params, monkeypatch):
    params = dict(params)
    if params.pop("missing", False):
        X = X.copy()
        X[np.random.default_rng(0).random(X.shape) < 0.2] = np.nan

    def fit():
        defaults = dict(n_components=8, hidden_layer_sizes=(32,), max_iter=4, batch_size=64,
                        init="random", early_stopping=False)  # fmt: skip
        return AutoEncoderTransformer(random_state=0, **{**defaults, **params}).fit(X)

    used = []
    compute_gradients = BackpropStep.compute_gradients
    monkeypatch.setattr(
        BackpropStep,
        "compute_gradients",
        lambda self, x: used.append(1) or compute_gradients(self, x),
    )
    fast = fit()
    assert len(used) == 4 * 7  # every step of every epoch took the hand-written path
    monkeypatch.setattr(_backprop, "supports", lambda layers: False)
    used.clear()
    reference = fit()
    assert not used
    assert_allclose(fast.loss_curve_, reference.loss_curve_, rtol=1e-4)
    assert_allclose(fast.transform(X), reference.transform(X), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "params", [{"l1_penalty": 0.01}, {"contractive_penalty": 1e-4}, {"activation": "gelu"}]
)
@short_fits
def test_other_losses_and_activations_use_autograd(X, params, monkeypatch):
    def refuse(self, x):
        raise AssertionError("the hand-written backward pass cannot compute this loss")

    monkeypatch.setattr(BackpropStep, "compute_gradients", refuse)
    ae = AutoEncoderTransformer(n_components=4, hidden_layer_sizes=(8,), max_iter=1, **params)
    ae.fit(X)
    assert ae.n_iter_ == 1


def test_adams_update_is_the_optimizers_own(monkeypatch):
    # TrainingStep.update calls torch's functional Adam on the optimizer's own state tensors
    # (a cheaper call): the same parameters and state as optimizer.step(), to the last bit.
    def trained(use_update, steps=6):
        generator = torch.Generator().manual_seed(0)
        net = nn.Sequential(*autoencoder_layers("leaky_relu", "identity"))
        x = torch.randn(32, 20, generator=generator)
        optimizer = torch.optim.Adam(net.parameters(), lr=3e-3, fused=True)
        step = TrainingStep(lambda batch: F.mse_loss(net(batch), batch), optimizer)
        for index in range(steps):
            step.set_learning_rate(3e-3 / (index + 1))  # the schedule's changes are read
            if use_update:
                step(x)
            else:
                step.compute_gradients(x)
                optimizer.step()
        return net, optimizer

    calls = []
    optimizer_step = torch.optim.Adam.step
    monkeypatch.setattr(
        torch.optim.Adam, "step", lambda self: calls.append(1) or optimizer_step(self)
    )
    net, optimizer = trained(use_update=True)
    assert len(calls) == 1  # the first step, which creates Adam's state; then the functional
    reference, reference_optimizer = trained(use_update=False)
    for p, q in zip(net.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)
    state, reference_state = (
        optimizer.state_dict()["state"],
        reference_optimizer.state_dict()["state"],
    )
    for key in reference_state:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state[key][name], reference_state[key][name])
