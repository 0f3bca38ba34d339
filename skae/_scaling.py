"""The map between the user's units and the model's, chosen from the training data."""

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.sparsefuncs import mean_variance_axis


class AffineScaling:
    """The map between the user's units and the model's: ``(x - offset) / scale``.

    ``offset`` is per feature, ``scale`` one number for all features: a per-feature scale would
    blow up constant or near-constant features on new data, and would reweight the loss away
    from the squared error in the user's units that ``score`` reports.
    """

    def __init__(self, offset, scale, device):
        self.offset = torch.as_tensor(offset, dtype=torch.float32, device=device)
        self.scale = float(scale)
        self.is_identity = not bool(self.offset.any()) and self.scale == 1.0

    def to_model(self, x):
        return x if self.is_identity else (x - self.offset) / self.scale

    def to_user(self, x):
        return x if self.is_identity else torch.addcmul(self.offset, x, x.new_tensor(self.scale))


def choose_scaling(X, output_activation, device):
    """The output layer and the input scaling for training data X.

    Data in [0, 1] (images, proportions, TF-IDF) keep their units and get a sigmoid output, as in
    the design. Anything else is centred per feature and divided by one overall scale, with a
    linear output.
    """
    x_min, x_max = float(X.min()), float(X.max())
    if output_activation == "auto":
        output_activation = "sigmoid" if x_min >= 0.0 and x_max <= 1.0 else "identity"
    n_features = X.shape[1]
    if output_activation == "sigmoid":
        return output_activation, AffineScaling(np.zeros(n_features), 1.0, device)
    if sp.issparse(X):
        mean, variance = mean_variance_axis(X.tocsr(), axis=0)
    else:
        mean, variance = X.mean(axis=0, dtype=np.float64), X.var(axis=0, dtype=np.float64)
    # One overall scale: the root mean variance over features (1 for constant data).
    overall = float(np.sqrt(np.mean(variance)))
    scale = overall if overall > 1e-12 else 1.0
    return output_activation, AffineScaling(mean, scale, device)
