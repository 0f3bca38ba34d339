"""How n_threads="auto" fares on an idle machine and on one where another process keeps a core
busy, against fixed thread counts.

Two workloads, each timed with n_threads="auto", 1 and 2 (median of --repeats, after a warm-up):

- the README's quickstart: fitting make_pipeline(AutoEncoderTransformer(n_components=16),
  StandardScaler(), LogisticRegression()) on 75% of scikit-learn's digits (8x8 images);
- an epoch of the default AutoEncoderTransformer() on MNIST's 60,000 training images (one
  partial_fit; digits x 40 stand in without MNIST).

"busy" runs the same with a second process spinning on one core (``while True: pass``), as a
laptop doing something else would. Run it on an otherwise quiet machine:

    python benchmarks/bench_threads.py
"""

import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from _harness import (
    Report,
    add_data_arguments,
    add_output_arguments,
    benchmark_parser,
    command_line,
    load_dataset,
    machine_info,
    positive_int,
)
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skae import AutoEncoderTransformer, _threads
from skae._threads import choose_threads, training_flops

SETTINGS = ("auto", 1, 2)


def quickstart(n_threads):
    X, y = load_digits(return_X_y=True)
    X_train, _, y_train, _ = train_test_split(X / 16, y, random_state=0)
    pipe = make_pipeline(
        AutoEncoderTransformer(n_components=16, random_state=0, n_threads=n_threads),
        StandardScaler(),
        LogisticRegression(),
    )
    return lambda: pipe.fit(X_train, y_train)


def mnist_epoch(X):
    def workload(n_threads):
        est = AutoEncoderTransformer(random_state=0, n_threads=n_threads)
        return lambda: est.partial_fit(X)

    return workload


def median_seconds(run, repeats):
    run()  # warm-up: first-call costs, and the network for partial_fit
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


class OneBusyCore:
    """A second process spinning on one core for the duration of the block. The library's
    last watch of the idle cores is forgotten on entry and exit, so that each scenario is
    judged on its own machine (skae reuses a watch for a few seconds)."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        _forget_the_last_watch()
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()
        _forget_the_last_watch()


def _forget_the_last_watch():
    _threads._last_watch = (-float("inf"), 0)


def main(argv=None):
    parser = benchmark_parser(__doc__)
    add_data_arguments(parser, datasets=None)
    parser.add_argument("--repeats", type=positive_int, default=3)
    add_output_arguments(parser, quiet=False)
    args = parser.parse_args(argv)

    data = load_dataset("mnist", args.data_home, download=not args.no_download)
    X = data.X_train if data.stands_in_for is None else np.tile(data.X_train, (40, 1))
    flops = training_flops(485_000, 256)  # 784-256-128-64 at batches of 256
    report = Report(
        args.output_dir,
        "bench_threads",
        title="Thread counts on an idle machine and with one core busy",
        meta={
            "command": command_line("benchmarks/bench_threads.py", argv),
            "machine": machine_info("cpu"),
            "torch_threads": torch.get_num_threads(),
            "mnist_rows": len(X),
        },
        columns=("workload", "machine", "n_threads"),
        formats={"seconds": ".2f", "vs_idle_auto": ".2f"},
        expected=2 * 2 * len(SETTINGS),
    )
    workloads = {"quickstart (digits pipeline fit)": quickstart, "MNIST epoch": mnist_epoch(X)}
    idle_auto = {}
    with warnings.catch_warnings(), report.stopping_on_interrupt():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one-epoch partial fits
        for state in ("idle", "busy"):
            for workload, make in workloads.items():
                for n_threads in SETTINGS:
                    if state == "busy":
                        with OneBusyCore():
                            seconds, times = median_seconds(make(n_threads), args.repeats)
                            chosen = choose_threads("auto", flops, torch.device("cpu"))
                    else:
                        seconds, times = median_seconds(make(n_threads), args.repeats)
                        chosen = choose_threads("auto", flops, torch.device("cpu"))
                    if n_threads == "auto" and state == "idle":
                        idle_auto[workload] = seconds
                    report.add(
                        {
                            "workload": workload,
                            "machine": state,
                            "n_threads": str(n_threads),
                            "seconds": seconds,
                            "vs_idle_auto": seconds / idle_auto[workload],
                            "auto_picks_for_mnist": chosen,
                            "times": times,
                        }
                    )
    report.finish()


if __name__ == "__main__":
    main()
