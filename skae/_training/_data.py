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
BLOCK_ROWS = 1024

# The shuffle buffer of streamed training: 32 MiB of float32 rows (10,700 MNIST images, from
# about ten blocks). Two are held at a time: the one training and the one being read.
SHUFFLE_BUFFER_BYTES = 32 * 2**20


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


def block_bounds(X, block_rows=None):
    """``[(start, stop), ...]`` over the rows of X, along its own chunks where it has them.

    Consecutive chunks are grouped into blocks of at least ``block_rows`` rows (by default
    BLOCK_ROWS, or a sixteenth of the rows if fewer, so that a validation split and the
    shuffle have blocks to choose from), so that a dask array is computed chunk by chunk
    (never a chunk twice) and zarr or h5py reads are not tiny.
    """
    n_rows = X.shape[0]
    if block_rows is None:
        block_rows = max(1, min(BLOCK_ROWS, math.ceil(n_rows / 16)))
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
        self.bounds = block_bounds(X) if bounds is None else bounds
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

    def _read(self, bounds, buffer=None):
        """Rows of the given blocks, checked, as a float32 host tensor (pinned for CUDA): a
        view of ``buffer`` when given, else a new tensor.

        Each block is checked and copied into place, so that reading costs the buffer and one
        block, not twice the buffer.
        """
        n_rows = sum(stop - start for start, stop in bounds)
        if buffer is None:
            buffer = self._new_buffer(n_rows)
        rows = buffer[:n_rows]
        out, offset = rows.numpy(), 0
        for start, stop in bounds:
            out[offset : offset + stop - start] = self.check_block(self.X[start:stop])
            offset += stop - start
        return rows

    def _new_buffer(self, n_rows):
        pin = self.device.type == "cuda"
        return torch.empty((n_rows, self.X.shape[1]), dtype=torch.float32, pin_memory=pin)

    def _to_model(self, rows):
        if self.device.type == "cpu":
            return self.scaling.to_model_(rows)  # in the host buffer itself: no copy
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
        seeded order, rows shuffled within the buffer. The rows of a buffer that do not fill a
        batch open the next buffer's first batch.

        Two buffers, allocated once per epoch, take turns: a thread reads the next group of
        blocks into one while the other trains. On CUDA, the reader waits for the previous
        copy out of a pinned buffer to finish before it overwrites it.
        """
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        groups = list(self._buffers(rng.permutation(len(self.bounds))))
        size = max(sum(stop - start for start, stop in group) for group in groups)
        buffers = [self._new_buffer(size) for _ in range(min(2, len(groups)))]
        copied = [None] * len(buffers)  # CUDA events: a buffer's rows reached the device

        def read(index):
            slot = index % len(buffers)
            if copied[slot] is not None:
                copied[slot].synchronize()
            return self._read(groups[index], buffers[slot])

        steps, carried = 0, None
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(read, 0)
            for index in range(len(groups)):
                rows = self._to_model(pending.result())
                if self.device.type == "cuda":
                    copied[index % len(buffers)] = torch.cuda.Event()
                    copied[index % len(buffers)].record()
                if index + 1 < len(groups):
                    pending = reader.submit(read, index + 1)
                order = torch.randperm(rows.shape[0], generator=generator).to(self.device)
                start = 0
                if carried is not None:
                    start = min(batch_size - carried.shape[0], rows.shape[0])
                    carried = torch.cat([carried, rows.index_select(0, order[:start])])
                    if carried.shape[0] < batch_size:
                        continue
                    yield carried
                    steps, carried = steps + 1, None
                while start + batch_size <= rows.shape[0]:
                    yield rows.index_select(0, order[start : start + batch_size])
                    steps, start = steps + 1, start + batch_size
                if start < rows.shape[0]:
                    carried = rows.index_select(0, order[start:])
        if carried is not None:
            yield carried
            steps += 1
        empty = torch.empty((0, self.X.shape[1]), device=self.device)
        for _ in range(n_steps - steps):
            yield empty

    def chunks(self, chunk_rows=INFERENCE_CHUNK_ROWS):
        """The rows block by block, in order."""
        for start, stop in self.bounds:
            yield self._to_model(self._read([(start, stop)]))


def training_rows(X, scaling, device, check_block):
    """The rows to train on: streamed for out-of-core X, and for in-memory X too large for
    the GPU's free memory (it is read from host memory a buffer at a time); else held on the
    device."""
    if is_out_of_core(X):
        return StreamedRows(X, scaling, device, check_block)
    if not sp.issparse(X) and not fits_on_device(4 * X.shape[0] * X.shape[1], device):
        # X was validated whole already: a block needs only its float32 conversion.
        return StreamedRows(X, scaling, device, lambda block: np.asarray(block, np.float32))
    return InMemoryRows(X, scaling, device)


def fits_on_device(n_bytes, device):
    """Whether ``n_bytes`` of training data may be copied to ``device`` whole: always on the
    CPU (it is the host's memory), up to half the free memory of a GPU (the rest is for the
    network, its batches and other processes)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes <= free // 2


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

    Out-of-core X is read block by block (``block_bounds``) and each block passed through
    ``check_block``; in-memory X is cut into ``chunk_rows`` rows.
    """
    if is_out_of_core(X):
        # Along the array's own chunks: a dask chunk is computed once, a zarr chunk read once.
        for start, stop in block_bounds(X):
            yield start, check_block(X[start:stop])
        return
    if sp.issparse(X) and X.format not in ("csr", "csc"):
        X = X.tocsr()  # COO and others cannot be sliced by rows
    for start in range(0, X.shape[0], chunk_rows):
        block = X[start : start + chunk_rows]
        yield start, block.toarray() if sp.issparse(block) else block


def iter_chunks(X, device, check_block=None, chunk_rows=INFERENCE_CHUNK_ROWS):
    """As ``iter_blocks``, each chunk a float32 tensor on ``device``."""
    for start, block in iter_blocks(X, check_block, chunk_rows):
        yield start, as_float32_tensor(block, device)


def map_in_chunks(fn, X, n_out, device, check_block=None, chunk_rows=INFERENCE_CHUNK_ROWS):
    """Apply ``fn`` (float32 tensor -> tensor of ``n_out`` columns) to X chunk by chunk.

    Returns a float32 numpy array of shape (n_samples, n_out). Peak extra memory is the output
    plus one chunk's intermediates, independent of the number of samples.
    """
    out = np.empty((X.shape[0], n_out), dtype=np.float32)
    with torch.inference_mode():
        for start, x in iter_chunks(X, device, check_block, chunk_rows):
            out[start : start + x.shape[0]] = fn(x).cpu().numpy()
    return out
