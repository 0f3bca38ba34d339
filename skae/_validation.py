"""Checks of estimator parameters, run at fit time (``__init__`` only stores them)."""

import numbers
import os
import warnings

import numpy as np
import torch


def check_int(name, value, *, low):
    """Return ``value`` as an int, or raise a ValueError naming it and the valid range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {low}.")
    return int(value)


def check_float(name, value, *, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as a float in the given interval, or raise a ValueError."""
    lo_bracket, hi_bracket = ("(" if low_open else "["), (")" if high_open else "]")
    valid = f"a real number in {lo_bracket}{low if low is not None else '-inf'}, " + (
        f"{high if high is not None else 'inf'}{hi_bracket}"
    )
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name}={value!r} is invalid: expected {valid}.")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{name}={value!r} is invalid: expected {valid}.")
    return float(value)


def check_option(name, value, options):
    """Return ``value`` if it is one of ``options``, else raise a ValueError listing them."""
    if isinstance(value, np.bool_):
        # numpy's booleans (from a grid built with numpy) stand for Python's.
        value = bool(value)
    if not any(value is opt or (isinstance(value, str) and value == opt) for opt in options):
        listed = ", ".join(repr(opt) for opt in options)
        raise ValueError(f"{name}={value!r} is invalid: expected one of {listed}.")
    return value


def check_n_threads(value):
    """Validate ``n_threads``: "auto" or an integer >= 1."""
    if isinstance(value, str) and value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f'n_threads={value!r} is invalid: expected "auto" or an integer >= 1.')


def check_hidden_layer_sizes(value):
    """Return the hidden layer sizes as a tuple of positive ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        # The estimators build their layers from the parameter itself, which must be a sequence.
        raise ValueError(
            f"hidden_layer_sizes={value!r} is invalid: expected a sequence of integers >= 1, "
            f"such as ({value},) for one hidden layer."
        )
    try:
        sizes = tuple(value)
    except TypeError:
        raise ValueError(
            f"hidden_layer_sizes={value!r} is invalid: expected a sequence of integers >= 1, "
            "such as (256, 128), or () for no hidden layer."
        ) from None
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(
                f"hidden_layer_sizes={value!r} is invalid: every size must be an integer >= 1."
            )
    return tuple(int(size) for size in sizes)


def resolve_device(device):
    """Turn the ``device`` parameter into a ``torch.device`` that is available here.

    "auto" is CUDA when available, else the CPU. Under torch.distributed, "auto" and "cuda"
    mean this process's own GPU, ``cuda:$LOCAL_RANK`` (as torchrun numbers the processes of
    a node), so that no two ranks share one.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is invalid: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from None
    if resolved.type == "cuda" and resolved.index is None and _local_rank() is not None:
        resolved = torch.device("cuda", _local_rank())
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} is unavailable: torch finds no CUDA device here. "
                "Use device='cpu' or device='auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} is unavailable: only {torch.cuda.device_count()} CUDA "
                "device(s) are visible."
            )
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device={device!r} is unavailable: MPS is not available here.")
    elif resolved.type != "cpu":
        raise ValueError(
            f"device={device!r} is invalid: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        )
    return resolved


def restore_device(stored, requested, *, stacklevel):
    """The device a model was fitted on (``stored``) when it is available here, else the CPU
    with a RuntimeWarning. ``requested`` is the estimator's ``device`` parameter, for the hint;
    ``stacklevel`` is the caller's, as for ``warnings.warn``."""
    try:
        return resolve_device(stored)
    except ValueError:
        hint = ""
        if str(requested) not in ("auto", "cpu"):
            hint = f" Set device='cpu' (it is {requested!r}) to train it further here."
        warnings.warn(
            f"This model was fitted on {stored}, which is not available here; it was loaded "
            f"onto the CPU.{hint}",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )
        return torch.device("cpu")


def _local_rank():
    """This process's index on its node under torch.distributed (torchrun's LOCAL_RANK)."""
    distributed = torch.distributed
    if not (distributed.is_available() and distributed.is_initialized()):
        return None
    return int(os.environ.get("LOCAL_RANK", 0))
