"""Timed fits: wall time, each epoch's time, a progress bar, warnings counted; run progress."""

from __future__ import annotations

import contextlib
import importlib
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from tqdm.auto import tqdm

from .machine import fit_threads, machine_load, start_load_watch

# skae's training loop draws its per-epoch bar with this module's ``tqdm``; timed_fit lends it
# a bar that also notes when each epoch starts and ends. skae keeps no per-epoch times itself.
_LOOP_MODULE = "skae._training._loop"


@dataclass
class Fit:
    """How one fit went (the median of ``repeats`` fits when there were several)."""

    seconds: float  # wall time of the whole call to fit
    low: float  # fastest plausible time: see spread()
    high: float
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch of the last fit
    threads: int | None = None  # torch threads the fit used (machine.fit_threads); None: unknown
    convergence_warnings: list[str] = field(default_factory=list)
    other_cores: float | None = None  # other processes' mean CPU use during the fits (cores)

    def columns(self) -> dict:
        """The result-row columns every benchmark reports for a fit."""
        epochs = self.epoch_seconds
        return {
            "fit_time_s": self.seconds,
            "fit_time_low_s": self.low,
            "fit_time_high_s": self.high,
            "epoch_time_median_s": statistics.median(epochs) if epochs else None,
            "fit_threads": self.threads,
            "convergence_warnings": len(self.convergence_warnings),
            "other_processes_cores": self.other_cores,
        }


def spread(seconds: list[float], epoch_seconds: list[float]) -> tuple[float, float]:
    """How much a fit's time moves with the machine's pace alone: a low and a high time.

    With several fits: the fastest and slowest of them. With epochs: the time the fit would
    have taken had every epoch run at the pace of its 10th (90th) percentile epoch, the time
    outside the epochs included, so that drift and other processes show, but not one outlier
    epoch among hundreds. Else no spread.
    """
    if len(seconds) > 1:
        return min(seconds), max(seconds)
    (total,) = seconds
    if len(epoch_seconds) < 2:
        return total, total
    outside = total - sum(epoch_seconds)
    fast, slow = outside + len(epoch_seconds) * np.percentile(epoch_seconds, [10, 90])
    # A few very slow (fast) epochs can put the whole fit outside: the spread then ends at it.
    return min(fast, total), max(slow, total)


def timed_fit(estimator, X, y=None, *, label=None, progress=True, repeats=1) -> Fit:
    """Fit ``estimator`` (``repeats`` times; the last fit is kept), timing the call and each epoch.

    A bar per epoch shows the loss on stderr when ``progress`` is on, labelled ``label``.
    ConvergenceWarnings are counted and passed on, not silenced. A Ctrl-C during training (which
    skae's fit turns into an early return with a warning) raises KeyboardInterrupt here, so that
    a half-trained model never becomes a result.
    """
    label = label or type(estimator).__name__
    times, clocks = [], []
    load = {"load": start_load_watch()}
    with warnings.catch_warnings(record=True) as caught:
        # "always": the default filter would show a repeated warning once per location only.
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.filterwarnings("always", ".*interrupted", RuntimeWarning)
        for _ in range(repeats):
            with _epoch_clock(label, progress) as clocks:
                if clocks is None and progress and "verbose" in estimator.get_params():
                    estimator.set_params(verbose=1)  # no epoch times, but the bar all the same
                start = time.perf_counter()
                estimator.fit(X) if y is None else estimator.fit(X, y)
                times.append(time.perf_counter() - start)
    messages = []
    for w in caught:
        if issubclass(w.category, RuntimeWarning) and "interrupted" in str(w.message):
            raise KeyboardInterrupt  # the run stops: the warning's advice is not for it
        if issubclass(w.category, ConvergenceWarning):
            messages.append(str(w.message))
        # Pass everything on, as if it had not been recorded.
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    clocks = clocks or []
    epochs = [t for clock in clocks for t in clock.epoch_seconds()]
    threads = fit_threads(estimator)
    others = machine_load(load)["other_processes_cores"]
    return Fit(statistics.median(times), *spread(times, epochs), epochs, threads, messages, others)


@contextlib.contextmanager
def _epoch_clock(label: str, show: bool):
    """While active, skae's epoch bars are _Clock bars; yields the list of those made (None
    where skae's loop has no bar to lend)."""
    clocks = []
    try:
        loop = importlib.import_module(_LOOP_MODULE)
        base = loop.tqdm
    except (ImportError, AttributeError):  # skae moved its loop: times without epochs
        yield None
        return

    class Clock(_Clock, base):
        pass

    Clock.label, Clock.show, Clock.made = label, show, clocks
    loop.tqdm = Clock
    try:
        yield clocks
    finally:
        loop.tqdm = base


class _Clock:
    """A tqdm mixin: the bar shown (or not) as the benchmark says, and each epoch's times."""

    label, show, made = "fit", True, None

    def __init__(self, *args, **kwargs):
        kwargs.update(disable=not self.show, desc=self.label, leave=False, file=sys.stderr)
        if not sys.stderr.isatty():  # a log file: fewer updates
            kwargs["mininterval"] = 2.0
        super().__init__(*args, **kwargs)
        self.starts, self.end = [], None
        self.made.append(self)

    def __iter__(self):
        for item in super().__iter__():
            self.starts.append(time.perf_counter())
            yield item

    def close(self):
        # The first close after the last epoch: the loop ends (or breaks) and closes its bar.
        if self.end is None and self.starts:
            self.end = time.perf_counter()
        super().close()

    def epoch_seconds(self) -> list[float]:
        marks = [*self.starts, self.end] if self.end is not None else self.starts
        return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def runs(items, *, desc: str, label=str, progress=True):
    """Iterate over a benchmark's runs with a bar on stderr (above the epoch bars), each run
    named by ``label(item)``."""
    items = list(items)
    with tqdm(items, desc=desc, unit="run", file=sys.stderr, disable=not progress) as bar:
        for item in bar:
            bar.set_postfix_str(label(item))
            yield item


@contextlib.contextmanager
def fixed_epoch_budget():
    """Silence "reached max_iter": for runs that fix the epoch budget on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*reached max_iter", category=ConvergenceWarning)
        yield
