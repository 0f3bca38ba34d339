"""skae: autoencoders as scikit-learn transformers, a nonlinear drop-in for PCA."""

from ._autoencoder import AutoEncoderTransformer
from ._imputer import AutoEncoderImputer
from ._outliers import AutoEncoderOutlierDetector
from ._persistence import load
from ._plan import FitPlan
from ._plotting import plot_outlier_contributions
from ._vae import VariationalAutoEncoderTransformer

__version__ = "0.1.0"

__all__ = [
    "AutoEncoderImputer",
    "AutoEncoderOutlierDetector",
    "AutoEncoderTransformer",
    "FitPlan",
    "VariationalAutoEncoderTransformer",
    "load",
    "plot_outlier_contributions",
    "__version__",
]
