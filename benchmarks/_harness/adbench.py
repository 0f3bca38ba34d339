"""ADBench's classical outlier tables (Han et al., "ADBench: Anomaly Detection Benchmark",
NeurIPS 2022) and the two protocols the outlier benchmark runs on them.

Each table is ``<number>_<name>.npz`` with ``X`` (rows x features) and ``y`` (1 = anomaly), as
ADBench ships them in ``adbench/datasets/Classical/``; they are read from ``adbench/`` in the
data home ($SKAE_DATA, else scikit-learn's data home, or --data-home).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skae.datasets._fetch import resolve_data_home

# Tables over this many rows are subsampled (stratified, without replacement), as ADBench does.
MAX_ROWS = 10_000
WHERE_TO_GET = (
    "ADBench's classical tables are the .npz files of adbench/datasets/Classical/ in "
    "https://github.com/Minqi824/ADBench (BSD-2-Clause); put them in {folder}"
)


class ADBenchUnavailable(FileNotFoundError):
    pass


def adbench_folder(data_home=None) -> Path:
    return resolve_data_home(data_home) / "adbench"


def adbench_tables(data_home=None) -> list[str]:
    """The names (as ``"2_annthyroid"``) of the tables in the data home, in ADBench's order."""
    folder = adbench_folder(data_home)
    names = [path.stem for path in folder.glob("*.npz") if re.match(r"\d+_", path.stem)]
    if not names:
        raise ADBenchUnavailable(
            f"No ADBench tables in {folder}. " + WHERE_TO_GET.format(folder=folder)
        )
    return sorted(names, key=lambda name: int(name.split("_")[0]))


def load_adbench(name: str, data_home=None) -> tuple[np.ndarray, np.ndarray]:
    """(X as float64, is_anomaly as bool) of one table."""
    path = adbench_folder(data_home) / f"{name}.npz"
    if not path.exists():
        raise ADBenchUnavailable(f"{path} is missing. " + WHERE_TO_GET.format(folder=path.parent))
    with np.load(path, allow_pickle=False) as data:
        return data["X"].astype(np.float64), data["y"].astype(bool)


def _at_most(X, y, n, rng):
    """A stratified subsample of n rows, without replacement (all rows when there are fewer)."""
    if len(X) <= n:
        return X, y
    rows, _ = train_test_split(
        np.arange(len(X)), train_size=n, stratify=y, random_state=rng.integers(2**31)
    )
    rows = np.sort(rows)
    return X[rows], y[rows]


def _standardised(X_train, X_test):
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train).astype(np.float32), scaler.transform(X_test).astype(np.float32)


def unsupervised_split(X, y, seed):
    """ADBench's setting: a stratified 70/30 split of (at most MAX_ROWS) rows; the training part
    keeps its anomalies and its labels are not used. Standardised on the training part."""
    rng = np.random.default_rng(seed)
    X, y = _at_most(X, y, MAX_ROWS, rng)
    X_train, X_test, _, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=rng.integers(2**31)
    )
    return (*_standardised(X_train, X_test), y_test)


def novelty_split(X, y, seed):
    """Clean training rows: half of the normal rows (of at most MAX_ROWS rows) train; the other
    half and every anomaly test. Standardised on the training part."""
    rng = np.random.default_rng(seed)
    X, y = _at_most(X, y, MAX_ROWS, rng)
    normal = rng.permutation(np.flatnonzero(~y))
    train, test = normal[: len(normal) // 2], np.r_[normal[len(normal) // 2 :], np.flatnonzero(y)]
    return (*_standardised(X[train], X[test]), y[test])
