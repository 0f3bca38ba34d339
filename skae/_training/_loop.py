"""The training loop: epochs of optimizer steps, and the rules that end them.

The estimators decide what to train and how long, in a ``skae._plan.FitPlan``; this module runs
it and decides nothing. It knows nothing of scikit-learn: it trains a ``TrainingState`` on rows
(``_data``) with a step (``_steps``, ``_backprop``) following the plan, on one process or many
(``_distributed``).
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .._missing import reads_mask, row_squared_errors
from ._distributed import AveragedOverProcesses, local_batch_size
from ._steps import learning_rates

# Keeps the shuffling and noise seeds of the processes of a distributed fit apart.
_RANK_SEED_STRIDE = 2**20

# With a cosine schedule the loss falls until the last epoch by design, as the learning rate
# anneals to zero, so "still falling by more than tol" says nothing: max_iter is the length of
# the schedule, not a ceiling. A schedule was clearly too short when its last quarter still
# brought more than this share of the loss's whole fall. Measured shares: the defaults 0.08%
# (MNIST), 2.4% (the VAE on digits, whose log-likelihood keeps rewarding small gains); 10,000
# MNIST images with max_iter=20: 1.1%, with max_iter=5: 20%. So only grossly short schedules
# warn: digits with max_iter=10 (1.8%) are undertrained, and pass.
COSINE_TAIL_SHARE = 0.10

# Under a cosine schedule the plateau rule waits longer than n_iter_no_change epochs: at least
# as many epochs as the fit took to reach its last improvement, and PATIENCE_SHARE of the
# schedule. The error often falls again after a long plateau or rise, the more so as the
# learning rate anneals: on the swiss roll (2 codes, 6 seeds) the validation error went 16-52
# epochs without a new best, rising to 1.2-2 times its best, and reached its lowest in the last
# tenth of the schedule. Waiting 10 epochs stopped seeds 0-2 at epochs 32-53 of 182, at 0.24
# times PCA's held-out error; the whole schedule gave 0.16. A fit that overfits early still
# stops early: digits (16 codes), best after 20-40 epochs, stop after 40-80. Only where the rule
# watches a validation split: the VAE's training loss (its defaults hold out none) stalled after
# 79 epochs on breast_cancer (8 codes), where stopping left it at 0.93 times PCA's held-out
# error, and the longer patience ran all 462, to 1.02 times.
PATIENCE_SHARE = 0.1

# With early stopping, a fit keeps its best epoch over its starting point only when that epoch's
# validation error is lower by more than this many standard errors of the rows' paired
# differences: on a validation split of a few dozen rows, an epoch can beat the start by chance
# alone. Without this rule, on the small scikit-learn data sets (a 10% split of 105 to 700 rows),
# 8 of 95 data set and code size pairs ended 1-6% worse than PCA on held-out rows (mean of three
# splits), the start being PCA's solution.
SIGNIFICANT_IMPROVEMENT = 2.0


@dataclass
class TrainingState:
    """Everything one call to fit / partial_fit changes. The estimator trains a copy and adopts
    it at the end, so that a failed call leaves the estimator as it was."""

    modules: dict
    optimizer: torch.optim.Optimizer
    scaling: object
    plan: object  # the FitPlan of this call
    device: torch.device
    seed: int
    n_iter: int = 0
    loss_curve: list = field(default_factory=list)
    validation_scores: list | None = None
    best_loss: float = np.inf
    epochs_without_improvement: int = 0
    noise_generator: torch.Generator | None = None
    # Fitted attributes of the estimator's own (what its "auto" parameters chose, ...), adopted
    # with the rest.
    attributes: dict = field(default_factory=dict)

    def parameters(self):
        return [p for module in self.modules.values() for p in module.parameters()]


@dataclass
class Outcome:
    """How a call to ``train`` ended."""

    epochs: int = 0
    interrupted: bool = False
    # Whether the loss was still falling at the end (see COSINE_TAIL_SHARE), and for a cosine
    # schedule the share of its fall that the last quarter of the epochs brought.
    still_learning: bool = False
    tail_share: float | None = None
    # With early stopping, the epoch (of this call) whose weights were kept; 0 is the start.
    best_epoch: int | None = None


def train(state, rows, make_step, group, reconstruct, *, loss_to_beat=math.inf, progress=None):
    """Train ``state`` on ``rows`` following its plan (``state.plan``); return the Outcome.

    ``make_step(batch_size)`` builds the optimizer step the plan names, for this process's
    batch size; ``reconstruct(modules, x)`` reconstructs model-unit rows, for the validation
    error. The plateau rule ends training only once the loss is below ``loss_to_beat``: a fit
    stalled at (or near) the constant prediction of the training means has not converged, it
    has not started. ``progress``: the label of a progress bar, or None for none.
    A KeyboardInterrupt ends training after the last completed step (``Outcome.interrupted``);
    a non-finite epoch loss raises FloatingPointError.
    """
    plan = state.plan
    first_epoch = len(state.loss_curve)
    validation = None
    if plan.early_stopping:
        rows, validation = rows.split(plan.validation_fraction, _process_seed(state.seed, group))
        state.validation_scores = []
    (n_total,) = group.reduce_sum(rows.n_rows)
    batch_size = local_batch_size(plan.batch_size, rows.n_rows, n_total)
    # Every process takes as many steps as the one that needs most, so none waits alone.
    own_steps = torch.tensor([-(-rows.n_rows // batch_size)])
    n_steps = int(group.all_reduce(own_steps, "max")[0])
    step = make_step(batch_size)
    if group.world_size > 1:
        step = AveragedOverProcesses(step, group)
    rates = learning_rates(plan.learning_rate_init, plan.learning_rate, plan.max_iter * n_steps)

    outcome = Outcome()
    best_weights = None
    if validation is not None:
        # The starting point competes too: a fit started at PCA keeps PCA's weights when no
        # epoch beats them clearly on the held-out rows.
        start_errors = validation_row_errors(state, validation, reconstruct)
        state.best_loss = _mean_error(start_errors, group)
        best_weights = start_weights = _copy_weights(state.modules)
        outcome.best_epoch = 0
    progress = tqdm(
        range(plan.max_iter),
        disable=progress is None or group.rank != 0,
        desc=progress,
        unit="epoch",
    )
    with progress:
        try:
            for _ in progress:
                loss = _run_epoch(state, step, rows, batch_size, n_steps, rates, plan, group)
                outcome.epochs += 1
                improved = _record_epoch(state, loss, validation, reconstruct, plan, group)
                if improved and validation is not None:
                    best_weights = _copy_weights(state.modules)
                    outcome.best_epoch = outcome.epochs
                progress.set_postfix(loss=f"{loss:.4g}", refresh=False)
                if _plateaued(state, plan, loss_to_beat, outcome.epochs):
                    break
        except KeyboardInterrupt:
            outcome.interrupted = True
    if best_weights is not None and not outcome.interrupted:
        # (An interrupted fit keeps the weights of its last completed batch, as it says.)
        _load_weights(state.modules, best_weights)
        if outcome.best_epoch > 0 and not _clearly_better(
            start_errors, validation_row_errors(state, validation, reconstruct), group
        ):
            _load_weights(state.modules, start_weights)
            state.best_loss = _mean_error(start_errors, group)
            outcome.best_epoch = 0
    _judge_progress(outcome, state, state.loss_curve[first_epoch:], plan)
    return outcome


def unconverged(name, outcome, losses, plan, loss_to_beat, *, warn_short_schedule=True):
    """What went wrong with a fit (of estimator ``name``) that ended unconverged, for a
    ConvergenceWarning, or None: its loss did not fall, it ran out of epochs while still
    learning (unless ``warn_short_schedule`` is off), or it ended no clearly better than the
    column means (``loss_to_beat``). ``losses``: this fit's loss curve."""
    above_means = bool(losses) and not losses[-1] < loss_to_beat
    worse_than_means = (
        f"its training loss ({losses[-1]:.4g}) is not clearly below the loss of predicting "
        f"every row by the training data's column means (clearly below is under "
        f"{loss_to_beat:.4g}): training did not learn the structure of X"
        if above_means
        else ""
    )
    kept = ""
    if outcome.best_epoch is not None and outcome.best_epoch < outcome.epochs:
        which = (
            "its starting point"
            if outcome.best_epoch == 0
            else f"those after epoch {outcome.best_epoch}"
        )
        kept = f" It keeps the weights that did best on its validation rows: {which}."
    rate = plan.learning_rate_init
    if len(losses) > 1 and not losses[-1] < losses[0]:
        message = (
            f"{name}'s training loss did not fall: {losses[0]:.4g} after the first epoch, "
            f"{losses[-1]:.4g} after the last. The network has probably collapsed; try a "
            f"smaller learning_rate_init (it is {rate})."
        )
    elif outcome.epochs == plan.max_iter and outcome.still_learning and warn_short_schedule:
        auto = "max_iter" in plan.auto
        chosen = f"'auto' (= {plan.max_iter})" if auto else plan.max_iter
        if outcome.tail_share is None:
            how = f"still falling by more than tol={plan.tol}"
        else:
            how = (
                f"still falling: the last quarter of the cosine schedule brought "
                f"{outcome.tail_share:.0%} of its fall"
            )
        message = (
            f"{name} reached max_iter={chosen} epochs while the loss was {how}; consider "
            "raising max_iter." + (f" So far {worse_than_means}." if above_means else "")
        )
    elif above_means:
        message = (
            f"{name} ended unconverged: {worse_than_means}. The usual cause is a learning "
            "rate too large for this data: try a smaller learning_rate_init (it is "
            f"{rate}); else train longer (max_iter)."
        )
    else:
        return None
    return message + (kept if above_means else "")


def _clearly_better(start_errors, best_errors, group):
    """Whether the rows' errors fell from ``start_errors`` to ``best_errors`` by more than
    ``SIGNIFICANT_IMPROVEMENT`` standard errors of their paired differences (over every
    process's rows)."""
    gain = start_errors[:, 0] - best_errors[:, 0]
    n, total, squares = group.reduce_sum(
        gain.numel(), float(gain.sum()), float(gain.square().sum())
    )
    if n < 2:
        return total > 0
    mean = total / n
    spread = math.sqrt(max(squares / n - mean**2, 0.0) * n / (n - 1))
    return mean > SIGNIFICANT_IMPROVEMENT * spread / math.sqrt(n)


def _load_weights(modules, weights):
    for name, module in modules.items():
        module.load_state_dict(weights[name])


def _plateaued(state, plan, loss_to_beat, epochs):
    """Whether the plateau rule ends training now, after ``epochs`` epochs of this call: a
    patience of epochs without improvement has run out (``patience``), once the loss has beaten
    ``loss_to_beat``."""
    return (
        plan.stop_on_plateau
        and state.epochs_without_improvement >= patience(plan, epochs, state)
        and min(state.loss_curve) < loss_to_beat
    )


def patience(plan, epochs, state):
    """The epochs without improvement that end training: ``n_iter_no_change``; when a cosine
    schedule is watched on a validation split, at least the epochs this call took to reach its
    last improvement, and ``PATIENCE_SHARE`` of the schedule (see PATIENCE_SHARE)."""
    if plan.learning_rate != "cosine" or plan.validation_fraction is None:
        return plan.n_iter_no_change
    last_improvement = max(epochs - state.epochs_without_improvement, 0)
    share = math.ceil(PATIENCE_SHARE * plan.max_iter)
    return max(plan.n_iter_no_change, last_improvement, share)


def _judge_progress(outcome, state, losses, plan):
    """Set whether training was still learning when it ended."""
    if plan.learning_rate == "cosine" and len(losses) > 1:
        tail = losses[-(math.ceil(len(losses) / 4) + 1) :]
        fall = losses[0] - losses[-1]
        outcome.tail_share = (tail[0] - tail[-1]) / fall if fall > 0 else 0.0
        outcome.still_learning = outcome.tail_share > COSINE_TAIL_SHARE
    else:
        outcome.still_learning = state.epochs_without_improvement == 0


def _process_seed(seed, group):
    return seed + group.rank * _RANK_SEED_STRIDE


def _run_epoch(state, step, rows, batch_size, n_steps, rates, plan, group):
    """One pass over ``rows``; its mean loss over every process's rows, which must be finite."""
    seed = _process_seed(state.seed + state.n_iter, group)
    state.noise_generator = torch.Generator(state.device).manual_seed(seed)
    # Accumulated on the device: no step waits for the host.
    total = torch.zeros((), device=state.device)
    for x in rows.batches(batch_size, n_steps, seed):
        step.set_learning_rate(next(rates))
        loss = step(x)
        total += loss.detach() * x.shape[0]
    loss_sum, n_rows = group.reduce_sum(float(total), rows.n_rows)
    loss = loss_sum / n_rows
    if not np.isfinite(loss):
        raise FloatingPointError(
            f"The training loss became {loss} in epoch {state.n_iter + 1}: training "
            f"diverged. Try a smaller learning_rate_init (it is {plan.learning_rate_init}) "
            "or scale the input features. The estimator was left as it was before this call."
        )
    state.n_iter += 1
    state.loss_curve.append(loss)
    return loss


def _record_epoch(state, loss, validation, reconstruct, plan, group):
    """Update the stopping rules' bookkeeping; return whether the monitored loss (validation
    MSE with early stopping, else the training loss) reached a new best."""
    monitored = loss
    if validation is not None:
        monitored = validation_error(state, validation, reconstruct, group)
        state.validation_scores.append(-monitored)
    if monitored < state.best_loss - plan.tol * abs(state.best_loss):
        state.epochs_without_improvement = 0
    else:
        state.epochs_without_improvement += 1
    if monitored >= state.best_loss:
        return False
    state.best_loss = monitored
    return True


def validation_error(state, rows, reconstruct, group):
    """Mean squared reconstruction error on ``rows`` (model units), over every process's rows
    and, for a network fitted on data with missing values, over their observed entries."""
    return _mean_error(validation_row_errors(state, rows, reconstruct), group)


def validation_row_errors(state, rows, reconstruct):
    """Each row's summed squared reconstruction error (model units, observed entries only for
    a network fitted on data with missing values) and its number of entries, as a (n_rows, 2)
    float64 tensor on the CPU: this process's rows only."""
    masked = reads_mask(state)
    errors = []
    with torch.inference_mode():
        for x in rows.chunks():
            squared, entries = row_squared_errors(reconstruct(state.modules, x), x, masked)
            errors.append(torch.stack([squared, entries], dim=1).cpu())
    return torch.cat(errors) if errors else torch.zeros((0, 2), dtype=torch.float64)


def _mean_error(row_errors, group):
    """The mean squared error per entry over every process's rows, from their row errors."""
    squared_error, entries = group.reduce_sum(
        float(row_errors[:, 0].sum()), float(row_errors[:, 1].sum())
    )
    return squared_error / max(entries, 1.0)


def _copy_weights(modules):
    return {
        name: {k: v.detach().clone() for k, v in m.state_dict().items()}
        for name, m in modules.items()
    }
