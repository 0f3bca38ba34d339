"""scikit-learn's common estimator checks, run on every skae estimator."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skae import (
    AutoEncoderImputer,
    AutoEncoderOutlierDetector,
    AutoEncoderTransformer,
    VariationalAutoEncoderTransformer,
)

# Small networks and few epochs: the checks test the API contract, not the model's quality.
ESTIMATORS = [
    AutoEncoderImputer(n_components=2, hidden_layer_sizes=(8,), max_iter=5, device="cpu"),
    AutoEncoderOutlierDetector(
        n_components=2, contamination=0.1, hidden_layer_sizes=(8,), max_iter=5, device="cpu"
    ),
    # The defaults, contamination="auto" among them, but for the number of epochs (issue 28).
    AutoEncoderOutlierDetector(max_iter=3, random_state=0, device="cpu"),
    AutoEncoderTransformer(n_components=2, hidden_layer_sizes=(8,), max_iter=5, device="cpu"),
    VariationalAutoEncoderTransformer(
        n_components=2, hidden_layer_sizes=(8,), max_iter=5, device="cpu"
    ),
]


# The checks' tiny fits end unconverged, and some of their data have no more features than
# codes (2 to 5 against the default 8): the warnings that say so are right, and beside the point
# of an API check.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings(
    "ignore:n_components=[0-9]+ is not smaller than the [0-9]+ features:UserWarning"
)
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
