"""Starting an autoencoder at PCA's solution: the principal axes of the training data.

With ``init="pca"`` the autoencoder's encoder and decoder each have a linear path beside their
nonlinear layers (``skae._modules.LinearPath``). The linear paths start as PCA's projection
and reconstruction, and the nonlinear layers' last weights start at zero, so training begins at
PCA's reconstruction error and the nonlinear layers only add what PCA misses.

The axes come from the covariance of the training data in the model's units, gathered one
block of rows at a time and summed over the processes of a distributed fit, so that they are
found for every kind of input (in memory, sparse, streamed) without a copy of the data. The
covariance is n_features x n_features (784 x 784 for MNIST's images, whose smaller sets,
below 10,000 rows, ``init="auto"`` starts at PCA too).
"""

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch

from ._training import iter_blocks

# From this many features, a few leading axes (at most LANCZOS_SHARE of the features) come
# from Lanczos iterations (ARPACK's eigsh) instead of LAPACK's eigh, which reduces the whole
# matrix to tridiagonal form first. 1 thread: ADBench's InternetAds (1,555 features, 8 and 32
# axes) 0.02 and 0.06 s against 0.12-0.13 s (and 0.25-1.5 s inside a fit beside other work);
# a random 1,555 x 1,555 covariance 0.11-0.14 s against 0.26-0.28 s; no gain at 784 features
# (MNIST: 0.03-0.05 s either way). The same axes to 1e-14.
LANCZOS_FROM = 1000
LANCZOS_SHARE = 1 / 8


def principal_axes(X, mean, scaling, n_components, group, check_block):
    """The leading ``n_components`` principal axes of X (rows of an array of shape
    (n_components, n_features)), in the model's units, largest variance first.

    ``mean`` is X's column mean in the user's units. Axes beyond X's number of features are
    zero. Each axis's sign is fixed so that its largest coordinate is positive, as
    scikit-learn's PCA does, so the start is the same whatever the order of the rows.
    """
    n_features = mean.shape[0]
    scatter = np.zeros((n_features, n_features))
    for _, block in iter_blocks(X, check_block):
        block = np.asarray(block, dtype=np.float64)
        # Missing values at the mean: the axes of the mean-filled data.
        centred = np.nan_to_num((block - mean) / scaling.scale, nan=0.0)
        scatter += centred.T @ centred
    scatter = group.all_reduce(torch.as_tensor(scatter)).numpy()
    # Only the leading axes: on wide data a fraction of the time of all of them (1,555
    # features, 8 axes: 0.46 s against 0.82 s with eigh, 1 thread; see LANCZOS_FROM).
    vectors = _leading_eigenvectors(scatter, min(n_components, n_features))
    axes = vectors[:, ::-1].T
    largest = np.argmax(np.abs(axes), axis=1)
    axes = axes * np.sign(axes[np.arange(len(axes)), largest])[:, None]
    padded = np.zeros((n_components, n_features))
    padded[: len(axes)] = axes
    return padded


def _leading_eigenvectors(matrix, k):
    """The eigenvectors of the k largest eigenvalues of a symmetric matrix, as columns in
    ascending order of their eigenvalues."""
    n = matrix.shape[0]
    if n >= LANCZOS_FROM and k <= LANCZOS_SHARE * n:
        # A fixed start vector: the same axes on every call.
        start = np.random.default_rng(0).standard_normal(n)
        try:
            values, vectors = scipy.sparse.linalg.eigsh(matrix, k=k, which="LA", v0=start)
            return vectors[:, np.argsort(values)]
        except scipy.sparse.linalg.ArpackError:  # not converged (many equal eigenvalues)
            pass
    _, vectors = scipy.linalg.eigh(matrix, subset_by_index=[n - k, n - 1], driver="evr")
    return vectors
