"""Data-parallel training through torch.distributed: one model on the union of every process's rows.

When a script runs under ``torchrun`` (``torch.distributed.is_initialized()``), each process
passes the rows it holds and all of them train the same network:

* statistics of the data (row counts, the input scaling) are reduced over the union;
* every process takes the same number of optimizer steps per epoch, each on its share of a
  global batch (in proportion to its rows, so shards may differ in size), and the gradients are
  averaged over the global batch by one all-reduce per step, so every rank ends with identical
  weights;
* the numbers the stopping rules read (epoch loss, validation error) are reduced too, so every
  rank decides alike and none waits for a collective that another has skipped.

gloo reduces CPU tensors and NCCL CUDA tensors; each rank trains on its own device (see
``skae._validation.resolve_device``).
"""

import math

import torch
import torch.distributed as dist

_OPS = {"sum": "SUM", "min": "MIN", "max": "MAX"}


class SingleProcess:
    """The process group of a plain, single-process fit: every reduction is the identity."""

    world_size = 1
    rank = 0

    def all_reduce(self, tensor, op="sum"):
        return tensor

    def broadcast_seed(self, seed):
        return seed

    def all_reduce_(self, tensor):
        return tensor

    def reduce_sum(self, *values):
        return values


class ProcessGroup(SingleProcess):
    """The default torch.distributed process group, with the reductions training needs."""

    def __init__(self, device):
        self.world_size = dist.get_world_size()
        self.rank = dist.get_rank()
        # NCCL reduces CUDA tensors only; gloo reduces CPU tensors.
        self.device = device if dist.get_backend() == "nccl" else torch.device("cpu")

    def all_reduce(self, tensor, op="sum"):
        """``tensor`` reduced over all processes (a new tensor on ``tensor``'s device)."""
        reduced = tensor.to(self.device, copy=True)
        dist.all_reduce(reduced, op=getattr(dist.ReduceOp, _OPS[op]))
        return reduced.to(tensor.device)

    def all_reduce_(self, tensor):
        """Sum ``tensor`` over all processes, in place where the backend can."""
        if tensor.device == self.device:
            dist.all_reduce(tensor)
        else:
            tensor.copy_(self.all_reduce(tensor))
        return tensor

    def broadcast_seed(self, seed):
        """Rank 0's seed on every rank, so that all build the same initial network."""
        value = torch.tensor([seed], dtype=torch.int64, device=self.device)
        dist.broadcast(value, src=0)
        return int(value.item())

    def reduce_sum(self, *values):
        """Python numbers summed over all processes, in one reduction."""
        reduced = self.all_reduce(torch.tensor(values, dtype=torch.float64))
        return tuple(reduced.tolist())


def process_group(device):
    """The process group that a fit on ``device`` trains with."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return ProcessGroup(device)
    return SingleProcess()


def local_batch_size(batch_size, n_local, n_total):
    """This process's share of a global batch of ``batch_size`` rows, in proportion to its rows.

    Every process then needs at most ``ceil(n_total / batch_size)`` steps to pass over its rows
    once; one whose rows run out first takes its remaining steps of the epoch on empty batches.
    A single process gets ``batch_size`` itself.
    """
    return max(1, math.ceil(batch_size * n_local / n_total))


class AveragedOverProcesses:
    """Wraps a training step so that the update uses the gradient of the whole global batch.

    Each process computes the gradient of its own batch's mean loss; the all-reduce sums these
    weighted by the batch sizes, together with the sizes themselves, and the weighted mean is
    the gradient of the mean loss over the global batch, as one process holding every row
    would compute it. The gradients live in one flat buffer (the parameters' ``.grad`` are views
    of it, as in DDP's ``gradient_as_bucket_view``), so a step costs one all-reduce and no copy.
    """

    def __init__(self, step, group):
        self.step = step
        self.group = group
        parameters = [p for g in step.optimizer.param_groups for p in g["params"]]
        # The last slot carries this process's batch size through the same reduction.
        self.flat = torch.zeros(sum(p.numel() for p in parameters) + 1, device=parameters[0].device)
        offset = 0
        for p in parameters:
            p.grad = self.flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        step.gradients_in_place = True  # zero them, never replace them

    def set_learning_rate(self, rate):
        self.step.set_learning_rate(rate)

    def __call__(self, x):
        n_rows = x.shape[0]
        if n_rows:
            loss = self.step.compute_gradients(x)
        else:  # this process's rows ran out: it adds nothing, and still takes part
            loss = torch.zeros((), device=x.device)
            self.flat.zero_()
        gradients = self.flat[:-1]
        gradients.mul_(n_rows)
        self.flat[-1] = n_rows
        self.group.all_reduce_(self.flat)
        gradients.div_(self.flat[-1])
        self.step.update()
        return loss
