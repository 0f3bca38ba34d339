"""Infinity and text in X get skae's own messages, naming the columns and what to do, from every
estimator, for arrays and DataFrames, in fit and after it."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from skae import (
    AutoEncoderImputer,
    AutoEncoderOutlierDetector,
    AutoEncoderTransformer,
    VariationalAutoEncoderTransformer,
)

ESTIMATORS = [
    AutoEncoderTransformer,
    VariationalAutoEncoderTransformer,
    AutoEncoderOutlierDetector,
    AutoEncoderImputer,
]
COLUMNS = ["width", "height", "depth", "weight"]
INFINITY = r"Input X contains infinity in {}\. {} needs finite values: replace .* with NaN"
TEXT = (
    r"Input X holds text in {} \(dtype .*, e\.g\. 'red'\)\. {} reads numbers only and has no "
    r"support for categorical features yet: .*OneHotEncoder or OrdinalEncoder in a "
    r"ColumnTransformer"
)


def make(cls):
    return cls(n_components=2, hidden_layer_sizes=(4,), max_iter=2, random_state=0)


def clean_table():
    return np.random.default_rng(0).random((40, len(COLUMNS)))


def with_infinity(X):
    X = X.copy()
    X[3, 1], X[5, 3] = np.inf, -np.inf
    return X


@pytest.fixture(scope="module")
def fitted():
    """Each estimator fitted on clean rows (2 epochs: what is tested is the input check)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 2 epochs, on purpose
        return {cls: make(cls).fit(clean_table()) for cls in ESTIMATORS}


def after_fit(estimator):
    """The method that reads new rows, per estimator."""
    if isinstance(estimator, AutoEncoderOutlierDetector):
        return estimator.decision_function
    return estimator.transform


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_infinity_is_refused_naming_its_columns(cls, fitted):
    X = with_infinity(clean_table())
    by_position = INFINITY.format("columns 1, 3", cls.__name__)
    by_name = INFINITY.format("features 'height', 'weight'", cls.__name__)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning from +inf + -inf first
        with pytest.raises(ValueError, match=by_position):
            make(cls).fit(X)
    with pytest.raises(ValueError, match=by_name):
        make(cls).fit(pd.DataFrame(X, columns=COLUMNS))
    with pytest.raises(ValueError, match=by_position):
        after_fit(fitted[cls])(X)


# AutoEncoderTransformer reads categorical columns (tests/test_categorical.py): it refuses text
# only where it was not told a column is categorical.
TEXT_TO_NAME = (
    r"Input X holds text in {} \(dtype .*, e\.g\. 'red'\), which {} was not told are "
    r"categorical .*categorical_features={}"
)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_text_columns_are_refused_pointing_to_an_encoder(cls, fitted):
    frame = pd.DataFrame(clean_table(), columns=COLUMNS)
    frame["colour"] = ["red", "green"] * 20
    reads_categories = hasattr(make(cls), "categorical_features")
    if not reads_categories:
        for column in (frame["colour"], frame["colour"].astype("category")):
            with pytest.raises(ValueError, match=TEXT.format("feature 'colour'", cls.__name__)):
                make(cls).fit(frame.assign(colour=column))
    array = frame.to_numpy()  # dtype object, the colour last
    text = TEXT_TO_NAME.format("column 4", cls.__name__, r"\[4\]") if reads_categories else TEXT
    with pytest.raises(ValueError, match=text.format("column 4", cls.__name__)):
        make(cls).fit(array)
    with pytest.raises(ValueError, match=r"make_column_transformer\(\(OneHotEncoder\(\), \[1\]\)"):
        after_fit(fitted[cls])(np.array([[0.5, "red", 0.5, 0.5]], dtype=object))


def test_many_text_columns_are_counted_and_listed():
    array = pd.DataFrame({f"c{j}": ["a", "b"] for j in range(12)}).to_numpy()
    with pytest.raises(ValueError, match=r"columns 0, .*9 and 2 more .*'text_columns'"):
        AutoEncoderTransformer().fit(array)


def test_infinity_in_sparse_and_out_of_core_input(tmp_path):
    X = with_infinity(clean_table())
    with pytest.raises(ValueError, match=INFINITY.format("columns 1, 3", "AutoEncoderTransformer")):
        make(AutoEncoderTransformer).fit(sp.csr_matrix(X))
    # A memmap is checked a block at a time as it is read: the infinity is past the first row.
    disk = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=X.dtype, shape=X.shape)
    disk[:] = X
    with pytest.raises(ValueError, match=INFINITY.format("columns 1, 3", "AutoEncoderTransformer")):
        make(AutoEncoderTransformer).fit(disk)


def test_other_input_errors_pass_unchanged(fitted):
    estimator = fitted[AutoEncoderTransformer]
    with pytest.raises(ValueError, match="X has 3 features, but AutoEncoderTransformer is expect"):
        estimator.transform(clean_table()[:, :3])
    with pytest.raises(ValueError, match="Expected 2D array"):
        make(AutoEncoderTransformer).fit(clean_table()[:, 0])
