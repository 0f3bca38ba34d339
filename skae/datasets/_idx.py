"""Reader for the IDX format used by MNIST and Fashion-MNIST.

The format (described with the original MNIST release) is a 4-byte magic number whose first two
bytes are zero, the third a type code and the fourth the number of dimensions, then one
big-endian uint32 per dimension, then the values in C order.
"""

from __future__ import annotations

import gzip
import zlib
from math import prod
from pathlib import Path

import numpy as np

__all__ = ["decompress_gzip", "parse_idx", "read_idx"]

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def decompress_gzip(blob: bytes, *, name: str = "<bytes>") -> bytes:
    """Decompress gzip data, turning every kind of corruption into a ValueError naming ``name``.

    Parameters
    ----------
    blob : bytes
        The content of a ``.gz`` file.
    name : str, default="<bytes>"
        What to call the data in error messages, usually the file path.

    Returns
    -------
    data : bytes
        The decompressed bytes.

    Raises
    ------
    ValueError
        If ``blob`` is not gzip data, is truncated, or fails its CRC check.
    """
    if not blob:
        # gzip.decompress accepts zero members, but an empty file is never a valid download.
        raise ValueError(f"{name}: not a valid gzip file (empty)")
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        # gzip reports a bad header, a truncated stream and a bad CRC with three unrelated
        # exception types; callers only need to know that the file cannot be used.
        raise ValueError(f"{name}: not a valid gzip file ({type(exc).__name__}: {exc})") from exc


def parse_idx(data: bytes, *, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into an array.

    Parameters
    ----------
    data : bytes
        The whole content of the IDX file.
    name : str, default="<bytes>"
        What to call the data in error messages, usually the file path.

    Returns
    -------
    array : ndarray
        An array of the shape given in the header and the dtype given by its type code (0x08 is
        uint8), in native byte order. For one-byte types it is a read-only view of ``data``.

    Raises
    ------
    ValueError
        If the magic number or type code is invalid, or the payload is not exactly as long as
        the dimensions require.

    Examples
    --------
    >>> import numpy as np
    >>> from skae.datasets._idx import parse_idx
    >>> parse_idx(bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9]))
    array([7, 8, 9], dtype=uint8)
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an IDX file (bad magic number {data[:4].hex() or 'none'})")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{name}: unknown IDX type code 0x{type_code:02X}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} of {header_size} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = prod(shape) * dtype.itemsize
    actual = len(data) - header_size
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"{name}: IDX payload {problem}: {actual} bytes, expected {expected} for shape {shape}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed when its name ends in ``.gz``.

    Parameters
    ----------
    path : str or Path
        The file to read.

    Returns
    -------
    array : ndarray
        As returned by :func:`parse_idx`.

    Raises
    ------
    ValueError
        If the file is not valid gzip or not a valid IDX file; the message names the file.
    """
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = decompress_gzip(data, name=str(path))
    return parse_idx(data, name=str(path))
