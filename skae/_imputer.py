"""AutoEncoderImputer: missing values filled by a denoising autoencoder."""

import math
import numbers
import warnings

import numpy as np
import pandas as pd
from sklearn.base import TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, MissingIndicator
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import (
    FLOAT_DTYPES,
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from ._autoencoder import AutoEncoderModel
from ._base import _INPUT_METADATA, _check_float32_range
from ._input_checks import explained_input_errors
from ._missing import has_nan
from ._persistence import register
from ._plan import (
    FIRST_HIDDEN,
    PlanRules,
    check_auto_or_float,
    default_hidden_layer_sizes,
    is_auto,
)
from ._tabular import decode, layout_of, missing_cells
from ._validation import check_float, check_option

# From this many training rows up, "auto" gives the network two equal hidden layers. RMSE
# (20% missing, two seeds), (256, 256) against the single (256,) layer: digits (1,797 rows)
# 0.133 against 0.141, 2,000 MNIST images 0.099 against 0.101 (against the transformer's
# (256, 128)), synthetic (800) 0.039 against 0.043; but diabetes (442) 0.226 against 0.215,
# a low-rank table (600) 0.033 against 0.032, breast_cancer (569) and wine (178) within
# 0.0005, and a breast_cancer fit took 1.6 times as long.
TWO_HIDDEN_LAYERS_FROM = 1000

# hidden_weight="auto": the weight of the hidden values' error where the codes are at least as
# wide as the rows (n_components >= n_features), so that the network could copy every value it
# is shown. RMSE (20% missing; seeds 0-2 for digits, 0-1 otherwise), 3 against 1: digits (64
# features) 0.1273 against 0.1320 (5: 0.1271; 2: 0.1287 on seeds 0-1); breast_cancer (30)
# 0.0517 against 0.0516, wine (13) 0.1450 against 0.1454, diabetes (10) 0.2141 against 0.2149.
# Not below: 2,000 MNIST images (784 features) 0.1028 against 0.0996.
HIDDEN_WEIGHT = 3.0

# max_iter="auto": one optimizer step per OBSERVED_CELLS_PER_STEP observed cells of the training
# data, at least skae._plan.FEWEST_STEPS (500) and at most the 6,000 of every other estimator.
# Small tables overfit 6,000 steps (their best epoch early, the fill error rising after), wide
# ones need them; the observed cells measure how much a table has to teach. RMSE (min-max
# scaled, 20% MCAR, seeds 0-2), 6,000 steps / one step per 1, 2 and 4 cells, against the better
# of KNNImputer and IterativeImputer: diabetes 0.2094 / 0.2056, 0.2025, 0.2030 (0.2009), wine
# 0.1442 / 0.1416, 0.1434, 0.1473 (0.1526), ADBench's Hepatitis 0.3583 / 0.3501, 0.3456,
# 0.3443 (0.3497), vertebral 0.0928 / 0.0931, 0.0977, 0.0993 (0.0991), Stamps 0.1077 / 0.1094,
# 0.1123, 0.1157 (0.1294), WPBC 0.1011 / 0.1012, 0.1021, 0.1013 (0.0919), breast_cancer
# 0.0511 / 0.0511, 0.0511, 0.0538 (0.0536); tables of 12,000 cells and more (digits,
# breast_cancer; fault, letter, Cardiotocography, Waveform) keep the 6,000 steps. At 2 the
# rule is at or below the better baseline on 5 of these 7 tables (6,000 steps: 4; 1: 4; 4:
# 3), and a small table fits in a tenth of the time (diabetes 0.7 s against 4.6 s). Held out
# (benchmarks/README.md): boston, auto and birthwt at or below the better baseline under MCAR,
# MAR and MNAR (birthwt was not under MCAR and MAR); on R's four held-out mixed tables the
# numbers filled better on three (mgus 0.883 against 0.937; Gestation 0.871 against 0.866),
# the categories within 0.023 (UN 0.262 against 0.239), still the best. Its cost: small
# tables whose columns predict each other well want the long schedule (Cars93, 93 rows:
# 0.492 against 0.459), and no count of rows or cells tells them from the noisy ones.
OBSERVED_CELLS_PER_STEP = 2

# linear_share="auto": each missing value is filled with this share of a linear imputer's fill
# (scikit-learn's IterativeImputer with BayesianRidge, at its defaults) and the rest of the
# network's, on numeric tables of up to 256 columns. Two fills whose errors are not the same
# average to a better one, and the network's are noisy on small tables whose columns are
# nearly linear in each other, where the linear model is at its best. RMSE (min-max scaled,
# 20% MCAR, seeds 0-2), shares 0 / 0.2 / 0.3 / 0.5, the better of KNNImputer and
# IterativeImputer in brackets: diabetes 0.2025 / 0.1990 / 0.1978 / 0.1967 (0.2009), wine
# 0.1434 / 0.1424 / 0.1426 / 0.1441 (0.1526), breast_cancer 0.0511 / 0.0481 / 0.0472 / 0.0468
# (0.0536), ADBench's Stamps 0.1123 / 0.1122 / 0.1136 / 0.1188 (0.1294), vertebral 0.0977 /
# 0.0952 / 0.0945 / 0.0941 (0.0991), Hepatitis 0.3456 / 0.3423 / 0.3414 / 0.3412 (0.3497),
# WPBC 0.1021 / 0.0964 / 0.0941 / 0.0910 (0.0919), digits 0.1308 / 0.1299 / 0.1316 / 0.1387
# (0.1475, 64 features); under MAR and MNAR, diabetes 0.2198 / 0.2161 / 0.2147 / 0.2130
# (0.2150) and 0.1970 / 0.1939 / 0.1929 / 0.1918 (0.1954). 0.3 is the least share at or below
# the better baseline on every development table but WPBC (whose gap it narrows from 11% to
# 2.4%); 0.5, the one that is on WPBC too, costs digits and Stamps 5-6% and put R's held-out
# Boston above KNNImputer (0.1360 against 0.1351 under MCAR, seen in the same run: 0.3 gives
# 0.1330). Wider tables (images) keep the network's fills alone: it is far ahead there (2,000
# MNIST images: 0.099 against 0.112), and IterativeImputer's time grows with the square of the
# columns. Mixed tables too: the linear imputer reads numbers only.
LINEAR_SHARE = 0.3
# The fitted attributes that hold the linear imputer (see AutoEncoderImputer._fit_linear).
LINEAR_ARRAYS = ("_linear_start", "_linear_targets", "_linear_coefs", "_linear_intercepts")


@register
class AutoEncoderImputer(TransformerMixin, AutoEncoderModel):
    """Impute missing values with a denoising autoencoder.

    The autoencoder reads each row's values beside its missing-value mask, and is trained to
    rebuild values it was not shown: at every step a random ``masking_rate`` of the observed
    values are hidden as if missing, and the error of the observed values (hidden or not) is
    minimised. ``transform`` passes every observed value through unchanged and fills every
    missing one with its reconstruction. The network learns how the features go together, as
    IterativeImputer's regressions do, in one model for all of them, so wide data (images)
    cost no more per feature than narrow. On numeric tables of up to 256 columns each fill is
    by default blended with IterativeImputer's linear one (``linear_share``): the average of
    the two is better than either where the network's fills are noisy (small tables), and
    costs little where the network is ahead.

    Follows scikit-learn's imputers (``SimpleImputer``, ``IterativeImputer``): the same
    ``missing_values``, ``add_indicator`` and ``keep_empty_features``, output features and
    feature names.

    Parameters
    ----------
    missing_values : int, float or np.nan, default=np.nan
        The placeholder of a missing value. With any value other than np.nan, NaN in X is an
        error, as in scikit-learn's imputers.
    add_indicator : bool, default=False
        Append ``MissingIndicator``'s columns (features with missing values in fit) to the
        output, so that a model downstream can use the fact that a value was missing.
    keep_empty_features : bool, default=False
        Features with no observed value in fit are dropped from the output when False; kept
        and filled with 0 when True, as in ``IterativeImputer`` (an empty categorical
        feature is kept as it is: there is no category to fill it with).
    categorical_features : "from_dtype", None, array-like of bool, int or str, \
default="from_dtype"
        The categorical columns, as in ``AutoEncoderTransformer``: "from_dtype" reads a
        DataFrame's category, object, bool and string columns as categorical; or a boolean
        mask, column indices or names (for a numpy object array, say); None for none. A table
        with categorical columns is imputed as a table: see Notes.
    n_components : int, default=64
        Width of the code layer.
    hidden_layer_sizes : "auto" or tuple of int, default="auto"
        Widths of the encoder's hidden layers (the decoder mirrors them). "auto": two of
        ``max(256, 2 * n_components)`` from 1,000 training rows up, where they filled holes
        better (digits: RMSE 0.133 against 0.141 with one); below, AutoEncoderTransformer's
        rule (one such layer for inputs of up to 256 features).
    masking_rate : float, default=0.2
        Share of the observed values hidden (as missing) at each training step, in [0, 1).
    hidden_weight : "auto" or float, default="auto"
        Weight of the error of the values hidden at each step, against the values shown, in
        the training loss (> 0). "auto": 3 where the codes are at least as wide as the rows
        (``n_components >= n_features``), where the network could otherwise learn to copy
        what it is shown (digits, 64 features: RMSE 0.127 against 0.132 with 1); 1 below
        (2,000 MNIST images filled worse with 3: 0.103 against 0.100).
    linear_share : "auto" or float, default="auto"
        The share of a linear imputer's fill in each filled value, in [0, 1]: the imputer
        also fits scikit-learn's ``IterativeImputer`` (BayesianRidge, its defaults) and fills
        each missing value with ``(1 - linear_share)`` times the network's fill plus
        ``linear_share`` times the linear one. "auto": 0.3 on numeric tables of up to 256
        columns, where the average filled better than either (diabetes, 20% missing: RMSE 0.198
        against the network's 0.203 and IterativeImputer's 0.201); 0 (the network alone) on
        wider data and on tables with categorical columns. See LINEAR_SHARE in the source.
    learning_rate_init : float, default=1e-3
        Adam's initial learning rate (AutoEncoderTransformer's is 3e-3, which filled holes
        less well on the data sets the defaults were chosen on; see Notes).
    activation, output_activation, init, max_iter, batch_size, learning_rate, random_state, \
device, n_threads, verbose
        As in AutoEncoderTransformer, but for ``max_iter="auto"``: the epochs that make one
        optimizer step per two observed values of X, between 500 and 6,000 steps (the
        transformer's 6,000 whatever the data), since small tables overfit a long schedule
        (see OBSERVED_CELLS_PER_STEP in the source). Training always runs the ``max_iter``
        epochs of the cosine schedule: the autoencoder's stopping rules watch how well it
        rebuilds values it is shown, not how well it fills holes.

    Attributes
    ----------
    indicator_ : MissingIndicator or None
        The indicator of ``add_indicator``; None otherwise.
    is_categorical_, categories_
        As in AutoEncoderTransformer.
    encoder_, decoder_, n_iter_, fit_plan_, hidden_layer_sizes_, batch_size_, max_iter_, \
loss_curve_, best_loss_, output_activation_, input_offset_, input_scale_, device_, \
n_features_in_, feature_names_in_
        As in AutoEncoderTransformer.

    Notes
    -----
    Mixed tables. With categorical columns (their missing cells NaN, None or pd.NA), the
    network reads each category one-hot and rebuilds it with a softmax; the numbers are
    standardised per column, and each column counts about equally in the loss (see
    AutoEncoderTransformer's Notes). ``transform`` then returns the table as it came, a
    DataFrame with the same index, columns and dtypes (an object array for an array), with
    each missing number filled in its column's own units and each missing category by its
    most probable category; every observed cell is returned as it was. A category that fit
    did not see is read as missing by the network, and kept in the output. Numeric-only
    input is imputed exactly as before, in arrays (``set_output`` makes DataFrames).

    The defaults were chosen by the RMSE over 20% of the entries removed at random (each
    column scaled to [0, 1]; two seeds), on data sets other than those of
    ``benchmarks/compare_imputers.py``: wine (178 x 13), diabetes (442 x 10), a synthetic
    nonlinear table (800 x 24), a low-rank table (600 x 40) and 2,000 MNIST test images. For
    those five, in order: learning_rate_init=1e-3: 0.145, 0.208, 0.054, 0.119, 0.164 (3e-3:
    0.149, 0.217, 0.051, 0.121, 0.163); masking_rate 0.1 / 0.2 / 0.3: wine 0.147 / 0.145 /
    0.143, low-rank 0.125 / 0.119 / 0.117, MNIST (random start) - / 0.164 / 0.183; the loss on
    the hidden values only instead of every observed one: 0.170, 0.220, 0.073, 0.124 (3e-3). On
    images the PCA start (``init="auto"`` below 10,000 rows) matters most: 2,000 MNIST images,
    0.101 against 0.164 from a random start (KNNImputer: 0.164). Refilling (feeding the fills
    back as observed values and imputing again) and averaging over extra random masks at
    transform did not help (wine: 0.143 once, 0.144 refilled once, 0.149 twice).

    The two hidden layers from 1,000 rows up were chosen later on digits, the benchmark's own
    data set (so not held out), and confirmed on the others (see TWO_HIDDEN_LAYERS_FROM in
    the source). Digits filled better still with 32 codes and masking_rate=0.3 (0.127 against
    0.133), but the same settings cost 2,000 MNIST images 0.119 against 0.099, and 32 codes
    alone 0.111: images need the wider code of the PCA start.

    ``hidden_weight="auto"`` was chosen last, also on digits, and confirmed on breast_cancer,
    wine and diabetes (see HIDDEN_WEIGHT in the source): the middle way between the loss on
    every observed value (which lets a code as wide as the row copy what it is shown) and
    the loss on the hidden ones only (which filled the tables worse).

    See Also
    --------
    sklearn.impute.SimpleImputer : Fills each feature with one statistic.
    sklearn.impute.IterativeImputer : Fills each feature by a regression on the others.
    AutoEncoderTransformer : Codes of rows with missing values.

    Examples
    --------
    >>> import numpy as np
    >>> from skae import AutoEncoderImputer
    >>> X = np.random.default_rng(0).random((100, 5))
    >>> X[::7, 2] = np.nan
    >>> imputer = AutoEncoderImputer(max_iter=3, random_state=0, device="cpu")
    >>> X_filled = imputer.fit_transform(X)
    >>> bool(np.isnan(X_filled).any()), bool((X_filled[1] == X[1]).all())
    (False, True)
    """

    # Training hides observed values as missing ones (see AutoEncoderModel._corrupt); the other
    # regularisers of AutoEncoderTransformer are not offered.
    noise_type = "masking"
    l1_penalty = 0.0
    contractive_penalty = 0.0
    # Training runs the whole cosine schedule of max_iter epochs. The stopping rules watch the
    # error of rebuilding values the network is shown, not of filling holes: on the data sets
    # the defaults were chosen on (20% missing), the plateau rule ended wine's fit after 68 of
    # 1,000 epochs at RMSE 0.154 against 0.146 for the whole schedule, and early stopping
    # (from a PCA start) at 0.160; synthetic data: 0.0514 and 0.0605 against 0.0501.
    early_stopping = False
    validation_fraction = 0.1
    n_iter_no_change = 10
    tol = 0.0
    # fit always starts afresh.
    warm_start = False
    # Nor does a loss still falling at the end of the schedule ask for more epochs: on wine
    # (178 rows, 1,000 epochs) the last quarter brought 13% of the fall, but 2,000 epochs
    # filled the holes worse (RMSE 0.147 against 0.145).
    _warns_of_a_short_schedule = False
    # Empty features, categorical ones too, are the imputer's to handle (keep_empty_features).
    _refuses_empty_categories = False

    _saved_values = ("_empty_features", "_indicator_features")
    # The linear imputer's chain of regressions (see _fit_linear), where linear_share > 0.
    _saved_arrays = LINEAR_ARRAYS

    def __init__(
        self,
        *,
        missing_values=np.nan,
        add_indicator=False,
        keep_empty_features=False,
        categorical_features="from_dtype",
        n_components=64,
        hidden_layer_sizes="auto",
        masking_rate=0.2,
        hidden_weight="auto",
        linear_share="auto",
        activation="leaky_relu",
        output_activation="auto",
        init="auto",
        max_iter="auto",
        batch_size="auto",
        learning_rate_init=1e-3,
        learning_rate="cosine",
        random_state=None,
        device="auto",
        n_threads="auto",
        verbose=0,
    ):
        self.missing_values = missing_values
        self.add_indicator = add_indicator
        self.keep_empty_features = keep_empty_features
        self.categorical_features = categorical_features
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.masking_rate = masking_rate
        self.hidden_weight = hidden_weight
        self.linear_share = linear_share
        self.activation = activation
        self.output_activation = output_activation
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose

    @property
    def noise_level(self):
        return self.masking_rate

    def _check_extra_params(self):
        check_float("masking_rate", self.masking_rate, low=0, high=1, high_open=True)
        check_auto_or_float("hidden_weight", self.hidden_weight, low=0)
        if not is_auto(self.linear_share):
            check_float("linear_share", self.linear_share, low=0, high=1)
        check_option("add_indicator", self.add_indicator, (True, False))
        check_option("keep_empty_features", self.keep_empty_features, (True, False))
        missing = self.missing_values
        if isinstance(missing, bool) or not isinstance(missing, numbers.Real):
            raise ValueError(
                f"missing_values={missing!r} is invalid: expected a number or np.nan "
                "(AutoEncoderImputer imputes numerical data)."
            )
        super()._check_extra_params()

    def _plan_rules(self):
        # The plain autoencoder's start, though training masks values: the PCA start filled
        # holes far better in 2,000 MNIST images (RMSE 0.101 against 0.164 from a random start)
        # and as well on the tables (see Notes). The values to impute come at transform,
        # whatever fit saw, so the network always reads the missing-value mask; and training
        # runs the whole schedule (see early_stopping above).
        # Numbers outside [0, 1] standardised per column: an imputer answers each column in its
        # own units, and one overall scale let the widest columns drown the others (NRMSE,
        # 20% MCAR, 3 seeds, raw units: breast_cancer 25.6 -> 0.354, wine 0.978 -> 0.711,
        # penguins' numbers 0.667 -> 0.597, diabetes 0.680 -> 0.669; IterativeImputer 0.358,
        # 0.752, 0.680, 0.647).
        return PlanRules(
            observed_cells_per_step=OBSERVED_CELLS_PER_STEP,
            mask_input="always",
            standardise=True,
            stop_on_plateau=False,
            hidden_layer_sizes=_auto_hidden_layer_sizes,
            hidden_weight=_auto_hidden_weight,
            linear_share=_auto_linear_share,
            backprop=True,
            random_loss=True,
        )

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Train the autoencoder on the observed values of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with missing values (``missing_values``).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted imputer.
        """
        device = self._check_params()
        saved = {k: self.__dict__[k] for k in _INPUT_METADATA if k in self.__dict__}
        try:
            X, missing, encoded = self._validated(X, reset=True)
            empty = missing.all(axis=0)
            if empty.all():
                raise ValueError(
                    "Every feature of X is entirely missing: AutoEncoderImputer needs at least "
                    "one observed value in some feature."
                )
            indicator = None
            if self.add_indicator:
                indicator = MissingIndicator(
                    missing_values=np.nan, error_on_new=False, sparse=False
                ).fit(np.where(missing, np.nan, 0.0))
            values = self._network_input(X, missing, empty, encoded)
            self._fit(values, device, continuing=False, full=True)
            self.__dict__.update(self._fit_linear(values))
        except BaseException:
            for name in _INPUT_METADATA:
                self.__dict__.pop(name, None)
            self.__dict__.update(saved)
            raise
        self._empty_features = empty
        self.indicator_ = indicator
        self._indicator_features = None if indicator is None else indicator.features_
        return self

    @available_if(lambda self: False)
    def partial_fit(self, X, y=None):
        """Not available: the imputer trains on the whole table (its empty features, its
        scaling) in fit."""

    def _validated(self, X, *, reset):
        """X as a float array (float32 stays float32), checked, its missing-value mask, and
        None; for a table with categorical columns, X as it is, its missing cells and its
        encoded matrix (see skae._tabular: an unseen category is NaN there, but not missing
        in the mask, since it is kept in the output)."""
        nan_is_missing = _is_nan(self.missing_values)
        table = self._table(X, reset=reset)
        if table is not None:
            if not nan_is_missing:
                raise ValueError(
                    f"missing_values={self.missing_values!r} is not supported with categorical "
                    "columns: their missing cells are NaN, None or pd.NA; mark the missing "
                    "numbers so too (missing_values=np.nan)."
                )
            encoded, _ = table
            if not isinstance(X, pd.DataFrame):
                X = np.asarray(X, dtype=object)
            return X, missing_cells(X, self._layout()), encoded
        with explained_input_errors(X, self):
            X = validate_data(
                self,
                X,
                reset=reset,
                dtype=FLOAT_DTYPES,
                ensure_all_finite="allow-nan" if nan_is_missing else True,
            )
        _check_float32_range(X, has_nan(X))
        missing = np.isnan(X) if nan_is_missing else X == self.missing_values
        if reset:
            self.is_categorical_ = np.zeros(self.n_features_in_, dtype=bool)
            self.categories_ = []
        return X, missing, None

    def _fit_linear(self, values):
        """The linear imputer's fitted attributes: ``IterativeImputer`` (BayesianRidge) fitted on
        the network's input ``values``, kept as its chain of regressions, which is all its
        ``transform`` computes: the column means (``_linear_start``), then for each step a
        column (``_linear_targets``) predicted from all the columns (``_linear_coefs``,
        ``_linear_intercepts``). None where ``linear_share`` is 0."""
        if not self.fit_plan_.linear_share:
            return dict.fromkeys(LINEAR_ARRAYS)
        with warnings.catch_warnings():
            # Its tolerance unmet after its 10 rounds: the fills measured are those 10 rounds'.
            warnings.simplefilter("ignore", ConvergenceWarning)
            # Deterministic at these settings (no sampling, all columns, ascending order).
            linear = IterativeImputer(random_state=0, keep_empty_features=True)
            linear.fit(values.astype(np.float64))
        steps = linear.imputation_sequence_
        coefs = np.zeros((len(steps), values.shape[1]))
        for i, step in enumerate(steps):
            coefs[i, step.neighbor_feat_idx] = step.estimator.coef_
        return {
            "_linear_start": linear.initial_imputer_.statistics_.astype(np.float32),
            "_linear_targets": np.array([step.feat_idx for step in steps], dtype=np.int64),
            "_linear_coefs": coefs.astype(np.float32),
            "_linear_intercepts": np.array(
                [step.estimator.intercept_ for step in steps], dtype=np.float32
            ),
        }

    def _linear_fill(self, values):
        """The linear imputer's fill of ``values`` (float32, NaN where missing), float64: what
        ``IterativeImputer.transform`` computes, from the chain ``_fit_linear`` kept."""
        missing = np.isnan(values)
        filled = np.where(missing, self._linear_start, values).astype(np.float64)
        coefs, intercepts = self._linear_coefs.astype(np.float64), self._linear_intercepts
        for j, coef, intercept in zip(self._linear_targets, coefs, intercepts, strict=True):
            rows = missing[:, j]
            if rows.any():
                filled[rows, j] = filled[rows] @ coef + float(intercept)
        return filled

    def _network_input(self, X, missing, empty, encoded=None):
        """X as the network reads it: float32, NaN where missing, empty features at 0; a
        mixed table's ``encoded`` matrix so (its empty categorical columns have no entry)."""
        if encoded is not None:
            values = encoded.astype(np.float32)
            layout = self._layout()
            values[:, _numeric_positions(layout, empty)] = 0.0
            return values
        values = np.where(missing, np.float32(np.nan), X).astype(np.float32, copy=False)
        values[:, empty] = 0.0
        return values

    # The imputer validates X itself (all of its features); the engine gets it ready to use.
    def _validate_input(self, X, *, reset, missing="allow"):
        return X

    # -- imputing ------------------------------------------------------------------------------

    def transform(self, X):
        """Fill the missing values of X with the autoencoder's reconstruction.

        Observed values pass through unchanged. A row with no observed value gets the
        training means.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with missing values.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features_out)
            X with every missing value filled, in X's float dtype; without the features that
            had no observed value in fit (unless ``keep_empty_features``), and followed by
            the missing-indicator columns when ``add_indicator``.
        """
        check_is_fitted(self)
        X, missing, encoded = self._validated(X, reset=False)
        if encoded is not None:
            return self._fill_table(X, missing, encoded)
        empty = self._empty_features
        filled = np.array(X, copy=True)
        rows = np.flatnonzero(missing[:, ~empty].any(axis=1))
        if len(rows):
            values = self._network_input(X[rows], missing[rows], empty)
            reconstruction = self._reconstruction(values).astype(X.dtype, copy=False)
            part = filled[rows]
            part[missing[rows]] = reconstruction[missing[rows]]
            filled[rows] = part
        filled[:, empty] = np.where(missing[:, empty], 0.0, filled[:, empty])
        if not self.keep_empty_features:
            filled = filled[:, ~empty]
        if self.indicator_ is not None:
            indicator = self.indicator_.transform(np.where(missing, np.nan, 0.0))
            filled = np.hstack([filled, indicator.astype(filled.dtype)])
        return filled

    def _fill_table(self, X, missing, encoded):
        """``transform`` of a mixed table X (a DataFrame or an object array): its missing cells
        filled (numbers in their own units, each category by its most probable value), the
        rest as it was; a DataFrame keeps its index, columns and dtypes."""
        layout, empty = self._layout(), self._empty_features
        filled = X.copy() if isinstance(X, pd.DataFrame) else np.array(X, dtype=object)
        rows = np.flatnonzero(missing[:, ~empty].any(axis=1))
        if len(rows):
            values = self._network_input(X, missing, empty, encoded[rows])
            reconstruction = self._reconstruction(values)
            table = decode(reconstruction, layout, self.categories_)
            for j in np.flatnonzero(~empty):
                holes = missing[rows, j]
                if holes.any():
                    _set_cells(filled, rows[holes], j, table[holes, j], j in layout.numeric)
        for j in np.flatnonzero(empty & ~self.is_categorical_):
            # As the numeric path: an empty numeric feature is filled with 0.
            _set_cells(filled, np.flatnonzero(missing[:, j]), j, 0.0, True)
        if isinstance(filled, pd.DataFrame):
            if not self.keep_empty_features:
                filled = filled.iloc[:, np.flatnonzero(~empty)]
            if self.indicator_ is not None:
                names = self.indicator_.get_feature_names_out(self.feature_names_in_)
                indicator = self.indicator_.transform(np.where(missing, np.nan, 0.0))
                indicator = pd.DataFrame(indicator, columns=names, index=filled.index)
                filled = pd.concat([filled, indicator], axis=1)
            return filled
        if not self.keep_empty_features:
            filled = filled[:, ~empty]
        if self.indicator_ is not None:
            indicator = self.indicator_.transform(np.where(missing, np.nan, 0.0))
            filled = np.hstack([filled, indicator.astype(object)])
        return filled

    def _reconstruction(self, values):
        """The network's reconstruction of ``values`` (float32 with NaN), in the input's
        units; rows with no observed value get the training means."""
        modules, scaling = self._fitted()

        layout = layout_of(self.fit_plan_)
        if not layout.is_mixed:

            def reconstruct(modules, scaling, x):
                return scaling.to_user(self._reconstruct(modules, scaling.to_model(x)))

            out = self._map_rows(reconstruct, values, values.shape[1])
            nothing = np.isnan(values[:, ~self._empty_features]).all(axis=1)
        else:
            rebuild = self._rebuilder(layout)

            def reconstruct(modules, scaling, x):
                return scaling.to_user(rebuild(modules, scaling.to_model(x)))

            out = self._map_rows(reconstruct, values, values.shape[1])
            shown = np.ones(layout.width, dtype=bool)
            shown[_numeric_positions(layout, self._empty_features)] = False
            nothing = np.isnan(values[:, shown]).all(axis=1)
        share = self.fit_plan_.linear_share
        if share:
            out = (1.0 - share) * out + share * self._linear_fill(values)
        if nothing.any():
            fill = modules["encoder_"][0].fill  # the training means, in the model's units
            out[nothing] = scaling.to_user(fill).cpu().numpy()
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: the input's (without empty features unless
        ``keep_empty_features``), then ``missingindicator_<name>`` with ``add_indicator``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            As in scikit-learn's imputers.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "n_features_in_")
        input_features = _check_feature_names_in(self, input_features)
        names = (
            input_features if self.keep_empty_features else input_features[~self._empty_features]
        )
        if self.indicator_ is None:
            return names
        return np.concatenate([names, self.indicator_.get_feature_names_out(input_features)])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = _is_nan(self.missing_values)
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- model files ---------------------------------------------------------------------------

    def _saved_array_shapes(self, n_features, fitted):
        # The JSON values are checked against the file's features here, before anything is
        # read; the linear imputer's chain is there where the plan blends it in.
        empty = fitted.get("_empty_features")
        if (
            not isinstance(empty, list)
            or len(empty) != n_features
            or not all(isinstance(e, bool) for e in empty)
        ):
            raise ValueError(
                f"Invalid _empty_features in the model file: expected {n_features} booleans."
            )
        features = fitted.get("_indicator_features")
        if features is not None and (
            not isinstance(features, list)
            or not all(
                isinstance(f, int) and not isinstance(f, bool) and 0 <= f < n_features
                for f in features
            )
        ):
            raise ValueError("Invalid _indicator_features in the model file.")
        plan = fitted.get("fit_plan_")
        if not isinstance(plan, dict) or not plan.get("linear_share"):
            return {}
        return {
            "_linear_start": (n_features,),
            "_linear_targets": (None,),
            "_linear_coefs": (None, n_features),
            "_linear_intercepts": (None,),
        }

    def _restored_attributes(self, arrays, values):
        empty = np.asarray(values["_empty_features"], dtype=bool)
        features = values["_indicator_features"]
        indicator = None
        if features is not None:
            # The indicator's only fitted state is which features it reports: refit it on
            # one row missing exactly those.
            row = np.zeros((1, len(empty)))
            row[0, features] = np.nan
            indicator = MissingIndicator(missing_values=np.nan, error_on_new=False, sparse=False)
            indicator.fit(row)
        return {
            "_empty_features": empty,
            "_indicator_features": features,
            "indicator_": indicator,
            **_restored_linear(arrays, len(empty)),
        }


def _restored_linear(arrays, n_features):
    """The linear imputer's chain from a model file's arrays (shapes checked), checked: one
    target column, coefficients and intercept per step; None where the file has none."""
    if "_linear_start" not in arrays:
        return dict.fromkeys(LINEAR_ARRAYS)
    targets = arrays["_linear_targets"]
    steps = {len(targets), len(arrays["_linear_coefs"]), len(arrays["_linear_intercepts"])}
    if (
        len(steps) != 1
        or not np.all(np.isfinite(arrays["_linear_coefs"]))
        or not np.all((targets >= 0) & (targets < n_features) & (targets == np.round(targets)))
    ):
        raise ValueError("Invalid linear imputer (_linear_* arrays) in the model file.")
    return {
        "_linear_start": arrays["_linear_start"],
        "_linear_targets": targets.astype(np.int64),
        "_linear_coefs": arrays["_linear_coefs"],
        "_linear_intercepts": arrays["_linear_intercepts"],
    }


def _auto_linear_share(value, data):
    """``linear_share``, with "auto" = ``LINEAR_SHARE`` on numeric tables of up to 256
    columns, else 0; a share above 0 on a table with categorical columns is refused."""
    if is_auto(value):
        narrow = data.n_features <= FIRST_HIDDEN
        return LINEAR_SHARE if narrow and not data.categorical else 0.0
    if value and data.categorical:
        raise ValueError(
            f"linear_share={value!r} needs a numeric table: the linear imputer reads numbers "
            "only, and X has categorical columns. Leave linear_share='auto' (0 on such "
            "tables) or set it to 0."
        )
    return float(value)


def _auto_hidden_layer_sizes(value, n_samples, n_features, n_components):
    """The imputer's ``hidden_layer_sizes``: "auto" gives two equal hidden layers from
    ``TWO_HIDDEN_LAYERS_FROM`` training rows up; below, the transformer's rule."""
    if is_auto(value) and n_samples >= TWO_HIDDEN_LAYERS_FROM:
        width = max(FIRST_HIDDEN, 2 * n_components)
        return (width, width)
    return default_hidden_layer_sizes(value, n_samples, n_features, n_components)


def _auto_hidden_weight(value, n_features, n_components):
    """``hidden_weight``, with "auto" = ``HIDDEN_WEIGHT`` where the codes are at least as wide
    as the rows, else 1."""
    if is_auto(value):
        return HIDDEN_WEIGHT if n_components >= n_features else 1.0
    return float(value)


def _numeric_positions(layout, columns):
    """The encoded positions of the numeric columns among ``columns`` (a boolean mask)."""
    return [p for p, j in enumerate(layout.numeric) if columns[j]]


def _set_cells(table, rows, j, values, numeric):
    """Set cells ``rows`` of column j of ``table`` (a DataFrame or an object array), numbers
    in the column's own dtype."""
    if not isinstance(table, pd.DataFrame):
        table[rows, j] = values
        return
    if numeric:
        dtype = table.dtypes.iloc[j]
        values = np.asarray(values, dtype=np.float64)
        if pd.api.types.is_integer_dtype(dtype):
            values = np.round(values)  # a nullable integer column (Int64) takes integers
        if pd.api.types.is_extension_array_dtype(dtype) or dtype.kind == "f":
            values = pd.array(values).astype(dtype) if dtype.kind != "f" else values.astype(dtype)
    table.iloc[rows, j] = values


def _is_nan(value):
    return isinstance(value, float) and math.isnan(value)
