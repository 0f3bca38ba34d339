"""Failures injected into training (divergence, Ctrl-C) at the step, for the tests.

They patch the step's ``compute_gradients``, which the autograd step and the hand-written
backward pass both have, so they reach every estimator whichever step it trains with.
"""


def patch_gradients(est, replacement):
    """Make every training step of ``est`` call ``replacement(training, compute_gradients, x)``
    for its gradients and loss, whichever kind of step (autograd or hand-written) it is."""
    make_step = est._make_step

    def patched_make_step(training, *args):
        step = make_step(training, *args)
        compute_gradients = step.compute_gradients
        step.compute_gradients = lambda x: replacement(training, compute_gradients, x)
        return step

    est._make_step = patched_make_step


def make_loss_nan_from_epoch(est, epoch):
    """Patch ``est`` so that its training loss and gradients are NaN from ``epoch`` (1-based)
    on; the NaN gradients reach the weights."""

    def nan_from_epoch(training, compute_gradients, x):
        loss = compute_gradients(x)
        if training.n_iter + 1 < epoch:
            return loss
        for module in training.modules.values():
            for parameter in module.parameters():
                parameter.grad.mul_(float("nan"))
        return loss * float("nan")

    patch_gradients(est, nan_from_epoch)


def interrupt_at(est, epoch, batch):
    """Patch ``est`` to raise KeyboardInterrupt in batch ``batch`` of ``epoch`` (both 1-based).

    Returns a dict that receives the weights as they were when the interrupt came.
    """
    seen, snapshot = {"batches": 0}, {}

    def interrupt(training, compute_gradients, x):
        if training.n_iter + 1 == epoch:
            seen["batches"] += 1
            if seen["batches"] == batch:
                for name, module in training.modules.items():
                    for key, value in module.state_dict().items():
                        snapshot[f"{name}.{key}"] = value.detach().clone()
                raise KeyboardInterrupt
        return compute_gradients(x)

    patch_gradients(est, interrupt)
    return snapshot
