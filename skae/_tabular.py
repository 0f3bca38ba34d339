"""Mixed tables: categorical columns beside numeric ones, as the network reads and rebuilds them.

A table of ``n_features`` columns, some categorical, becomes one float matrix (the *encoded*
matrix, ``Layout.width`` columns): the numeric columns first, in their order, then one block of
one-hot columns per categorical column, in their order. A missing cell is NaN: a missing
number one NaN, a missing category its whole block. The engine (scaling, missing-value mask,
training rows) then works on that matrix as on any other; the network's decoder outputs the
numbers and, for each categorical column, one logit per category.

The loss weighs the columns alike. Numbers are standardised per column (``scaling
"standardised"``), so that a numeric cell's squared error is about 1 at the column-mean
prediction; a categorical cell's cross-entropy is divided by ``log(n_categories)``, its value
at the uniform prediction (at the marginal frequencies it is the column's normalised entropy,
at most 1). The loss is the (weighted) mean of these per-cell terms over the observed cells,
so that every column counts about equally whatever its number of categories.

Everything here is a plain function of arrays, tensors and a ``Layout``; the estimators call
them.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

# -- which columns are categorical -------------------------------------------------------------


def is_categorical_dtype(dtype):
    """Whether a DataFrame column of this dtype is read as categorical ("from_dtype"): pandas'
    category, object, bool (numpy's or pandas' boolean) and string dtypes."""
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or (isinstance(dtype, np.dtype) and dtype.kind == "O")
        or pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.StringDtype)
    )


def resolve_categorical(X, categorical_features, n_features, feature_names=None):
    """The boolean mask of X's categorical columns (shape (n_features,)).

    ``categorical_features``: "from_dtype" (a DataFrame's category, object, bool and string
    columns; no column of an array), None (no column), or as in
    ``HistGradientBoostingClassifier``: a boolean mask, integer indices or column names.
    Raises ValueError naming what is wrong.
    """
    mask = np.zeros(n_features, dtype=bool)
    if categorical_features is None:
        return mask
    if isinstance(categorical_features, str):
        if categorical_features != "from_dtype":
            raise ValueError(
                f"categorical_features={categorical_features!r} is invalid: expected "
                '"from_dtype", None, a boolean mask, or a list of column indices or names.'
            )
        if isinstance(X, pd.DataFrame):
            mask[:] = [is_categorical_dtype(dtype) for dtype in X.dtypes]
        return mask
    values = np.asarray(categorical_features)
    if values.ndim != 1:
        raise ValueError("categorical_features must be one-dimensional.")
    if values.size == 0:
        return mask
    if values.dtype.kind == "b":
        if values.shape[0] != n_features:
            raise ValueError(
                f"categorical_features is a boolean mask of {values.shape[0]} values, but X "
                f"has {n_features} features: give one value per feature."
            )
        return values.copy()
    if values.dtype.kind in "iu":
        bad = values[(values < 0) | (values >= n_features)]
        if bad.size:
            raise ValueError(
                f"categorical_features holds index {int(bad[0])}, out of range for X's "
                f"{n_features} features."
            )
        mask[values] = True
        return mask
    if values.dtype.kind in "OUS" and all(isinstance(v, str) for v in values):
        if feature_names is None:
            raise ValueError(
                "categorical_features names columns, but X has no column names: pass a "
                "DataFrame, or give the columns by index."
            )
        names = list(feature_names)
        unknown = [v for v in values if v not in names]
        if unknown:
            raise ValueError(
                f"categorical_features names {str(unknown[0])!r}, which is not a column of X "
                f"(columns: {names[:10]}{'...' if len(names) > 10 else ''})."
            )
        mask[[names.index(v) for v in values]] = True
        return mask
    raise ValueError(
        f"categorical_features={categorical_features!r} is invalid: expected a boolean mask, "
        'integer indices or column names, "from_dtype" or None.'
    )


def check_categorical_features(value):
    """The checks of the parameter that need no data (at the start of fit)."""
    if value is None or (isinstance(value, str) and value == "from_dtype"):
        return
    if isinstance(value, str) or not hasattr(value, "__len__"):
        raise ValueError(
            f'categorical_features={value!r} is invalid: expected "from_dtype", None, a '
            "boolean mask, or a list of column indices or names."
        )


# -- the columns and their categories ----------------------------------------------------------


def column(X, j):
    """Column j of X (a DataFrame or a 2-D array) as a 1-D array, objects kept."""
    if isinstance(X, pd.DataFrame):
        return X.iloc[:, j].to_numpy(dtype=object)
    return np.asarray(X)[:, j]


def is_missing(values):
    """Where a column's cells are missing: None, NaN, pd.NA, NaT."""
    return np.asarray(pd.isna(values), dtype=bool)


def fit_categories(X, j):
    """The categories of column j of X: its observed values, in the order of a pandas
    category dtype, else sorted (by type name then value where the types do not compare)."""
    if isinstance(X, pd.DataFrame) and isinstance(X.dtypes.iloc[j], pd.CategoricalDtype):
        series = X.iloc[:, j]
        observed = set(series.dropna().unique())
        kept = [c for c in series.cat.categories if c in observed]
        return _object_array(kept)
    values = column(X, j)
    observed = pd.unique(values[~is_missing(values)])
    try:
        ordered = sorted(observed)
    except TypeError:
        ordered = sorted(observed, key=lambda v: (type(v).__name__, repr(v)))
    return _object_array(ordered)


def _object_array(values):
    array = np.empty(len(values), dtype=object)
    array[:] = [_plain(v) for v in values]
    return array


def _plain(value):
    """numpy scalars as Python's own (bool, int, float, str), so categories compare, print
    and save as the user wrote them."""
    return value.item() if isinstance(value, np.generic) else value


def category_codes(values, categories):
    """Each cell's index in ``categories``: -1 where missing, -2 where the value is not one of
    them (unseen)."""
    codes = pd.Index(categories, dtype=object).get_indexer(values).astype(np.int64)
    unseen = (codes == -1) & ~is_missing(values)
    codes[unseen] = -2
    return codes


# -- the layout of the encoded matrix ----------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where each column of a table lies in the encoded matrix.

    ``categorical``: the indices of the categorical columns (increasing); ``n_categories``:
    their numbers of categories (0 for a column with none observed: an empty block).
    """

    n_features: int
    categorical: tuple = ()
    n_categories: tuple = ()

    @property
    def numeric(self):
        chosen = set(self.categorical)
        return tuple(j for j in range(self.n_features) if j not in chosen)

    @property
    def n_numeric(self):
        return self.n_features - len(self.categorical)

    @property
    def width(self):
        """The encoded matrix's columns."""
        return self.n_numeric + sum(self.n_categories)

    @property
    def is_mixed(self):
        return bool(self.categorical)

    @property
    def blocks(self):
        """``(start, n_categories)`` of each categorical column's one-hot block, empty ones
        left out."""
        start, blocks = self.n_numeric, []
        for k in self.n_categories:
            if k:
                blocks.append((start, k))
            start += k
        return tuple(blocks)

    @property
    def n_cells(self):
        """The cells of a row that have a loss term: numeric ones and non-empty categorical."""
        return self.n_numeric + len(self.blocks)

    def cell_of_entry(self):
        """For each encoded column, the index of its cell (numeric cells first, then the
        non-empty blocks), as a numpy array."""
        cells = list(range(self.n_numeric))
        for b, (_, k) in enumerate(self.blocks):
            cells += [self.n_numeric + b] * k
        return np.asarray(cells, dtype=np.int64)


def layout_of(plan):
    """The Layout a FitPlan describes."""
    return Layout(plan.n_features, tuple(plan.categorical), tuple(plan.n_categories))


def encode(X, layout, categories, unseen=None):
    """The encoded float64 matrix of table X (see the module's docstring): numbers as they
    are (NaN where missing), one-hot blocks (NaN blocks where missing). A value not among
    its column's ``categories`` is read as missing; ``unseen``, if given, is a list to which
    ``(column index, value)`` of the first such value of each column is appended."""
    n_rows = X.shape[0]
    encoded = np.empty((n_rows, layout.width), dtype=np.float64)
    for position, j in enumerate(layout.numeric):
        encoded[:, position] = _numbers(column(X, j), _name(X, j))
    start = layout.n_numeric
    for j, cats in zip(layout.categorical, categories, strict=True):
        k = len(cats)
        codes = category_codes(column(X, j), cats)
        if unseen is not None and (codes == -2).any():
            unseen.append((j, column(X, j)[np.flatnonzero(codes == -2)[0]]))
        block = np.zeros((n_rows, k))
        rows = np.flatnonzero(codes >= 0)
        block[rows, codes[rows]] = 1.0
        block[codes < 0] = np.nan
        encoded[:, start : start + k] = block
        start += k
    return encoded


def _numbers(values, name):
    """A numeric column as float64, missing cells (None, pd.NA) as NaN; a ValueError naming
    the column (``name``) where it holds something else, such as text."""
    missing = is_missing(values)
    if missing.any():
        values = np.where(missing, np.nan, values)
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        example = next(v for v in values if not _is_float(v))
        raise ValueError(
            f"{name} holds {example!r}, which is not a number, but it is not among the "
            "categorical columns: name it in categorical_features, or convert it to numbers."
        ) from None


def _is_float(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _name(X, j):
    """Column j of X for a message: "feature 'name'" or "column j"."""
    if isinstance(X, pd.DataFrame):
        return f"Feature {X.columns[j]!r}"
    return f"Column {j}"


def missing_cells(X, layout):
    """Where the cells of table X are missing (boolean, shape (n_rows, n_features))."""
    return np.stack([is_missing(column(X, j)) for j in range(layout.n_features)], axis=1)


def decode(encoded, layout, categories):
    """Table rows from encoded rows (numbers in the user's units, each block's probabilities or
    one-hot values): an object array of shape (n_rows, n_features), each categorical cell its
    most probable category (None for an empty block)."""
    n_rows = encoded.shape[0]
    table = np.empty((n_rows, layout.n_features), dtype=object)
    for position, j in enumerate(layout.numeric):
        table[:, j] = encoded[:, position]
    start = layout.n_numeric
    for j, cats in zip(layout.categorical, categories, strict=True):
        k = len(cats)
        if k == 0:
            table[:, j] = None
        else:
            table[:, j] = cats[np.argmax(encoded[:, start : start + k], axis=1)]
        start += k
    return table


def as_frame(table, dtypes, index=None):
    """An object table as a DataFrame whose columns are the names and (where the values allow)
    the dtypes of ``dtypes`` (a Series of dtypes, as ``DataFrame.dtypes``)."""
    frame = pd.DataFrame(table, columns=dtypes.index, index=index)
    for j, dtype in enumerate(dtypes):
        values = frame.iloc[:, j]
        try:
            if pd.api.types.is_integer_dtype(dtype):
                values = values.astype(np.float64).round()  # rounded, not truncated
            values = values.astype(dtype)
        except (TypeError, ValueError):
            values = values.infer_objects()
        frame.isetitem(j, values)
    return frame


# -- the network's outputs and the mixed loss --------------------------------------------------


def probabilities(output, layout):
    """The decoder's output with each block's logits turned into probabilities (softmax)."""
    if not layout.is_mixed:
        return output
    parts = [output[:, : layout.n_numeric]]
    for start, k in layout.blocks:
        parts.append(torch.softmax(output[:, start : start + k], dim=1))
    return torch.cat(parts, dim=1)


def cell_losses(output, x, layout, normalised=True):
    """Each cell's loss term (see the module's docstring) and whether it is observed: two
    tensors of shape (n_rows, layout.n_cells). ``output``: the decoder's (logits for the
    blocks), x the encoded rows in the model's units, NaN where missing. A missing cell's term
    is 0. Without ``normalised``, a category's term is its cross-entropy in nats (a
    log-likelihood, as the VAE's objective needs)."""
    numeric = x[:, : layout.n_numeric]
    observed = [~torch.isnan(numeric)]
    terms = [(output[:, : layout.n_numeric] - numeric).masked_fill(~observed[0], 0.0).square()]
    for start, k in layout.blocks:
        target = x[:, start : start + k]
        seen = ~torch.isnan(target[:, 0])
        log_p = F.log_softmax(output[:, start : start + k], dim=1)
        cross_entropy = -(torch.nan_to_num(target, nan=0.0) * log_p).sum(dim=1)
        if normalised:
            cross_entropy = cross_entropy / math.log(max(k, 2))
        terms.append(cross_entropy.masked_fill(~seen, 0.0)[:, None])
        observed.append(seen[:, None])
    return torch.cat(terms, dim=1), torch.cat(observed, dim=1)


def cell_hidden(x_in, layout):
    """Whether each cell is NaN in the network's input ``x_in`` (shape (n_rows, n_cells))."""
    starts = [start for start, _ in layout.blocks]
    missing = torch.isnan(x_in)
    return torch.cat([missing[:, : layout.n_numeric], missing[:, starts]], dim=1)


def mixed_loss(output, x, layout, x_in=None, hidden_weight=1.0):
    """The training loss on a batch: the mean of the observed cells' terms, those hidden from
    the network (NaN in ``x_in`` but observed in x) weighing ``hidden_weight``."""
    terms, observed = cell_losses(output, x, layout)
    weights = observed.to(terms.dtype)
    if x_in is not None and hidden_weight != 1.0:
        hidden = cell_hidden(x_in, layout) & observed
        weights = weights + hidden.to(terms.dtype) * (hidden_weight - 1.0)
    return (weights * terms).sum() / weights.sum().clamp_min(1e-12)


def row_losses(output, x, layout, dtype=torch.float64):
    """Each row's summed cell terms and its number of observed cells (two tensors of shape
    (n_rows,) and ``dtype``)."""
    terms, observed = cell_losses(output, x, layout)
    return terms.sum(dim=1, dtype=dtype), observed.sum(dim=1, dtype=dtype)


def hide_cells(x, layout, rate, generator):
    """x with a random ``rate`` of its cells hidden as missing (NaN): a categorical cell's
    whole block at once, so that no one-hot entry gives the hidden category away."""
    hidden = torch.rand((x.shape[0], layout.n_cells), generator=generator, device=x.device) < rate
    index = torch.as_tensor(layout.cell_of_entry(), device=x.device)
    return x.masked_fill(hidden[:, index], math.nan)


def numeric_entries(layout, device):
    """1.0 for the encoded columns that hold numbers, 0.0 for the one-hot ones (a tensor)."""
    mask = torch.zeros(layout.width, device=device)
    mask[: layout.n_numeric] = 1.0
    return mask


# -- statistics --------------------------------------------------------------------------------


def standardising_scale(stats, layout):
    """The offset and per-column scale of "standardised" scaling: each numeric column centred
    and divided by its standard deviation (1 where it is 0), the one-hot columns as they are
    (their targets are probabilities)."""
    offset = np.zeros(layout.width)
    scale = np.ones(layout.width)
    m = layout.n_numeric
    offset[:m] = stats.mean[:m]
    deviation = np.sqrt(stats.variance[:m])
    scale[:m] = np.where(deviation > 1e-12, deviation, 1.0)
    return offset, scale


def constant_loss(stats, layout):
    """The mixed loss of the constant prediction of the training data (column means, each
    block's frequencies): the mean over cells of 1 per numeric column with some spread (0 for
    a constant one) and each categorical column's entropy over log(n_categories)."""
    terms = [1.0 if v > 1e-24 else 0.0 for v in stats.variance[: layout.n_numeric]]
    terms += [h / math.log(max(k, 2)) for h, (_, k) in zip(entropies(stats, layout),
                                                           layout.blocks, strict=True)]  # fmt: skip
    return float(np.mean(terms)) if terms else 0.0


def entropies(stats, layout):
    """Each categorical column's entropy (nats) at the training frequencies."""
    values = []
    for start, k in layout.blocks:
        p = np.clip(stats.mean[start : start + k], 1e-12, 1.0)
        values.append(float(-(p * np.log(p)).sum()))
    return values


def logit_start(stats, layout):
    """The output biases that start each block at the training frequencies (their logs)."""
    return [
        (start, np.log(np.clip(stats.mean[start : start + k], 1e-6, 1.0)))
        for start, k in layout.blocks
    ]
