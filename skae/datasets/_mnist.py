"""Loaders for MNIST and Fashion-MNIST from their original IDX files."""

from __future__ import annotations

import numpy as np
from sklearn.utils import Bunch

from ._fetch import Checksum, fetch_dataset_files
from ._idx import parse_idx

__all__ = ["load_fashion_mnist", "load_mnist"]

IMAGE_SHAPE = (28, 28)

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: Base URLs tried in turn for each dataset; every file is verified whatever its source.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
}

# MNIST copies in circulation are recompressed (their .gz digests differ between mirrors), so
# MNIST is identified by the md5 of the uncompressed bytes, which LeCun's files define.
# Fashion-MNIST accepts either the .gz md5s published by Zalando Research or the md5 of the
# uncompressed bytes (measured on Debian's dataset-fashion-mnist package, which recompresses).
#: Known digests of each file, per dataset.
CHECKSUMS: dict[str, dict[str, Checksum]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": Checksum(uncompressed_md5="6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte.gz": Checksum(uncompressed_md5="a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte.gz": Checksum(uncompressed_md5="2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte.gz": Checksum(uncompressed_md5="27ae3e4e09519cfbb04c329615203637"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": Checksum(
            uncompressed_md5="f4a8712d7a061bf5bd6d2ca38dc4d50a",
            gzip_md5=("8d4fb7e6c68d591d4c3dfef9ec88bf0d",),
        ),
        "train-labels-idx1-ubyte.gz": Checksum(
            uncompressed_md5="9018921c3c673c538a1fc5bad174d6f9",
            gzip_md5=("25c81989df183df01b3e8a0aad5dffbe",),
        ),
        "t10k-images-idx3-ubyte.gz": Checksum(
            uncompressed_md5="8181f5470baa50b63fa0f6fddb340f0a",
            gzip_md5=("bef4ecab320f06d8554ea6380940ec79",),
        ),
        "t10k-labels-idx1-ubyte.gz": Checksum(
            uncompressed_md5="15d484375f8d13e6eb1aabb0c3f46965",
            gzip_md5=("bb300cfdad3c16e7a12a480ee83fd310",),
        ),
    },
}

#: Number of samples expected in each split, per dataset.
SPLIT_SIZES: dict[str, dict[str, int]] = {
    "mnist": {"train": 60_000, "test": 10_000},
    "fashion-mnist": {"train": 60_000, "test": 10_000},
}

_TARGET_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}

_DESCR_TEMPLATE = """\
{title}
{underline}

{what}

Source: {source}

Files: the original IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz, each verified against a known md5
checksum before use.

Standard split: {n_train} training and {n_test} test images of 28x28 grayscale pixels,
10 classes ({classes}).

X_train and X_test: float32 arrays of shape (n_samples, 784), one row per image flattened in
row-major order (feature pixel_<row>_<col>), pixel intensities divided by 255 so they lie in
[0, 1]. y_train and y_test: int64 class labels 0..9; target_names[label] names the class.
"""

_DESCRIPTIONS = {
    "mnist": dict(
        title="MNIST handwritten digits",
        what="Handwritten digits 0-9, size-normalized and centered (LeCun, Cortes and Burges).",
        source="Yann LeCun, Corinna Cortes and Christopher J.C. Burges, "
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": dict(
        title="Fashion-MNIST",
        what="Zalando article images in 10 clothing classes, a drop-in replacement for MNIST "
        "(Xiao, Rasul and Vollgraf, 2017, arXiv:1708.07747).",
        source="Zalando Research, https://github.com/zalandoresearch/fashion-mnist",
    ),
}


def load_mnist(*, subset=None, data_home=None, download=True, return_X_y=False, as_frame=False):
    """Load the MNIST handwritten digits (standard train/test split), pixels scaled to [0, 1].

    The 60,000 training and 10,000 test images of 28x28 pixels are returned as float32 rows of
    784 values: each pixel's 0..255 intensity divided by 255.

    Parameters
    ----------
    subset : {"train", "test"} or None, default=None
        Which split to return: None for both (a Bunch with ``X_train``, ``y_train``,
        ``X_test``, ``y_test``), or one of them alone (as scikit-learn's loaders do: a Bunch
        with ``data`` and ``target``, or ``(X, y)`` with ``return_X_y``); only that split's
        files are read.
    data_home : str or path-like, default=None
        Folder holding one subfolder per dataset; the files are read from (and downloaded
        into) ``<data_home>/mnist/``. Defaults to the ``SKAE_DATA`` environment variable,
        else scikit-learn's data home (``$SCIKIT_LEARN_DATA``, else ``~/scikit_learn_data``).
        Read-only system copies in ``/usr/share/datasets/mnist/`` are used too.
    download : bool, default=True
        Whether to download files that are missing or fail their checksum. A download says
        where the files go and shows a progress bar per file on stderr (``TQDM_DISABLE=1``
        silences the bars); files are verified before they are stored, and folders created
        for a download that fails are removed. Nothing is written when ``download=False``.
    return_X_y : bool, default=False
        If True, return the ``subset``'s ``(X, y)`` instead of a Bunch, the pair every
        scikit-learn loader returns. Needs ``subset``: ``X_train, y_train =
        load_mnist(subset="train", return_X_y=True)``.
    as_frame : bool, default=False
        If True, the images are pandas DataFrames with columns ``feature_names`` and the
        labels pandas Series named ``"label"``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with attributes:

        X_train : ndarray of shape (60000, 784), dtype float32, or DataFrame
            Training images, flattened row by row, pixel values divided by 255 (in [0, 1]).
        y_train : ndarray of shape (60000,), dtype int64, or Series
            Training labels 0..9.
        X_test : ndarray of shape (10000, 784), dtype float32, or DataFrame
            Test images, scaled as ``X_train``.
        y_test : ndarray of shape (10000,), dtype int64, or Series
            Test labels 0..9.
        feature_names : list of str
            ``"pixel_<row>_<col>"`` for each of the 784 columns.
        target_names : ndarray of str, shape (10,)
            Class names; ``target_names[y]`` names the class of label ``y``.
        image_shape : tuple of int
            ``(28, 28)``; ``X[i].reshape(image_shape)`` is the i-th image.
        name : str
            ``"mnist"``.
        DESCR : str
            Description of the dataset.

        With ``subset="train"`` or ``"test"``: ``data`` and ``target``, that split's images
        and labels, in place of the four above.

    (X, y) : tuple
        The ``subset``'s images and labels, returned instead when ``return_X_y`` is True.

    Raises
    ------
    ValueError
        If ``return_X_y`` is True without a ``subset``: which split ``(X, y)`` is would be a
        guess, and four arrays are easily unpacked in the wrong order.
    DatasetUnavailableError
        A subclass of :class:`OSError`, raised if some file has no valid local copy and cannot
        be downloaded (e.g. without network access, or with ``download=False``). Its message
        names the missing files, their checksums, the URLs tried and the folder to put them
        in (or that ``SKAE_DATA`` / ``data_home`` can point elsewhere).

    Examples
    --------
    >>> from skae.datasets import load_mnist
    >>> mnist = load_mnist()  # doctest: +SKIP
    >>> mnist.X_train.shape, mnist.X_train.dtype  # doctest: +SKIP
    ((60000, 784), dtype('float32'))
    >>> X_train, y_train = load_mnist(subset="train", return_X_y=True)  # doctest: +SKIP
    >>> X_test, y_test = load_mnist(subset="test", return_X_y=True)  # doctest: +SKIP
    """
    return _load("mnist", subset, data_home, download, return_X_y, as_frame)


def load_fashion_mnist(
    *, subset=None, data_home=None, download=True, return_X_y=False, as_frame=False
):
    """Load Fashion-MNIST (standard train/test split), pixels scaled to [0, 1].

    The 60,000 training and 10,000 test images of 28x28 pixels (Zalando articles in 10
    classes) are returned as float32 rows of 784 values: each pixel's 0..255 intensity divided
    by 255.

    Parameters
    ----------
    subset : {"train", "test"} or None, default=None
        Which split to return: None for both (a Bunch with ``X_train``, ``y_train``,
        ``X_test``, ``y_test``), or one of them alone (as scikit-learn's loaders do: a Bunch
        with ``data`` and ``target``, or ``(X, y)`` with ``return_X_y``); only that split's
        files are read.
    data_home : str or path-like, default=None
        Folder holding one subfolder per dataset; the files are read from (and downloaded
        into) ``<data_home>/fashion-mnist/``. Defaults to the ``SKAE_DATA`` environment variable,
        else scikit-learn's data home (``$SCIKIT_LEARN_DATA``, else ``~/scikit_learn_data``).
        Read-only system copies in ``/usr/share/datasets/fashion-mnist/`` are used too.
    download : bool, default=True
        Whether to download files that are missing or fail their checksum. A download says
        where the files go and shows a progress bar per file on stderr (``TQDM_DISABLE=1``
        silences the bars); files are verified before they are stored, and folders created
        for a download that fails are removed. Nothing is written when ``download=False``.
    return_X_y : bool, default=False
        If True, return the ``subset``'s ``(X, y)`` instead of a Bunch, the pair every
        scikit-learn loader returns. Needs ``subset``: ``X_train, y_train =
        load_fashion_mnist(subset="train", return_X_y=True)``.
    as_frame : bool, default=False
        If True, the images are pandas DataFrames with columns ``feature_names`` and the
        labels pandas Series named ``"label"``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with attributes:

        X_train : ndarray of shape (60000, 784), dtype float32, or DataFrame
            Training images, flattened row by row, pixel values divided by 255 (in [0, 1]).
        y_train : ndarray of shape (60000,), dtype int64, or Series
            Training labels 0..9.
        X_test : ndarray of shape (10000, 784), dtype float32, or DataFrame
            Test images, scaled as ``X_train``.
        y_test : ndarray of shape (10000,), dtype int64, or Series
            Test labels 0..9.
        feature_names : list of str
            ``"pixel_<row>_<col>"`` for each of the 784 columns.
        target_names : ndarray of str, shape (10,)
            Class names; ``target_names[y]`` names the class of label ``y``.
        image_shape : tuple of int
            ``(28, 28)``; ``X[i].reshape(image_shape)`` is the i-th image.
        name : str
            ``"fashion-mnist"``.
        DESCR : str
            Description of the dataset.

        With ``subset="train"`` or ``"test"``: ``data`` and ``target``, that split's images
        and labels, in place of the four above.

    (X, y) : tuple
        The ``subset``'s images and labels, returned instead when ``return_X_y`` is True.

    Raises
    ------
    ValueError
        If ``return_X_y`` is True without a ``subset``: which split ``(X, y)`` is would be a
        guess, and four arrays are easily unpacked in the wrong order.
    DatasetUnavailableError
        A subclass of :class:`OSError`, raised if some file has no valid local copy and cannot
        be downloaded (e.g. without network access, or with ``download=False``). Its message
        names the missing files, their checksums, the URLs tried and the folder to put them
        in (or that ``SKAE_DATA`` / ``data_home`` can point elsewhere).

    Examples
    --------
    >>> from skae.datasets import load_fashion_mnist
    >>> fashion = load_fashion_mnist()  # doctest: +SKIP
    >>> fashion.target_names[fashion.y_train[:3]]  # doctest: +SKIP
    array(['Ankle boot', 'T-shirt/top', 'T-shirt/top'], dtype='<U11')
    """
    return _load("fashion-mnist", subset, data_home, download, return_X_y, as_frame)


def _load(name: str, subset, data_home, download: bool, return_X_y: bool, as_frame: bool):
    splits = _check_subset(name, subset, return_X_y)
    files = {file for split in splits for file in _SPLIT_FILES[split]}
    checksums = {file: digest for file, digest in CHECKSUMS[name].items() if file in files}
    payloads = fetch_dataset_files(
        name, checksums, MIRRORS[name], data_home=data_home, download=download
    )
    feature_names = _feature_names()
    loaded = {}
    for split in splits:
        images_file, labels_file = _SPLIT_FILES[split]
        X, y = _decode_split(payloads, images_file, labels_file, SPLIT_SIZES[name][split])
        loaded[split] = _as_frame(X, y, feature_names) if as_frame else (X, y)
    if return_X_y:
        return loaded[subset]
    if subset is None:
        (X_train, y_train), (X_test, y_test) = loaded["train"], loaded["test"]
        arrays = dict(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
    else:
        arrays = dict(zip(("data", "target"), loaded[subset], strict=True))
    return Bunch(
        **arrays,
        feature_names=feature_names,
        target_names=np.asarray(_TARGET_NAMES[name]),
        image_shape=IMAGE_SHAPE,
        name=name,
        DESCR=_describe(name),
    )


def _check_subset(name: str, subset, return_X_y: bool) -> tuple[str, ...]:
    """The splits to read; refuses return_X_y without a subset, before any file is read."""
    if subset is not None and subset not in _SPLIT_FILES:
        raise ValueError(f"subset={subset!r} is invalid: expected 'train', 'test' or None.")
    loader = "load_" + name.replace("-", "_")
    if return_X_y and subset is None:
        # Four arrays from one call invite train_test_split's order (X_train, X_test, ...),
        # and the mix-up surfaced far away, as a y of 784 columns.
        raise ValueError(
            f"{loader}(return_X_y=True) needs a subset: it returns one split's (X, y), as "
            f"scikit-learn's loaders do. Use X_train, y_train = {loader}(subset='train', "
            f"return_X_y=True) and X_test, y_test = {loader}(subset='test', return_X_y=True), "
            f"or data = {loader}() for both splits as data.X_train, data.y_train, "
            "data.X_test, data.y_test."
        )
    return tuple(_SPLIT_FILES) if subset is None else (subset,)


def _decode_split(
    payloads: dict[str, bytes], images_file: str, labels_file: str, n_expected: int
) -> tuple[np.ndarray, np.ndarray]:
    images = parse_idx(payloads[images_file], name=images_file)
    labels = parse_idx(payloads[labels_file], name=labels_file)
    if images.dtype != np.uint8 or images.shape != (n_expected, *IMAGE_SHAPE):
        raise ValueError(
            f"{images_file}: expected {n_expected} uint8 images of {IMAGE_SHAPE}, "
            f"got {images.dtype} array of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.shape != (n_expected,):
        raise ValueError(
            f"{labels_file}: expected {n_expected} uint8 labels, "
            f"got {labels.dtype} array of shape {labels.shape}"
        )
    if labels.max(initial=0) > 9:
        raise ValueError(f"{labels_file}: labels outside 0..9 (max {labels.max()})")
    # One pass from uint8 straight to float32, without a float64 intermediate.
    X = np.divide(images.reshape(n_expected, -1), np.float32(255), dtype=np.float32)
    return X, labels.astype(np.int64)


def _feature_names() -> list[str]:
    rows, cols = IMAGE_SHAPE
    return [f"pixel_{row}_{col}" for row in range(rows) for col in range(cols)]


def _as_frame(X: np.ndarray, y: np.ndarray, feature_names: list[str]):
    import pandas as pd

    # X is freshly built and owned by nobody else, so the frame may wrap it without a copy.
    return pd.DataFrame(X, columns=feature_names, copy=False), pd.Series(y, name="label")


def _describe(name: str) -> str:
    info = _DESCRIPTIONS[name]
    sizes = SPLIT_SIZES[name]
    return _DESCR_TEMPLATE.format(
        underline="=" * len(info["title"]),
        n_train=sizes["train"],
        n_test=sizes["test"],
        classes=", ".join(_TARGET_NAMES[name]),
        **info,
    )
