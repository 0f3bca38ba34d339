"""AutoEncoderTransformer: the plain autoencoder and its regularised family members."""

import math

import torch
import torch.autograd.forward_ad as forward_ad
import torch.nn.functional as F

from ._base import BaseAutoEncoder
from ._modules import mlp
from ._validation import check_float, check_option

NOISE_TYPES = (None, "gaussian", "masking")


class AutoEncoderTransformer(BaseAutoEncoder):
    """A nonlinear alternative to PCA: codes learned by a PyTorch autoencoder.

    The encoder maps n_features -> hidden_layer_sizes -> n_components; the decoder mirrors it.
    The training objective is the mean squared reconstruction error, minimised with Adam. Three
    optional regularisers make it a sparse, denoising or contractive autoencoder; they combine
    freely and are ordinary parameters for GridSearchCV.

    Data in [0, 1] (for example image pixels) are modelled as they are, with a sigmoid output
    layer. Other data are centred per feature and divided by one overall scale, with a linear
    output layer. Either way ``inverse_transform`` returns the input's own units and ``score``
    is the negative mean squared error in those units.

    Parameters
    ----------
    n_components : int, default=64
        Size of the codes returned by ``transform``.
    hidden_layer_sizes : tuple of int, default=(256, 128)
        Widths of the encoder's hidden layers; the decoder uses them in reverse.
    activation : {"leaky_relu", "relu", "elu", "gelu", "silu", "tanh"}, default="leaky_relu"
        Activation of the hidden layers. The code layer itself is linear.
    output_activation : {"auto", "sigmoid", "identity"}, default="auto"
        Output layer of the decoder. "auto" takes "sigmoid" when the training data lie in
        [0, 1], else "identity" (with per-feature centring and one overall scale).
    l1_penalty : float, default=0.0
        Weight of the sparsity penalty on the codes (sparse autoencoder): the mean over samples
        of ``||z||_1 / (||z||_2 sqrt(n_components))``, which lies in (0, 1]. It is the L1 norm
        of each code measured against its L2 norm, so the network cannot dodge it by shrinking
        the codes and growing the decoder's weights.
    noise_type : {None, "gaussian", "masking"}, default=None
        Corruption of the input while training (denoising autoencoder); the target is always
        the clean input. "gaussian" adds N(0, noise_level**2) noise in the input's own units;
        "masking" sets a random fraction ``noise_level`` of the features to 0.
    noise_level : float, default=0.1
        Standard deviation ("gaussian") or masked fraction in [0, 1) ("masking").
    contractive_penalty : float, default=0.0
        Weight of the squared Frobenius norm of the encoder's Jacobian with respect to its
        (scaled) input, averaged over samples (contractive autoencoder). It is estimated
        without bias from one Gaussian probe per sample, ``E_u ||J u||^2 = ||J||_F^2``, with
        forward-mode differentiation: one extra pass through the encoder per step.
    max_iter : int, default=20
        Maximum number of epochs for ``fit``.
    batch_size : int, default=128
        Samples per optimizer step. The last, partial batch of an epoch is used too.
    learning_rate_init : float, default=1e-3
        Adam's (initial) learning rate.
    learning_rate : {"constant", "cosine"}, default="constant"
        Schedule of the learning rate in ``fit``: constant, or decayed from
        ``learning_rate_init`` to 0 along a half cosine over ``max_iter`` epochs (Loshchilov &
        Hutter, 2017). ``partial_fit`` always uses ``learning_rate_init``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data, stop when its reconstruction
        error stops improving, and keep the weights of the best epoch.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without an improvement of more than ``tol`` (relative) before stopping.
    tol : float, default=1e-4
        Relative improvement of the monitored loss that counts as progress.
    warm_start : bool, default=False
        When True, ``fit`` continues from the previous fit's weights (with a new optimizer).
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffling, the validation split and the noise, through
        local generators only. Pass an int for reproducible results.
    device : str, default="auto"
        "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:N" or "mps".
    verbose : int, default=0
        0 prints nothing; 1 shows a progress bar with the loss.

    Attributes
    ----------
    encoder_, decoder_ : torch.nn.Module
        The trained networks.
    n_iter_ : int
        Epochs trained.
    loss_curve_ : list of float
        Training objective after each epoch (in the model's units: see ``input_scale_``).
    validation_scores_ : list of float or None
        Negative validation MSE after each epoch, when ``early_stopping`` is on.
    best_loss_ : float
        Lowest monitored loss: validation MSE with early stopping, else training objective.
    output_activation_ : str
        The output layer chosen: "sigmoid" or "identity".
    input_offset_ : ndarray of shape (n_features_in_,)
        The model sees ``(X - input_offset_) / input_scale_``.
    input_scale_ : float
        See ``input_offset_``.
    device_ : torch.device
        The device the model lives on.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when X had string column names.

    See Also
    --------
    sklearn.decomposition.PCA : The linear transformer this one can replace.
    VariationalAutoEncoderTransformer : The generative member of the family.

    Examples
    --------
    >>> import numpy as np
    >>> from skae import AutoEncoderTransformer
    >>> X = np.random.default_rng(0).random((100, 20))
    >>> ae = AutoEncoderTransformer(n_components=4, max_iter=5, random_state=0, device="cpu")
    >>> ae.fit_transform(X).shape
    (100, 4)
    """

    def __init__(
        self,
        n_components=64,
        *,
        hidden_layer_sizes=(256, 128),
        activation="leaky_relu",
        output_activation="auto",
        l1_penalty=0.0,
        noise_type=None,
        noise_level=0.1,
        contractive_penalty=0.0,
        max_iter=20,
        batch_size=128,
        learning_rate_init=1e-3,
        learning_rate="constant",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        warm_start=False,
        random_state=None,
        device="auto",
        verbose=0,
    ):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.output_activation = output_activation
        self.l1_penalty = l1_penalty
        self.noise_type = noise_type
        self.noise_level = noise_level
        self.contractive_penalty = contractive_penalty
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _check_extra_params(self):
        check_float("l1_penalty", self.l1_penalty, low=0)
        check_option("noise_type", self.noise_type, NOISE_TYPES)
        if self.noise_type == "masking":
            check_float("noise_level", self.noise_level, low=0, high=1, high_open=True)
        else:
            check_float("noise_level", self.noise_level, low=0)
        check_float("contractive_penalty", self.contractive_penalty, low=0)

    def _build_modules(self, n_features, output_activation, generator):
        hidden = tuple(self.hidden_layer_sizes)
        encoder = mlp(
            [n_features, *hidden, self.n_components], self.activation, generator=generator
        )
        decoder = mlp(
            [self.n_components, *reversed(hidden), n_features],
            self.activation,
            output_activation=output_activation,
            generator=generator,
        )
        return {"encoder_": encoder, "decoder_": decoder}

    def _loss(self, training, x):
        encoder, decoder = training.modules["encoder_"], training.modules["decoder_"]
        x_in = self._corrupt(training, x)
        if self.contractive_penalty > 0:
            codes, jacobian_probe = _encode_with_jvp(encoder, x_in, training.noise_generator)
        else:
            codes = encoder(x_in)
        loss = F.mse_loss(decoder(codes), x)
        if self.l1_penalty > 0:
            ratio = codes.norm(p=1, dim=1) / codes.norm(dim=1).clamp_min(1e-12)
            loss = loss + self.l1_penalty * ratio.mean() / math.sqrt(self.n_components)
        if self.contractive_penalty > 0:
            loss = loss + self.contractive_penalty * jacobian_probe.square().sum(dim=1).mean()
        return loss

    def _draws_random_numbers(self):
        return (self.noise_type is not None and self.noise_level > 0) or (
            self.contractive_penalty > 0
        )

    def _corrupt(self, training, x):
        """The training input: x with noise, in the model's units (the target stays x)."""
        if self.noise_type is None or self.noise_level == 0:
            return x
        generator, scaling = training.noise_generator, training.scaling
        if self.noise_type == "gaussian":
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return x + noise * (self.noise_level / scaling.scale)
        masked = torch.rand(x.shape, generator=generator, device=x.device) < self.noise_level
        zero_in_model_units = scaling.to_model(torch.zeros_like(x[:1]))
        return torch.where(masked, zero_in_model_units, x)


def _encode_with_jvp(encoder, x, generator):
    """The codes and ``J u`` for a Gaussian probe ``u`` per sample, J the encoder's Jacobian.

    Forward-mode differentiation carries the probe through the layers alongside the input, and
    both outputs stay differentiable for the backward pass.
    """
    probe = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    with forward_ad.dual_level():
        dual = encoder(forward_ad.make_dual(x, probe))
        codes, tangent = forward_ad.unpack_dual(dual)
    return codes, tangent
