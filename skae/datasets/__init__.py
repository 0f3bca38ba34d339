"""Datasets for trying autoencoders: MNIST and Fashion-MNIST as float32 arrays in [0, 1].

Files are looked up in ``<data_home>/<name>/`` (``data_home`` defaults to ``$SKAE_DATA``, else
scikit-learn's data home) and in system-installed copies, verified against known checksums, and
downloaded from public mirrors when missing, with a progress bar per file on stderr. Without
network access, put the four ``*-ubyte.gz`` files in that folder yourself: the error raised
(:class:`DatasetUnavailableError`) names them and the folder.
"""

from ._fetch import DatasetUnavailableError
from ._mnist import load_fashion_mnist, load_mnist

__all__ = ["DatasetUnavailableError", "load_fashion_mnist", "load_mnist"]
