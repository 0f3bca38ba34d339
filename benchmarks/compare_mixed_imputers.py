"""Does AutoEncoderImputer fill a mixed table (numbers and categories) well? (issue 30)

Penguins (palmerpenguins.load_penguins(): 344 rows; numbers bill_length_mm, bill_depth_mm,
flipper_length_mm, body_mass_g, year; categories species, island, sex), all rows kept with
their own missing cells. Per seed (0, 1, 2 by default), 20% of the observed numeric cells and
20% of the observed categorical cells are hidden at random; every imputer fills the same holes.

Scores over the hidden cells only: NRMSE, each numeric column's RMSE divided by its standard
deviation (over its observed cells), averaged over the numeric columns; PFC, the share of
hidden categorical cells filled with a wrong category.

Imputers:
  simple        SimpleImputer: mean for numbers, most_frequent for categories
  iterative     IterativeImputer(random_state=seed) on the categories' ordinal codes, each
                filled code rounded and clipped to a valid one
  autoencoder   AutoEncoderImputer(random_state=seed) on the DataFrame as it is
  autoencoder_numbers
                AutoEncoderImputer(random_state=seed) on the numeric columns alone (no
                categories: one overall scale, as before issue 30); NRMSE only
  autoencoder_numbers_standardised
                the same on the numeric columns standardised first (by their observed
                means and standard deviations) and mapped back; NRMSE only

Usage, from the repository root (about a minute on one core):
  python benchmarks/compare_mixed_imputers.py [--seeds 0,1,2]
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from palmerpenguins import load_penguins
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, SimpleImputer
from sklearn.preprocessing import OrdinalEncoder

from skae import AutoEncoderImputer

CATEGORICAL = ["species", "island", "sex"]
SHARE = 0.2


def hide(frame, seed):
    """The frame with SHARE of its observed numeric and categorical cells hidden (two draws
    of the same share), and the mask of the hidden cells."""
    rng = np.random.default_rng(seed)
    observed = frame.notna().to_numpy()
    hidden = (rng.random(frame.shape) < SHARE) & observed
    holed = frame.copy()
    for j, name in enumerate(frame.columns):
        holed.loc[hidden[:, j], name] = None if name in CATEGORICAL else np.nan
    return holed, hidden


def simple(holed, seed):
    filled = holed.copy()
    numbers = [c for c in holed.columns if c not in CATEGORICAL]
    filled[numbers] = SimpleImputer(strategy="mean").fit_transform(holed[numbers])
    filled[CATEGORICAL] = SimpleImputer(strategy="most_frequent").fit_transform(
        holed[CATEGORICAL].astype(object).where(holed[CATEGORICAL].notna(), np.nan)
    )
    return filled


def iterative(holed, seed):
    encoder = OrdinalEncoder(encoded_missing_value=np.nan)
    categories = holed[CATEGORICAL].astype(object).where(holed[CATEGORICAL].notna(), np.nan)
    codes = encoder.fit_transform(categories)
    numbers = [c for c in holed.columns if c not in CATEGORICAL]
    X = np.hstack([holed[numbers].to_numpy(dtype=float), codes])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IterativeImputer's early-stopping warning
        X = IterativeImputer(random_state=seed).fit_transform(X)
    filled = holed.copy()
    filled[numbers] = X[:, : len(numbers)]
    for k, name in enumerate(CATEGORICAL):
        n = len(encoder.categories_[k])
        index = np.clip(np.round(X[:, len(numbers) + k]), 0, n - 1).astype(int)
        filled[name] = encoder.categories_[k][index]
    return filled


def autoencoder(holed, seed):
    return AutoEncoderImputer(random_state=seed, device="cpu").fit_transform(holed)


def autoencoder_numbers(holed, seed):
    numbers = [c for c in holed.columns if c not in CATEGORICAL]
    filled = holed.copy()
    filled[numbers] = AutoEncoderImputer(random_state=seed, device="cpu").fit_transform(
        holed[numbers]
    )
    return filled


def autoencoder_numbers_standardised(holed, seed):
    numbers = [c for c in holed.columns if c not in CATEGORICAL]
    mean, deviation = holed[numbers].mean(), holed[numbers].std()
    filled = holed.copy()
    imputer = AutoEncoderImputer(random_state=seed, device="cpu")
    standardised = imputer.fit_transform((holed[numbers] - mean) / deviation)
    filled[numbers] = standardised * deviation.to_numpy() + mean.to_numpy()
    return filled


IMPUTERS = {
    "simple": simple,
    "iterative": iterative,
    "autoencoder": autoencoder,
    "autoencoder_numbers": autoencoder_numbers,
    "autoencoder_numbers_standardised": autoencoder_numbers_standardised,
}


def scores(frame, filled, hidden):
    nrmse, wrong, total = [], 0, 0
    for j, name in enumerate(frame.columns):
        rows = hidden[:, j]
        if name in CATEGORICAL:
            wrong += int((filled[name][rows].astype(str) != frame[name][rows].astype(str)).sum())
            total += int(rows.sum())
        else:
            truth = frame[name][rows].to_numpy(dtype=float)
            error = filled[name][rows].to_numpy(dtype=float) - truth
            nrmse.append(np.sqrt(np.mean(error**2)) / frame[name].std())
    return float(np.mean(nrmse)), wrong / total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    frame = load_penguins()
    rows = []
    for seed in seeds:
        holed, hidden = hide(frame, seed)
        for name, impute in IMPUTERS.items():
            start = time.perf_counter()
            filled = impute(holed, seed)
            seconds = time.perf_counter() - start
            nrmse, pfc = scores(frame, filled, hidden)
            if name.startswith("autoencoder_numbers"):
                pfc = np.nan
            rows.append(dict(imputer=name, seed=seed, nrmse=nrmse, pfc=pfc, seconds=seconds))
            print(f"seed {seed} {name:<33} NRMSE {nrmse:.3f}  PFC {pfc:.3f}  {seconds:.1f} s")
    table = pd.DataFrame(rows).groupby("imputer", sort=False)
    summary = table[["nrmse", "pfc", "seconds"]].agg(["mean", "min", "max"])
    print()
    print(f"penguins, {SHARE:.0%} of observed numeric and categorical cells hidden, seeds {seeds}")
    print("| imputer | NRMSE mean (min-max) | PFC mean (min-max) | seconds |")
    print("|---|---|---|---|")
    for name, row in summary.iterrows():
        pfc = (
            "-"
            if np.isnan(row[("pfc", "mean")])
            else f"{row[('pfc', 'mean')]:.3f} ({row[('pfc', 'min')]:.3f}-{row[('pfc', 'max')]:.3f})"
        )
        print(
            f"| {name} | {row[('nrmse', 'mean')]:.3f} ({row[('nrmse', 'min')]:.3f}-"
            f"{row[('nrmse', 'max')]:.3f}) | {pfc} | {row[('seconds', 'mean')]:.1f} |"
        )


if __name__ == "__main__":
    main()
