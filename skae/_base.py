"""The shared estimator base: parameters, the fit / partial_fit loop, inference, tags, pickling.

Subclasses say what their network is and what it minimises (``_build_modules``, ``_loss``,
``_encode``, ``_decode``); everything else about being a scikit-learn transformer lives here.
"""

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm.auto import tqdm

from ._modules import ACTIVATIONS, OUTPUT_ACTIVATIONS, mlp
from ._scaling import AffineScaling, choose_scaling
from ._training import (
    INFERENCE_CHUNK_ROWS,
    CudaGraphStep,
    Rows,
    TrainingStep,
    learning_rates,
    load_optimizer_state,
    map_in_chunks,
    reduce_in_chunks,
    run_epoch,
)
from ._validation import (
    check_float,
    check_hidden_layer_sizes,
    check_int,
    check_option,
    resolve_device,
    restore_device,
)

# The torch modules and optimizer that a fit trains. Their names are the fitted attributes.
_MODULE_NAMES = ("encoder_", "decoder_")

# What validate_data sets (or deletes) on the estimator before training starts.
_INPUT_METADATA = ("n_features_in_", "feature_names_in_")


class _UnchangedOnError:
    """Make a failed fit / partial_fit leave the estimator as it was before the call.

    The network is trained on a copy and adopted only on success (see ``_Training``); this
    also restores what ``validate_data(reset=True)`` changed before the failure, without which
    an estimator could claim a new ``n_features_in_`` while holding the old network. (A context
    manager rather than a decorator: it adds no frame, so warnings' stacklevel still points at
    the caller of fit.)
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def __enter__(self):
        state = self.estimator.__dict__
        self.saved = {name: state[name] for name in _INPUT_METADATA if name in state}

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is not None:
            state = self.estimator.__dict__
            for name in _INPUT_METADATA:
                state.pop(name, None)
            state.update(self.saved)
        return False


@dataclass
class _Training:
    """Everything one call to fit / partial_fit changes, trained on a copy and adopted at the
    end, so that a failed call leaves the estimator as it was."""

    modules: dict
    optimizer: torch.optim.Optimizer
    scaling: AffineScaling
    output_activation: str
    device: torch.device
    seed: int
    n_iter: int = 0
    loss_curve: list = field(default_factory=list)
    validation_scores: list | None = None
    best_loss: float = np.inf
    epochs_without_improvement: int = 0
    noise_generator: torch.Generator | None = None

    def parameters(self):
        return [p for module in self.modules.values() for p in module.parameters()]


class BaseAutoEncoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base class for skae's autoencoders; not for direct use."""

    # -- what a subclass provides -------------------------------------------------------------

    def _build_modules(self, n_features, output_activation, generator):
        """Return ``{"encoder_": module, "decoder_": module}`` on the CPU, initialised from
        ``generator``; with ``generator=None``, uninitialised on the meta device."""
        raise NotImplementedError

    def _loss(self, training, x):
        """The training objective on a batch ``x`` in the model's units (a 0-d tensor)."""
        raise NotImplementedError

    def _build_decoder(self, n_features, output_activation, generator):
        """The decoder every estimator here shares: codes -> the hidden layers in reverse ->
        n_features, then ``output_activation``."""
        return mlp(
            [self.n_components, *reversed(tuple(self.hidden_layer_sizes)), n_features],
            self.activation,
            output_activation=output_activation,
            generator=generator,
        )

    def _encode(self, modules, x):
        return modules["encoder_"](x)

    def _decode(self, modules, z):
        return modules["decoder_"](z)

    def _check_extra_params(self):
        """Validate the subclass's own parameters (raise ValueError)."""

    # -- parameters ----------------------------------------------------------------------------

    def _check_params(self):
        check_int("n_components", self.n_components, low=1)
        check_hidden_layer_sizes(self.hidden_layer_sizes)
        check_option("activation", self.activation, tuple(ACTIVATIONS))
        check_option("output_activation", self.output_activation, ("auto", *OUTPUT_ACTIVATIONS))
        check_int("max_iter", self.max_iter, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_float("learning_rate_init", self.learning_rate_init, low=0, low_open=True)
        check_option("learning_rate", self.learning_rate, ("constant", "cosine"))
        check_option("early_stopping", self.early_stopping, (True, False))
        check_float("validation_fraction", self.validation_fraction, low=0, high=1,
                    low_open=True, high_open=True)  # fmt: skip
        check_int("n_iter_no_change", self.n_iter_no_change, low=1)
        check_float("tol", self.tol, low=0)
        check_option("warm_start", self.warm_start, (True, False))
        check_int("verbose", self.verbose, low=0)
        self._check_extra_params()
        return resolve_device(self.device)

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Train the autoencoder on X for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Sparse matrices are densified one batch at a time.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        device = self._check_params()
        continuing = self.warm_start and self._is_fitted()
        with _UnchangedOnError(self):
            X = self._validate_input(X, reset=not continuing)
            if continuing:
                training = self._resume(device, keep_optimizer=False)
            else:
                training = self._start(X, device)
            self._train(training, X, max_epochs=self.max_iter, stopping_rules=True)
        return self

    def partial_fit(self, X, y=None):
        """Train for one epoch over X, continuing from the previous call.

        The first call builds the network and fixes the input scaling from its X; later calls
        keep training it (the optimizer's state included), for streaming data or data larger
        than memory. Early stopping and the convergence rules do not apply.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A batch of training data.
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        device = self._check_params()
        continuing = self._is_fitted()
        with _UnchangedOnError(self):
            X = self._validate_input(X, reset=not continuing)
            training = (
                self._resume(device, keep_optimizer=True) if continuing else self._start(X, device)
            )
            self._train(training, X, max_epochs=1, stopping_rules=False)
        return self

    def _is_fitted(self):
        return hasattr(self, "n_iter_")

    def _validate_input(self, X, *, reset):
        X = validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=("csr", "csc", "coo"),
            dtype=(np.float32, np.float64),
        )
        _check_float32_range(X)
        return X

    def _start(self, X, device):
        """A fresh network, optimizer and input scaling for X."""
        seed = _draw_seed(self.random_state)
        output_activation, scaling = choose_scaling(X, self.output_activation, device)
        generator = torch.Generator().manual_seed(seed)
        modules = self._build_modules(X.shape[1], output_activation, generator)
        modules = {name: module.to(device) for name, module in modules.items()}
        training = _Training(
            modules=modules,
            optimizer=None,
            scaling=scaling,
            output_activation=output_activation,
            device=device,
            seed=seed,
        )
        training.optimizer = self._make_optimizer(training.parameters(), device)
        return training

    def _resume(self, device, *, keep_optimizer):
        """A copy of the fitted state to train on (the original stays until the copy succeeds)."""
        differing = self._module_unlike_params()
        if differing is not None:
            raise ValueError(
                f"Cannot continue training {type(self).__name__}: its parameters no longer "
                f"describe the fitted network ({differing} differs). Were n_components, "
                "hidden_layer_sizes or activation changed after fit? Set them back, or train a "
                "new network with fit() and warm_start=False."
            )
        modules, optimizer = copy.deepcopy(
            ({name: getattr(self, name) for name in _MODULE_NAMES}, self._optimizer)
        )
        modules = {name: module.to(device) for name, module in modules.items()}
        training = _Training(
            modules=modules,
            optimizer=None,
            scaling=AffineScaling(self.input_offset_, self.input_scale_, device),
            output_activation=self.output_activation_,
            device=device,
            seed=self._seed,
            n_iter=self.n_iter_,
            loss_curve=list(self.loss_curve_),
            best_loss=self.best_loss_,
        )
        training.optimizer = self._make_optimizer(training.parameters(), device)
        if keep_optimizer:
            load_optimizer_state(training.optimizer, optimizer.state_dict())
        return training

    def _module_unlike_params(self):
        """The name of the first fitted module that the current parameters would not build
        (its layers or their shapes differ), or None when they describe the fitted network."""
        # A blueprint (no generator: meta tensors, nothing allocated) is enough to compare.
        expected = self._build_modules(self.n_features_in_, self.output_activation_, None)
        for name in _MODULE_NAMES:
            fitted = getattr(self, name)
            if repr(fitted) != repr(expected[name]) or _shapes(fitted) != _shapes(expected[name]):
                return name
        return None

    def _make_optimizer(self, parameters, device):
        # The fused kernel does Adam's whole update in one pass over the parameters. On CUDA
        # the step may be captured in a graph, which needs a capturable optimizer whose
        # learning rate is a tensor (updated in place by the schedule).
        if device.type == "cuda":
            lr = torch.tensor(self.learning_rate_init, device=device)
            return torch.optim.Adam(parameters, lr=lr, fused=True, capturable=True)
        fused = device.type == "cpu"
        return torch.optim.Adam(parameters, lr=self.learning_rate_init, fused=fused)

    def _train(self, training, X, *, max_epochs, stopping_rules):
        """Train ``training`` on X for up to ``max_epochs``, then adopt it as the fitted state.

        ``stopping_rules`` (fit, not partial_fit) turns on early stopping, the plateau rule,
        the learning-rate schedule and the convergence warning.
        """
        rows = Rows(X, training.scaling, training.device)
        validation = None
        if stopping_rules and self.early_stopping:
            rows, validation = _split_validation(rows, self.validation_fraction, training.seed)
            training.validation_scores = []
        # The cosine schedule spans this call's max_epochs; partial_fit has no horizon.
        rates = learning_rates(
            self.learning_rate_init,
            self.learning_rate if stopping_rules else "constant",
            max_epochs * -(-rows.n_rows // self.batch_size),
        )
        step = self._make_step(training)
        epochs, interrupted, best_weights = 0, False, None
        with tqdm(
            range(max_epochs), disable=self.verbose < 1, desc=type(self).__name__, unit="epoch"
        ) as progress:
            try:
                for _ in progress:
                    loss = self._train_epoch(training, step, rows, rates)
                    epochs += 1
                    if self._record_epoch(training, loss, validation) and validation is not None:
                        best_weights = _state_dicts(training.modules)
                    progress.set_postfix(loss=f"{loss:.4g}", refresh=False)
                    if (
                        stopping_rules
                        and training.epochs_without_improvement >= self.n_iter_no_change
                    ):
                        break
            except KeyboardInterrupt:
                interrupted = True
                warnings.warn(
                    f"Training was interrupted in epoch {training.n_iter + 1}; the estimator "
                    "keeps the weights of the last completed batch and can be used or trained "
                    "further.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        if best_weights is not None:
            for name, module in training.modules.items():
                module.load_state_dict(best_weights[name])
        still_improving = training.epochs_without_improvement == 0
        if stopping_rules and not interrupted and epochs == max_epochs and still_improving:
            warnings.warn(
                f"{type(self).__name__} reached max_iter={self.max_iter} epochs while the "
                f"loss was still falling by more than tol={self.tol}; consider raising max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._adopt(training)

    def _train_epoch(self, training, step, rows, rates):
        """One pass over ``rows``; its mean loss, which must be finite."""
        seed = training.seed + training.n_iter
        training.noise_generator = torch.Generator(training.device).manual_seed(seed)
        loss = float(run_epoch(step, rows, self.batch_size, seed, rates))
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"The training loss became {loss} in epoch {training.n_iter + 1}: training "
                f"diverged. Try a smaller learning_rate_init (it is {self.learning_rate_init}) "
                "or scale the input features. The estimator was left as it was before this call."
            )
        training.n_iter += 1
        training.loss_curve.append(loss)
        return loss

    def _record_epoch(self, training, loss, validation):
        """Update the stopping rules' bookkeeping; return whether the monitored loss (validation
        MSE with early stopping, else the training loss) reached a new best."""
        monitored = loss
        if validation is not None:
            monitored = self._mean_squared_error(training, validation)
            training.validation_scores.append(-monitored)
        if monitored < training.best_loss - self.tol * abs(training.best_loss):
            training.epochs_without_improvement = 0
        else:
            training.epochs_without_improvement += 1
        if monitored >= training.best_loss:
            return False
        training.best_loss = monitored
        return True

    def _make_step(self, training):
        """The optimizer step on one batch: the innermost piece of the loop."""
        compute_loss = lambda x: self._loss(training, x)  # noqa: E731
        if training.device.type == "cuda" and not self._draws_random_numbers():
            return CudaGraphStep(compute_loss, training.optimizer, batch_size=self.batch_size)
        return TrainingStep(compute_loss, training.optimizer)

    def _draws_random_numbers(self):
        """Whether ``_loss`` draws random numbers (which a CUDA graph would replay frozen)."""
        return False

    def _adopt(self, training):
        for name, module in training.modules.items():
            setattr(self, name, module)
        self._optimizer = training.optimizer
        self._seed = training.seed
        self.device_ = training.device
        self.output_activation_ = training.output_activation
        self.input_offset_ = training.scaling.offset.cpu().numpy()
        self.input_scale_ = training.scaling.scale
        self.n_iter_ = training.n_iter
        self.loss_curve_ = training.loss_curve
        self.validation_scores_ = training.validation_scores
        self.best_loss_ = training.best_loss

    # -- inference -----------------------------------------------------------------------------

    def _fitted(self):
        """The fitted modules and input scaling, on the fitted device."""
        check_is_fitted(self)
        modules = {name: getattr(self, name) for name in _MODULE_NAMES}
        fitted_components = _input_width(modules["decoder_"])
        if fitted_components != self.n_components:
            raise ValueError(
                f"The fitted network has {fitted_components} components but "
                f"n_components={self.n_components}: n_components was changed after fit. "
                "Set it back, or fit again."
            )
        return modules, AffineScaling(self.input_offset_, self.input_scale_, self.device_)

    def transform(self, X):
        """Encode X into codes of shape (n_samples, n_components), as float32.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        codes : ndarray of shape (n_samples, n_components), dtype float32
        """
        modules, scaling = self._fitted()
        X = self._validate_input(X, reset=False)

        def encode(x):
            return self._encode(modules, scaling.to_model(x))

        return map_in_chunks(encode, X, self.n_components, self.device_)

    def inverse_transform(self, X):
        """Decode codes back into the input's own units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes, as returned by ``transform``.

        Returns
        -------
        X_reconstructed : ndarray of shape (n_samples, n_features_in_), dtype float32
        """
        modules, scaling = self._fitted()
        Z = check_array(X, dtype=(np.float32, np.float64), input_name="X", estimator=self)
        if Z.shape[1] != self.n_components:
            raise ValueError(
                f"inverse_transform expects codes with n_components={self.n_components} "
                f"columns, but got an array with {Z.shape[1]} columns."
            )
        _check_float32_range(Z)
        return map_in_chunks(
            lambda z: scaling.to_user(self._decode(modules, z)),
            Z,
            self.n_features_in_,
            self.device_,
        )

    def score(self, X, y=None):
        """Negative mean squared reconstruction error of X, in the input's own units.

        Higher is better, so GridSearchCV can choose unsupervised settings (such as
        ``n_components``) with no ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        modules, scaling = self._fitted()
        X = self._validate_input(X, reset=False)

        def squared_error(x):
            recon = scaling.to_user(
                self._decode(modules, self._encode(modules, scaling.to_model(x)))
            )
            return (recon - x).square().sum(dtype=torch.float64)

        total = reduce_in_chunks(squared_error, X, self.device_)
        return -total / (X.shape[0] * X.shape[1])

    def _mean_squared_error(self, training, rows, chunk_rows=INFERENCE_CHUNK_ROWS):
        """Reconstruction MSE on ``rows`` (model units): the early-stopping criterion."""
        total = torch.zeros((), dtype=torch.float64, device=training.device)
        with torch.inference_mode():
            for start in range(0, rows.n_rows, chunk_rows):
                index = torch.arange(
                    start, min(start + chunk_rows, rows.n_rows), device=rows.device
                )
                x = rows.take(index)
                recon = self._decode(training.modules, self._encode(training.modules, x))
                total += (recon - x).square().sum(dtype=torch.float64)
        n_features = training.scaling.offset.shape[0]
        return float(total) / (rows.n_rows * n_features)

    @property
    def _n_features_out(self):
        # Absent until fit, so that get_feature_names_out raises NotFittedError.
        if not self._is_fitted():
            raise AttributeError("_n_features_out is set by fit")
        return self.n_components

    # -- saving --------------------------------------------------------------------------------

    def save(self, path):
        """Save the fitted estimator to a file that holds no pickle.

        The file is a single safetensors file: the network's weights, the input scaling and the
        optimizer's state as tensors, and the parameters and fitted attributes as JSON in its
        header. ``skae.load`` reads it back without running any code from the file, so model
        files from untrusted sources are safe to load. The file is written beside ``path`` and
        renamed into place, so ``path`` never holds a partial file.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write the model, conventionally with a ``.safetensors`` suffix. An
            existing file is replaced.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If parameters that shape the network were changed after fit.

        See Also
        --------
        skae.load : Read the file back.
        """
        from ._persistence import save

        save(self, path)

    # -- scikit-learn and pickle plumbing ------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        # Computation is float32 whatever the input; float32 input gives float32 output.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def __getstate__(self):
        # Tensors travel on the CPU so that a model fitted on a GPU unpickles anywhere.
        state = self.__dict__.copy()
        if self._is_fitted():
            modules = {name: state[name] for name in _MODULE_NAMES}
            cpu_modules = {n: copy.deepcopy(m).to("cpu") for n, m in modules.items()}
            state.update(cpu_modules)
            state["_optimizer"] = _cpu_state(self._optimizer.state_dict())
            state["device_"] = str(self.device_)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if not self._is_fitted():
            return
        device = restore_device(state["device_"], self.device, stacklevel=2)
        for name in _MODULE_NAMES:
            getattr(self, name).to(device)
        self.device_ = device
        parameters = [p for name in _MODULE_NAMES for p in getattr(self, name).parameters()]
        optimizer = self._make_optimizer(parameters, device)
        load_optimizer_state(optimizer, state["_optimizer"])
        self._optimizer = optimizer


def _check_float32_range(X):
    """Refuse float64 values that would become infinite in float32, the dtype of the model."""
    if X.dtype != np.float64:
        return
    values = X.data if sp.issparse(X) else X
    # max() and min() need no temporary array, unlike abs().
    largest = max(values.max(), -values.min()) if values.size else 0.0
    if largest > np.finfo(np.float32).max:
        raise ValueError(
            f"Input X contains values of magnitude up to {largest:.3g}, beyond float32's range "
            f"({np.finfo(np.float32).max:.3g}) in which skae computes. Rescale X."
        )


def _draw_seed(random_state):
    """One 31-bit seed from ``random_state`` without touching any global generator."""
    if random_state is None:
        return int(np.random.default_rng().integers(2**31))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31))
    return int(
        np.random.default_rng(check_int("random_state", random_state, low=0)).integers(2**31)
    )


def _split_validation(rows, fraction, seed):
    n_validation = int(round(fraction * rows.n_rows))
    if n_validation < 1 or n_validation >= rows.n_rows:
        raise ValueError(
            f"early_stopping=True with validation_fraction={fraction} leaves "
            f"{n_validation} of {rows.n_rows} samples for validation: need at least one sample "
            "on each side. Use more samples, another validation_fraction, or early_stopping=False."
        )
    order = np.random.default_rng(seed).permutation(rows.n_rows)
    return rows.subset(order[n_validation:]), rows.subset(order[:n_validation])


def _input_width(module):
    """The number of inputs of ``module``'s first Linear layer."""
    return next(m for m in module.modules() if isinstance(m, torch.nn.Linear)).in_features


def _shapes(module):
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def _state_dicts(modules):
    return {
        name: {k: v.detach().clone() for k, v in m.state_dict().items()}
        for name, m in modules.items()
    }


def _cpu_state(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {k: _cpu_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu_state(v) for v in value]
    return value
