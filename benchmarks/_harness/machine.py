"""The machine a benchmark runs on: threads, device, what the timings depend on, how busy it
was, memory."""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import time
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


# Other processes' mean CPU use over a run, in cores, from which its timings are marked as taken
# on a busy machine. Half a core is plenty to matter: with one core busy, a 2-thread MNIST epoch
# took 23 times as long as on an idle machine (bench_threads.py).
BUSY_CORES = 0.5


def fit_threads(estimator) -> int | None:
    """The torch threads ``estimator``'s last fit used, as its fitted ``fit_plan_`` records them
    (``n_threads``); None, unknown, for an estimator without one: not guessed from torch's
    setting, which is only a cap on what the fit chose."""
    threads = getattr(getattr(estimator, "fit_plan_", None), "n_threads", None)
    return None if threads is None else int(threads)


def machine_info(device: str) -> dict:
    """What the timings depend on: CPU, threads, device, library versions, date; and, in
    ``"load"``, how busy the machine is from now on (see ``machine_load``)."""
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
        "load": start_load_watch(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _machine_cpu_seconds() -> float | None:
    """CPU seconds every process has used since boot (Linux's /proc/stat: all but idle and
    iowait); None elsewhere."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return None


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (a spinner it ran, torchrun)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def start_load_watch() -> dict:
    """The readings a run's load is measured from: the time, the 1-minute load average, and the
    CPU seconds of the machine and of this process."""
    return {
        "started": time.time(),
        "load_average_start": round(os.getloadavg()[0], 2),
        "machine_cpu_s_start": _machine_cpu_seconds(),
        "own_cpu_s_start": _own_cpu_seconds(),
    }


def machine_load(info: dict) -> dict:
    """How busy the machine has been since ``machine_info``: ``info["load"]`` brought up to now
    (and returned).

    ``other_processes_cores`` is the CPU other processes used, in cores on average: the
    machine's CPU time less this process's, over the wall time (Linux). Elsewhere it is
    estimated from the load averages: the one at the start (others alone, the run not yet
    counted), or the one now less this run's own use, whichever is larger. ``busy`` when it
    reaches ``BUSY_CORES``.
    """
    load = info.setdefault("load", start_load_watch())
    seconds = max(time.time() - load["started"], 1e-9)
    own = (_own_cpu_seconds() - load["own_cpu_s_start"]) / seconds
    load_now = os.getloadavg()[0]
    machine_now = _machine_cpu_seconds()
    if machine_now is not None and load["machine_cpu_s_start"] is not None:
        others = (machine_now - load["machine_cpu_s_start"]) / seconds - own
    else:
        others = max(load["load_average_start"], load_now - own)
    others = round(max(others, 0.0), 2)  # judged as recorded
    load.update(
        seconds=round(seconds, 1),
        load_average_end=round(load_now, 2),
        own_cores=round(own, 2),
        other_processes_cores=others,
        busy=others >= BUSY_CORES,
    )
    return load


def describe_load(info: dict) -> str:
    """The machine's load over the run so far, in a sentence, first saying when it was busy."""
    load = machine_load(info)
    verdict = "Busy machine, timings indicative only" if load["busy"] else "Quiet machine"
    return (
        f"{verdict}: other processes used {load['other_processes_cores']:.1f} of "
        f"{info['cpu_count']} cores on average over the run (this one "
        f"{load['own_cores']:.1f}); load average {load['load_average_start']:.1f} at its start, "
        f"{load['load_average_end']:.1f} at its end"
    )


def describe_machine(info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if info["gpu"] else ""
    pools = ", ".join(f"{api} {n}" for api, n in info["threadpools"].items())
    return (
        f"{info['cpu']} ({info['cpu_count']} cores; threads at most: torch "
        f"{info['torch_threads']}, {pools}), device {info['device']}{gpu}, {info['date']}"
    )


def machine_caption(info: dict) -> str:
    """machine_info in a caption's few words: CPU or GPU, the cap on threads, date; then how busy
    the machine was over the run so far (a figure is drawn at its end)."""
    where = f"GPU {info['gpu']}" if info["gpu"] else f"device {info['device']}"
    return (
        f"{info['cpu']} ({info['cpu_count']} cores), {where}, torch threads at most "
        f"{info['torch_threads']}, {info['date'][:10]}.\n{describe_load(info)}."
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
