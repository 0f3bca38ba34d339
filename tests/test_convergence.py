"""No fit ends worse than the constant prediction of the column means, and none does so silently.

A fit starts at the column means (the decoder's last bias), the plateau rule waits until the
loss has clearly beaten them, and a fit that ends without beating them warns.
"""

import math
import types
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer
from skae._base import _share_to_beat
from skae._modules import mlp, start_at
from skae._plan import DataSummary, make_plan
from skae._scaling import AffineScaling, ColumnStats
from skae._training import process_group
from skae.datasets import load_mnist

X = (load_digits().data / 16).astype(np.float32)
MEANS_ERROR = float(X.var(axis=0).mean())  # the constant prediction's training MSE: 0.0733


def fit_recording_warnings(estimator, X):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(X)
    return [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


@pytest.mark.parametrize("output_activation", ["sigmoid", "identity"])
def test_the_decoder_starts_at_the_given_constant(output_activation):
    decoder = mlp([4, 8, 5], "leaky_relu", output_activation=output_activation,
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    target = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0])
    start_at(decoder, target, output_activation)
    last = [m for m in decoder if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()  # the rest of the last layer adds nothing
        out = decoder(torch.randn(3, 4))
    expected = target.clamp(1e-3, 1 - 1e-3) if output_activation == "sigmoid" else target
    torch.testing.assert_close(out, expected.expand(3, 5), rtol=1e-5, atol=1e-6)


def test_the_plateau_rule_waits_until_the_means_are_beaten():
    # tol=0.5 calls every epoch a plateau. A learning rate too small to move the network keeps
    # the loss at the column means': the rule must not end that fit, which then warns.
    # The design's network, started at random with its output at the column means; no
    # validation split, so the plateau rule watches the training loss.
    stalled = AutoEncoderTransformer(
        n_components=8, hidden_layer_sizes=(32,), learning_rate_init=1e-7,
        learning_rate="constant", tol=0.5, n_iter_no_change=1, max_iter=12, random_state=0,
        init="random", early_stopping=False,
    )  # fmt: skip
    messages = fit_recording_warnings(stalled, X[:300])
    assert stalled.n_iter_ == 12
    assert min(stalled.loss_curve_) > 0.9 * MEANS_ERROR  # it really stalled at the means
    assert len(messages) == 1 and "column means" in messages[0]
    assert "learning_rate_init (it is 1e-07)" in messages[0]
    # The same fit at a learning rate that beats the means stops on the plateau, silently.
    learning = stalled.set_params(learning_rate_init=3e-3)
    assert fit_recording_warnings(learning, X[:300]) == []
    assert learning.n_iter_ < 12
    assert learning.loss_curve_[-1] < _share_to_beat(8, 64) * MEANS_ERROR


@pytest.mark.parametrize(
    "cls, params",
    [
        (AutoEncoderTransformer, dict(init="random", early_stopping=False)),
        (VariationalAutoEncoderTransformer, dict(early_stopping=False)),
    ],
)
def test_a_learning_rate_too_large_is_named(cls, params):
    # At learning_rate_init=1 a digits fit ends far above the column means' error.
    est = cls(n_components=16, learning_rate_init=1.0, max_iter=30, random_state=0, **params)
    messages = fit_recording_warnings(est, X)
    assert -est.score(X) > MEANS_ERROR
    assert len(messages) == 1
    assert "learning_rate_init (it is 1.0)" in messages[0]


def test_a_learning_rate_too_large_keeps_the_pca_start_and_says_so():
    # At the defaults on digits the fit starts at PCA and keeps the weights that do best on its
    # validation rows. At learning_rate_init=1 training diverges: the start is kept, and the
    # warning names the learning rate and what was kept.
    est = AutoEncoderTransformer(n_components=16, learning_rate_init=1.0, max_iter=30,
                                 random_state=0)  # fmt: skip
    messages = fit_recording_warnings(est, X)
    pca = PCA(16).fit(X)
    pca_error = np.mean((pca.inverse_transform(pca.transform(X)) - X) ** 2)
    assert est.init_ == "pca" and -est.score(X) < 1.01 * pca_error
    assert len(messages) == 1
    assert "learning_rate_init (it is 1.0)" in messages[0]
    assert (
        "It keeps the weights that did best on its validation rows: its starting point"
        in (messages[0])
    )


@pytest.mark.parametrize("cls", [AutoEncoderTransformer, VariationalAutoEncoderTransformer])
def test_default_fits_beat_the_means_and_do_not_warn(cls):
    est = cls(n_components=8, random_state=0)
    assert fit_recording_warnings(est, X) == []
    assert -est.score(X) < 0.5 * MEANS_ERROR


def test_the_vae_constant_loss_is_the_objective_of_a_collapsed_model():
    # Codes on the prior (mean 0, log-variance 0: no KL) and a decoder that outputs the column
    # means whatever the code: its negative ELBO under the calibrated variance is
    # 0.5 d (1 + log(2 pi v)), v the mean variance, which _constant_loss must give.
    vae = VariationalAutoEncoderTransformer(
        n_components=2, hidden_layer_sizes=(8,), output_activation="identity"
    )
    stats = ColumnStats.of(X.astype(np.float64))
    scaling = AffineScaling(np.zeros(64), 1.0, "cpu")
    plan = make_plan(
        vae._plan_rules(),
        vae._planned_params(),
        DataSummary.of(stats),
        device=torch.device("cpu"),
        group=process_group(torch.device("cpu")),
        blueprint=vae._blueprint,
    )
    modules = vae._build_modules(plan, torch.Generator().manual_seed(0))
    for module in modules.values():
        last = [m for m in module.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
    start_at(modules["decoder_"], torch.as_tensor(X.mean(axis=0)), "identity")
    state = types.SimpleNamespace(modules=modules, noise_generator=torch.Generator(), plan=plan)
    with torch.no_grad():
        objective = float(vae._loss(state, torch.as_tensor(X)))
    assert objective == pytest.approx(vae._constant_loss(stats, scaling), rel=1e-5)
    expected = 0.5 * 64 * (1 + math.log(2 * math.pi * MEANS_ERROR))
    assert objective == pytest.approx(expected, rel=1e-5)  # the loss is computed in float32


def test_mostly_black_images_train_past_the_saturated_start():
    # MNIST's images of the digit 1 are mostly black. Started at random output biases, seed 2
    # stalled at an all-black output (loss 0.052, the mean image's 0.029) where the sigmoid's
    # gradient vanishes; started at the mean image, every seed trains (about 0.005).
    try:  # where users keep it: $SKAE_DATA/mnist/, else ~/scikit_learn_data/mnist/
        mnist = load_mnist(download=False)
    except OSError as error:
        pytest.skip(f"real MNIST not available: {str(error).splitlines()[0]}")
    ones = mnist.X_train[mnist.y_train == 1][:1000]
    for seed in (0, 2):
        est = AutoEncoderTransformer(n_components=32, max_iter=20, random_state=seed, init="random")
        assert fit_recording_warnings(est, ones) == []
        assert est.output_activation_ == "sigmoid"
        assert -est.score(ones) < 0.2 * float(ones.var(axis=0).mean())


def test_under_a_cosine_schedule_the_plateau_rule_waits_as_long_as_progress_took():
    # n_iter_no_change epochs at least; watching a validation split under the cosine schedule,
    # also as many as the fit took to reach its last improvement, and PATIENCE_SHARE of it.
    from skae._training._loop import PATIENCE_SHARE, patience

    def plan(**settings):
        settings = {"learning_rate": "cosine", "validation_fraction": 0.1, **settings}
        return types.SimpleNamespace(max_iter=200, n_iter_no_change=10, **settings)

    state = types.SimpleNamespace(epochs_without_improvement=5)
    share = math.ceil(PATIENCE_SHARE * 200)
    assert patience(plan(), 15, state) == max(10, share)  # the last improvement: epoch 10
    assert patience(plan(), 105, state) == 100  # the last improvement: epoch 100
    assert patience(plan(learning_rate="constant"), 105, state) == 10
    assert patience(plan(validation_fraction=None), 105, state) == 10  # the training loss
