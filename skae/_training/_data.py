"""Where the rows come from: held in memory, or streamed from an out-of-core array.

In memory (numpy arrays, DataFrames, scipy sparse matrices): the data set is one float32 tensor
on the device, and batches are slices of a seeded permutation, as a per-sample DataLoader would
cost 10-100x more. Sparse input stays sparse on the host and is densified one batch at a time.

Out of core (``np.memmap`` of any dtype, h5py and zarr arrays, dask arrays): rows are read one
block of consecutive rows at a time, checked and converted to float32, so the working set is a
shuffle buffer and a batch, whatever the number of rows. An epoch visits the blocks in a seeded
random order and fills a buffer of about ``SHUFFLE_BUFFER_BYTES`` with the next blocks; batches
are drawn from a random permutation of the buffer. Unlike a full shuffle, a batch then mixes
rows from the few dozen blocks in the buffer rather than from the whole data set, so data stored
sorted (by class, by time) should be given with blocks small against the buffer.
"""

import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch

# Rows per chunk in transform / inverse_transform / score: bounds the working set to a few tens
# of MB whatever the number of samples (8192 x 784 float32 is 25 MB per intermediate).
INFERENCE_CHUNK_ROWS = 8192

# Rows read at a time from an out-of-core array that has no chunks of its own (np.memmap), and
# the least a read covers when its chunks are smaller (zarr or h5py chunks of a few rows).
BLOCK_ROWS = 4096

# The shuffle buffer of streamed training: 64 MiB of float32 rows (21,000 MNIST images).
SHUFFLE_BUFFER_BYTES = 64 * 2**20


def is_out_of_core(X):
    """Whether X is read block by block rather than copied whole into memory.

    np.memmap, and chunked array containers (h5py and zarr arrays, dask arrays: anything with
    ``chunks``, ``shape`` and ``dtype`` that is not a numpy array).
    """
    if isinstance(X, np.memmap):
        return True
    if isinstance(X, np.ndarray) or sp.issparse(X):
        return False
    return all(hasattr(X, name) for name in ("chunks", "shape", "dtype"))


def as_float32_tensor(array, device):
    """A float32 tensor of a numpy array on ``device``, sharing memory where it can."""
    with warnings.catch_warnings():
        # Read-only arrays (memmaps) are shared too: nothing here writes to these tensors.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(np.asarray(array), dtype=torch.float32).to(device)


def block_bounds(X, block_rows=BLOCK_ROWS):
    """``[(start, stop), ...]`` over the rows of X, along its own chunks where it has them.

    Consecutive chunks are grouped into blocks of at least ``block_rows`` rows, so that a dask
    array is computed chunk by chunk (never a chunk twice) and zarr or h5py reads are not tiny.
    """
    n_rows = X.shape[0]
    chunks = getattr(X, "chunks", None)
    if chunks and isinstance(chunks[0], tuple):  # dask: the row sizes of every chunk
        edges = np.cumsum((0, *chunks[0])).tolist()
    elif chunks:  # h5py, zarr: one chunk shape for all
        edges = list(range(0, n_rows, int(chunks[0]))) + [n_rows]
    else:
        edges = list(range(0, n_rows, block_rows)) + [n_rows]
    bounds, start = [], 0
    for edge in edges[1:]:
        if edge - start >= block_rows or edge == n_rows:
            bounds.append((start, edge))
            start = edge
    return [(a, b) for a, b in bounds if b > a]


class InMemoryRows:
    """Rows of X in the model's units, held on the device and taken by index."""

    def __init__(self, X, scaling, device):
        self.device = device
        self.scaling = scaling
        self.n_rows = X.shape[0]
        if sp.issparse(X):
            self._sparse = X.tocsr().astype(np.float32)
            self._dense = None
        else:
            self._sparse = None
            # One copy at most: a float32 array on the CPU is used in place when no scaling
            # is needed (it is only read).
            self._dense = scaling.to_model(as_float32_tensor(X, device))

    def take(self, index):
        """Rows ``index`` (a LongTensor on the device) as a dense float32 tensor."""
        if self._dense is not None:
            return self._dense.index_select(0, index)
        dense = self._sparse[index.cpu().numpy()].toarray()
        return self.scaling.to_model(torch.from_numpy(dense).to(self.device))

    def subset(self, index):
        """An InMemoryRows over the given rows only (``index`` is a numpy array)."""
        part = InMemoryRows.__new__(InMemoryRows)
        part.device, part.scaling, part.n_rows = self.device, self.scaling, len(index)
        if self._dense is not None:
            part._sparse = None
            part._dense = self._dense.index_select(0, torch.as_tensor(index, device=self.device))
        else:
            part._sparse, part._dense = self._sparse[index], None
        return part

    def split(self, fraction, seed):
        """(training rows, validation rows): a seeded random ``fraction`` held out."""
        n_validation = _validation_size(fraction, self.n_rows, self.n_rows)
        order = np.random.default_rng(seed).permutation(self.n_rows)
        return self.subset(order[n_validation:]), self.subset(order[:n_validation])

    def batches(self, batch_size, n_steps, seed):
        """``n_steps`` batches of ``batch_size`` rows over a seeded permutation, once over every
        row; the last may be partial, and steps past the rows get empty batches."""
        order = permutation(self.n_rows, seed, self.device)
        for step in range(n_steps):
            yield self.take(order[step * batch_size : (step + 1) * batch_size])

    def chunks(self, chunk_rows=INFERENCE_CHUNK_ROWS):
        """The rows in order, ``chunk_rows`` at a time."""
        for start in range(0, self.n_rows, chunk_rows):
            stop = min(start + chunk_rows, self.n_rows)
            yield self.take(torch.arange(start, stop, device=self.device))


class StreamedRows:
    """Rows of an out-of-core X, read block by block and shuffled within a buffer.

    ``check_block`` turns the rows ``X[start:stop]`` into a checked float32 numpy array (the
    estimator's input validation, one block at a time).
    """

    def __init__(self, X, scaling, device, check_block, bounds=None):
        self.X = X
        self.scaling = scaling
        self.device = device
        self.check_block = check_block
        self.bounds = block_bounds(X, _block_rows(X)) if bounds is None else bounds
        self.n_rows = sum(stop - start for start, stop in self.bounds)
        self.buffer_rows = max(
            SHUFFLE_BUFFER_BYTES // (4 * max(1, X.shape[1])),
            max(stop - start for start, stop in self.bounds),
        )

    def _with_bounds(self, bounds):
        return StreamedRows(self.X, self.scaling, self.device, self.check_block, bounds)

    def split(self, fraction, seed):
        """(training rows, validation rows): a seeded random ``fraction`` of the blocks held out."""
        n_validation = _validation_size(fraction, len(self.bounds), self.n_rows, unit="blocks")
        order = np.random.default_rng(seed).permutation(len(self.bounds))
        held_out = sorted(order[:n_validation])
        kept = sorted(order[n_validation:])
        return (
            self._with_bounds([self.bounds[i] for i in kept]),
            self._with_bounds([self.bounds[i] for i in held_out]),
        )

    def _read(self, bounds):
        """Rows of the given blocks, checked, as one float32 host tensor (pinned for CUDA)."""
        parts = [self.check_block(self.X[start:stop]) for start, stop in bounds]
        # A copy, also of a single block: it may still be a view of a read-only memmap.
        rows = torch.from_numpy(np.concatenate(parts) if len(parts) > 1 else np.array(parts[0]))
        return rows.pin_memory() if self.device.type == "cuda" else rows

    def _to_model(self, rows):
        return self.scaling.to_model(rows.to(self.device, non_blocking=True))

    def _buffers(self, order):
        """Groups of blocks of about ``buffer_rows`` rows, in ``order``."""
        group, size = [], 0
        for i in order:
            start, stop = self.bounds[i]
            if group and size + stop - start > self.buffer_rows:
                yield group
                group, size = [], 0
            group.append((start, stop))
            size += stop - start
        if group:
            yield group

    def batches(self, batch_size, n_steps, seed):
        """``n_steps`` batches, once over every row, as ``InMemoryRows.batches``: blocks in a
        seeded order, rows shuffled within the buffer. The next buffer is read on a thread
        while this one trains."""
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        groups = list(self._buffers(rng.permutation(len(self.bounds))))
        steps = 0
        leftover = None
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(self._read, groups[0])
            for index in range(len(groups)):
                rows = self._to_model(pending.result())
                if index + 1 < len(groups):
                    pending = reader.submit(self._read, groups[index + 1])
                if leftover is not None:
                    rows = torch.cat([leftover, rows])
                order = torch.randperm(rows.shape[0], generator=generator).to(self.device)
                full = rows.shape[0] // batch_size * batch_size
                for start in range(0, full, batch_size):
                    yield rows.index_select(0, order[start : start + batch_size])
                    steps += 1
                leftover = rows.index_select(0, order[full:]) if full < rows.shape[0] else None
        if leftover is not None:
            yield leftover
            steps += 1
        empty = torch.empty((0, self.X.shape[1]), device=self.device)
        for _ in range(n_steps - steps):
            yield empty

    def chunks(self, chunk_rows=INFERENCE_CHUNK_ROWS):
        """The rows block by block, in order."""
        for start, stop in self.bounds:
            yield self._to_model(self._read([(start, stop)]))


def training_rows(X, scaling, device, check_block):
    """The rows to train on: streamed for out-of-core X, else held in memory."""
    if is_out_of_core(X):
        return StreamedRows(X, scaling, device, check_block)
    return InMemoryRows(X, scaling, device)


def _block_rows(X):
    # At least 16 blocks, so that a validation split and the shuffle have blocks to choose.
    return max(1, min(BLOCK_ROWS, math.ceil(X.shape[0] / 16)))


def _validation_size(fraction, n_units, n_rows, unit="samples"):
    n_validation = int(round(fraction * n_units))
    if n_validation < 1 or n_validation >= n_units:
        raise ValueError(
            f"early_stopping=True with validation_fraction={fraction} leaves "
            f"{n_validation} of {n_units} {unit} ({n_rows} rows) for validation: need at least "
            "one on each side. Use more samples, another validation_fraction, or "
            "early_stopping=False."
        )
    return n_validation


def permutation(n_rows, seed, device):
    """A seeded permutation of ``range(n_rows)``, drawn on the CPU so every device agrees."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_rows, generator=generator).to(device, non_blocking=True)


# -- inference ---------------------------------------------------------------------------------


def iter_blocks(X, check_block=None, chunk_rows=INFERENCE_CHUNK_ROWS):
    """Yield ``(start, block)`` over the rows of X, each block a dense numpy array.

    Out-of-core X is read block by block and each block passed through ``check_block``.
    """
    out_of_core = is_out_of_core(X)
    if sp.issparse(X) and X.format not in ("csr", "csc"):
        X = X.tocsr()  # COO and others cannot be sliced by rows
    for start in range(0, X.shape[0], chunk_rows):
        block = X[start : start + chunk_rows]
        if out_of_core:
            block = check_block(block)
        elif sp.issparse(block):
            block = block.toarray()
        yield start, block


def iter_chunks(X, device, check_block=None, chunk_rows=INFERENCE_CHUNK_ROWS):
    """As ``iter_blocks``, each chunk a float32 tensor on ``device``."""
    for start, block in iter_blocks(X, check_block, chunk_rows):
        yield start, as_float32_tensor(block, device)


def map_in_chunks(fn, X, n_out, device, check_block=None, chunk_rows=INFERENCE_CHUNK_ROWS):
    """Apply ``fn`` (float32 tensor -> float32 tensor) to X chunk by chunk.

    Returns a float32 numpy array of shape (n_samples, n_out). Peak extra memory is the output
    plus one chunk's intermediates, independent of the number of samples.
    """
    out = np.empty((X.shape[0], n_out), dtype=np.float32)
    with torch.inference_mode():
        for start, x in iter_chunks(X, device, check_block, chunk_rows):
            out[start : start + x.shape[0]] = fn(x).cpu().numpy()
    return out


def reduce_in_chunks(fn, X, device, check_block=None, chunk_rows=INFERENCE_CHUNK_ROWS):
    """Sum ``fn(chunk)`` (a 0-d tensor) over X chunk by chunk, as a Python float."""
    with torch.inference_mode():
        return sum(float(fn(x)) for _, x in iter_chunks(X, device, check_block, chunk_rows))
