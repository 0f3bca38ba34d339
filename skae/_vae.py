"""VariationalAutoEncoderTransformer: the generative member of the family."""

import numpy as np
import torch

from ._base import BaseAutoEncoder, _draw_seed
from ._modules import GaussianEncoder, mlp
from ._validation import check_float, check_int


class VariationalAutoEncoderTransformer(BaseAutoEncoder):
    """A variational autoencoder (Kingma & Welling, 2014) as a scikit-learn transformer.

    The encoder outputs the mean and log-variance of a diagonal Gaussian over the codes; while
    training, codes are drawn with the reparameterisation trick and decoded. The objective per
    sample is the summed squared reconstruction error (the negative log-likelihood of a
    Gaussian of variance 1/2 per feature in the model's units, up to a constant) plus ``beta``
    times the KL divergence of the encoder's Gaussian from the standard normal prior: the
    negative ELBO when ``beta=1``. ``transform`` returns the mean (deterministic),
    ``inverse_transform`` decodes codes, and ``sample`` draws codes from the prior and decodes
    them.

    Parameters
    ----------
    n_components : int, default=16
        Size of the latent codes.
    hidden_layer_sizes : tuple of int, default=(256, 128)
        Widths of the encoder's hidden layers; the decoder uses them in reverse.
    activation : str, default="leaky_relu"
        Activation of the hidden layers (see AutoEncoderTransformer).
    output_activation : {"auto", "sigmoid", "identity"}, default="auto"
        As in AutoEncoderTransformer.
    beta : float, default=1.0
        Weight of the KL term (beta-VAE; 1.0 is the standard ELBO). Larger values pull the
        codes closer to the prior, which ``sample`` draws from, at the cost of blurrier
        reconstructions; 0 drops the pull. On MNIST (64 components, default training) the
        aggregate codes' KL divergence from the prior is 0.09 with beta=1 against 210 with
        beta=0, and the reconstruction error about twice the plain autoencoder's.
    max_iter, batch_size, learning_rate_init, learning_rate, early_stopping, validation_fraction, \
n_iter_no_change, tol, warm_start, random_state, device, verbose
        As in AutoEncoderTransformer.

    Attributes
    ----------
    encoder_ : GaussianEncoder
        Maps inputs to (mean, log-variance).
    decoder_ : torch.nn.Module
        Maps codes to reconstructions.
    n_iter_, loss_curve_, validation_scores_, best_loss_, output_activation_, input_offset_, \
input_scale_, device_, n_features_in_, feature_names_in_
        As in AutoEncoderTransformer; ``loss_curve_`` holds the negative ELBO per sample
        (reconstruction + beta * KL, in the model's units).

    Notes
    -----
    ``score`` is the negative mean squared error of reconstructing X from the mean codes, in the
    input's units, the same measure as AutoEncoderTransformer's so the two can be compared in
    one grid search. It is not the ELBO.

    Examples
    --------
    >>> import numpy as np
    >>> from skae import VariationalAutoEncoderTransformer
    >>> X = np.random.default_rng(0).random((100, 20))
    >>> vae = VariationalAutoEncoderTransformer(n_components=2, max_iter=5, random_state=0,
    ...                                         device="cpu").fit(X)
    >>> vae.sample(3, random_state=0).shape
    (3, 20)
    """

    def __init__(
        self,
        n_components=16,
        *,
        hidden_layer_sizes=(256, 128),
        activation="leaky_relu",
        output_activation="auto",
        beta=1.0,
        max_iter=24,
        batch_size=256,
        learning_rate_init=3e-3,
        learning_rate="cosine",
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
        self.beta = beta
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
        check_float("beta", self.beta, low=0)

    def _build_modules(self, n_features, output_activation, generator):
        # The encoder's last layer gives each code's mean and log-variance.
        sizes = [n_features, *self.hidden_layer_sizes, 2 * self.n_components]
        body = mlp(sizes, self.activation, generator=generator)
        decoder = self._build_decoder(n_features, output_activation, generator)
        return {"encoder_": GaussianEncoder(body), "decoder_": decoder}

    def _draws_random_numbers(self):
        return True  # the reparameterised codes

    def _encode(self, modules, x):
        mean, _ = modules["encoder_"](x)
        return mean

    def _loss(self, training, x):
        mean, logvar = training.modules["encoder_"](x)
        noise = torch.randn(
            mean.shape, generator=training.noise_generator, device=x.device, dtype=x.dtype
        )
        codes = mean + noise * torch.exp(0.5 * logvar)
        recon = training.modules["decoder_"](codes)
        reconstruction = (recon - x).square().sum(dim=1)
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return (reconstruction + self.beta * kl).mean()

    def sample(self, n_samples=1, random_state=None):
        """Draw codes from the standard normal prior and decode them.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.
        random_state : int, RandomState instance or None, default=None
            Seeds the draw (a local generator; global state is untouched).

        Returns
        -------
        X_sampled : ndarray of shape (n_samples, n_features_in_), dtype float32
            New data in the input's own units.
        """
        check_int("n_samples", n_samples, low=1)
        generator = torch.Generator().manual_seed(_draw_seed(random_state))
        codes = torch.randn((n_samples, self.n_components), generator=generator)
        return self.inverse_transform(codes.numpy().astype(np.float32))
