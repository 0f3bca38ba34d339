"""How many CPU threads torch uses for one call to fit or one inference pass.

skae's networks and batches are small. torch's intra-op threads synchronise at every
operation, so a second thread buys little on a small step and costs a lot when it loses its
core: on 2 cores with another process busy on one, a digits fit (8 MFLOP per step) took 11
times as long with 2 threads as with 1, and a 10,000-image MNIST epoch (745 MFLOP per step) 3
times as long. Measured on an idle 2-core machine (`benchmarks/bench_threads.py`), 2 threads
are no faster than 1 below about 100 MFLOP per step, and 1.5 times faster at MNIST's 745.

So ``n_threads="auto"`` gives one thread per ``FLOPS_PER_THREAD`` of work per step, never more
than torch's own setting (``torch.get_num_threads()``: the cores, or what the user or
``OMP_NUM_THREADS`` chose), and, where more than one would be used, never more than the cores
that other processes leave idle. The count is set for the call only and restored afterwards.
"""

import os
import time
from contextlib import contextmanager

import torch

# Work per optimizer step (or per inference chunk) that pays for one more thread.
FLOPS_PER_THREAD = 100e6

# How long the idle cores are watched before a call that would use several threads.
IDLE_SAMPLE_SECONDS = 0.05

# A core counts as idle when other processes left it idle for at least this share of the sample.
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
    cores = _usable_cores()
    before = _cpu_times(cores)
    if before is None:
        return len(cores)
    time.sleep(IDLE_SAMPLE_SECONDS)
    after = _cpu_times(cores)
    idle = 0
    for core, (busy_before, total_before) in before.items():
        busy_after, total_after = after.get(core, (busy_before, total_before))
        elapsed = total_after - total_before
        if elapsed <= 0 or (busy_after - busy_before) / elapsed <= 1.0 - IDLE_SHARE:
            idle += 1
    return idle


def _usable_cores():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _cpu_times(cores):
    """``{core: (busy ticks, total ticks)}`` for the given cores, or None without /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as file:
            lines = file.readlines()
    except OSError:
        return None
    wanted = {f"cpu{core}": core for core in cores}
    times = {}
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            ticks = [int(value) for value in fields[:8]]
            idle = ticks[3] + ticks[4]  # idle and iowait
            times[wanted[name]] = (sum(ticks) - idle, sum(ticks))
    return times or None
