"""Errors that name what is wrong with an input and what to do about it: infinity, text.

scikit-learn's checks stop at the first bad value with numpy's words ("could not convert
string to float: 'red'", "Input X contains infinity or a value too large for
dtype('float64')"), which name neither the column nor a way out. ``explained_input_errors``
looks into X only once such a check has failed, so valid inputs pay nothing, and raises skae's
own message when it finds the cause, as ``refuse_nan`` does for NaN.
"""

import contextlib

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._missing import listed


@contextlib.contextmanager
def explained_input_errors(X, estimator):
    """Within the block, a ValueError raised while checking X becomes skae's own message when
    X holds text or infinite values (see ``input_error``); other errors pass unchanged."""
    try:
        # scikit-learn's finiteness check sums X: +inf and -inf make NaN, with a RuntimeWarning
        # that would only precede the error explained here.
        with np.errstate(invalid="ignore"):
            yield
    except ValueError as error:
        explained = input_error(X, estimator)
        if explained is None:
            raise
        raise explained from error


def input_error(X, estimator):
    """The ValueError that names X's text columns, else its columns holding infinity; None
    when X has neither (or is not a table this can read: then the original error stands)."""
    columns = _columns(X)
    if columns is None:
        return None
    names, values = columns
    text = [j for j, column in enumerate(values) if _as_float(column) is None]
    if text:
        return _text_error(text, names, values, estimator)
    if sp.issparse(X):
        coo = X.tocoo()
        infinite = np.unique(coo.col[np.isinf(coo.data)])
    else:
        infinite = [j for j, column in enumerate(values) if np.isinf(_as_float(column)).any()]
    if len(infinite):
        return _infinity_error(infinite, names, estimator)
    return None


def _columns(X):
    """X's feature names (None without them) and its columns as 1-D arrays or Series; None
    where X is not a 2-D table, or holds complex numbers (scikit-learn's message is clear)."""
    if isinstance(X, pd.DataFrame):
        if any(dtype.kind == "c" for dtype in X.dtypes):
            return None
        return [str(name) for name in X.columns], [X.iloc[:, j] for j in range(X.shape[1])]
    if sp.issparse(X):
        return None, [X.data]  # text cannot be sparse; the columns come from the indices
    try:
        array = np.asarray(X)
    except (ValueError, TypeError):  # ragged lists: numpy's own message says it best
        return None
    if array.ndim != 2 or array.dtype.kind == "c":
        return None
    return None, list(array.T)


def _as_float(column):
    """The column as float64, or None when some value is text that is not a number."""
    try:
        return np.asarray(column, dtype=np.float64)
    except (ValueError, TypeError):
        return None


def _where(columns, names):
    """ "column 1", "columns 1, 4" or "feature 'color'": the columns for a message (by name
    where X has names, else by position)."""
    noun = ("column" if names is None else "feature") + "s" * (len(columns) > 1)
    shown = None if names is None else [repr(name) for name in names]
    return f"{noun} {listed(columns, shown)}"


def _text_error(columns, names, values, estimator):
    first = values[columns[0]]
    dtype = getattr(first, "dtype", None)
    text = (v for v in first if isinstance(v, str | bytes) and _as_float([v]) is None)
    example = next(text, None)
    example = "" if example is None else f", e.g. {str(example)!r}"
    selected = [names[j] if names is not None else int(j) for j in columns]
    selected = selected if len(selected) <= 3 else "text_columns"
    name = type(estimator).__name__
    if hasattr(estimator, "categorical_features"):
        return ValueError(
            f"Input X holds text in {_where(columns, names)} (dtype {dtype}{example}), which "
            f"{name} was not told are categorical (categorical_features="
            f'{estimator.categorical_features!r}; "from_dtype" reads a DataFrame\'s category, '
            "object, bool and string columns only). Name them and fit again, as "
            f"categorical_features={selected!r}; or encode them first, e.g. "
            f"make_column_transformer((OneHotEncoder(), {selected!r}), remainder='passthrough')."
        )
    return ValueError(
        f"Input X holds text in {_where(columns, names)} (dtype {dtype}{example}). {name} "
        "reads numbers only and has no support for categorical features yet: encode them "
        "first, e.g. with OneHotEncoder or OrdinalEncoder in a ColumnTransformer before it in "
        f"a pipeline: make_column_transformer((OneHotEncoder(), {selected!r}), "
        "remainder='passthrough')."
    )


def _infinity_error(columns, names, estimator):
    name = type(estimator).__name__
    return ValueError(
        f"Input X contains infinity in {_where(columns, names)}. {name} needs finite values: "
        "replace the infinite ones first, with NaN to treat them as missing values "
        "(X[np.isinf(X)] = np.nan, or X.replace([np.inf, -np.inf], np.nan) for a DataFrame), "
        "or with a finite bound (np.clip)."
    )
