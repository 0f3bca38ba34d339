"""smallest_within: choosing n_components without labels, in GridSearchCV."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skae import AutoEncoderTransformer
from skae.model_selection import smallest_within

X = (load_digits().data[:400] / 16).astype(np.float32)
SIZES = [2, 4, 8, 16, 32]


@pytest.fixture(scope="module")
def search_results():
    search = GridSearchCV(
        AutoEncoderTransformer(max_iter=15, random_state=0), {"n_components": SIZES}, cv=3
    ).fit(X)
    return search.cv_results_


def test_the_score_alone_picks_the_largest_size(search_results):
    # Why the rule exists: held-out error falls as the codes grow.
    errors = -search_results["mean_test_score"]
    assert np.all(np.diff(errors) < 0)
    assert SIZES[int(np.argmin(errors))] == max(SIZES)


@pytest.mark.parametrize("tolerance", [0.0, 0.25, 1.0, 3.0])
def test_the_smallest_size_within_the_tolerance_is_chosen(search_results, tolerance):
    errors = -search_results["mean_test_score"]
    chosen = smallest_within(tolerance)(search_results)
    assert errors[chosen] <= (1 + tolerance) * errors.min()
    smaller = [i for i, k in enumerate(SIZES) if k < SIZES[chosen]]
    assert all(errors[i] > (1 + tolerance) * errors.min() for i in smaller)
    if tolerance == 0:
        assert chosen == int(np.argmin(errors))


def test_a_search_refits_the_chosen_size():
    search = GridSearchCV(
        make_pipeline(StandardScaler(), AutoEncoderTransformer(max_iter=15, random_state=0)),
        {"autoencodertransformer__n_components": [2, 8, 32]},
        cv=3,
        # Held-out errors about 0.74, 0.35 and 0.10: 8 codes are within 4 times the best.
        refit=smallest_within(4.0, param="autoencodertransformer__n_components"),
    ).fit(X)
    assert search.best_params_["autoencodertransformer__n_components"] == 8
    assert search.best_estimator_[-1].n_components == 8


def test_bad_arguments_are_named(search_results):
    with pytest.raises(ValueError, match="no parameter 'n_codes'.*searched \\['n_components'\\]"):
        smallest_within(param="n_codes")(search_results)
    for tolerance in (-0.1, float("nan"), "10%"):
        with pytest.raises(ValueError, match="tolerance=.* is invalid"):
            smallest_within(tolerance)
