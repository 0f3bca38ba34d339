"""AutoEncoderTransformer: the plain autoencoder and its regularised family members."""

import math
import warnings

import torch
import torch.autograd.forward_ad as forward_ad
import torch.nn.functional as F

from ._base import BaseAutoEncoder, CodesTransformerMixin
from ._missing import hidden_weighted_mse, masked_mse, reads_mask
from ._modules import last_linear, mlp, mlp_beside_a_linear_path, start_at
from ._pca_start import principal_axes
from ._persistence import register
from ._plan import PlanRules, is_auto
from ._tabular import hide_cells, layout_of, mixed_loss, numeric_entries
from ._training import BackpropStep
from ._validation import check_float, check_option

NOISE_TYPES = (None, "gaussian", "masking")

# A model fitted on data with missing values learns to encode rows from part of their values:
# with noise_type=None, this share of the observed values is hidden as missing at each step.
# On digits with 20% missing (16 codes), logistic regression on the codes scored 3.9-5.6 points
# below the codes of the complete digits without it, 2.0-2.8 with it.
MISSING_NOISE = 0.2

# The share of each batch's rows that a denoiser's noise corrupts (see _plan_rules): the
# denoising and the clean reconstruction errors weigh the same.
NOISY_SHARE = 0.5


class AutoEncoderModel(BaseAutoEncoder):
    """The network and objective of ``AutoEncoderTransformer``: an MLP encoder and its mirrored
    decoder, trained on the mean squared reconstruction error with the optional sparse,
    denoising and contractive terms. Every estimator built on this autoencoder shares it; each
    adds its own face (codes, outlier scores) and parameters."""

    def _check_extra_params(self):
        check_float("l1_penalty", self.l1_penalty, low=0)
        check_option("noise_type", self.noise_type, NOISE_TYPES)
        if self.noise_type == "masking":
            check_float("noise_level", self.noise_level, low=0, high=1, high_open=True)
        else:
            check_float("noise_level", self.noise_level, low=0)
        check_float("contractive_penalty", self.contractive_penalty, low=0)
        check_option("init", self.init, ("auto", "pca", "random"))

    # AutoEncoderTransformer documents init_ among its fitted attributes.
    _plan_attributes = (*BaseAutoEncoder._plan_attributes, "init")

    def _plan_rules(self):
        variant = self._regularised()
        denoising = self.noise_type is not None and self.noise_level > 0
        return PlanRules(
            # The sparse, denoising and contractive variants start where the plain autoencoder
            # does (at PCA's solution on small data), but keep the output layer of their data:
            # for data in [0, 1], a sigmoid on the data's own units, in which l1_penalty and
            # contractive_penalty are calibrated. A PCA start's linear output measures the
            # error in units of one overall scale (the root mean variance, 0.27 on digits),
            # which weakened the sparse penalty against the error 14 times on digits and the
            # contractive one 190 times: that, not the start, had erased their effects. On
            # digits (16 codes, 3 seeds) this kept each effect and brought the denoisers (noise
            # 0.3) from 1.55-1.87 times the plain default's test error (from a random start) to
            # 1.42-1.49 times.
            linear_pca_output=not variant,
            # The validation split watches the reconstruction error, not what a regulariser
            # asks for, and with the start competing it keeps an early epoch: on digits sparse
            # codes of Hoyer sparsity 0.47 (epoch 27) against 0.74 after the whole schedule.
            early_stopping=not variant,
            # A denoiser's training loss (fresh noise every batch) stalls by chance while the
            # cosine schedule still improves it: on digits the plateau rule ended the
            # denoisers after 77-167 of 182 epochs, at up to 1.12 times the whole schedule's
            # test error. The sparse and contractive variants keep the rule, which ends them
            # before they overfit small tables (breast_cancer, contractive_penalty=1e-3:
            # 0.84-1.10 times the plain default's test error, 1.07-1.37 after every epoch).
            stop_on_plateau=not (denoising and is_auto(self.early_stopping)),
            backprop=self.l1_penalty == 0 and self.contractive_penalty == 0,
            random_loss=denoising or self.contractive_penalty > 0,
            # The denoisers corrupt half of each batch's rows and show the others clean: the
            # loss is then, in expectation, the mean of the denoising error and the plain
            # reconstruction error, and the network also learns the clean rows it will encode.
            # Trained on corrupted rows only, it had never seen one, and paid for it on clean
            # data: on digits (16 codes, noise 0.3, seeds 0-2) its test error was 1.71-1.75
            # (Gaussian) and 1.68-1.72 (masking) times the plain default's; with half the rows
            # clean 1.20-1.24 and 1.23-1.25, while its noisy -> clean error stayed 53-56% (was
            # 56-58%) and 74-75% (76-77%) below the plain default's.
            noisy_share=NOISY_SHARE if denoising else 1.0,
        )

    def _regularised(self):
        """Whether a sparse, denoising or contractive term is on."""
        return (
            (self.noise_type is not None and self.noise_level > 0)
            or self.l1_penalty > 0
            or self.contractive_penalty > 0
        )

    def _build_modules(self, plan, generator):
        sizes = [plan.width, *plan.hidden_layer_sizes, plan.n_components]
        encoder_sizes = [plan.n_inputs, *sizes[1:]]
        if plan.init == "random":
            encoder = mlp(encoder_sizes, plan.activation, generator=generator)
            decoder = self._build_decoder(plan, generator)
        else:
            encoder = mlp_beside_a_linear_path(encoder_sizes, plan.activation, generator=generator)
            decoder = mlp_beside_a_linear_path(
                sizes[::-1], plan.activation, output_activation=plan.output_activation,
                generator=generator,
            )  # fmt: skip
        return {"encoder_": encoder, "decoder_": decoder}

    def _initialise(self, modules, X, stats, scaling, plan, group):
        if plan.init == "random":
            return super()._initialise(modules, X, stats, scaling, plan, group)
        # PCA's projection z = A (x - mean) and reconstruction x = A^T z + mean, in the model's
        # units. An encoder that reads the missing-value mask beside the values (twice as many
        # inputs) starts with the mask's weights at zero.
        axes = principal_axes(X, stats.mean, scaling, plan.n_components, group, self._check_block)
        axes = torch.as_tensor(axes, dtype=torch.float32)
        means = scaling.to_model(torch.as_tensor(stats.mean, dtype=torch.float32))
        encoder, decoder = last_linear(modules["encoder_"]), last_linear(modules["decoder_"])
        n_features = axes.shape[1]
        with torch.no_grad():
            encoder.weight.zero_()
            encoder.weight[:, :n_features].copy_(axes)
            encoder.bias.copy_(-axes @ means)
            decoder.weight.copy_(axes.T)
        start_at(modules["decoder_"], means, plan.output_activation)

    def _warn_about_data(self, n_features):
        if self.n_components >= n_features and not self._regularised():
            warnings.warn(
                f"n_components={self.n_components} is not smaller than the {n_features} "
                "features of X, and no noise_type, l1_penalty or contractive_penalty is set: "
                "the autoencoder can learn the identity map instead of a compressed code. Use "
                "fewer components, or one of those regularisers.",
                UserWarning,
                stacklevel=5,
            )

    def _loss(self, state, x):
        encoder, decoder = state.modules["encoder_"], state.modules["decoder_"]
        x_in = self._corrupt(state, x)
        if self.contractive_penalty > 0:
            codes, jacobian_probe = _encode_with_jvp(encoder, x_in, state.noise_generator)
        else:
            codes = encoder(x_in)
        loss = self._reconstruction_loss(state, decoder(codes), x, x_in)
        if self.l1_penalty > 0:
            loss = loss + self.l1_penalty * sparsity_penalty(codes)
        if self.contractive_penalty > 0 and x.shape[0] > self.n_components + 2:
            # A batch too small to estimate the codes' covariance without each sample adds
            # no penalty.
            loss = loss + self.contractive_penalty * contraction_penalty(codes, jacobian_probe)
        return loss

    def _reconstruction_loss(self, state, output, x, x_in):
        """The reconstruction term of the loss on a batch (``x_in``: the network's input, x
        with noise): the mean squared error (over the observed entries, for a network that
        reads the missing-value mask, the values it was not shown weighing the plan's
        ``hidden_weight``). An estimator built on this autoencoder may weigh the rows
        otherwise. A mixed table's loss is ``skae._tabular.mixed_loss``: its categorical
        columns' cross-entropy beside the numbers' squared error."""
        layout = layout_of(state.plan)
        if layout.is_mixed:
            hidden_weight = state.plan.hidden_weight if reads_mask(state) else 1.0
            return mixed_loss(output, x, layout, x_in, hidden_weight)
        if reads_mask(state):
            hidden_weight = state.plan.hidden_weight
            if hidden_weight != 1.0:
                return hidden_weighted_mse(output, x, x_in, hidden_weight)
            return masked_mse(output, x)
        return F.mse_loss(output, x)

    def _make_step(self, state, batch_size):
        if state.plan.step == "backprop":
            corrupt = lambda x: self._corrupt(state, x)  # noqa: E731
            layers = [state.modules[name] for name in self._module_names]
            return BackpropStep(
                layers,
                state.optimizer,
                corrupt,
                hidden_weight=state.plan.hidden_weight,
                keep_fraction=self._keep_fraction(),
            )
        return super()._make_step(state, batch_size)

    def _keep_fraction(self):
        """The share of each batch's rows, the best reconstructed, that the loss is the mean
        over (the outlier detector trims the rest)."""
        return 1.0

    def _corrupt(self, state, x):
        """The training input: x with noise, in the model's units (the target stays x).

        Where the network reads the missing-value mask (``mask_input_``), masking hides a
        value as a missing one: NaN, marked in the mask, rather than 0; and without a
        noise_type, ``MISSING_NOISE`` of the observed values are hidden so. In a mixed table,
        masking hides whole cells (a categorical column's one-hot block at once), and Gaussian
        noise is added to the numbers only. Only the plan's ``noisy_share`` of the rows, drawn
        at random, are corrupted; the others are x."""
        x_in = self._corrupt_all(state, x)
        share = state.plan.noisy_share  # 1 unless the estimator denoises
        if share == 1.0:
            return x_in
        rows = torch.rand((x.shape[0], 1), generator=state.noise_generator, device=x.device)
        return torch.where(rows < share, x_in, x)

    def _corrupt_all(self, state, x):
        """``_corrupt``, every row corrupted."""
        generator, scaling = state.noise_generator, state.scaling
        layout = layout_of(state.plan)
        if layout.is_mixed:
            return self._corrupt_table(state, x, layout)
        if self.noise_type is None and reads_mask(state):
            hidden = torch.rand(x.shape, generator=generator, device=x.device) < MISSING_NOISE
            return x.masked_fill(hidden, math.nan)
        if self.noise_type is None or self.noise_level == 0:
            return x
        if self.noise_type == "gaussian":
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return x + noise * (self.noise_level / scaling.scale)
        masked = torch.rand(x.shape, generator=generator, device=x.device) < self.noise_level
        if reads_mask(state):
            return x.masked_fill(masked, math.nan)
        zero_in_model_units = scaling.to_model(torch.zeros_like(x[:1]))
        return torch.where(masked, zero_in_model_units, x)

    def _corrupt_table(self, state, x, layout):
        """``_corrupt`` for a mixed table (see there)."""
        generator = state.noise_generator
        if self.noise_type is None and reads_mask(state):
            return hide_cells(x, layout, MISSING_NOISE, generator)
        if self.noise_type is None or self.noise_level == 0:
            return x
        if self.noise_type == "gaussian":
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            # Standardised numbers: noise_level in each column's standard deviations.
            return x + noise * self.noise_level * numeric_entries(layout, x.device)
        hidden = hide_cells(x, layout, self.noise_level, generator)
        if reads_mask(state):
            return hidden
        # Without the mask, a hidden cell reads 0: a number at its mean, a category at none.
        return torch.nan_to_num(hidden, nan=0.0)


@register
class AutoEncoderTransformer(CodesTransformerMixin, AutoEncoderModel):
    """A nonlinear alternative to PCA: codes learned by a PyTorch autoencoder.

    The encoder maps n_features -> hidden_layer_sizes -> n_components; the decoder mirrors it.
    The training objective is the mean squared reconstruction error, minimised with Adam. Three
    optional regularisers make it a sparse, denoising or contractive autoencoder; they combine
    freely and are ordinary parameters for GridSearchCV.

    X may have missing values (NaN). The network then also reads which values are missing
    (``mask_input_``), learns from the observed values only and, with ``noise_type=None``, is
    trained with 20% of them hidden as well, so that it encodes incomplete rows much as complete
    ones. Features with no observed value are refused by fit, and rows with none at inference;
    a model fitted on complete data refuses NaN. See AutoEncoderImputer to fill the holes.

    Data in [0, 1] (for example image pixels) are modelled as they are, with a sigmoid output
    layer. Other data are centred per feature and divided by one overall scale, with a linear
    output layer. Either way ``inverse_transform`` returns the input's own units and ``score``
    is the negative mean squared error in those units.

    Parameters
    ----------
    n_components : int, default=64
        Size of the codes returned by ``transform``.
    categorical_features : "from_dtype", None, array-like of bool, int or str, \
default="from_dtype"
        The categorical columns, as in ``HistGradientBoostingClassifier``: "from_dtype" reads
        a DataFrame's category, object, bool and string columns as categorical (no column of
        an array); or a boolean mask, column indices or column names (for a numpy object
        array, say); None for none. The network reads each categorical column one-hot and
        rebuilds it with a softmax over its categories (``categories_``); see Notes.
    hidden_layer_sizes : "auto" or tuple of int, default="auto"
        Widths of the encoder's hidden layers; the decoder uses them in reverse. "auto" takes
        the design's (256, 128) for inputs wider than 256 features (784-256-128-64 on MNIST)
        and one layer of 256 for narrower ones, whose data sets are usually small enough for
        a second layer to overfit; no layer is narrower than the codes (see
        ``hidden_layer_sizes_``).
    activation : {"leaky_relu", "relu", "elu", "gelu", "silu", "tanh"}, default="leaky_relu"
        Activation of the hidden layers. The code layer itself is linear.
    output_activation : {"auto", "sigmoid", "identity", "clip"}, default="auto"
        Output layer of the decoder. "clip" clips a linear output to [0, 1], for data in
        [0, 1] (modelled in their own units, as behind a sigmoid). "auto" takes "sigmoid"
        when the training data lie in [0, 1], else "identity" (with per-feature centring and
        one overall scale); but a plain autoencoder started at PCA on inputs of at most 256
        features gets "clip" for complete data in [0, 1] and "identity" otherwise, since a piecewise
        linear output starts at PCA's reconstruction (clipped, it is nowhere farther from the
        data), where a sigmoid does not (on digits at 48 of 64 codes, a sigmoid left 11 times
        PCA's error; at 16 codes "clip" reached 0.47 times PCA's held-out error, "identity"
        0.55). The sparse, denoising and contractive variants keep their data's output, and
        with it the units in which their penalties are calibrated (see ``init``).
    init : {"auto", "pca", "random"}, default="auto"
        Where training starts. "pca": the encoder and the decoder each get a linear map beside
        their hidden layers, started as PCA's projection and reconstruction, while the hidden
        layers' output starts at zero; training begins at PCA's reconstruction error (with a
        linear output) and the hidden layers add what PCA misses. "random": the design's
        plain MLPs at random weights, with the decoder's output at the column means. "auto"
        takes "random" for MNIST-sized image sets (more than 256 features and at least
        10,000 rows), whose codes then separate classes better (logistic regression on all
        of MNIST's: 93.4% against 91.6% from the PCA start), and for a first ``partial_fit``,
        which has no validation split to protect the start; "pca" for everything else. The
        sparse, denoising and contractive variants follow the same rule, but keep the output
        layer of their data (a sigmoid for data in [0, 1]: a linear output's units, one
        overall scale, would weaken ``l1_penalty`` and ``contractive_penalty`` against the
        error by the scale's square and fourth power) and train without early stopping (the
        denoisers for the whole schedule: see ``early_stopping``). The choice is ``init_``.
    l1_penalty : float, default=0.0
        Weight of the sparsity penalty on the codes (sparse autoencoder). Each component of
        the codes is divided by its root mean square over the batch, and the penalty is the
        mean over samples of ``||z||_1 / (||z||_2 sqrt(n_components))`` on these normalised
        codes: 1 when all components of a code are equally active, 1/sqrt(n_components) when
        one is. Rescaling the components, one by one or all together, leaves it unchanged, so
        the decoder cannot undo it by rescaling: the codes have to become sparser. On MNIST
        (64 components, default training) values around 0.01-0.05 raise the codes' Hoyer
        sparsity from 0.19 to 0.6-0.8, at 0-20% more reconstruction error; an epoch takes
        about 1.1 times as long.
    noise_type : {None, "gaussian", "masking"}, default=None
        Corruption of the input while training (denoising autoencoder); the target is always
        the clean input. "gaussian" adds N(0, noise_level**2) noise in the input's own units;
        "masking" sets a random fraction ``noise_level`` of the features to 0 (in the input's
        own units). Fresh noise is drawn for every batch, on half of its rows, drawn at random;
        the other half is shown clean. The loss is then, in expectation, the mean of the
        denoising error and the plain reconstruction error: trained on corrupted rows only, the
        network never saw a clean one, and reconstructed clean data worse (digits, 16 codes,
        noise 0.3: 1.7 times the plain autoencoder's test error, against 1.2-1.25 with half the
        rows clean, which denoise about as well). ``fit_plan_.noisy_share`` records the share.
    noise_level : float, default=0.1
        Standard deviation ("gaussian") or masked fraction in [0, 1) ("masking"). On 10,000
        MNIST images (64 codes), 0.3 of either kind cuts the error of reconstructing corrupted
        images (towards the clean ones) by 70% (Gaussian) and 55% (masking) against the
        plain autoencoder, at 0.84 and 1.1 times its error on clean images.
    contractive_penalty : float, default=0.0
        Weight of the contraction penalty (contractive autoencoder): the squared Frobenius
        norm of the encoder's Jacobian ``J`` with respect to its (scaled) input, measured in
        units of the codes' spread. For the n samples of a batch it is the mean over i of
        ``tr(J_i^T S_(-i)^-1 J_i)``, where ``S_(-i)`` is the covariance of the batch's other
        codes: how many standard deviations of the codes a unit input perturbation moves a
        code, squared and summed over input directions and components. Normalising by the
        spread makes the penalty invariant to any invertible linear map of the codes, which
        the decoder could undo: without it the network dodges the penalty by shrinking its
        codes or collapsing them onto one direction (Rifai et al., 2011, tied the decoder's
        weights to the encoder's for the same reason). The trace is estimated without bias,
        given the batch, from one Gaussian probe per sample, ``E_u[u^T J^T S^-1 J u]``, by
        forward-mode differentiation: one extra pass through the encoder, so an epoch takes
        about twice as long (exact Jacobians would take some 30 times longer). Batches with
        fewer than ``n_components + 3`` rows add no penalty. On MNIST (pixels in [0, 1], 64
        components, default training) values around 1e-6 lowered this relative sensitivity
        of the codes by about 40%, with no loss of reconstruction accuracy; 1e-5 to 1e-4 by
        50%, at an accuracy that varied with the seed.
    max_iter : "auto" or int, default="auto"
        Maximum number of epochs for ``fit``. "auto" trains for about 6,000 optimizer steps
        whatever the number of rows: 26 epochs of MNIST's 60,000 images (under a minute on 2
        CPU cores); with early stopping, which ends a fit that stops improving, for 12,000:
        364 epochs of 1,257 digits. The chosen number is ``max_iter_``.
    batch_size : "auto" or int, default="auto"
        Samples per optimizer step (summed over the processes of a distributed fit). "auto"
        is ``min(256, max(32, n_samples // 32))``: the design's 256 from 8,192 rows on, and
        at least 32 steps per epoch below. Never more than n_samples. The last, partial batch
        of an epoch is used too. The chosen number is ``batch_size_``.
    learning_rate_init : float, default=3e-3
        Adam's (initial) learning rate.
    learning_rate : {"constant", "cosine"}, default="cosine"
        Schedule of the learning rate in ``fit``: constant, or decayed from
        ``learning_rate_init`` to 0 along a half cosine over ``max_iter`` epochs (Loshchilov &
        Hutter, 2017). ``partial_fit`` always uses ``learning_rate_init``.
    early_stopping : "auto" or bool, default="auto"
        Hold out ``validation_fraction`` of the training data, stop when its reconstruction
        error stops improving, and keep the weights of the best epoch. The starting point
        competes too, and an epoch replaces it only when better by more than two standard
        errors of the rows' paired differences, so a fit started at PCA keeps PCA's weights
        unless the hidden layers clearly add to them. "auto" is on for 10 to 9,999 training
        rows, where a network can learn its rows by heart (holding out at least 5 rows, more
        than ``validation_fraction`` of a very small data set), and off for more rows, where
        every row is worth training on, for the sparse, denoising and contractive variants,
        whose aim is not the reconstruction error it watches, and for data with missing
        values. The denoising variant then also trains for the whole ``max_iter`` epochs,
        without the plateau rule of ``n_iter_no_change``: its training loss, with fresh
        noise every batch, stalls by chance while the schedule still improves it.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without an improvement of more than ``tol`` (relative) before stopping. With
        early stopping under the cosine schedule, whose learning rate anneals, the validation
        error often falls again after a long plateau: training then waits at least as many
        epochs as it took to reach its last improvement, and a tenth of ``max_iter``.
    tol : float, default=1e-4
        Relative improvement of the monitored loss that counts as progress.
    warm_start : bool, default=False
        When True, ``fit`` continues from the previous fit's weights (with a new optimizer).
        The network's parameters (``n_components``, ``hidden_layer_sizes``, ``activation``)
        must be unchanged since then.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffling, the validation split and the noise, through
        local generators only. Pass an int for reproducible results.
    device : str, default="auto"
        "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:N" or "mps".
    n_threads : "auto" or int, default="auto"
        CPU threads torch uses while this estimator fits or infers; torch's own setting is
        restored after each call. "auto" gives one thread per 100 MFLOP of work per
        optimizer step (or per inference chunk of 8,192 rows), at most
        ``torch.get_num_threads()`` and, when that is more than one, at most the cores other
        processes leave idle (watched for 50 ms on Linux). Small networks and batches thus
        train on one thread, which on a busy machine is many times faster than several that
        wait on each other; MNIST's 784-256-128-64 at batches of 256 takes two (or more).
        Results agree to float32 rounding whatever the count.
    verbose : int, default=0
        0 prints nothing; 1 prints the fit plan (``fit_plan_``) as a fit starts and shows a
        progress bar with the loss.

    Attributes
    ----------
    encoder_, decoder_ : torch.nn.Module
        The trained networks.
    n_iter_ : int
        Epochs trained.
    fit_plan_ : skae.FitPlan
        Every choice the last call to fit or partial_fit made before training, "auto"'s
        among them: the network (start, widths, output layer, input scaling, missing-value
        mask), the training (batch size, epochs, schedule, validation split, stopping rules,
        the kind of optimizer step) and where it ran (device, torch threads, processes).
        ``print(est.fit_plan_)`` shows it in a few lines, which ``verbose=1`` prints as a fit
        starts; its fields are attributes (``est.fit_plan_.init``). The attributes below
        that "auto" chose repeat some of it.
    hidden_layer_sizes_ : tuple of int
        The hidden layers of the network (what "auto" chose).
    init_ : {"pca", "random"}
        Where the network started (what "auto" chose); with "pca", ``encoder_`` and
        ``decoder_`` each hold a linear path beside their hidden layers.
    batch_size_ : int
        Samples per optimizer step in the last call to fit or partial_fit.
    max_iter_ : int
        The epoch budget of the last call to fit (what "auto" chose).
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
    mask_input_ : bool
        Whether the network reads the missing-value mask beside the values: True when the
        training data had missing values.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when X had string column names.
    is_categorical_ : ndarray of shape (n_features_in_,), dtype bool
        Which features are categorical.
    categories_ : list of ndarray
        The categories of each categorical feature (in the order of the features), as
        ``OneHotEncoder``'s: the values observed in fit, in the order of a pandas category
        dtype, else sorted.

    See Also
    --------
    sklearn.decomposition.PCA : The linear transformer this one can replace.
    VariationalAutoEncoderTransformer : The generative member of the family.

    Notes
    -----
    Mixed tables. With categorical columns the numbers are standardised per column (rather
    than by one overall scale) and the loss is the mean over a row's observed cells of each
    cell's term: a number's squared error (about 1 at the column mean), a category's
    cross-entropy divided by ``log(n_categories)`` (1 at the uniform prediction), so that
    every column counts about equally. A missing category (NaN, None, pd.NA) is a missing
    value like a missing number, and so is a category that fit did not see, which a network
    fitted on complete data refuses (naming the column and value). ``inverse_transform``
    returns each category's most probable value (a DataFrame with the training frame's
    columns and dtypes, else an object array); ``score_samples`` is minus the mean of the
    cells' terms, not a squared error in the input's units. A categorical column with no
    observed value is refused, as an empty numeric one. Mixed tables train with autograd
    and cannot be exported to ONNX yet.

    On the CPU, the plain and denoising losses are trained with a hand-written backward pass
    (for the PCA start's linear paths too): the same gradients as autograd's, about 16% faster
    per step on MNIST, and a third faster on small tables, where autograd's bookkeeping weighs
    more. The sparse and contractive penalties and the GELU and SiLU activations use autograd.

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
        categorical_features="from_dtype",
        hidden_layer_sizes="auto",
        activation="leaky_relu",
        output_activation="auto",
        init="auto",
        l1_penalty=0.0,
        noise_type=None,
        noise_level=0.1,
        contractive_penalty=0.0,
        max_iter="auto",
        batch_size="auto",
        learning_rate_init=3e-3,
        learning_rate="cosine",
        early_stopping="auto",
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
        self.init = init
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
        self.n_threads = n_threads
        self.verbose = verbose


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


def sparsity_penalty(codes):
    """The sparse autoencoder's penalty on a batch of codes, in [1/sqrt(k), 1].

    Each component is divided by its root mean square over the batch, and the penalty is the
    mean over samples of ``||z||_1 / (||z||_2 sqrt(k))`` on these normalised codes: small when
    each sample has few active components. It is unchanged when the components are rescaled
    (one by one, or all together), the rescaling a decoder could undo, so the network can only
    lower it by making the codes sparser.
    """
    normalised = codes / codes.square().mean(dim=0).add(1e-12).sqrt()
    ratio = normalised.norm(p=1, dim=1) / normalised.norm(dim=1).clamp_min(1e-12)
    return ratio.mean() / math.sqrt(codes.shape[1])


def contraction_penalty(codes, jacobian_probe, ridge=1e-10):
    """The contractive autoencoder's penalty on a batch of n codes.

    With ``t_i = J_i u_i`` the encoder's Jacobian at sample i times a standard Gaussian probe,
    and ``S_(-i)`` the covariance of the other n - 1 codes of the batch, the penalty is the
    mean over i of ``t_i^T S_(-i)^-1 t_i``. Given the batch, its expectation over the probes is
    the mean of ``tr(J_i^T S_(-i)^-1 J_i)``: the squared Frobenius norm of the Jacobian measured
    in units of the codes' own spread. Any invertible linear map of the codes, which the decoder
    could undo, leaves it unchanged, so the network can lower it only by making the codes less
    sensitive to the input relative to how they spread over the data, not by shrinking or
    mixing them. Leaving sample i out of its own covariance stops a sample from excusing its
    sensitivity with its own extreme code (heavy-tailed codes would otherwise pass for
    contracted ones). ``ridge`` times the mean variance is added to the diagonal of the
    covariances, for a safe factorisation.

    The leave-one-out inverses come from one Cholesky factorisation of the batch's scatter
    matrix and a rank-one (Sherman-Morrison) correction per sample; the k x k algebra runs in
    float64 and costs little next to the encoder passes.
    """
    n = codes.shape[0]
    centred = (codes - codes.mean(dim=0)).double()
    scatter = centred.T @ centred
    scatter = scatter + torch.diag_embed(ridge * scatter.diagonal() + 1e-30)
    # cholesky_ex does not synchronise with the device to check for errors; with the ridge the
    # matrix is positive definite.
    factor, _ = torch.linalg.cholesky_ex(scatter)
    solved = torch.linalg.solve_triangular(
        factor, torch.cat([jacobian_probe.double().T, centred.T], dim=1), upper=False
    )
    probe_part, code_part = solved[:, :n], solved[:, n:]
    probe_norm = probe_part.square().sum(dim=0)  # t_i^T A^-1 t_i, A = scatter
    cross = (probe_part * code_part).sum(dim=0)  # t_i^T A^-1 d_i, d_i = centred code
    leverage = code_part.square().sum(dim=0)  # d_i^T A^-1 d_i
    # The scatter of the others is A - c d_i d_i^T; Sherman-Morrison gives its inverse.
    c = n / (n - 1)
    left_out = probe_norm + c * cross.square() / (1.0 - c * leverage).clamp_min(1e-12)
    return ((n - 2) * left_out).mean().to(codes.dtype)
