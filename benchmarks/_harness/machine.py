"""The machine a benchmark runs on: threads, device, what the timings depend on, memory."""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import warnings
from datetime import datetime
from pathlib import Path

import torch
from threadpoolctl import threadpool_info, threadpool_limits


@contextlib.contextmanager
def limit_threads(threads: int | None):
    """Cap torch's threads and the BLAS / OpenMP pools (numpy, scikit-learn) while running.

    A cap: an estimator that chooses its threads per fit chooses at most torch's setting. On a
    busy machine, several threads per pool spin against each other and against other
    processes: measured here, a logistic regression took 9.5 s with 2 BLAS threads and 0.4 s
    with 1. None leaves the libraries' defaults.
    """
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict:
    """What the timings depend on: CPU, threads, device, library versions, date."""
    import sklearn

    device = resolve_device(device)
    info = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "scikit_learn": sklearn.__version__,
        "torch_threads": torch.get_num_threads(),
        "threadpools": {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()},
        "device": device,
        "gpu": None,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def describe_machine(info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if info["gpu"] else ""
    pools = ", ".join(f"{api} {n}" for api, n in info["threadpools"].items())
    return (
        f"{info['cpu']} ({info['cpu_count']} cores; threads at most: torch "
        f"{info['torch_threads']}, {pools}), device {info['device']}{gpu}, {info['date']}"
    )


def machine_caption(info: dict) -> str:
    """machine_info in a caption's few words: threads, CPU or GPU, date."""
    where = f"GPU {info['gpu']}" if info["gpu"] else f"device {info['device']}"
    threads = info["torch_threads"]
    return (
        f"{threads} thread{'s' * (threads != 1)} on {info['cpu']} ({info['cpu_count']} cores), "
        f"{where}, {info['date'][:10]}"
    )


def warm_up(X, device: str) -> None:
    """Pay one-off costs (torch and BLAS start-up, CUDA context) before anything is timed."""
    from sklearn.decomposition import PCA

    from skae import AutoEncoderTransformer

    rows = X[:256]
    PCA(n_components=2).fit(rows)
    warm = AutoEncoderTransformer(2, hidden_layer_sizes=(8,), max_iter=1, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm.fit(rows).transform(rows)


def resident_mb() -> float:
    """This process's resident memory (RSS), in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def anonymous_mb() -> float:
    """This process's anonymous resident memory (RssAnon: not file-backed pages), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise OSError("no RssAnon in /proc/self/status (Linux only)")


class PeakMemory:
    """The peak growth of a memory reading (``read_mb``, default RSS) within a ``with`` block,
    sampled on a thread every ``interval`` seconds: ``growth_mb`` after the block."""

    def __init__(self, read_mb=resident_mb, interval=0.002):
        self.read_mb = read_mb
        self.interval = interval

    def __enter__(self):
        self.start = self.peak = self.read_mb()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.done.wait(self.interval):
            self.peak = max(self.peak, self.read_mb())

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.read_mb())
        self.growth_mb = self.peak - self.start
