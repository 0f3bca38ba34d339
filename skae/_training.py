"""The training engine: rows on the device, seeded shuffling, batched epochs, chunked inference.

The data set is held as one float32 tensor on the device and batches are slices of a seeded
permutation: a per-sample DataLoader costs 10-100x more on in-memory data. Sparse input stays
sparse on the host and is densified one batch at a time.
"""

import math
import warnings

import numpy as np
import scipy.sparse as sp
import torch

# Rows per chunk in transform / inverse_transform / score: bounds the working set to a few tens
# of MB whatever the number of samples (8192 x 784 float32 is 25 MB per intermediate).
INFERENCE_CHUNK_ROWS = 8192


def as_float32_tensor(array, device):
    """A float32 tensor of a numpy array on ``device``, sharing memory where it can."""
    with warnings.catch_warnings():
        # Read-only arrays (memmaps) are shared too: nothing here writes to these tensors.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(np.asarray(array), dtype=torch.float32).to(device)


class Rows:
    """Rows of X in the model's units, ready to be taken by index on the device."""

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
        """A Rows over the given rows only (``index`` is a numpy array)."""
        part = Rows.__new__(Rows)
        part.device, part.scaling, part.n_rows = self.device, self.scaling, len(index)
        if self._dense is not None:
            part._sparse = None
            part._dense = self._dense.index_select(0, torch.as_tensor(index, device=self.device))
        else:
            part._sparse, part._dense = self._sparse[index], None
        return part


class TrainingStep:
    """One optimizer step on a batch: forward, loss, backward (by autograd), update."""

    def __init__(self, compute_loss, optimizer):
        self.compute_loss = compute_loss
        self.optimizer = optimizer

    def set_learning_rate(self, rate):
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(rate)  # in place: a captured CUDA graph reads this tensor
            else:
                group["lr"] = rate

    def __call__(self, x):
        loss = self.compute_gradients(x)
        self.optimizer.step()
        return loss

    def compute_gradients(self, x):
        """Set each parameter's ``.grad`` to the gradient of the loss on x; return the loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.compute_loss(x)
        loss.backward()
        return loss


class CudaGraphStep(TrainingStep):
    """The same step, captured once in a CUDA graph and replayed for every full batch.

    An eager step of a small MLP is dozens of tiny kernel launches, which leave a GPU idle;
    a replay launches them all at once. The graph reads its input from a fixed buffer, so each
    batch is copied there first. Partial batches (another shape) run eagerly. The step must
    draw no random numbers and the optimizer must be capturable with a tensor learning rate
    (see ``BaseAutoEncoder._make_optimizer``).
    """

    warmup_steps = 3  # eager steps on a side stream before capture, as CUDA graphs require

    def __init__(self, compute_loss, optimizer, batch_size):
        super().__init__(compute_loss, optimizer)
        self.batch_size = batch_size
        self.graph = None
        self.steps_warmed_up = 0

    def __call__(self, x):
        if x.shape[0] != self.batch_size:
            return super().__call__(x)
        if self.graph is None:
            if self.steps_warmed_up < self.warmup_steps:
                return self._warm_up(x)
            self._capture(x)
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_loss

    def _warm_up(self, x):
        stream = torch.cuda.Stream(x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            loss = super().__call__(x)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        self.steps_warmed_up += 1
        return loss

    def _capture(self, x):
        # Capture records kernels without running them; the caller then replays for this batch.
        self.static_input = torch.empty_like(x)
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            loss = self.compute_loss(self.static_input)
            loss.backward()
            self.optimizer.step()
        self.static_loss = loss


def load_optimizer_state(optimizer, saved):
    """Load the per-parameter state (Adam's moments) of ``saved`` into ``optimizer``.

    The group options are this optimizer's own (fused, capturable, a float or tensor learning
    rate): they belong to the device it lives on now, which may differ from the saved one's.
    """
    optimizer.load_state_dict(
        {"state": saved["state"], "param_groups": optimizer.state_dict()["param_groups"]}
    )


def permutation(n_rows, seed, device):
    """A seeded permutation of ``range(n_rows)``, drawn on the CPU so every device agrees."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_rows, generator=generator).to(device, non_blocking=True)


def run_epoch(train_step, rows, batch_size, seed, learning_rates):
    """Train once over ``rows`` in shuffled batches; return the mean loss as a 0-d tensor.

    ``learning_rates`` yields the rate of each step. The loss is accumulated on the device, so
    no step waits for the host. The last partial batch is trained on, never dropped.
    """
    order = permutation(rows.n_rows, seed, rows.device)
    total = torch.zeros((), device=rows.device)
    for start in range(0, rows.n_rows, batch_size):
        index = order[start : start + batch_size]
        train_step.set_learning_rate(next(learning_rates))
        loss = train_step(rows.take(index))
        total += loss.detach() * index.numel()
    return total / rows.n_rows


def learning_rates(initial, schedule, total_steps=None):
    """Yield the learning rate of each step: constant, or a half cosine from ``initial`` to 0
    over ``total_steps`` (Loshchilov & Hutter, 2017)."""
    step = 0
    while True:
        if schedule == "cosine" and total_steps:
            yield 0.5 * initial * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        else:
            yield initial
        step += 1


def iter_chunks(X, device, chunk_rows=INFERENCE_CHUNK_ROWS):
    """Yield ``(start, chunk)`` over the rows of X, each chunk a float32 tensor on ``device``."""
    for start in range(0, X.shape[0], chunk_rows):
        chunk = X[start : start + chunk_rows]
        if sp.issparse(chunk):
            chunk = chunk.toarray()
        yield start, as_float32_tensor(chunk, device)


def map_in_chunks(fn, X, n_out, device, chunk_rows=INFERENCE_CHUNK_ROWS):
    """Apply ``fn`` (float32 tensor -> float32 tensor) to X chunk by chunk.

    Returns a float32 numpy array of shape (n_samples, n_out). Peak extra memory is the output
    plus one chunk's intermediates, independent of the number of samples.
    """
    out = np.empty((X.shape[0], n_out), dtype=np.float32)
    with torch.inference_mode():
        for start, x in iter_chunks(X, device, chunk_rows):
            out[start : start + x.shape[0]] = fn(x).cpu().numpy()
    return out


def reduce_in_chunks(fn, X, device, chunk_rows=INFERENCE_CHUNK_ROWS):
    """Sum ``fn(chunk)`` (a 0-d tensor) over X chunk by chunk, as a Python float."""
    with torch.inference_mode():
        return sum(float(fn(x)) for _, x in iter_chunks(X, device, chunk_rows))
