"""Choosing the code size without labels.

An autoencoder's ``score`` (the negative held-out reconstruction error) almost always improves
as ``n_components`` grows, so ``GridSearchCV`` ranking by it alone picks the largest size in
the grid. ``smallest_within`` is a ``refit`` rule for ``GridSearchCV`` that picks the smallest
size whose held-out error is close to the best one instead, the way PCA users keep the fewest
components that explain most of the variance.
"""

import numpy as np

__all__ = ["smallest_within"]


def smallest_within(tolerance=0.1, *, param="n_components"):
    """A ``refit`` rule for GridSearchCV: the smallest ``param`` within ``tolerance`` of the best.

    Among the candidates whose mean held-out error (``-mean_test_score``) is at most
    ``(1 + tolerance)`` times the best candidate's, the rule picks the one with the smallest
    ``param``, and among those the best scoring. Pass it as ``GridSearchCV(...,
    refit=smallest_within(0.1))``: ``best_index_``, ``best_params_`` and ``best_estimator_``
    then follow it (``best_score_`` is not set, as for any callable ``refit``).

    Parameters
    ----------
    tolerance : float, default=0.1
        How much more held-out error than the best a smaller code may cost, relative to the
        best: 0.1 accepts 10% more. 0 picks the best candidate, as ``refit=True`` does.
    param : str, default="n_components"
        The parameter to minimise, as ``cv_results_`` names it (``"param_" + param``; in a
        pipeline, e.g. ``"autoencodertransformer__n_components"``).

    Returns
    -------
    refit : callable
        ``refit(cv_results) -> int``, the index of the chosen candidate.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skae import AutoEncoderTransformer
    >>> from skae.model_selection import smallest_within
    >>> X = load_digits().data[:300] / 16
    >>> search = GridSearchCV(
    ...     AutoEncoderTransformer(max_iter=20, random_state=0),
    ...     {"n_components": [2, 8, 32]}, cv=3, refit=smallest_within(0.5),
    ... ).fit(X)
    >>> search.best_params_["n_components"] < 32
    True
    """
    if not (isinstance(tolerance, (int, float)) and np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance={tolerance!r} is invalid: expected a real number >= 0.")

    def refit(cv_results):
        key = f"param_{param}"
        if key not in cv_results:
            searched = sorted(k[len("param_") :] for k in cv_results if k.startswith("param_"))
            raise ValueError(
                f"smallest_within(param={param!r}): the search has no parameter {param!r}; "
                f"it searched {searched}. In a pipeline, name the step too, as in "
                f"'autoencodertransformer__{param}'."
            )
        errors = -np.asarray(cv_results["mean_test_score"], dtype=float)
        if not np.isfinite(errors).any():
            raise ValueError("smallest_within: no candidate has a finite mean_test_score.")
        best = np.nanmin(errors)
        close = np.flatnonzero(errors <= best + tolerance * abs(best))
        sizes = np.asarray([cv_results[key][i] for i in close], dtype=float)
        smallest = close[sizes == sizes.min()]
        return int(smallest[np.argmin(errors[smallest])])

    return refit
