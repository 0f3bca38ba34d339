"""One optimizer step on a batch, and the learning-rate schedule that drives it."""

import math

import torch
from torch.optim.adam import adam as functional_adam


class TrainingStep:
    """One optimizer step on a batch: forward, loss, backward (by autograd), update."""

    # Whether the parameters' .grad tensors must be kept (zeroed, not dropped) between steps:
    # set when they are views of a buffer that the step's owner reads (data parallelism).
    gradients_in_place = False

    def __init__(self, compute_loss, optimizer):
        self.compute_loss = compute_loss
        self.optimizer = optimizer
        self._gathered = None  # a fused Adam's tensors, once its state exists (see update)

    def set_learning_rate(self, rate):
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(rate)  # in place: a captured CUDA graph reads this tensor
            else:
                group["lr"] = rate

    def __call__(self, x):
        loss = self.compute_gradients(x)
        self.update()
        return loss

    def update(self):
        """Update the parameters from their ``.grad``: ``optimizer.step()``, or for a fused
        ``torch.optim.Adam`` with a float learning rate (skae's on the CPU) the same update
        through torch's functional ``adam`` on the tensors gathered once. For skae's small
        networks the optimizer's per-step bookkeeping cost about as much as the update: on
        ADBench's 28 tables (both protocols, the detector's fits, 1 thread) Adam took 1.52 s of
        6,855 steps, 1.09 s this way, with the same scores to the last bit."""
        tensors = self._adam_tensors()
        if tensors is None:
            self.optimizer.step()
            return
        parameters, averages, squares, counts = tensors
        gradients = [p.grad for p in parameters]
        if any(g is None for g in gradients):
            self.optimizer.step()  # it skips a parameter without a gradient
            return
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        functional_adam(
            parameters, gradients, averages, squares, [], counts,
            foreach=False, fused=True, capturable=False, differentiable=False,
            has_complex=False, amsgrad=False, maximize=group["maximize"],
            beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
            eps=group["eps"],
        )  # fmt: skip

    def _adam_tensors(self):
        """(parameters, first moments, second moments, step counts) of a fused Adam whose
        state exists (the optimizer's own first step creates it), or None for any other
        optimizer or option, whose updates are left to ``optimizer.step()``."""
        if self._gathered is not None:
            return self._gathered
        optimizer = self.optimizer
        if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
            return None
        group = optimizer.param_groups[0]
        if not group.get("fused") or group["amsgrad"] or isinstance(group["lr"], torch.Tensor):
            return None
        parameters = list(group["params"])
        if not all(p in optimizer.state for p in parameters):
            return None
        states = [optimizer.state[p] for p in parameters]
        self._gathered = (
            parameters,
            [state["exp_avg"] for state in states],
            [state["exp_avg_sq"] for state in states],
            [state["step"] for state in states],
        )
        return self._gathered

    def compute_gradients(self, x):
        """Set each parameter's ``.grad`` to the gradient of the loss on x; return the loss."""
        self.optimizer.zero_grad(set_to_none=not self.gradients_in_place)
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
