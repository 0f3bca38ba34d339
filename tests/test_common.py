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
    # A float contamination: check_outliers_train wants outliers flagged among three Gaussian
    # blobs, which contamination="auto" (Tukey's far-out fence) rightly finds none of.
    AutoEncoderOutlierDetector(
        n_components=2, contamination=0.1, hidden_layer_sizes=(8,), max_iter=5, device="cpu"
    ),
    AutoEncoderTransformer(n_components=2, hidden_layer_sizes=(8,), max_iter=5, device="cpu"),
    VariationalAutoEncoderTransformer(
        n_components=2, hidden_layer_sizes=(8,), max_iter=5, device="cpu"
    ),
]


# The checks' tiny fits end unconverged, and some of their data have 2 features, as many as the
# codes: the warnings that say so are right, and beside the point of an API check.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:n_components=2 is not smaller than the 2 features:UserWarning")
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
