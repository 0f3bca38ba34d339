"""Missing values (NaN) in the engine: what the network reads, and which inputs are refused.

A model fitted on data with missing values reads, beside each value, whether it was missing
(``MissingMask``, the first module of its encoder), and is trained on the error of the observed
entries only. A model fitted on complete data is built and trained exactly as before; it refuses
NaN at inference, since its network never learned what a missing value means.
"""

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

# How many offending rows or columns an error message lists.
_LISTED = 10


class MissingMask(nn.Module):
    """The encoder's input for data with missing values: rows of d values with NaN where a value
    is missing -> rows of 2d, the values with each NaN replaced by its feature's ``fill`` (the
    training mean, in the model's units), then the mask (1.0 where the value was missing).

    Filling with the mean keeps the values on the scale the network learns; the mask lets it
    tell a missing value from an observed one that happens to equal the mean.
    """

    def __init__(self, fill):
        super().__init__()
        self.register_buffer("fill", fill)

    def forward(self, x):
        missing = torch.isnan(x)
        return torch.cat([torch.where(missing, self.fill, x), missing.to(x.dtype)], dim=1)

    def extra_repr(self):
        return f"n_features={self.fill.shape[0]}"


def reads_mask(state):
    """Whether the network of a training state reads the missing-value mask (then its loss
    counts the observed entries only)."""
    return state.plan.mask_input


def masked_squared_error(output, x):
    """``(output - x)**2`` where x is observed, 0 where x is NaN; and how many entries of x
    are observed (a 0-d tensor, at least 1). NaN in ``output`` itself (a diverged network)
    stays NaN, so that training still notices it."""
    missing = torch.isnan(x)
    squared = (output - x).masked_fill(missing, 0.0).square()
    n_observed = (missing.numel() - missing.sum()).clamp_min(1)
    return squared, n_observed


def row_squared_errors(output, x, masked, dtype=torch.float64):
    """Each row's summed squared error of ``output`` against x, and how many entries it sums
    (two tensors of shape (n_rows,) and ``dtype``): with ``masked``, the observed (not NaN)
    entries of x only, else all of them."""
    error = output - x
    if not masked:
        counts = torch.full((x.shape[0],), x.shape[1], dtype=dtype, device=x.device)
        return error.square().sum(dim=1, dtype=dtype), counts
    absent = torch.isnan(x)
    squared = error.masked_fill_(absent, 0.0).square_()
    return squared.sum(dim=1, dtype=dtype), (~absent).sum(dim=1, dtype=dtype)


def masked_mse(output, x):
    """The mean squared error of ``output`` over the observed (not NaN) entries of x."""
    squared, n_observed = masked_squared_error(output, x)
    return squared.sum() / n_observed


def entry_weights(x_in, missing, hidden_weight):
    """The weight of each entry's error in the training loss: 0 where x is ``missing``,
    ``hidden_weight`` where its observed value was hidden from the network (NaN in the
    network's input ``x_in``), 1 where it was shown."""
    weights = torch.isnan(x_in).to(x_in.dtype).mul_(hidden_weight - 1.0).add_(1.0)
    return weights.masked_fill_(missing, 0.0)


def hidden_weighted_mse(output, x, x_in, hidden_weight):
    """The mean squared error of ``output`` over the observed entries of x, each weighted as
    entry_weights says (the values hidden in ``x_in`` weigh ``hidden_weight``)."""
    missing = torch.isnan(x)
    weights = entry_weights(x_in, missing, hidden_weight)
    squared = (output - x).masked_fill(missing, 0.0).square()
    return (weights * squared).sum() / weights.sum().clamp_min(1e-12)


def has_nan(X):
    """Whether X (dense or sparse, checked for infinite values already) holds NaN: one sum
    over X when it has none, as scikit-learn's own finiteness check."""
    values = X.data if sp.issparse(X) else X
    if values.dtype.kind != "f" or values.size == 0 or np.isfinite(np.sum(values)):
        return False
    return bool(np.isnan(values).any())  # the sum may also have overflowed


def empty_rows(X):
    """Indices of the rows of X (dense or sparse, with NaN) whose every value is missing."""
    if sp.issparse(X):
        X = X.tocsr()
        nan_per_row = np.add.reduceat(np.isnan(X.data), X.indptr[:-1]) if X.nnz else None
        if nan_per_row is None:
            return np.array([], dtype=int)
        # reduceat gives a row with no stored entries the count of the next one: zero those.
        nan_per_row = np.where(np.diff(X.indptr) > 0, nan_per_row, 0)
        return np.flatnonzero(nan_per_row == X.shape[1])
    return np.flatnonzero(np.isnan(X).all(axis=1))


def listed(indices, names=None):
    """The first few of ``indices`` (or their ``names``) for an error message."""
    shown = [str(names[i]) if names is not None else str(i) for i in indices[:_LISTED]]
    more = f" and {len(indices) - _LISTED} more" if len(indices) > _LISTED else ""
    return ", ".join(shown) + more


def refuse_empty_rows(X, estimator):
    """Raise when some rows of X have no observed value: no code or score means anything."""
    rows = empty_rows(X)
    if len(rows):
        raise ValueError(
            f"{len(rows)} row(s) of X have every value missing (NaN): row(s) "
            f"{listed(rows)}. {type(estimator).__name__} can say nothing about a row "
            "with no observed value; drop these rows first."
        )


def refuse_empty_columns(counts, estimator, feature_names=None):
    """Raise when some features have no observed value in the training data (``counts``: the
    observed values per feature)."""
    empty = np.flatnonzero(np.asarray(counts) == 0)
    if len(empty):
        what = "feature(s)" if feature_names is not None else "column(s)"
        raise ValueError(
            f"{len(empty)} feature(s) of X have every value missing (NaN) in the training "
            f"data: {what} {listed(empty, feature_names)}. Nothing can be learned about them; "
            "drop them first."
        )


def refuse_nan(estimator):
    """The error for NaN given to a model fitted on complete data."""
    name = type(estimator).__name__
    return ValueError(
        f"Input X contains NaN, but this {name} was fitted on data without missing values, so "
        "its network never learned what a missing value means. Fit it on data that has "
        "missing values (NaN) where they occur, or fill them first (e.g. with "
        "skae.AutoEncoderImputer or sklearn.impute.SimpleImputer)."
    )
