"""The map between the user's units and the model's, chosen from statistics of the training data."""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.sparsefuncs import mean_variance_axis

from ._tabular import standardising_scale


class AffineScaling:
    """The map between the user's units and the model's: ``(x - offset) / scale``.

    ``offset`` is per feature, ``scale`` one number for all features: a per-feature scale would
    blow up constant or near-constant features on new data, and would reweight the loss away
    from the squared error in the user's units that ``score`` reports. Mixed tables are the
    exception (``input_scaling``'s "standardised"): their ``scale`` is an array, one per
    feature, since their loss weighs the columns alike rather than in the user's units.
    """

    def __init__(self, offset, scale, device):
        self.offset = torch.as_tensor(offset, dtype=torch.float32, device=device)
        if np.ndim(scale) == 0:
            self.scale = float(scale)
            self._divisor = self.scale
            plain_scale = self.scale == 1.0
        else:
            self.scale = np.asarray(scale, dtype=np.float64)
            self._divisor = torch.as_tensor(self.scale, dtype=torch.float32, device=device)
            plain_scale = bool(np.all(self.scale == 1.0))
        self.is_identity = not bool(self.offset.any()) and plain_scale

    def to_model(self, x):
        return x if self.is_identity else (x - self.offset) / self._divisor

    def to_model_(self, x):
        """``to_model`` in place."""
        return x if self.is_identity else x.sub_(self.offset).div_(self._divisor)

    def to_user(self, x):
        if self.is_identity:
            return x
        if isinstance(self._divisor, torch.Tensor):
            return torch.addcmul(self.offset, x, self._divisor)
        return torch.addcmul(self.offset, x, x.new_tensor(self.scale))


@dataclass
class ColumnStats:
    """Row count, range, and per-feature mean and sum of squared deviations of a data set.

    Built one block of rows at a time and merged (Chan, Golub & LeVeque, 1983), so that they
    can be gathered from an array larger than memory and from every process of a distributed
    fit. Missing values (NaN) are left out: ``counts`` then holds each feature's number of
    observed values, and the range, means and deviations are those of the observed values.
    ``counts`` is None when every value is observed, so that complete data take the same
    arithmetic as ever.
    """

    n_rows: int
    minimum: float
    maximum: float
    mean: np.ndarray
    squared_deviations: np.ndarray
    counts: np.ndarray | None = None

    @classmethod
    def of(cls, X):
        """The statistics of an in-memory block: a dense array or a sparse matrix."""
        n_rows = X.shape[0]
        if sp.issparse(X):
            mean, variance, counts = mean_variance_axis(X.tocsr(), axis=0, return_sum_weights=True)
            if np.all(counts == n_rows):
                return cls(n_rows, float(X.min()), float(X.max()), mean, variance * n_rows)
            # A feature with no observed value has no mean: 0 stands in (it is refused later).
            mean, variance = np.where(counts > 0, mean, 0.0), np.where(counts > 0, variance, 0.0)
            values = X.data[~np.isnan(X.data)]
            implicit_zeros = X.nnz < n_rows * X.shape[1]
            low = min(values.min(initial=np.inf), 0.0 if implicit_zeros else np.inf)
            high = max(values.max(initial=-np.inf), 0.0 if implicit_zeros else -np.inf)
            return cls(n_rows, float(low), float(high), mean, variance * counts, counts)
        mean = X.mean(axis=0, dtype=np.float64)
        if not np.isnan(mean).any():  # no NaN: the mean of every column is a number
            variance = X.var(axis=0, dtype=np.float64)
            return cls(n_rows, float(X.min()), float(X.max()), mean, variance * n_rows)
        missing = np.isnan(X)
        counts = n_rows - missing.sum(axis=0)
        mean = _divide(np.where(missing, 0.0, X).sum(axis=0, dtype=np.float64), counts)
        centred = np.where(missing, 0.0, X - mean)
        squared = np.einsum("ij,ij->j", centred, centred)
        observed = X[~missing]
        low, high = observed.min(initial=np.inf), observed.max(initial=-np.inf)
        return cls(n_rows, float(low), float(high), mean, squared, counts)

    @property
    def observed(self):
        """Each feature's number of observed values (an array)."""
        if self.counts is None:
            return np.full(self.mean.shape, self.n_rows, dtype=np.float64)
        return self.counts

    @property
    def has_missing(self):
        return self.counts is not None and bool(np.any(self.counts < self.n_rows))

    @property
    def variance(self):
        """Each feature's variance over its observed values (0 for a feature with none)."""
        if self.counts is None:
            return self.squared_deviations / self.n_rows
        return _divide(self.squared_deviations, self.counts)

    def merge(self, other):
        n_rows = self.n_rows + other.n_rows
        minimum, maximum = min(self.minimum, other.minimum), max(self.maximum, other.maximum)
        if self.counts is None and other.counts is None:
            delta = other.mean - self.mean
            return ColumnStats(
                n_rows,
                minimum,
                maximum,
                self.mean + delta * (other.n_rows / n_rows),
                self.squared_deviations
                + other.squared_deviations
                + delta**2 * (self.n_rows * other.n_rows / n_rows),
            )
        # Chan's update per feature, each with its own count of observed values.
        mine, theirs = self.observed, other.observed
        counts = mine + theirs
        delta = other.mean - self.mean
        return ColumnStats(
            n_rows,
            minimum,
            maximum,
            self.mean + delta * _divide(theirs, counts),
            self.squared_deviations
            + other.squared_deviations
            + delta**2 * _divide(mine * theirs, counts),
            counts,
        )

    def over_processes(self, group):
        """The statistics of the union of every process's rows."""
        if group.world_size == 1:
            return self
        n_rows = int(self._reduce(group, [self.n_rows], "sum")[0])
        minimum = float(self._reduce(group, [self.minimum], "min")[0])
        maximum = float(self._reduce(group, [self.maximum], "max")[0])
        # Whether any process saw a missing value decides the arithmetic for all of them.
        any_missing = self._reduce(group, [float(self.counts is not None)], "max")[0] > 0
        if not any_missing:
            mean = self._reduce(group, self.mean * self.n_rows, "sum") / n_rows
            # Each process's deviations from the union's mean: its own, plus its mean's offset.
            squared = self.squared_deviations + self.n_rows * (self.mean - mean) ** 2
            return ColumnStats(n_rows, minimum, maximum, mean, self._reduce(group, squared, "sum"))
        counts = self._reduce(group, self.observed, "sum")
        mean = _divide(self._reduce(group, self.mean * self.observed, "sum"), counts)
        squared = self.squared_deviations + self.observed * (self.mean - mean) ** 2
        squared = self._reduce(group, squared, "sum")
        return ColumnStats(n_rows, minimum, maximum, mean, squared, counts)

    @staticmethod
    def _reduce(group, values, op):
        return group.all_reduce(torch.as_tensor(np.asarray(values, dtype=np.float64)), op).numpy()


def _divide(numerator, denominator):
    """numerator / denominator, 0 where the denominator is 0 (a feature with no value yet)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    return np.divide(
        numerator, denominator, out=np.zeros_like(numerator), where=np.asarray(denominator) > 0
    )


def column_statistics(chunks):
    """The ColumnStats of the union of ``chunks`` (in-memory blocks of rows)."""
    stats = None
    for chunk in chunks:
        block = ColumnStats.of(chunk)
        stats = block if stats is None else stats.merge(block)
    return stats


def input_scaling(stats, kind, device, layout=None):
    """The input scaling of ``kind`` (a ``FitPlan.scaling``) for training data with the given
    ColumnStats.

    "none": data in [0, 1] (images, proportions, TF-IDF) keep their units, behind a sigmoid
    output, as in the design. "centred": centred per feature and divided by one overall scale,
    the root mean variance over features (1 for constant data). "standardised" (mixed tables,
    whose ``layout`` it reads): each numeric column centred and divided by its own standard
    deviation, the one-hot columns as they are (see ``skae._tabular``).
    """
    n_features = stats.mean.shape[0]
    if kind == "standardised":
        offset, scale = standardising_scale(stats, layout)
        return AffineScaling(offset, scale, device)
    if kind == "none":
        return AffineScaling(np.zeros(n_features), 1.0, device)
    overall = float(np.sqrt(np.mean(stats.variance)))
    scale = overall if overall > 1e-12 else 1.0
    return AffineScaling(stats.mean, scale, device)
