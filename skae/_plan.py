"""The fit plan: every choice a fit makes before it trains, decided once, in one place.

``make_plan`` resolves each "auto" parameter, from the parameters and the training data's
column statistics, into one immutable ``FitPlan``, before any module is built: the network
(start, widths, output layer, scaling, missing-value mask), the training (batch size, epochs,
schedule, validation split, stopping rules, the kind of optimizer step) and the resources
(device, threads). The estimator keeps it as ``fit_plan_``, prints it with ``verbose=1`` and
shows it in its HTML repr; the training engine (``skae._training``) reads it and decides
nothing. What differs between estimators is stated by each in one place, its ``_plan_rules``:
a ``PlanRules`` record.

The rules, and why. The design's settings were tuned on MNIST (60,000 rows of 784 pixels):
784-256-128-64, batches of 256, about 24 epochs. Counted in epochs, that budget gives 1,000 rows
about 100 optimizer steps, far from trained, and its two hidden layers overfit small tabular
data sets. So:

* the budget is counted in optimizer steps, ``TARGET_STEPS``, whatever the number of rows
  (MNIST: 235 steps of 256 rows per epoch, 26 epochs; 1,257 digits: 40 steps of 31, 150
  epochs);
* batches shrink with the data set, so that a small one still gets many steps per epoch;
* inputs no wider than the first hidden layer get one hidden layer, not two: on digits (64
  features, 16 components) 784-style 256-128 gave 0.71x PCA's held-out error and 256 alone
  0.47x; on breast_cancer (30 features, 8 components) 1.05x and 0.88x.
"""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from html import escape

import torch

from ._threads import choose_threads, training_flops
from ._training import _backprop
from ._validation import check_float, check_hidden_layer_sizes, check_int

# Optimizer steps of a fit with max_iter="auto": the MNIST budget of the design (24 epochs of
# 235 steps, 5,640), rounded up.
TARGET_STEPS = 6000
# ... and of a fit with a validation split (early stopping): twice as many, since the split ends
# a fit that stops improving (see skae._training._loop.PATIENCE_SHARE). On the swiss roll (2
# codes) a PCA start still improved in the last tenth of 6,000 steps (held-out error 0.16 times
# PCA's over 6 seeds); 12,000 steps gave 0.12. Digits (16 codes), whose validation error is
# lowest after 20-40 epochs, stop about as early (digits: 364 epochs of 1,257 rows, not 182).
EARLY_STOPPING_STEPS = 2 * TARGET_STEPS
# The fewest steps of a budget that follows the observed cells (PlanRules.observed_cells_per_step).
FEWEST_STEPS = 500

MAX_BATCH_SIZE = 256  # the design's
MIN_BATCH_SIZE = 32
# batch_size="auto" gives at least this many steps per epoch, down to MIN_BATCH_SIZE rows.
MIN_STEPS_PER_EPOCH = 32

FIRST_HIDDEN = 256  # the design's first hidden layer, and second
SECOND_HIDDEN = 128

# early_stopping="auto" holds out a validation split below this many rows, of at least
# MIN_VALIDATION_ROWS rows (more than validation_fraction of a very small data set), leaving as
# many to train on.
EARLY_STOPPING_BELOW = 10_000
MIN_VALIDATION_ROWS = 5

# The output layers that keep data in [0, 1] in their own units (scaling "none").
UNIT_INTERVAL_OUTPUTS = ("sigmoid", "clip")

# The kinds of optimizer step (see skae._training): autograd's, one captured in a CUDA graph and
# replayed, and the hand-written backward pass of the plain squared error on the CPU.
STEPS = ("autograd", "cuda graph", "backprop")


# -- what the plan reads ---------------------------------------------------------------------


@dataclass(frozen=True)
class DataSummary:
    """What a plan reads of the training data (the union of every process's rows).

    ``in_unit_interval``, ``has_missing`` and ``n_observed`` (the observed cells of the table's
    columns) are None where they were not read: a partial_fit that continues a network, whose
    every network choice is made already. ``categorical`` and ``n_categories``: the table's
    categorical columns and their numbers of categories (see ``skae._tabular``); ``n_features``
    counts the table's columns, not the one-hot ones.
    """

    n_samples: int
    n_features: int
    in_unit_interval: bool | None = None
    has_missing: bool | None = None
    categorical: tuple = ()
    n_categories: tuple = ()
    n_observed: int | None = None

    @classmethod
    def of(cls, stats, layout=None):
        """The summary of a ``skae._scaling.ColumnStats`` (of the encoded matrix of a table
        with the given ``skae._tabular.Layout``, if any)."""
        observed = stats.observed
        if layout is None or not layout.is_mixed:
            return cls(
                n_samples=int(stats.n_rows),
                n_features=int(stats.mean.shape[0]),
                in_unit_interval=bool(stats.minimum >= 0.0 and stats.maximum <= 1.0),
                has_missing=stats.has_missing,
                n_observed=int(observed.sum()),
            )
        # A categorical cell is one one-hot block, observed or missing as a whole.
        cells = observed[: layout.n_numeric].sum() + sum(observed[j] for j, _ in layout.blocks)
        return cls(
            n_samples=int(stats.n_rows),
            n_features=layout.n_features,
            in_unit_interval=False,
            has_missing=stats.has_missing,
            categorical=layout.categorical,
            n_categories=layout.n_categories,
            n_observed=int(cells),
        )


def default_hidden_layer_sizes(value, n_samples, n_features, n_components):
    """``hidden_layer_sizes``, with "auto" chosen from the input and code widths.

    "auto": two hidden layers, ``(max(256, 2 * n_components), max(128, n_components))``, for
    inputs wider than 256 features (the design's 784-256-128-64 on MNIST); one,
    ``(max(256, 2 * n_components),)``, for narrower inputs. No hidden layer is narrower than
    the codes, which would cap their rank. (``n_samples`` is for estimators whose rule reads
    it; see ``PlanRules.hidden_layer_sizes``.)
    """
    if not is_auto(value):
        return check_hidden_layer_sizes(value)
    first = max(FIRST_HIDDEN, 2 * n_components)
    if n_features > FIRST_HIDDEN:
        return (first, max(SECOND_HIDDEN, n_components))
    return (first,)


@dataclass(frozen=True)
class PlanRules:
    """How an estimator's "auto" parameters resolve where it differs from the others: each
    estimator states its own in ``_plan_rules`` (the defaults are the transformer's)."""

    # The optimizer steps of max_iter="auto", without and with a validation split.
    target_steps: int = TARGET_STEPS
    early_stopping_steps: int = EARLY_STOPPING_STEPS
    # Where set, max_iter="auto" without a validation split gives one step per this many
    # observed cells of the training data, at least FEWEST_STEPS and at most target_steps (the
    # imputer, whose small tables overfit the long schedule). None: target_steps.
    observed_cells_per_step: float | None = None
    # The steps of max_iter="auto" where the start already rebuilds the data exactly: PCA's
    # start with codes as wide as the (numeric, complete) data and a linear output, whose loss
    # is zero but for rounding. None: as any other start (a transformer's codes learn beyond
    # it; a regularised loss is not zero there).
    exact_start_steps: int | None = None
    # Whether output_activation="auto" gives a PCA start on narrow data a linear output (else
    # the output of its data: a sigmoid for data in [0, 1]), and whether it clips that output to
    # [0, 1] on data in [0, 1] (see resolve_output_activation).
    linear_pca_output: bool = True
    clip_unit_interval: bool = True
    # Whether numeric data outside [0, 1] is standardised per column (else centred and divided
    # by one overall scale; see skae._scaling.input_scaling).
    standardise: bool = False
    # Whether init="auto" may start at PCA's solution (else it starts at random).
    pca_start: bool = True
    # Whether early_stopping="auto" may hold out a validation split.
    early_stopping: bool = True
    # Whether fit ends on a plateau of the monitored loss (else it runs its whole schedule).
    stop_on_plateau: bool = True
    # Whether the network reads the missing-value mask "always", or only "if missing" values
    # are in the training data.
    mask_input: str = "if missing"
    # (value, n_features) -> the size of the codes (the transformers take no "auto").
    n_components: Callable = lambda value, n_features: value
    # (value, n_samples, n_features, n_components) -> the hidden layers.
    hidden_layer_sizes: Callable = default_hidden_layer_sizes
    # (value, n_features, n_components) -> the weight of the error of observed values hidden
    # from the network while training, against those it was shown (skae._missing.entry_weights).
    hidden_weight: Callable = lambda value, n_features, n_components: 1.0
    # Whether the loss has a hand-written backward pass (skae._training._backprop), and whether
    # it draws random numbers besides the values a mask-reading network hides (noise, the
    # VAE's codes), which a captured CUDA graph would replay frozen.
    backprop: bool = False
    random_loss: bool = False
    # The share of each batch's rows that a denoiser's input noise corrupts (the others are
    # shown clean); see AutoEncoderModel._plan_rules.
    noisy_share: float = 1.0
    # (value, data) -> the share of a linear imputer's fill in each filled value (the imputer's
    # linear_share; see AutoEncoderImputer): 0 for the estimators that fill nothing.
    linear_share: Callable = lambda value, data: 0.0


# -- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitPlan:
    """What a fit decided before it trained. Kept as ``fit_plan_``; ``str()`` gives the block
    that ``verbose=1`` prints.

    The network: ``init`` ("pca": PCA's solution, or "random"), ``hidden_layer_sizes``,
    ``output_activation``, ``scaling`` ("none": the data's own units, for data in [0, 1]
    behind a sigmoid or clipped output; "centred": centred per feature and divided by one
    overall scale), ``mask_input`` (whether the network reads the missing-value mask) and
    ``hidden_weight``.

    The training of this call: ``batch_size`` (summed over the processes), ``max_iter``
    (epochs; 1 for partial_fit), ``learning_rate_init`` and ``learning_rate`` (the schedule),
    ``validation_fraction`` (held out for early stopping, or None), ``stop_on_plateau`` with
    ``n_iter_no_change`` and ``tol``, ``step`` (one of ``STEPS``) and ``noisy_share`` (the
    share of each batch's rows that a denoiser's input noise corrupts; 1 without noise).
    What the imputer does beside the network: ``linear_share``, the share of a linear
    imputer's fill in each value it fills (0 for the other estimators).
    Where: ``device``, ``n_threads`` (torch's CPU threads per process; None off the CPU) and
    ``n_processes``.
    ``auto`` names the choices that an "auto" parameter made.

    The columns: ``n_features`` columns, of which ``categorical`` (indices) are read one-hot,
    with ``n_categories`` categories each (see ``skae._tabular``); the network reads and
    writes ``width`` values per row.
    """

    n_samples: int
    n_features: int
    n_components: int
    init: str
    hidden_layer_sizes: tuple
    activation: str
    output_activation: str
    scaling: str
    mask_input: bool
    hidden_weight: float
    batch_size: int
    max_iter: int
    learning_rate_init: float
    learning_rate: str
    validation_fraction: float | None
    stop_on_plateau: bool
    n_iter_no_change: int
    tol: float
    step: str
    device: str
    n_threads: int | None
    n_processes: int
    auto: tuple = field(default=())
    categorical: tuple = field(default=())
    n_categories: tuple = field(default=())
    noisy_share: float = 1.0
    linear_share: float = 0.0

    # What a continuing fit keeps of the plan that built its network.
    NETWORK = ("init", "hidden_layer_sizes", "output_activation", "scaling", "mask_input",
               "hidden_weight")  # fmt: skip
    # Fields added since format version 4, and their values in plans of older files.
    SINCE_VERSION_5 = {"categorical": (), "n_categories": ()}
    # ... since format version 5: before it, a denoiser's noise corrupted every row.
    SINCE_VERSION_6 = {"noisy_share": 1.0}
    # ... since format version 6: before it, the imputer filled with the network alone.
    SINCE_VERSION_7 = {"linear_share": 0.0}

    @property
    def early_stopping(self):
        return self.validation_fraction is not None

    @property
    def width(self):
        """The values per row the network reads and writes: numbers, then one-hot blocks."""
        return self.n_features - len(self.categorical) + sum(self.n_categories)

    @property
    def n_inputs(self):
        """The encoder's inputs: the values, and beside them their missing-value mask."""
        return 2 * self.width if self.mask_input else self.width

    def network(self):
        """The choices that shape the network: ``{name: value}`` of ``NETWORK``."""
        return {name: getattr(self, name) for name in self.NETWORK}

    def to_dict(self):
        """The plan as JSON-able values (tuples as lists)."""
        values = asdict(self)
        values["hidden_layer_sizes"] = list(self.hidden_layer_sizes)
        values["auto"] = list(self.auto)
        values["categorical"] = list(self.categorical)
        values["n_categories"] = list(self.n_categories)
        return values

    @classmethod
    def from_dict(cls, values):
        """The plan of ``to_dict``'s values; raises ValueError naming what is wrong."""
        names = {f.name for f in fields(cls)}
        if not isinstance(values, dict) or set(values) != names:
            raise ValueError(f"Invalid fit_plan_ in the model file: expected the fields {names}.")
        return cls(
            **{
                **values,
                "hidden_layer_sizes": tuple(values["hidden_layer_sizes"]),
                "auto": tuple(values["auto"]),
                "categorical": tuple(values["categorical"]),
                "n_categories": tuple(values["n_categories"]),
            }
        )

    def rows(self):
        """The plan as (topic, text) pairs, "auto"'s choices marked with *; "?" stands for
        what a model file of an older format did not record."""

        def mark(name):
            return "*" if name in self.auto else ""

        def known(value, spec=""):
            return "?" if value is None else format(value, spec)

        widths = [self.width, *self.hidden_layer_sizes, self.n_components]
        layers = " -> ".join(map(str, widths + widths[-2::-1]))
        if self.init == "pca":
            start = "PCA's solution (a linear path beside the hidden layers)"
        else:
            start = "random weights"
        if self.scaling == "none":
            scaling = "in their own units (in [0, 1])"
        elif self.scaling == "standardised":
            scaling = "numbers standardised per column" + (
                ", categories one-hot" if self.categorical else ""
            )
        else:
            scaling = "centred per feature, divided by one overall scale"
        mask = "with their missing-value mask" if self.mask_input else "no missing-value mask"
        if self.mask_input and self.hidden_weight != 1.0:
            mask += f", hidden values weigh {self.hidden_weight:g}{mark('hidden_weight')}"
        if self.validation_fraction is None:
            stopping = f"no validation split{mark('validation_fraction')}"
        else:
            stopping = (
                f"{self.validation_fraction:.0%} held out{mark('validation_fraction')}, "
                "the best epoch kept"
            )
        noise = ""
        if self.noisy_share != 1.0:
            noise = f"; input noise on {self.noisy_share:.0%} of each batch's rows"
        if self.stop_on_plateau:
            stopping += (
                f"; ends after {self.n_iter_no_change} epochs without a relative gain of "
                f"{self.tol:g}"
            )
        elif self.stop_on_plateau is not None:
            stopping += "; runs every epoch"
        processes = f" x {self.n_processes} processes" if (self.n_processes or 1) > 1 else ""
        threads = "" if self.n_threads is None else f", {self.n_threads} thread(s)"
        data = f"{known(self.n_samples, ',')} rows x {self.n_features} features"
        if self.categorical:
            data += (
                f", {len(self.categorical)} categorical (columns "
                f"{', '.join(map(str, self.categorical))}; "
                f"{', '.join(map(str, self.n_categories))} categories)"
            )
        return [
            ("data", data),
            (
                "network",
                f"{layers}{mark('hidden_layer_sizes')}, {self.n_components} codes"
                f"{mark('n_components')}, {self.activation}, "
                f"{self.output_activation} output{mark('output_activation')}",
            ),
            ("start", f"{start}{mark('init')}"),
            ("inputs", f"{scaling}; {mask}"),
            (
                "training",
                f"{known(self.max_iter)} epoch(s){mark('max_iter')} in batches of "
                f"{known(self.batch_size)}{mark('batch_size')}, Adam from "
                f"{self.learning_rate_init:g}, {self.learning_rate} schedule{noise}",
            ),
            ("stopping", stopping),
            *self._fill_rows(mark),
            (
                "compute",
                f"{known(self.step)} step on {self.device}{processes}{threads}{mark('n_threads')}",
            ),
        ]

    def _fill_rows(self, mark):
        """The imputer's row: how its fills are made (none where the network's alone)."""
        if not self.linear_share:
            return []
        share = self.linear_share
        return [
            (
                "fills",
                f"{1 - share:.0%} the network's, {share:.0%} IterativeImputer(BayesianRidge)'s"
                f"{mark('linear_share')}",
            )
        ]

    def __str__(self):
        lines = [f"  {topic:<9} {text}" for topic, text in self.rows()]
        return "\n".join(['fit plan (* chosen by "auto"):', *lines])

    def _repr_html_(self):
        cells = "".join(
            f"<tr><td>{escape(topic)}</td><td>{escape(text)}</td></tr>"
            for topic, text in self.rows()
        )
        return (
            '<details open><summary>Fit plan (* chosen by "auto")</summary>'
            f"<table>{cells}</table></details>"
        )


def make_plan(rules, params, data, *, device, group, blueprint, full=True, previous=None):
    """The ``FitPlan`` of one call to fit (``full``) or partial_fit.

    ``rules``: the estimator's ``PlanRules``; ``params``: its parameters by name; ``data``: a
    DataSummary of the training rows; ``device``: a torch.device; ``group``: the process group
    (skae._training.process_group); ``blueprint(plan)``: the network a plan describes, on the
    meta device (for its size and layers). ``previous``: the plan of the fitted network that
    this call continues (warm_start, partial_fit), whose network choices it keeps.
    """
    auto = set()
    if previous is None:
        if is_auto(params["n_components"]):
            auto.add("n_components")
        n_components = rules.n_components(params["n_components"], data.n_features)
        params = {**params, "n_components": n_components}
        network = plan_network(rules, params, data, full=full, auto=auto)
    else:
        network = previous.network()
        params = {**params, "n_components": previous.n_components}
    batch_size = resolve_batch_size(params["batch_size"], data.n_samples)
    if full:
        validation_fraction = plan_validation(rules, params, data.n_samples, network)
        steps = rules.target_steps if validation_fraction is None else rules.early_stopping_steps
        if validation_fraction is None and rules.observed_cells_per_step and data.n_observed:
            steps = min(steps, max(FEWEST_STEPS, data.n_observed // rules.observed_cells_per_step))
        if rules.exact_start_steps is not None and _exact_start(network, params, data):
            steps = rules.exact_start_steps
        max_iter = resolve_max_iter(params["max_iter"], data.n_samples, batch_size, steps)
    else:
        max_iter, validation_fraction = 1, None
    linear_share = rules.linear_share(params.get("linear_share", 0.0), data)
    if is_auto(params.get("linear_share")):
        auto.add("linear_share")
    # The training's "auto" choices (a partial_fit resolves no budget nor split).
    chosen = {"batch_size": "batch_size", "n_threads": "n_threads"}
    if full:
        chosen.update(max_iter="max_iter", early_stopping="validation_fraction")
    auto.update(name for param, name in chosen.items() if is_auto(params[param]))
    plan = FitPlan(
        n_samples=data.n_samples,
        n_features=data.n_features,
        n_components=int(params["n_components"]),
        activation=params["activation"],
        **network,
        batch_size=batch_size,
        max_iter=max_iter,
        learning_rate_init=float(params["learning_rate_init"]),
        learning_rate=params["learning_rate"] if full else "constant",
        validation_fraction=validation_fraction,
        stop_on_plateau=full and rules.stop_on_plateau,
        n_iter_no_change=int(params["n_iter_no_change"]),
        tol=float(params["tol"]),
        step=None,
        device=str(device),
        n_threads=None,
        n_processes=group.world_size,
        auto=tuple(sorted(auto)),
        categorical=tuple(int(j) for j in data.categorical),
        n_categories=tuple(int(k) for k in data.n_categories),
        noisy_share=float(rules.noisy_share),
        linear_share=float(linear_share),
    )
    # What the step and the threads depend on: the network's layers and size.
    modules = blueprint(plan)
    n_parameters = sum(p.numel() for m in modules.values() for p in m.parameters())
    return replace(
        plan,
        step=plan_step(
            rules, modules, plan.mask_input, device, group.world_size, mixed=bool(plan.categorical)
        ),
        n_threads=plan_threads(params["n_threads"], n_parameters, batch_size, device, group),
    )


def _exact_start(network, params, data):
    """Whether the network starts by rebuilding numeric data exactly: PCA's start (a linear
    path through all the principal axes) and a linear output, with no missing values (whose
    network learns to fill the observed values hidden from it)."""
    return (
        network["init"] == "pca"
        and network["output_activation"] == "identity"
        and not network["mask_input"]
        and not data.categorical
        and params["n_components"] >= data.n_features
    )


def plan_network(rules, params, data, *, full, auto):
    """The network choices (``FitPlan.NETWORK``) for a fresh network; adds the names of those
    that "auto" made to ``auto``."""
    n_samples, n_features = data.n_samples, data.n_features
    init = params.get("init", "random")
    if is_auto(init):
        auto.add("init")
        # partial_fit has no validation split to keep a PCA start from being trained away by
        # Adam's first steps, which move every weight by about the learning rate (its loss rose
        # above the start's for a few blocks of digits), and its first block need not
        # represent the data.
        init = resolve_init(init, n_samples, n_features) if rules.pca_start and full else "random"
    mask_input = rules.mask_input == "always" or bool(data.has_missing)
    output_activation = params["output_activation"]
    if data.categorical:
        # The categorical blocks' outputs are logits, which no squashing may bound.
        if not is_auto(output_activation) and output_activation != "identity":
            raise ValueError(
                f"output_activation={output_activation!r} cannot be used with categorical "
                'columns, whose outputs are logits (softmax per column): leave it "auto" or '
                'set "identity".'
            )
        if is_auto(output_activation):
            auto.add("output_activation")
        output_activation = "identity"
    elif is_auto(output_activation):
        auto.add("output_activation")
        clip = rules.clip_unit_interval and not mask_input
        linear = rules.linear_pca_output
        output_activation = resolve_output_activation(init, data, linear=linear, clip=clip)
    if is_auto(params["hidden_layer_sizes"]):
        auto.add("hidden_layer_sizes")
    sizes = rules.hidden_layer_sizes(
        params["hidden_layer_sizes"], n_samples, n_features, params["n_components"]
    )
    hidden = tuple(int(size) for size in sizes)
    hidden_weight = params.get("hidden_weight", 1.0)
    if is_auto(hidden_weight):
        auto.add("hidden_weight")
    hidden_weight = rules.hidden_weight(hidden_weight, n_features, params["n_components"])
    return {
        "init": init,
        "hidden_layer_sizes": hidden,
        "output_activation": output_activation,
        "scaling": _scaling(output_activation, data, standardise=rules.standardise),
        "mask_input": mask_input,
        "hidden_weight": float(hidden_weight),
    }


def _scaling(output_activation, data, *, standardise=False):
    """``FitPlan.scaling``: "standardised" for tables with categorical columns, whose loss
    weighs every column alike (see skae._tabular); else "none" for data in [0, 1] behind a
    bounded output; else, where the rules ``standardise``, "standardised" for data outside
    [0, 1] (columns in units of their own; those in [0, 1], pixels, share theirs), "centred"
    otherwise."""
    if data.categorical:
        return "standardised"
    if output_activation in UNIT_INTERVAL_OUTPUTS:
        return "none"
    return "standardised" if standardise and not data.in_unit_interval else "centred"


def resolve_output_activation(init, data, *, linear=True, clip=True):
    """``output_activation="auto"``: a sigmoid for data in [0, 1], as in the design, else a
    linear output; but where ``linear``, for a PCA start on narrow data (<= 256 features) a
    linear output, clipped to [0, 1] for data in [0, 1] where ``clip``.

    Behind a sigmoid, the PCA start is PCA's in the logit's units, far from PCA's own
    reconstruction: fine for images with few codes (5,000 MNIST images at 64 codes: test SSE 3.3
    with a sigmoid, 6.0 with a linear output, PCA 7.2), but on narrow data with many codes it
    loses (digits at 48 of 64 codes: 11 times PCA's error). There a piecewise linear output
    starts at PCA's reconstruction; clipped to [0, 1], which is nowhere farther from data in
    [0, 1], it can output the bounds exactly, as a sigmoid nearly does: digits at 16 codes,
    held-out error over PCA's 0.47 clipped, 0.55 linear, 0.46 behind a sigmoid; at 32 codes 0.52,
    0.64 and 0.83. The estimators whose rules turn ``clip`` off measured worse with it (see
    their ``_plan_rules``).
    """
    if linear and init == "pca" and data.n_features <= FIRST_HIDDEN:
        return "clip" if clip and data.in_unit_interval else "identity"
    return "sigmoid" if data.in_unit_interval else "identity"


def plan_validation(rules, params, n_samples, network):
    """The share of the rows a fit holds out for early stopping, or None.

    "auto" holds none where the estimator's rules say so, nor for a network that reads the
    missing-value mask: its validation error watches rebuilt values, while training also hides
    some. On digits with 20% missing (16 codes), logistic regression on the codes scored 0.925
    with the split (mean of 3 seeds) and 0.933 without, complete digits 0.948.
    """
    early_stopping = params["early_stopping"]
    if is_auto(early_stopping) and (not rules.early_stopping or network["mask_input"]):
        return None
    share = resolve_validation_share(early_stopping, n_samples, params["validation_fraction"])
    return None if share is None else float(share)


def plan_step(rules, modules, mask_input, device, n_processes, *, mixed=False):
    """The kind of optimizer step (``STEPS``).

    On the CPU, the plain squared error (with or without input noise) has its backward pass
    written out, which is faster; other devices keep autograd: the written-out pass has not
    been run there. A ``mixed`` table's loss (cross-entropy beside the squared error) has no
    written-out pass, and is not captured in a CUDA graph either until it has been run so on
    a GPU: it takes autograd's step everywhere. On CUDA, a single process captures its step
    in a graph, unless the loss draws random numbers (which the graph would replay frozen); a
    network that reads the missing-value mask is trained with values hidden at random.
    """
    if mixed:
        return "autograd"
    if device.type == "cpu":
        supported = _backprop.supports(list(modules.values()))
        return "backprop" if rules.backprop and supported else "autograd"
    if device.type == "cuda" and n_processes == 1 and not (rules.random_loss or mask_input):
        return "cuda graph"
    return "autograd"


def plan_threads(n_threads, n_parameters, batch_size, device, group):
    """Torch's CPU threads per process (see skae._threads): the fewest any process chose, so
    that every process of a distributed fit runs the same plan (their steps are in lockstep:
    a process with more threads would wait for the others anyway)."""
    flops = training_flops(n_parameters, max(1, batch_size // group.world_size))
    chosen = choose_threads(n_threads, flops, device)
    if chosen is None or group.world_size == 1:
        return chosen
    return int(group.all_reduce(torch.tensor([chosen]), "min")[0])


# -- the "auto" rules one by one -------------------------------------------------------------


def resolve_init(value, n_samples, n_features):
    """``init``, with "auto" = "random" (the design's network) for inputs wider than 256
    features with at least ``EARLY_STOPPING_BELOW`` rows, MNIST-sized image sets; "pca"
    otherwise.

    Started at PCA, a network's codes stay near PCA's coordinates. On all 60,000 MNIST images
    (64 codes) that cut the test error far below the design's (SSE 1.60 against 3.67; PCA 7.09)
    but lowered logistic regression on the codes from 93.4% to 91.6%, below PCA's own 91.7%. On
    5,000 images the design's network lost to PCA (SSE 10.1 against 7.2) where the PCA start
    reached 3.3; on tabular data the PCA start is what keeps held-out error at or below PCA's
    at every code size.
    """
    if is_auto(value):
        wide_and_plentiful = n_features > FIRST_HIDDEN and n_samples >= EARLY_STOPPING_BELOW
        return "random" if wide_and_plentiful else "pca"
    return value


def resolve_validation_share(early_stopping, n_samples, validation_fraction=0.1):
    """The share of the rows held out for early stopping, or None for no early stopping.

    ``early_stopping=True`` holds out ``validation_fraction``. "auto" holds out a split below
    ``EARLY_STOPPING_BELOW`` rows, where a network can learn its training rows by heart and a
    held-out split chooses the epoch to keep: ``validation_fraction``, or
    ``MIN_VALIDATION_ROWS`` rows where that is fewer (linnerud's 14 training rows: 5), and none
    below ``2 * MIN_VALIDATION_ROWS`` rows.
    """
    if is_auto(early_stopping):
        if not 2 * MIN_VALIDATION_ROWS <= n_samples < EARLY_STOPPING_BELOW:
            return None
        return max(validation_fraction, MIN_VALIDATION_ROWS / n_samples)
    return validation_fraction if early_stopping else None


def resolve_batch_size(value, n_samples):
    """``batch_size``, with "auto" = ``min(256, max(32, n_samples // 32))``; at most n_samples."""
    if is_auto(value):
        value = min(MAX_BATCH_SIZE, max(MIN_BATCH_SIZE, n_samples // MIN_STEPS_PER_EPOCH))
    else:
        value = check_int("batch_size", value, low=1)
    return min(value, n_samples)


def resolve_max_iter(value, n_samples, batch_size, target_steps=TARGET_STEPS):
    """``max_iter`` in epochs, with "auto" = the epochs that make ``target_steps`` steps."""
    if is_auto(value):
        return math.ceil(target_steps / math.ceil(n_samples / batch_size))
    return check_int("max_iter", value, low=1)


# -- checks of "auto"-or-value parameters (at the start of fit) ------------------------------


def check_auto_or_int(name, value, *, low):
    """Validate a parameter that is "auto" or an integer >= low."""
    if is_auto(value):
        return
    try:
        check_int(name, value, low=low)
    except ValueError:
        raise ValueError(
            f'{name}={value!r} is invalid: expected "auto" or an integer >= {low}.'
        ) from None


def check_auto_or_float(name, value, *, low):
    """Validate a parameter that is "auto" or a real number > low."""
    if is_auto(value):
        return
    try:
        check_float(name, value, low=low, low_open=True)
    except ValueError:
        raise ValueError(
            f'{name}={value!r} is invalid: expected "auto" or a real number > {low}.'
        ) from None


def check_auto_or_sizes(value):
    """Validate ``hidden_layer_sizes``: "auto" or a sequence of positive ints."""
    if is_auto(value):
        return
    if isinstance(value, str):
        raise ValueError(
            f'hidden_layer_sizes={value!r} is invalid: expected "auto" or a sequence of '
            "integers >= 1, such as (256, 128)."
        )
    check_hidden_layer_sizes(value)


def is_auto(value):
    return isinstance(value, str) and value == "auto"
