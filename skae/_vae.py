"""VariationalAutoEncoderTransformer: the generative member of the family."""

import math

import numpy as np
import torch

from ._base import BaseAutoEncoder, CodesTransformerMixin, _draw_seed, _mean_variance
from ._missing import masked_squared_error, reads_mask
from ._modules import GaussianEncoder, mlp
from ._persistence import register
from ._plan import PlanRules
from ._scaling import column_statistics
from ._tabular import cell_losses, entropies, layout_of
from ._training import iter_chunks
from ._validation import check_float, check_int

# A code dimension is active when its posterior mean varies over the data by more than this
# (Burda, Grosse & Salakhutdinov, 2016, "Importance Weighted Autoencoders", section 5.2).
ACTIVITY_THRESHOLD = 0.01

# The least variance the calibrated decoder may take (model units), so that data it can
# reconstruct exactly (constant features) cannot send the log-likelihood to infinity.
MIN_DECODER_VARIANCE = 1e-6


@register
class VariationalAutoEncoderTransformer(CodesTransformerMixin, BaseAutoEncoder):
    """A variational autoencoder (Kingma & Welling, 2014) as a scikit-learn transformer.

    The encoder outputs the mean and log-variance of a diagonal Gaussian over the codes; while
    training, codes are drawn with the reparameterisation trick and decoded. The objective per
    sample is the negative log-likelihood of the data under a Gaussian decoder plus ``beta``
    times the KL divergence of the encoder's Gaussian from the standard normal prior: the
    negative ELBO when ``beta=1``. The decoder's variance, one for all features, is calibrated:
    set to its maximum-likelihood value, the mean squared error of the batch (Rybkin, Daniilidis
    & Levine, 2021, "Simple and Effective VAE Training with Calibrated Decoders"). A fixed
    variance would weigh the KL term against the data's scale; on data in [0, 1] the KL term
    then dominates and the codes collapse onto the prior (on MNIST at 16 components, a decoder
    of fixed variance 1/2 reconstructed with 16.7 squared error per image, a calibrated one
    with 6.6). ``transform`` returns the mean (deterministic), ``inverse_transform`` decodes
    codes, and ``sample`` draws codes from the prior and decodes them.

    Parameters
    ----------
    n_components : int, default=16
        Size of the latent codes.
    hidden_layer_sizes : "auto" or tuple of int, default="auto"
        Widths of the encoder's hidden layers; the decoder uses them in reverse. "auto" as in
        AutoEncoderTransformer.
    activation : str, default="leaky_relu"
        Activation of the hidden layers (see AutoEncoderTransformer).
    output_activation : {"auto", "sigmoid", "identity", "clip"}, default="auto"
        As in AutoEncoderTransformer ("auto": "sigmoid" for data in [0, 1], else "identity").
    beta : float, default=1.0
        Weight of the KL term (beta-VAE; 1.0 is the standard ELBO). Larger values pull the
        codes closer to the prior, which ``sample`` draws from, at the cost of blurrier
        reconstructions; 0 drops the pull. On MNIST (64 components, default training) the
        aggregate codes' KL divergence from the prior is 0.09 with beta=1 against 210 with
        beta=0.
    max_iter, batch_size, learning_rate_init, learning_rate, validation_fraction, \
n_iter_no_change, tol, warm_start, random_state, device, n_threads, verbose, \
categorical_features
        As in AutoEncoderTransformer. With categorical columns the likelihood is a Gaussian's
        for the (standardised) numbers and a categorical distribution's (a softmax) for each
        categorical column; ``sample`` gives each category's most probable value for the drawn
        code, as it gives the decoder's mean for the numbers.
    early_stopping : "auto" or bool, default=False
        As in AutoEncoderTransformer, but off by default: the validation split watches the
        reconstruction error, which is not what a VAE trades against its KL term.

    Attributes
    ----------
    encoder_ : GaussianEncoder
        Maps inputs to (mean, log-variance).
    decoder_ : torch.nn.Module
        Maps codes to reconstructions.
    n_iter_, loss_curve_, validation_scores_, best_loss_, output_activation_, input_offset_, \
input_scale_, device_, n_features_in_, feature_names_in_, is_categorical_, categories_
        As in AutoEncoderTransformer; ``loss_curve_`` holds the training objective per
        sample: the negative ELBO in nats (for ``beta=1``) of the data in the model's units,
        under the decoder's calibrated variance.
    fit_plan_, hidden_layer_sizes_, batch_size_, max_iter_
        As in AutoEncoderTransformer.
    n_active_components_ : int
        Code dimensions in use: those whose posterior mean varies over the training data (of
        the last call to fit or partial_fit) with a variance above 0.01, the activity measure
        of Burda et al. (2016). Collapsed dimensions carry no information about the input.

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
        categorical_features="from_dtype",
        hidden_layer_sizes="auto",
        activation="leaky_relu",
        output_activation="auto",
        beta=1.0,
        max_iter="auto",
        batch_size="auto",
        learning_rate_init=3e-3,
        learning_rate="cosine",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        warm_start=False,
        random_state=None,
        device="auto",
        n_threads="auto",
        verbose=0,
    ):
        self.n_components = n_components
        self.categorical_features = categorical_features
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
        self.n_threads = n_threads
        self.verbose = verbose

    def _check_extra_params(self):
        check_float("beta", self.beta, low=0)

    def _plan_rules(self):
        # A random start (the VAE has no init), and codes drawn at random while training.
        return PlanRules(pca_start=False, random_loss=True)

    def _build_modules(self, plan, generator):
        # The encoder's last layer gives each code's mean and log-variance.
        sizes = [plan.n_inputs, *plan.hidden_layer_sizes, 2 * plan.n_components]
        body = mlp(sizes, plan.activation, generator=generator)
        decoder = self._build_decoder(plan, generator)
        return {"encoder_": GaussianEncoder(body), "decoder_": decoder}

    def _encode(self, modules, x):
        mean, _ = modules["encoder_"](x)
        return mean

    def _loss(self, state, x):
        mean, logvar = state.modules["encoder_"](x)
        noise = torch.randn(
            mean.shape, generator=state.noise_generator, device=x.device, dtype=x.dtype
        )
        codes = mean + noise * torch.exp(0.5 * logvar)
        output = state.modules["decoder_"](codes)
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)
        layout = layout_of(state.plan)
        if layout.is_mixed:
            return (_mixed_negative_log_likelihood(output, x, layout) + self.beta * kl).mean()
        if reads_mask(state):
            # The likelihood of each row's observed values only.
            squared_error, n_observed = masked_squared_error(output, x)
            n_features = (~torch.isnan(x)).sum(dim=1)
            mean_squared_error = squared_error.sum() / n_observed
        else:
            squared_error = (output - x).square()
            n_features = x.shape[1]
            mean_squared_error = squared_error.mean()
        # At its optimum the variance's own gradient is zero, so it is held fixed (detached).
        variance = mean_squared_error.detach().clamp_min(MIN_DECODER_VARIANCE)
        negative_log_likelihood = 0.5 * (
            squared_error.sum(dim=1) / variance + n_features * torch.log(2 * math.pi * variance)
        )
        return (negative_log_likelihood + self.beta * kl).mean()

    def _constant_loss(self, stats, scaling, share=1.0, layout=None):
        # The objective of a decoder whose squared error is share x the column means', with
        # its calibrated variance, and codes on the prior (no KL): 0.5 d (1 + log(2 pi v)),
        # d the observed values per row; for a mixed table (standardised numbers: variance
        # share), plus share x each categorical column's entropy at the training frequencies.
        if layout is not None and layout.is_mixed:
            observed = stats.observed / stats.n_rows
            numbers = float(np.sum(observed[: layout.n_numeric]))
            variance = max(share, MIN_DECODER_VARIANCE)
            gaussian = 0.5 * numbers * (1.0 + math.log(2 * math.pi * variance))
            starts = [start for start, _ in layout.blocks]
            weights = observed[starts] if starts else []
            return gaussian + share * float(np.dot(weights, entropies(stats, layout)))
        variance = max(share * _mean_variance(stats, scaling.scale), MIN_DECODER_VARIANCE)
        n_features = stats.mean.shape[0]
        if stats.counts is not None:
            n_features = float(np.sum(stats.counts)) / stats.n_rows
        return 0.5 * n_features * (1.0 + math.log(2 * math.pi * variance))

    def _fitted_extras(self, state, X, group):
        encoder, scaling = state.modules["encoder_"], state.scaling

        def posterior_means():
            with torch.inference_mode():
                for _, x in iter_chunks(X, state.device, self._check_block):
                    yield encoder(scaling.to_model(x))[0].cpu().numpy()

        stats = column_statistics(posterior_means()).over_processes(group)
        variances = stats.squared_deviations / stats.n_rows
        return {"n_active_components_": int((variances > ACTIVITY_THRESHOLD).sum())}

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


def _mixed_negative_log_likelihood(output, x, layout):
    """Each row's negative log-likelihood under the decoder: a Gaussian's for its observed
    (standardised) numbers, with the variance calibrated to the batch's mean squared error as
    for numeric data, and a categorical distribution's for each observed category."""
    terms, observed = cell_losses(output, x, layout, normalised=False)
    m = layout.n_numeric
    squared, seen = terms[:, :m], observed[:, :m]
    mean_squared_error = squared.sum() / seen.sum().clamp_min(1)
    variance = mean_squared_error.detach().clamp_min(MIN_DECODER_VARIANCE)
    n_numbers = seen.sum(dim=1)
    gaussian = 0.5 * (squared.sum(dim=1) / variance + n_numbers * torch.log(2 * math.pi * variance))
    return gaussian + terms[:, m:].sum(dim=1)
