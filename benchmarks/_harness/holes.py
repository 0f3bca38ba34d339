"""Where the holes go: one simulator of missing values, MCAR, MAR and MNAR, used for every
imputer a benchmark compares.

The mechanisms follow the definitions used by Jarrett et al. (HyperImpute, ICML 2022, section
5 and appendix) after Muzellec et al. (Missing Data Imputation using Optimal Transport, ICML
2020, section 4 and their ``produce_NA`` with ``opt="logistic"``). This is a rewrite from those
definitions, not their code:

MCAR   every entry is removed with the same probability, independently.
MAR    a random ``observed_share`` of the columns (at least one) stays fully observed; each
       other column j loses entry i with probability sigmoid(x_obs,i . w_j + b_j), a logistic
       model of the row's fully observed values only. The weights are drawn uniform in [0, 1)
       and divided by the standard deviation of x_obs . w_j over the rows (so each logit has
       unit spread); the intercept b_j is solved for so that the mean probability is the
       column's target share.
MNAR   the same logistic model, but its inputs (a random ``observed_share`` of the columns)
       are themselves then removed completely at random: whether a value is missing depends
       on values that may be missing too (produce_NA's "MNAR" with ``exclude_inputs=True``).
MNAR_self
       self-masking: each column j loses entry i with probability sigmoid(w_j x_ij + b_j), a
       logistic model of the value itself (produce_NA's ``MNAR_self_mask_logistic``).

One deliberate difference from produce_NA: ``share`` is the share of *all* entries removed,
whatever the mechanism, so the mechanisms can be compared at the same amount of missing data.
produce_NA's MAR removes its p from the non-observed columns only (``p * (1 - p_obs)`` of the
whole); here those columns lose ``share * d / d_na`` each instead (capped at 0.95).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

MECHANISMS = ("MCAR", "MAR", "MNAR", "MNAR_self")


def simulate_holes(X, share, mechanism="MCAR", seed=0, *, observed_share=0.3):
    """A boolean mask (True: remove) of X's shape, drawn by ``mechanism`` (see the module).

    X must be complete (the logistic models read its values). ``seed`` is an int or a numpy
    Generator; every random draw comes from it, in an order that does not depend on X's
    values, so MAR's mask changes with the fully observed columns only.
    """
    X = np.asarray(X, dtype=np.float64)
    if np.isnan(X).any():
        raise ValueError("simulate_holes needs complete data")
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    rng = np.random.default_rng(seed)
    n, d = X.shape
    if mechanism == "MCAR":
        return rng.random((n, d)) < share
    if mechanism == "MNAR_self":
        weights = rng.random(d)
        logits = _unit_spread(X * weights)
        return rng.random((n, d)) < _probabilities(logits, np.full(d, share))

    n_inputs = max(int(observed_share * d), 1)
    order = rng.permutation(d)
    inputs, others = np.sort(order[:n_inputs]), np.sort(order[n_inputs:])
    weights = rng.random((n_inputs, len(others)))
    logits = _unit_spread(X[:, inputs] @ weights)
    draws = rng.random((n, d))
    mask = np.zeros((n, d), dtype=bool)
    if mechanism == "MAR":
        # Only the other columns lose entries: each loses more, for the same share overall.
        target = min(share * d / max(len(others), 1), 0.95)
        mask[:, others] = draws[:, others] < _probabilities(logits, np.full(len(others), target))
    else:  # MNAR: the model's inputs lose entries too, completely at random
        mask[:, others] = draws[:, others] < _probabilities(logits, np.full(len(others), share))
        mask[:, inputs] = draws[:, inputs] < share
    return mask


def _unit_spread(logits):
    """Each column centred and divided by its standard deviation over the rows (a constant
    one: 0). Centring changes nothing but the intercept that _probabilities solves for."""
    spread = logits.std(axis=0)
    centred = logits - logits.mean(axis=0)
    return np.divide(centred, spread, out=np.zeros_like(logits), where=spread > 0)


def _probabilities(logits, targets):
    """sigmoid(logits + b), each column's intercept b solved so its mean is its target."""
    out = np.empty_like(logits)
    for j, target in enumerate(targets):
        z = logits[:, j]
        if target <= 0:
            out[:, j] = 0.0
            continue
        # The mean of sigmoid(z + b) rises from 0 to 1 with b: one root, bracketed.
        b = brentq(lambda b, z=z, t=target: expit(z + b).mean() - t, -50.0, 50.0, xtol=1e-10)
        out[:, j] = expit(z + b)
    return out
