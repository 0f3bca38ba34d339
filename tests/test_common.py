"""scikit-learn's common estimator checks, run on every skae estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer

# Small networks and few epochs: the checks test the API contract, not the model's quality.
ESTIMATORS = [
    AutoEncoderTransformer(n_components=2, hidden_layer_sizes=(8,), max_iter=5, device="cpu"),
    VariationalAutoEncoderTransformer(
        n_components=2, hidden_layer_sizes=(8,), max_iter=5, device="cpu"
    ),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
