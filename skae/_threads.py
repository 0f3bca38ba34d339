"""How many CPU threads torch uses for one call to fit or one inference pass.

skae's networks and batches are small. torch's intra-op threads synchronise at every
operation, so a second thread buys little on a small step and costs a lot when it loses its
core: on 2 cores with another process busy on one, the README's digits fit (8 MFLOP per step)
took 8 times as long with 2 threads as with 1, and an MNIST epoch (745 MFLOP per step) 15 times
(`benchmarks/bench_threads.py`). On an idle 2-core machine, 2 threads are no faster than 1
below about 100 MFLOP per step, and 1.5 times faster at MNIST's 745.

So ``n_threads="auto"`` gives one thread per ``FLOPS_PER_THREAD`` of work per step, never more
than torch's own setting (``torch.get_num_threads()``: the cores, or what the user or
``OMP_NUM_THREADS`` chose), and, where more than one would be used, never more than the cores
that other processes leave idle. The count is set for the call only and restored afterwards.
"""

import math
import os
import time
from contextlib import contextmanager

import torch

# Work per optimizer step (or per inference chunk) that pays for one more thread.
FLOPS_PER_THREAD = 100e6

# How long the idle cores are watched before a call that would use several threads.
IDLE_SAMPLE_SECONDS = 0.05

# Other processes' load is counted in whole cores, rounded: a core's worth of their time over the
# watch counts as one busy core from this share of it on (0.5: rounded to the nearest).
IDLE_SHARE = 0.5

# A watch is reused for this long, so that calls in quick succession (partial_fit once per
# block or epoch, a grid search's fits) do not each wait IDLE_SAMPLE_SECONDS.
IDLE_REUSE_SECONDS = 5.0
_last_watch = (-float("inf"), 0)  # (time.monotonic() when taken, idle cores)


def training_flops(n_parameters, batch_size):
    """Floating-point operations of one optimizer step: forward and backward, about 6 per
    parameter and row."""
    return 6.0 * n_parameters * batch_size


def inference_flops(n_parameters, n_rows):
    """Floating-point operations of a forward pass over ``n_rows`` rows: 2 per parameter and row."""
    return 2.0 * n_parameters * n_rows


def choose_threads(n_threads, flops, device):
    """The number of torch threads for a call doing ``flops`` of work at a time on ``device``.

    ``n_threads`` is the estimator's parameter: an int is taken as it is, "auto" follows the
    rule in this module's docstring. None means torch's setting is left alone: off the CPU the
    host threads only launch kernels.
    """
    if device.type != "cpu":
        return None
    if not (isinstance(n_threads, str) and n_threads == "auto"):
        return int(n_threads)
    wanted = min(torch.get_num_threads(), max(1, int(flops // FLOPS_PER_THREAD)))
    if wanted > 1:
        wanted = max(1, min(wanted, idle_cores()))
    return wanted


@contextmanager
def torch_threads(n_threads):
    """Run the block with ``n_threads`` torch threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    if n_threads is None or n_threads == previous:
        yield
        return
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def idle_cores():
    """How many of this process's cores other processes leave idle, watched for
    ``IDLE_SAMPLE_SECONDS`` (from Linux's /proc/stat; elsewhere, all of them), or as watched
    less than ``IDLE_REUSE_SECONDS`` ago."""
    global _last_watch
    taken, idle = _last_watch
    if time.monotonic() - taken < IDLE_REUSE_SECONDS:
        return idle
    idle = _watch_idle_cores()
    _last_watch = (time.monotonic(), idle)
    return idle


def _watch_idle_cores():
    """The cores that other processes leave idle: the cores' busy time over the watch, less this
    process's own (torch's OpenMP threads spin for a while after each parallel region, which
    must not pass for another process's load), counted in whole cores."""
    cores = _usable_cores()
    before, own_before = _busy_seconds(cores), time.process_time()
    if before is None:
        return len(cores)
    start = time.monotonic()
    time.sleep(IDLE_SAMPLE_SECONDS)
    after, own_after = _busy_seconds(cores), time.process_time()
    elapsed = time.monotonic() - start
    others = max(0.0, (after - before) - (own_after - own_before)) / elapsed
    busy = math.floor(others + IDLE_SHARE)
    return max(0, len(cores) - busy)


def _usable_cores():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _busy_seconds(cores):
    """The seconds the given cores have spent busy since boot (Linux's /proc/stat), or None
    where there is no /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as file:
            lines = file.readlines()
    except OSError:
        return None
    wanted = {f"cpu{core}" for core in cores}
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            values = [int(value) for value in fields[:8]]
            ticks += sum(values) - values[3] - values[4]  # all but idle and iowait
    return ticks / os.sysconf("SC_CLK_TCK")
