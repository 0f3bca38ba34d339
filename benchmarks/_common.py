"""Helpers shared by the benchmark scripts: data with a digits fallback, the machine, outputs.

Not part of the skae package: the scripts import it from their own folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_info, threadpool_limits

DATASETS = ("mnist", "fashion-mnist", "digits")
# Share of scikit-learn's 1,797 digits held out for testing when they stand in for MNIST.
DIGITS_TEST_SIZE = 0.25


@dataclass
class Dataset:
    """A train/test split of images flattened to rows of pixels in [0, 1]."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    # Set when the requested dataset was unavailable and digits stand in for it.
    fallback_note: str | None = None
    fallback_detail: str | None = None
    stands_in_for: str | None = None

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def label(self) -> str:
        """The name for titles: says which dataset digits stand in for."""
        if self.stands_in_for:
            return f"{self.name} (standing in for {self.stands_in_for})"
        return self.name

    def describe(self) -> str:
        return (
            f"{self.name} ({len(self.X_train)} train / {len(self.X_test)} test images of "
            f"{self.image_shape[0]}x{self.image_shape[1]} pixels"
            + (f", standing in for {self.stands_in_for})" if self.stands_in_for else ")")
        )


# -- command line ------------------------------------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser, default_output: str) -> None:
    """The options every benchmark script has: data, seed, device, threads, outputs."""
    parser.add_argument("--dataset", choices=DATASETS, default="mnist")
    parser.add_argument(
        "--data-home",
        default=None,
        help="folder holding <dataset>/ with the four *-ubyte.gz IDX files, downloaded there "
        "when missing (default: $SKAE_DATA, else scikit-learn's data home, ~/scikit_learn_data)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="never download: fall back to scikit-learn's digits at once when the files are "
        "missing",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds subsets, splits and models")
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda", "cuda:N", ...')
    add_threads_argument(parser)
    parser.add_argument(
        "--output-dir", default=default_output, help=f"where results go (default {default_output})"
    )


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """--threads, for limit_threads."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and for BLAS/OpenMP (default: the libraries' own); "
        "1 behaves best on a busy machine",
    )


def comma_list(item_type, choices=None):
    """An argparse type for "a,b,c" lists, each item converted and checked against choices."""

    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        try:
            values = [item_type(item) for item in items]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if choices is not None:
            unknown = [v for v in values if v not in choices]
            if unknown:
                raise argparse.ArgumentTypeError(
                    f"unknown {unknown}; choose from {', '.join(map(str, choices))}"
                )
        return values

    return parse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


# -- data ----------------------------------------------------------------------------------------


def load_dataset(name: str, data_home=None, *, download: bool = True, seed: int = 0) -> Dataset:
    """The requested dataset, or scikit-learn's digits (with a note) when it is unavailable.

    data_home=None is the library's default: $SKAE_DATA, else scikit-learn's data home.
    """
    if name == "digits":
        return load_digits_split(seed)
    from skae.datasets import load_fashion_mnist, load_mnist

    loader = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}[name]
    try:
        bunch = loader(data_home=data_home, download=download)
    except OSError as exc:
        return digits_instead_of(name, exc, download, seed)
    return Dataset(
        name=name,
        X_train=bunch.X_train,
        y_train=bunch.y_train,
        X_test=bunch.X_test,
        y_test=bunch.y_test,
        image_shape=tuple(bunch.image_shape),
    )


def digits_instead_of(name: str, exc: OSError, download: bool, seed: int) -> Dataset:
    """Digits standing in for ``name``, with a one-line note saying how to get ``name``."""
    data = load_digits_split(seed)
    if download:
        how = "could neither be found nor downloaded"
    else:
        how = "was not found (downloads disabled)"
    # A DatasetUnavailableError names the missing files and their folder: the note repeats
    # them, so that the first line printed is enough to fix the problem.
    files = list(getattr(exc, "missing", None) or [])
    where = getattr(exc, "directory", None)
    fix = ""
    if files and where is not None:
        names = ", ".join(files[:-1]) + " and " + files[-1] if len(files) > 1 else files[0]
        fix = (
            f" To use {name}, put {names} in {Path(where)}{os.sep} (or point SKAE_DATA or "
            f"--data-home at a folder whose {name}/ subfolder holds them)."
        )
    data.fallback_note = (
        f"{name} {how}; running on scikit-learn's bundled digits (8x8) instead "
        f"(reason on stderr).{fix}"
    )
    data.fallback_detail = str(exc)
    data.stands_in_for = name
    return data


def load_digits_split(seed: int) -> Dataset:
    """scikit-learn's 8x8 digits, pixels 0..16 scaled to [0, 1], split like MNIST's train/test."""
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=DIGITS_TEST_SIZE, stratify=y, random_state=seed
    )
    return Dataset("digits", X_train, y_train, X_test, y_test, image_shape=(8, 8))


def announce_fallback(data: Dataset) -> None:
    """Say on the first line of stdout that digits stand in; the full reason goes to stderr."""
    if data.fallback_note is None:
        return
    print(f"WARNING: {data.fallback_note}", flush=True)
    if data.fallback_detail:
        print(data.fallback_detail, file=sys.stderr, flush=True)


def subsample(X: np.ndarray, y: np.ndarray, n: int | None, seed: int):
    """A random subset of n rows (all rows when n is None or too large), in their old order."""
    if n is None or n >= len(X):
        return X, y
    rows = np.sort(np.random.default_rng(seed).permutation(len(X))[:n])
    return X[rows], y[rows]


@contextlib.contextmanager
def fixed_epoch_budget():
    """Silence "reached max_iter": the benchmarks fix the epoch budget on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*reached max_iter", category=ConvergenceWarning)
        yield


# -- machine -------------------------------------------------------------------------------------


@contextlib.contextmanager
def limit_threads(threads: int | None):
    """Cap torch's threads and the BLAS / OpenMP pools (numpy, scikit-learn) while running.

    On a busy machine, several threads per pool spin against each other and against other
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
    pools = ", ".join(f"{api} {n} threads" for api, n in info["threadpools"].items())
    return (
        f"{info['cpu']} ({info['cpu_count']} cores, torch {info['torch']} with "
        f"{info['torch_threads']} threads; {pools}), device {info['device']}{gpu}, {info['date']}"
    )


def warm_up(X: np.ndarray, device: str) -> None:
    """Pay one-off costs (torch and BLAS start-up, CUDA context) before anything is timed."""
    from sklearn.decomposition import PCA

    from skae import AutoEncoderTransformer

    rows = X[:256]
    PCA(n_components=2).fit(rows)
    warm = AutoEncoderTransformer(2, hidden_layer_sizes=(8,), max_iter=1, device=device)
    with fixed_epoch_budget():
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


# -- outputs -------------------------------------------------------------------------------------


def command_line(script: str, argv=None) -> str:
    """The command as typed (argv defaults to sys.argv[1:], as for argparse)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", script, *args])


def atomic_save(path: Path, save) -> None:
    """Call save(tmp_path), then move the file into place, so readers never see a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target so os.replace is a rename, atomic on POSIX.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save(tmp_name)
        # mkstemp creates the file private (0600); give it the permissions open() would.
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    atomic_save(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, payload: dict) -> None:
    text = json.dumps(_json_safe(payload), indent=2, default=str) + "\n"
    write_text(path, text)


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_save(path, lambda tmp: frame.to_csv(tmp, index=False))


def _json_safe(value):
    # JSON has no NaN; a missing measurement (e.g. PCA's epochs) becomes null.
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A GitHub markdown table; tabulate (which pandas' to_markdown needs) is not a dependency.

    formats maps a column to a format spec such as ".3f"; other floats use ".4g".
    """
    formats = formats or {}

    def cell(column, value):
        if pd.isna(value):
            return ""
        if column in formats:
            return format(value, formats[column])
        if isinstance(value, float | np.floating):
            return format(value, ".4g")
        return str(value)

    header = [str(c) for c in frame.columns]
    body = [
        [cell(c, v) for c, v in zip(frame.columns, row, strict=True)]
        for row in frame.itertuples(index=False)
    ]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]

    def line(cells):
        padded = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *map(line, body)])


# -- figures -------------------------------------------------------------------------------------
# One look for every benchmark figure: honest axes, fixed colours, the run's settings on each.


def new_figure(n_panels: int = 1, *, panel_width: float = 4.6, height: float = 3.9, sharey=True):
    """A row of n_panels axes, laid out by matplotlib (room for titles, caption, legend)."""
    import matplotlib

    matplotlib.use("Agg")  # the figures go to files; no display is needed or wanted
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1,
        n_panels,
        figsize=(panel_width * n_panels + 1.6, height),
        squeeze=False,
        sharey=sharey,
        layout="constrained",
    )
    return fig, list(axes[0])


def plot_by_size(ax, frame: pd.DataFrame, column: str, colors: dict, *, fmt=None) -> str:
    """Bars per method when the frame has one n_components, else one line per method.

    A line through a single point says nothing, and a line between methods would suggest an
    order that does not exist; lines are kept for trends over several code sizes (x on a log2
    scale). colors maps every method to its colour, in the order to draw them; fmt(value) labels
    each bar. Returns "bars" or "lines".
    """
    from matplotlib.ticker import NullLocator

    methods = [m for m in colors if m in set(frame["method"])]
    sizes = sorted(frame["n_components"].unique())
    if len(sizes) == 1:
        values = [frame.loc[frame["method"] == m, column].iloc[0] for m in methods]
        positions = np.arange(len(methods))
        bars = ax.bar(positions, values, width=0.6, color=[colors[m] for m in methods])
        if fmt is not None:
            ax.bar_label(bars, labels=[fmt(v) for v in values], padding=2, fontsize=9)
        # Slanted when long names such as "contractive" would overlap.
        slant = {"rotation": 30, "ha": "right", "rotation_mode": "anchor"}
        ax.set_xticks(positions, methods, **(slant if len(methods) > 4 else {}))
        ax.set_xlabel(f"method (n_components={sizes[0]})")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        return "bars"
    for method in methods:
        runs = frame[frame["method"] == method].sort_values("n_components")
        ax.plot(runs["n_components"], runs[column], marker="o", color=colors[method], label=method)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("n_components (code size)")
    ax.grid(alpha=0.3)
    return "lines"


def start_at_zero(ax, top: float | None = None, *, headroom: float = 0.0) -> None:
    """Start the y axis at 0, so that heights compare as ratios; headroom fits bar labels."""
    top = ax.get_ylim()[1] if top is None else top
    ax.set_ylim(0, top * (1 + headroom))


def mark_level(ax, y: float, label: str) -> None:
    """A dotted reference line (e.g. chance), labelled outside the axes, where nothing hides it."""
    ax.axhline(y, color="0.45", linestyle=":", linewidth=1)
    ax.text(
        1.01, y, label, transform=ax.get_yaxis_transform(), ha="left", va="center",
        fontsize=8, color="0.35", clip_on=False,
    )  # fmt: skip


def title_and_caption(fig, title: str, caption: str) -> None:
    """The title on top; the settings (data size, epochs, machine) in small print below."""
    fig.suptitle(title, fontsize=12)
    fig.supxlabel(caption, fontsize=8.5, color="0.3")


def legend_outside(fig, ax) -> None:
    """The legend beside the panels, where it cannot hide a line."""
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=9)


def machine_caption(info: dict) -> str:
    """machine_info in a caption's few words: threads, CPU or GPU, date."""
    where = f"GPU {info['gpu']}" if info["gpu"] else f"device {info['device']}"
    threads = info["torch_threads"]
    return (
        f"{threads} thread{'s' * (threads != 1)} on {info['cpu']} ({info['cpu_count']} cores), "
        f"{where}, {info['date'][:10]}"
    )


def seconds(value: float) -> str:
    """A duration label with as many digits as it needs: 0.48 s, 4.8 s, 48 s."""
    if value < 0.01:
        return "<0.01 s"
    return f"{value:.2f} s" if value < 1 else f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    # The temporary name has no .png suffix, so the format is given explicitly.
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
