"""The shared estimator base: what every skae estimator does with its network.

``BaseAutoEncoder`` holds the scikit-learn contract common to all of them: parameters, input
validation, the path of fit and partial_fit (the plan: ``skae._plan``; the training itself:
``skae._training``), inference in chunks, tags, pickling and saving. Subclasses say what their
network is, where it starts and what it minimises (``_plan_rules``, ``_build_modules``,
``_initialise``, ``_loss``, ``_encode``, ``_decode``).

``CodesTransformerMixin`` adds the transformer's face (transform, inverse_transform, score,
score_samples, feature names) to the estimators whose output is the codes.
"""

import copy
import math
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data

from ._input_checks import explained_input_errors
from ._missing import (
    MissingMask,
    has_nan,
    refuse_empty_columns,
    refuse_empty_rows,
    refuse_nan,
    row_squared_errors,
)
from ._modules import ACTIVATIONS, OUTPUT_ACTIVATIONS, last_linear, mlp, start_at
from ._persistence import save as _save
from ._plan import (
    DataSummary,
    PlanRules,
    check_auto_or_int,
    check_auto_or_sizes,
    is_auto,
    make_plan,
)
from ._scaling import AffineScaling, ColumnStats, column_statistics, input_scaling
from ._tabular import (
    Layout,
    as_frame,
    check_categorical_features,
    constant_loss,
    decode,
    encode,
    fit_categories,
    layout_of,
    logit_start,
    probabilities,
    resolve_categorical,
    row_losses,
)
from ._threads import choose_threads, inference_flops, torch_threads
from ._training import (
    INFERENCE_CHUNK_ROWS,
    CudaGraphStep,
    TrainingState,
    TrainingStep,
    is_out_of_core,
    iter_blocks,
    load_optimizer_state,
    map_in_chunks,
    process_group,
    train,
    training_rows,
    unconverged,
)
from ._validation import (
    check_float,
    check_int,
    check_n_threads,
    check_option,
    resolve_device,
    restore_device,
)

# What validate_data sets (or deletes) on the estimator before training starts, and what the
# validation of a table sets beside it (its categorical columns).
_INPUT_METADATA = ("n_features_in_", "feature_names_in_", "is_categorical_", "categories_",
                   "_feature_dtypes")  # fmt: skip


class _UnchangedOnError:
    """Make a failed fit / partial_fit leave the estimator as it was before the call.

    The network is trained on a copy and adopted only on success (see ``TrainingState``); this
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


class BaseAutoEncoder(BaseEstimator):
    """Base class for skae's estimators; not for direct use.

    ``fit`` and ``partial_fit`` go: check the parameters, validate X, gather its column
    statistics, make the plan (``skae._plan.make_plan``, with the estimator's ``_plan_rules``),
    build and start the network the plan describes (or copy the fitted one), train it
    (``skae._training.train``), then adopt it. A subclass states what differs for it: its
    plan rules, its network and start (``_build_modules``, ``_initialise``), its loss
    (``_loss``, ``_constant_loss``) and what it computes once trained (``_fitted_extras``).
    """

    # The torch modules that a fit trains. Their names are the fitted attributes.
    _module_names = ("encoder_", "decoder_")
    # Choices of the plan kept as fitted attributes of their own, with a trailing underscore
    # (``fit_plan_`` holds them all).
    _plan_attributes = ("n_components", "hidden_layer_sizes", "output_activation", "mask_input",
                        "batch_size")  # fmt: skip
    # Whether running out of epochs while the training loss still falls warns (and suggests
    # a larger max_iter). An estimator whose training loss does not measure what it is for
    # turns this off.
    _warns_of_a_short_schedule = True
    # Whether fit refuses a categorical column with no observed value (an estimator that
    # handles empty features itself turns this off).
    _refuses_empty_categories = True

    # -- what a subclass states ---------------------------------------------------------------

    def _plan_rules(self):
        """How this estimator's "auto" parameters resolve (a ``skae._plan.PlanRules``)."""
        return PlanRules()

    def _build_modules(self, plan, generator):
        """Return ``{"encoder_": module, "decoder_": module}`` as ``plan`` describes them, on
        the CPU, initialised from ``generator``; with ``generator=None``, uninitialised on the
        meta device. The encoder reads ``plan.n_inputs`` columns, the decoder writes
        ``plan.n_features``."""
        raise NotImplementedError

    def _loss(self, state, x):
        """The training objective on a batch ``x`` in the model's units (a 0-d tensor)."""
        raise NotImplementedError

    def _initialise(self, modules, X, stats, scaling, plan, group):
        """Set the starting point of freshly built ``modules`` (on the CPU) for training data X
        with column statistics ``stats``: by default, a decoder that outputs the column means."""
        means = scaling.to_model(torch.as_tensor(stats.mean, dtype=torch.float32))
        start_at(modules["decoder_"], means, plan.output_activation)

    def _constant_loss(self, stats, scaling, share=1.0, layout=None):
        """The training objective of a model whose reconstruction error is ``share`` times
        that of predicting every row by the training data's column means (``stats``, a
        ColumnStats in the user's units). For a mean-squared-error objective: ``share`` times
        the mean variance of the features, in the model's units; for a mixed table's
        (``layout``), ``share`` times the mixed loss of the means and frequencies."""
        if layout is not None and layout.is_mixed:
            return share * constant_loss(stats, layout)
        return share * _mean_variance(stats, scaling.scale)

    def _fitted_extras(self, state, X, group):
        """Fitted attributes of the subclass's own, computed once training has ended."""
        return {}

    def _check_extra_params(self):
        """Validate the subclass's own parameters (raise ValueError)."""

    def _warn_about_data(self, n_features):
        """Warn (stacklevel 5: the caller of fit) about settings that do not suit the data."""

    def _build_decoder(self, plan, generator):
        """The decoder every estimator here shares: codes -> the hidden layers in reverse ->
        n_features, then the plan's output activation."""
        return mlp(
            [plan.n_components, *reversed(plan.hidden_layer_sizes), plan.width],
            plan.activation,
            output_activation=plan.output_activation,
            generator=generator,
        )

    def _encode(self, modules, x):
        return modules["encoder_"](x)

    def _decode(self, modules, z):
        return modules["decoder_"](z)

    def _reconstruct(self, modules, x):
        return self._decode(modules, self._encode(modules, x))

    # -- what a subclass adds to its model files (see skae._persistence) ----------------------

    # Names of fitted float arrays of the subclass's own, saved as float32 tensors.
    _saved_arrays = ()
    # Names of fitted numbers or strings of the subclass's own, saved in the JSON header.
    _saved_values = ()

    def _saved_array_shapes(self, n_features, fitted):
        """``{name: shape}`` that the ``_saved_arrays`` of a model file must have, given the
        JSON document's fitted attributes; checked before anything is read."""
        return {}

    def _restored_attributes(self, arrays, values):
        """The fitted attributes to set from a model file's ``_saved_arrays`` (numpy arrays,
        shapes checked) and ``_saved_values`` (from JSON: check them, raise ValueError)."""
        return {**arrays, **values}

    # -- parameters ----------------------------------------------------------------------------

    def _check_params(self):
        if self._plan_rules().n_components is PlanRules.n_components:  # no "auto" rule
            check_int("n_components", self.n_components, low=1)
        else:
            check_auto_or_int("n_components", self.n_components, low=1)
        check_auto_or_sizes(self.hidden_layer_sizes)
        check_option("activation", self.activation, tuple(ACTIVATIONS))
        check_option("output_activation", self.output_activation, ("auto", *OUTPUT_ACTIVATIONS))
        check_auto_or_int("max_iter", self.max_iter, low=1)
        check_auto_or_int("batch_size", self.batch_size, low=1)
        check_float("learning_rate_init", self.learning_rate_init, low=0, low_open=True)
        check_option("learning_rate", self.learning_rate, ("constant", "cosine"))
        check_option("early_stopping", self.early_stopping, ("auto", True, False))
        check_float("validation_fraction", self.validation_fraction, low=0, high=1,
                    low_open=True, high_open=True)  # fmt: skip
        check_int("n_iter_no_change", self.n_iter_no_change, low=1)
        check_float("tol", self.tol, low=0)
        check_option("warm_start", self.warm_start, (True, False))
        check_int("verbose", self.verbose, low=0)
        check_n_threads(self.n_threads)
        check_categorical_features(getattr(self, "categorical_features", None))
        self._check_extra_params()
        return resolve_device(self.device)

    # The parameters that a plan reads (those an estimator has: the VAE has no init).
    _PLANNED = ("n_components", "hidden_layer_sizes", "activation", "output_activation", "init",
                "hidden_weight", "max_iter", "batch_size", "learning_rate_init", "learning_rate",
                "early_stopping", "validation_fraction", "n_iter_no_change", "tol",
                "n_threads", "linear_share")  # fmt: skip

    def _planned_params(self):
        return {name: getattr(self, name) for name in self._PLANNED if hasattr(self, name)}

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Train the autoencoder on X for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Sparse matrices are densified one batch at a time. Arrays that
            live outside memory (``np.memmap`` of any dtype, h5py, zarr and dask arrays) are
            streamed block by block, never loaded whole. Under ``torch.distributed``, each
            process passes its own rows and all train one model on their union.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        device = self._check_params()
        return self._fit(X, device, continuing=self.warm_start and self._is_fitted(), full=True)

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
        return self._fit(X, device, continuing=self._is_fitted(), full=False)

    def _fit(self, X, device, *, continuing, full):
        """fit (``full``) or partial_fit: train on X from a fresh network, or continue the
        fitted one (``continuing``); partial_fit's continuation keeps the optimizer's state."""
        with _UnchangedOnError(self):
            # A network without the mask input cannot learn from missing values.
            missing = "refuse" if continuing and not self._reads_mask() else "allow"
            X = self._validate_input(X, reset=not continuing, missing=missing)
            group = process_group(device)
            # A partial_fit that continues reads nothing of X's statistics: its network and
            # scaling are set; a fit's plateau rule needs them.
            stats = None
            if full or not continuing:
                stats = self._column_statistics(X).over_processes(group)
                layout = self._layout()
                if stats.counts is not None or layout.is_mixed:
                    names = getattr(self, "feature_names_in_", None)
                    counts = _column_counts(stats, layout, self._refuses_empty_categories)
                    refuse_empty_columns(counts, self, names)
            plan = self._plan(X, stats, device, group, continuing=continuing, full=full)
            if continuing:
                state = self._resume(plan, device, keep_optimizer=not full)
            else:
                state = self._start(X, stats, plan, group)
            self._train(state, X, group, stats, full=full, missing=missing)
        return self

    def _plan(self, X, stats, device, group, *, continuing, full):
        """The FitPlan of this call (printed with ``verbose``)."""
        layout = self._layout()
        if stats is None:
            (n_samples,) = group.reduce_sum(X.shape[0])
            data = DataSummary(
                n_samples=int(n_samples),
                n_features=layout.n_features,
                categorical=layout.categorical,
                n_categories=layout.n_categories,
            )
        else:
            data = DataSummary.of(stats, layout)
        plan = make_plan(
            self._plan_rules(),
            self._planned_params(),
            data,
            device=device,
            group=group,
            blueprint=self._blueprint,
            full=full,
            previous=self.fit_plan_ if continuing else None,
        )
        if self.verbose and group.rank == 0:
            print(f"{type(self).__name__}: {plan}", flush=True)
        return plan

    def _reads_mask(self):
        """Whether the fitted network reads the missing-value mask (fitted on data with NaN)."""
        return getattr(self, "mask_input_", False)

    def _is_fitted(self):
        return hasattr(self, "n_iter_")

    def _layout(self):
        """The Layout of the table this estimator was fitted on (or is being fitted on, once
        its input is validated): which columns are categorical, and their categories."""
        mask = getattr(self, "is_categorical_", None)
        if mask is None or not mask.any():
            return Layout(getattr(self, "n_features_in_", 0))
        return Layout(
            int(self.n_features_in_),
            tuple(int(j) for j in np.flatnonzero(mask)),
            tuple(len(c) for c in self.categories_),
        )

    def _table(self, X, *, reset):
        """Validate a table with categorical columns and encode it (see skae._tabular): the
        encoded float64 matrix (NaN where missing) and the ``(column, value)`` of the unseen
        categories it read as missing; None where X has no categorical column (then nothing is
        set: X goes through the numeric validation as ever). With ``reset``, the categorical
        columns and their categories are set from X (``is_categorical_``, ``categories_``)."""
        spec = getattr(self, "categorical_features", None)
        if reset:
            names = X.columns if isinstance(X, pd.DataFrame) else None
            explicit = spec is not None and not isinstance(spec, str)
            n_features = _n_columns(X) if explicit else 0
            if isinstance(X, pd.DataFrame):
                n_features = X.shape[1]
            mask = resolve_categorical(X, spec, n_features, names)
            if not mask.any():
                for name in ("is_categorical_", "categories_", "_feature_dtypes"):
                    self.__dict__.pop(name, None)
                return None
        else:
            mask = getattr(self, "is_categorical_", None)
            if mask is None or not mask.any():
                return None
        if sp.issparse(X) or is_out_of_core(X):
            raise ValueError(
                f"{type(self).__name__} reads categorical columns from in-memory tables only "
                "(a DataFrame or a 2-D array), not from sparse or out-of-core arrays: encode "
                "them first (e.g. OneHotEncoder), or pass the table in memory."
            )
        if not isinstance(X, pd.DataFrame):
            X = np.asarray(X, dtype=object)
            if X.ndim != 2:
                raise ValueError(
                    f"Expected a 2D array, got an array of shape {X.shape} instead: reshape "
                    "your data (X.reshape(-1, 1) for a single feature)."
                )
        validate_data(self, X, reset=reset, skip_check_array=True)
        if reset:
            self.is_categorical_ = mask
            self.categories_ = [fit_categories(X, j) for j in np.flatnonzero(mask)]
            self._feature_dtypes = X.dtypes.copy() if isinstance(X, pd.DataFrame) else None
        unseen = []
        encoded = encode(X, self._layout(), self.categories_, unseen)
        if not np.isfinite(encoded[~np.isnan(encoded)]).all():
            raise ValueError(
                "Input X contains infinity in a numeric column: replace it with NaN (missing) "
                "or a finite value."
            )
        return encoded, unseen

    def _refuse_unseen(self, unseen):
        """Raise where ``unseen`` (column, value) categories meet a network that cannot read
        them as missing (one fitted on complete data)."""
        if unseen and not self._reads_mask():
            j, value = unseen[0]
            names = getattr(self, "feature_names_in_", None)
            where = f"feature {names[j]!r}" if names is not None else f"column {j}"
            known = self.categories_[int(np.sum(self.is_categorical_[:j]))]
            raise ValueError(
                f"X holds the category {value!r} in {where}, which fit did not see "
                f"(categories: {list(known)}). "
                f"An unseen category is read as a missing value, but this {type(self).__name__} "
                "was fitted on complete data, so its network cannot read missing values. Map "
                "it to a known category, or fit on data with missing values."
            )

    def _validate_input(self, X, *, reset, missing="allow"):
        """X checked as scikit-learn does. Missing values (NaN) are dealt with as ``missing``
        says: "allow", "refuse" (a network without the mask input) or "rows" (allowed, but
        not rows with no observed value: inference). Out-of-core X is returned as it is, after
        checking its shape and first row; ``_check_block`` checks the rest as it is read.
        A table with categorical columns is returned encoded (see skae._tabular); an unseen
        category is read as missing."""
        table = self._table(X, reset=reset)
        if table is not None:
            X, unseen = table
            if not reset:
                self._refuse_unseen(unseen)
            nan = has_nan(X)
            if nan:
                self._check_missing(X, missing)
            _check_float32_range(X, nan)
            return X
        X = self._validate_numbers(X, reset=reset, missing=missing)
        if reset:
            self.is_categorical_ = np.zeros(self.n_features_in_, dtype=bool)
            self.categories_ = []
        return X

    def _validate_numbers(self, X, *, reset, missing):
        """``_validate_input`` for a table of numbers only."""
        if is_out_of_core(X):
            if len(X.shape) != 2:
                raise ValueError(
                    f"Expected a 2D array, got an array of shape {tuple(X.shape)} instead."
                )
            self._validate_numbers(self._check_block(X[:1], missing), reset=reset, missing="allow")
            return X
        with explained_input_errors(X, self):
            X = validate_data(
                self,
                X,
                reset=reset,
                accept_sparse=("csr", "csc", "coo"),
                dtype=(np.float32, np.float64),
                ensure_all_finite="allow-nan",
            )
        nan = has_nan(X)
        if nan:
            self._check_missing(X, missing)
        _check_float32_range(X, nan)
        return X

    def _check_block(self, block, missing="allow"):
        """One block of out-of-core rows as a checked float32 array (checks as
        ``_validate_input``)."""
        block = np.asarray(block)
        with explained_input_errors(block, self):
            block = check_array(
                block,
                dtype=(np.float32, np.float64),
                input_name="X",
                estimator=self,
                ensure_all_finite="allow-nan",
            )
        nan = has_nan(block)
        if nan:
            self._check_missing(block, missing)
        _check_float32_range(block, nan)
        return block.astype(np.float32, copy=False)

    def _check_missing(self, X, missing):
        """Apply the ``missing`` policy (see ``_validate_input``) to X, which holds NaN."""
        if missing == "refuse":
            raise refuse_nan(self)
        if missing == "rows":
            refuse_empty_rows(X, self)

    def _start(self, X, stats, plan, group):
        """A fresh network, optimizer and input scaling as ``plan`` describes, for X, whose
        column statistics (over every process's rows) are ``stats``."""
        seed = group.broadcast_seed(_draw_seed(self.random_state))
        device = torch.device(plan.device)
        layout = layout_of(plan)
        scaling = input_scaling(stats, plan.scaling, device, layout)
        self._warn_about_data(plan.n_features)
        modules = self._build_modules(plan, torch.Generator().manual_seed(seed))
        self._initialise(modules, X, stats, scaling, plan, group)
        if layout.is_mixed:
            # Each categorical column starts at its training frequencies, as the numbers at
            # their means.
            bias = last_linear(modules["decoder_"]).bias
            with torch.no_grad():
                for start, log_frequencies in logit_start(stats, layout):
                    bias[start : start + len(log_frequencies)] = torch.as_tensor(log_frequencies)
        if plan.mask_input:
            fill = scaling.to_model(torch.as_tensor(stats.mean, dtype=torch.float32))
            modules = _with_mask_input(modules, fill)
        modules = {name: module.to(device) for name, module in modules.items()}
        state = TrainingState(
            modules=modules, optimizer=None, scaling=scaling, plan=plan, device=device, seed=seed
        )
        state.optimizer = self._make_optimizer(state.parameters(), device)
        return state

    def _column_statistics(self, X):
        if sp.issparse(X):
            return ColumnStats.of(X)
        return column_statistics(block for _, block in iter_blocks(X, self._check_block))

    def _resume(self, plan, device, *, keep_optimizer):
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
            ({name: getattr(self, name) for name in self._module_names}, self._optimizer)
        )
        modules = {name: module.to(device) for name, module in modules.items()}
        state = TrainingState(
            modules=modules,
            optimizer=None,
            scaling=AffineScaling(self.input_offset_, self.input_scale_, device),
            plan=plan,
            device=device,
            seed=self._seed,
            n_iter=self.n_iter_,
            loss_curve=list(self.loss_curve_),
            best_loss=self.best_loss_,
        )
        state.optimizer = self._make_optimizer(state.parameters(), device)
        if keep_optimizer:
            load_optimizer_state(state.optimizer, optimizer.state_dict())
        return state

    def _blueprint(self, plan):
        """The network ``plan`` describes, on the meta device: no memory, no weights."""
        modules = self._build_modules(plan, None)
        if plan.mask_input:
            modules = _with_mask_input(modules, torch.empty(plan.width, device="meta"))
        return modules

    def _module_unlike_params(self):
        """The name of the first fitted module that the current parameters would not build
        (its layers or their shapes differ), or None when they describe the fitted network."""
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, str) and hidden == "auto":
            hidden = self.fit_plan_.hidden_layer_sizes  # what "auto" chose for this network
        expected = self._blueprint(
            replace(
                self.fit_plan_,
                n_components=self._components_asked(),
                activation=self.activation,
                hidden_layer_sizes=tuple(hidden),
            )
        )
        for name in self._module_names:
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

    def _train(self, state, X, group, stats, *, full, missing="allow"):
        """Train ``state`` on X as its plan says, warn about how it ended, and adopt it as the
        fitted state.

        ``full`` (fit, not partial_fit) sets the loss a fit must get below for its plateau rule
        to apply, from ``stats`` (X's column statistics), and warns when the fit ended
        unconverged. ``missing``: the NaN policy for the blocks of out-of-core X (see
        ``_validate_input``).
        """
        plan = state.plan
        layout = layout_of(plan)
        loss_to_beat = math.inf
        if full:
            share = _share_to_beat(plan.n_components, plan.n_features)
            loss_to_beat = self._constant_loss(stats, state.scaling, share, layout)
        rows = training_rows(
            X, state.scaling, state.device, lambda block: self._check_block(block, missing)
        )
        first_epoch = len(state.loss_curve)
        with torch_threads(plan.n_threads):
            outcome = train(
                state,
                rows,
                lambda batch_size: self._make_step(state, batch_size),
                group,
                self._reconstruct if not layout.is_mixed else self._rebuilder(layout),
                loss_to_beat=loss_to_beat,
                progress=type(self).__name__ if self.verbose else None,
            )
            extras = self._fitted_extras(state, X, group)
        if outcome.interrupted:
            warnings.warn(
                f"Training was interrupted in epoch {state.n_iter + 1}; the estimator keeps "
                "the weights of the last completed batch and can be used or trained further.",
                RuntimeWarning,
                stacklevel=4,
            )
        elif full:
            losses = state.loss_curve[first_epoch:]
            problem = unconverged(type(self).__name__, outcome, losses, plan, loss_to_beat,
                                  warn_short_schedule=self._warns_of_a_short_schedule)  # fmt: skip
            if problem is not None:
                warnings.warn(problem, ConvergenceWarning, stacklevel=4)
        if full:
            state.attributes["max_iter_"] = plan.max_iter
        state.attributes.update(extras)
        self._adopt(state)

    def _make_step(self, state, batch_size):
        """The optimizer step that ``state.plan.step`` names, on batches of ``batch_size``
        rows: the innermost piece of the loop."""
        compute_loss = lambda x: self._loss(state, x)  # noqa: E731
        if state.plan.step == "cuda graph":
            return CudaGraphStep(compute_loss, state.optimizer, batch_size=batch_size)
        return TrainingStep(compute_loss, state.optimizer)

    def _adopt(self, state):
        plan = state.plan
        for name, module in state.modules.items():
            setattr(self, name, module)
        self._optimizer = state.optimizer
        self._seed = state.seed
        self.device_ = state.device
        self.fit_plan_ = plan
        for name in self._plan_attributes:
            setattr(self, f"{name}_", getattr(plan, name))
        self.input_offset_ = state.scaling.offset.cpu().numpy()
        self.input_scale_ = state.scaling.scale
        self.n_iter_ = state.n_iter
        self.loss_curve_ = state.loss_curve
        self.validation_scores_ = state.validation_scores
        self.best_loss_ = state.best_loss
        for name, value in state.attributes.items():
            setattr(self, name, value)

    def _rebuilder(self, layout):
        """``reconstruct(modules, x)`` in the model's units, each categorical column's logits
        as probabilities (a mixed table's reconstruction)."""
        return lambda modules, x: probabilities(self._reconstruct(modules, x), layout)

    # -- inference -----------------------------------------------------------------------------

    def _fitted(self):
        """The fitted modules and input scaling, on the fitted device."""
        check_is_fitted(self)
        modules = {name: getattr(self, name) for name in self._module_names}
        fitted_components = _input_width(modules["decoder_"])
        if fitted_components != self._components_asked():
            raise ValueError(
                f"The fitted network has {fitted_components} components but "
                f"n_components={self.n_components}: n_components was changed after fit. "
                "Set it back, or fit again."
            )
        return modules, AffineScaling(self.input_offset_, self.input_scale_, self.device_)

    def _components_asked(self):
        """The code size that n_components asks for now ("auto": as the fit resolved it)."""
        return self.n_components_ if is_auto(self.n_components) else self.n_components

    def _map_rows(self, fn, X, n_out, missing="allow"):
        """``fn(modules, scaling, x)`` (x: rows in the user's units, a float32 tensor) applied
        to X chunk by chunk, on as many threads as the work calls for; X is validated first,
        unless it holds codes (``n_out`` columns are then the features). ``missing``: the NaN
        policy for the blocks of out-of-core X (see ``_validate_input``)."""
        modules, scaling = self._fitted()
        n_parameters = sum(p.numel() for m in modules.values() for p in m.parameters())
        flops = inference_flops(n_parameters, min(X.shape[0], INFERENCE_CHUNK_ROWS))
        with torch_threads(choose_threads(self.n_threads, flops, self.device_)):
            return map_in_chunks(
                lambda x: fn(modules, scaling, x),
                X,
                n_out,
                self.device_,
                lambda block: self._check_block(block, missing),
            )

    def _inference_missing(self):
        """The NaN policy of inference: NaN where the network reads the mask, but no row
        without an observed value; no NaN for a network fitted on complete data."""
        return "rows" if self._reads_mask() else "refuse"

    def _codes(self, X):
        """The codes of X, shape (n_samples, n_components), float32."""
        self._fitted()
        missing = self._inference_missing()
        X = self._validate_input(X, reset=False, missing=missing)
        return self._map_rows(
            lambda modules, scaling, x: self._encode(modules, scaling.to_model(x)),
            X,
            self.n_components,
            missing,
        )

    def _decoded(self, Z):
        """Codes Z decoded into the input's units, shape (n_samples, n_features_in_), float32."""
        self._fitted()
        if not is_out_of_core(Z):
            Z = check_array(Z, dtype=(np.float32, np.float64), input_name="X", estimator=self)
        if len(Z.shape) != 2 or Z.shape[1] != self.n_components:
            raise ValueError(
                f"inverse_transform expects codes with n_components={self.n_components} "
                f"columns, but got an array with {Z.shape[-1]} columns."
            )
        if not is_out_of_core(Z):
            _check_float32_range(Z)
        layout = layout_of(self.fit_plan_)
        if not layout.is_mixed:
            return self._map_rows(
                lambda modules, scaling, z: scaling.to_user(self._decode(modules, z)),
                Z,
                self.n_features_in_,
            )
        encoded = self._map_rows(
            lambda modules, scaling, z: scaling.to_user(
                probabilities(self._decode(modules, z), layout)
            ),
            Z,
            layout.width,
        )
        return self._as_table(decode(encoded, layout, self.categories_))

    def _as_table(self, table):
        """An object table (rows of a mixed table) as the user gave the table to fit: a
        DataFrame with its columns and dtypes, else the object array."""
        dtypes = getattr(self, "_feature_dtypes", None)
        return table if dtypes is None else as_frame(table, dtypes)

    def _reconstruction_errors(self, X):
        """Each row's mean squared reconstruction error, in the input's units: float32, the
        precision of the model (summed in float64)."""
        self._fitted()
        missing = self._inference_missing()
        X = self._validate_input(X, reset=False, missing=missing)
        masked = self._reads_mask()
        layout = layout_of(self.fit_plan_)
        if layout.is_mixed:

            def row_losses_of(modules, scaling, x):
                # The mixed loss's mean over each row's observed cells (model units).
                model_x = scaling.to_model(x)
                total, counts = row_losses(self._reconstruct(modules, model_x), model_x, layout)
                return (total / counts.clamp_min(1.0))[:, None]

            return self._map_rows(row_losses_of, X, 1, missing)[:, 0]

        def row_errors(modules, scaling, x):
            # The mean over each row's entries (its observed ones, for a masked network).
            recon = scaling.to_user(self._reconstruct(modules, scaling.to_model(x)))
            squared, counts = row_squared_errors(recon, x, masked)
            return (squared / counts)[:, None]

        return self._map_rows(row_errors, X, 1, missing)[:, 0]

    # -- saving --------------------------------------------------------------------------------

    def save(self, path):
        """Save the fitted estimator to a file that holds no pickle.

        The file is a single safetensors file: the network's weights, the input scaling and the
        optimizer's state as tensors, and the parameters and fitted attributes as JSON in its
        header. ``skae.load`` reads it back without running any code from the file, so model
        files from untrusted sources are safe to load. The file is written beside ``path`` and
        renamed into place, so ``path`` never holds a partial file. Under
        ``torch.distributed``, only rank 0 writes (every rank holds the same model); the other
        ranks return at once.

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
        if process_group(torch.device("cpu")).rank == 0:
            _save(self, path)

    # -- scikit-learn and pickle plumbing ------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = True
        return tags

    def _get_fitted_attr_html(self, doc_link=""):
        # scikit-learn's HTML repr lists the fitted attributes, each cut to a few characters;
        # the fit plan follows them in full.
        attributes = super()._get_fitted_attr_html(doc_link)
        plan = self.__dict__.get("fit_plan_")
        if plan is not None:
            table = attributes._html_repr
            attributes._html_repr = lambda: table() + plan._repr_html_()
        return attributes

    def __getstate__(self):
        # Tensors travel on the CPU so that a model fitted on a GPU unpickles anywhere.
        state = self.__dict__.copy()
        if self._is_fitted():
            modules = {name: state[name] for name in self._module_names}
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
        for name in self._module_names:
            getattr(self, name).to(device)
        self.device_ = device
        parameters = [p for name in self._module_names for p in getattr(self, name).parameters()]
        optimizer = self._make_optimizer(parameters, device)
        load_optimizer_state(optimizer, state["_optimizer"])
        self._optimizer = optimizer


class CodesTransformerMixin(ClassNamePrefixFeaturesOutMixin, TransformerMixin):
    """The transformer's face of an estimator whose output is its codes, as PCA's is its
    components: transform, inverse_transform, score, score_samples and feature names
    ``<classname>0, <classname>1, ...``. Goes left of ``BaseAutoEncoder``."""

    def transform(self, X):
        """Encode X into codes of shape (n_samples, n_components), as float32.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Out-of-core arrays are read chunk by chunk.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_components), dtype float32
        """
        return self._codes(X)

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
        return self._decoded(X)

    def score_samples(self, X):
        """Negative mean squared reconstruction error of each row, in the input's own units.

        Higher is more typical of the training data, as for scikit-learn's
        ``PCA.score_samples``; ``score(X)`` is the mean of these. Rows the autoencoder
        reconstructs badly are unlike those it was trained on (see
        ``AutoEncoderOutlierDetector`` for outlier detection built on this).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), dtype float32
            float32 as the network computes (summed over features in float64).
        """
        return -self._reconstruction_errors(X)

    def score(self, X, y=None):
        """Negative mean squared reconstruction error of X, in the input's own units.

        The mean of ``score_samples(X)``. Higher is better, so GridSearchCV can compare
        unsupervised settings with no ``y``. The error always falls as ``n_components`` grows,
        so a search over ``n_components`` by this score alone picks the largest size; see
        ``skae.model_selection`` for a criterion that does not.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X), dtype=np.float64))

    @property
    def _n_features_out(self):
        # Absent until fit, so that get_feature_names_out raises NotFittedError.
        if not self._is_fitted():
            raise AttributeError("_n_features_out is set by fit")
        return self.n_components

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Computation is float32 whatever the input; float32 input gives float32 output.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def _column_counts(stats, layout, categories=True):
    """Each column's number of observed values, for the refusal of empty columns: a
    categorical column's number of categories stands in for its count (or 1, unless
    ``categories``: an empty one is then let through)."""
    counts = stats.observed
    if not layout.is_mixed:
        return counts
    by_column = np.zeros(layout.n_features)
    by_column[list(layout.numeric)] = counts[: layout.n_numeric]
    by_column[list(layout.categorical)] = layout.n_categories if categories else 1
    return by_column


def _n_columns(X):
    """The number of columns of a 2-D table-like X (-1 where it has no second dimension)."""
    shape = getattr(X, "shape", None)
    if shape is None:
        shape = np.asarray(X, dtype=object).shape
    return shape[1] if len(shape) == 2 else -1


def _share_to_beat(n_components, n_features):
    """The share of the constant prediction's error that a fit must get below to have clearly
    beaten it: half of what ``n_components`` principal components remove even from data with
    no structure at all (isotropic noise, where they remove ``n_components / n_features``)."""
    return 1.0 - 0.5 * min(n_components, n_features) / n_features


def _mean_variance(stats, scale=1.0):
    """The mean over features of their variance in the model's units (the features divided
    by ``scale``, one number or one per feature): the mean squared error of the column means
    (with missing values, over the observed entries)."""
    deviations = stats.squared_deviations / np.square(scale)
    if stats.counts is None:
        return float(np.mean(deviations / stats.n_rows))
    return float(np.sum(deviations) / max(1.0, float(np.sum(stats.counts))))


def _with_mask_input(modules, fill):
    """``modules`` whose encoder reads the missing-value mask beside the values (it was built
    for twice the features): behind a MissingMask that fills NaN with ``fill``."""
    return {**modules, "encoder_": torch.nn.Sequential(MissingMask(fill), modules["encoder_"])}


def _check_float32_range(X, has_nan=False):
    """Refuse float64 values that would become infinite in float32, the dtype of the model."""
    if X.dtype != np.float64:
        return
    values = X.data if sp.issparse(X) else X
    if has_nan:
        values = values[~np.isnan(values)]
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


def _input_width(module):
    """The number of inputs of ``module``'s first Linear layer."""
    return next(m for m in module.modules() if isinstance(m, torch.nn.Linear)).in_features


def _shapes(module):
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def _cpu_state(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {k: _cpu_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu_state(v) for v in value]
    return value
