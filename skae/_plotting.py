"""Plots of fitted estimators (matplotlib, imported only when a plot is asked for)."""

import numpy as np

from ._validation import check_int


def plot_outlier_contributions(detector, x, *, feature_names=None, top=10, ax=None):
    """Plot the features that contribute most to one row's outlier measure.

    A horizontal bar chart of ``detector.outlier_contributions(x)``, the largest first: the
    features that make the row an outlier, and how much (in the units of
    ``-detector.score_samples(x)``, which their sum is). Bars of features whose share is
    negative (they make the row look more typical) are drawn in another colour.

    Parameters
    ----------
    detector : AutoEncoderOutlierDetector or Pipeline
        A fitted detector, or a fitted pipeline that ends in one: the row then goes through
        the steps before it, and the contributions are those of the features it reads.
    x : array-like of shape (n_features,) or (1, n_features)
        One row (a pandas Series or one-row DataFrame keeps its feature names).
    feature_names : array-like of str, default=None
        The names of the features the detector reads. By default its ``feature_names_in_``
        when it was fitted on a DataFrame, else those that a pipeline's steps before it
        output (``get_feature_names_out``), else ``x0, x1, ...``.
    top : int, default=10
        How many features to show.
    ax : matplotlib Axes, default=None
        Where to draw; by default on a new figure.

    Returns
    -------
    ax : matplotlib Axes

    Raises
    ------
    ImportError
        If matplotlib is not installed.

    See Also
    --------
    AutoEncoderOutlierDetector.outlier_contributions : The numbers drawn.

    Examples
    --------
    >>> import numpy as np
    >>> from skae import AutoEncoderOutlierDetector, plot_outlier_contributions
    >>> X = np.random.default_rng(0).normal(size=(250, 10))
    >>> detector = AutoEncoderOutlierDetector(random_state=0, device="cpu").fit(X)
    >>> ax = plot_outlier_contributions(detector, X[0], top=5)  # doctest: +SKIP
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "plot_outlier_contributions needs matplotlib, which is not installed: "
            "pip install matplotlib"
        ) from error
    top = check_int("top", top, low=1)
    row = _one_row(x)
    preprocessing = None
    if hasattr(detector, "steps"):  # a pipeline: explain what its detector reads
        preprocessing, detector = detector[:-1], detector[-1]
        row = preprocessing.transform(row)
    contributions = detector.outlier_contributions(row)[0]
    n_features = len(contributions)
    if feature_names is None:
        feature_names = getattr(detector, "feature_names_in_", None)
    if feature_names is None and preprocessing is not None:
        try:
            feature_names = preprocessing.get_feature_names_out()
        except AttributeError:  # a step that does not name its outputs
            pass
    if feature_names is None:
        feature_names = [f"x{i}" for i in range(n_features)]
    names = np.asarray([str(name) for name in feature_names], dtype=object)
    if len(names) != n_features:
        raise ValueError(
            f"feature_names has {len(names)} names, but the detector reads {n_features} features."
        )

    shown = np.argsort(-contributions, kind="stable")[:top]
    values = contributions[shown]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.6 + 0.35 * len(shown)))
    positions = np.arange(len(shown))
    ax.barh(positions, values, color=np.where(values >= 0, "tab:red", "tab:blue"))
    ax.set_yticks(positions, labels=names[shown])
    ax.invert_yaxis()  # the largest on top
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("contribution to the outlier measure (-score_samples)")
    ax.set_title(
        f"Outlier measure {contributions.sum():.3g}: the {len(shown)} largest of "
        f"{n_features} features"
    )
    return ax


def _one_row(x):
    """``x`` as a 2-D input of one row: a Series becomes a one-row DataFrame (its index the
    feature names), a 1-D array one row."""
    if getattr(x, "ndim", None) == 1 and hasattr(x, "to_frame"):  # a pandas Series
        x = x.to_frame().T
    elif not hasattr(x, "shape"):
        x = np.asarray(x)
    if len(x.shape) == 1:
        x = x.reshape(1, -1)
    if len(x.shape) != 2 or x.shape[0] != 1:
        raise ValueError(
            f"x must be one row, of shape (n_features,) or (1, n_features); got shape "
            f"{tuple(x.shape)}."
        )
    return x
