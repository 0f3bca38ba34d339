"""Scaling out: data larger than memory, training across processes, searches on a cluster.

Four measurements, each in fresh processes so that none inherits another's memory or threads:

  memory   peak growth of the process's anonymous memory (RssAnon, sampled every 5 ms) while
           fit() streams a uint8 np.memmap of MNIST tiled 1x, 4x and to 400,000 rows (one
           epoch each, after a warm-up fit), and the test SSE of a default fit from the 1x
           memmap against the same fit in memory
  epoch    seconds per epoch from the memmap against the same rows in memory, alternating
           epoch by epoch (partial_fit) and reporting the median of the paired ratios
  ddp      a data-parallel fit under torchrun (gloo, 1 thread per process) with 1 and then 2
           processes, each holding its share of MNIST: seconds per epoch, speed-up, test SSE
  grid     GridSearchCV wall time with n_jobs=1 against joblib's dask backend on a
           dask.distributed LocalCluster of 2 worker processes (1 thread each)

Page cache is file-backed memory, not anonymous: a memmap's pages do not count, the float32
copies a fit would make of them do. The memmaps hold the pixels as stored, 0..255, so the model
centres and scales them (a linear output); test errors are reported for pixels in [0, 1]. The
memmaps are written to --work-dir (default: a temporary folder, removed afterwards), about 0.7 GB.

MNIST is read from, or downloaded into, <data home>/mnist/ (--data-home, else $SKAE_DATA, else
scikit-learn's data home). Usage, from the repository root:

    python benchmarks/scale_out.py                      # all four, about 4 minutes on 2 cores
    python benchmarks/scale_out.py --parts memory,ddp
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _harness import (
    PeakMemory,
    anonymous_mb,
    comma_list,
    command_line,
    describe_load,
    describe_machine,
    machine_info,
    markdown_table,
    positive_int,
    write_json,
    write_text,
)

PARTS = ("memory", "epoch", "ddp", "grid")
MNIST_ROWS = 60_000
MEMORY_ROWS = (60_000, 240_000, 400_000)  # 1x, 4x MNIST, and the 400,000
GRID = {"n_components": [16, 32], "noise_type": [None, "masking"]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", type=comma_list(str, PARTS), default=list(PARTS))
    parser.add_argument("--data-home", default=None, help="default: $SKAE_DATA, else sklearn's")
    parser.add_argument("--work-dir", default=None, help="where the memmaps go (default: temp)")
    parser.add_argument("--epoch-rounds", type=positive_int, default=4, help="paired epochs")
    parser.add_argument("--ddp-epochs", type=positive_int, default=4, help="epochs per DDP fit")
    parser.add_argument(
        "--ddp-batch-sizes",
        type=comma_list(positive_int),
        default=[256, 2048],
        help="global batch sizes of the DDP fits (default 256, the default's, and 2048)",
    )
    parser.add_argument("--grid-rows", type=positive_int, default=6000, help="MNIST rows")
    parser.add_argument("--output-dir", default="benchmark_results")
    # Internal: the script runs its own measurements in child processes.
    parser.add_argument("--child", choices=("memory", "ddp"), help=argparse.SUPPRESS)
    parser.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- helpers -----------------------------------------------------------------------------------


def mnist(data_home):
    from skae.datasets import load_mnist

    return load_mnist(data_home=data_home)


def write_memmap(path, images, n_rows):
    """A uint8 memmap of ``n_rows`` MNIST images (the 60,000 repeated), as on disk."""
    pixels = np.round(images * 255).astype(np.uint8)
    stored = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n_rows, 784))
    for start in range(0, n_rows, len(pixels)):
        stop = min(start + len(pixels), n_rows)
        stored[start:stop] = pixels[: stop - start]
    stored.flush()
    del stored
    return np.load(path, mmap_mode="r")


def test_sse(est, X_test):
    reconstruction = est.inverse_transform(est.transform(X_test))
    return float(np.square(X_test.astype(np.float64) - reconstruction).sum(axis=1).mean())


def run_child(part, args, extra, *, launcher=None, timeout=3600):
    command = [sys.executable, __file__, "--child", part, "--child-args", json.dumps(extra)]
    if args.data_home:
        command += ["--data-home", args.data_home]
    if launcher:
        command = [*launcher, __file__, *command[2:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- children ----------------------------------------------------------------------------------


def memory_child(args, extra):
    """One process: the peak anonymous memory of fit() on a memmap; optionally its quality."""
    import torch

    from skae import AutoEncoderTransformer

    torch.set_num_threads(extra["threads"])
    X = np.load(extra["path"], mmap_mode="r")
    warnings.simplefilter("ignore")
    # Warm-up: torch's and the allocators' one-off costs are not the fit's.
    AutoEncoderTransformer(max_iter=1, random_state=0).fit(np.asarray(X[:2000], np.float32))
    est = AutoEncoderTransformer(max_iter=extra["max_iter"], random_state=0)
    with PeakMemory(anonymous_mb, interval=0.005) as memory:
        started = time.perf_counter()
        est.fit(X)
        seconds = time.perf_counter() - started
    result = {"rows": int(X.shape[0]), "growth_mb": memory.growth_mb, "fit_s": seconds,
              "epochs": est.n_iter_}  # fmt: skip
    if extra.get("quality"):
        # The memmap holds pixels 0..255; errors are reported for pixels in [0, 1].
        X_test = mnist(args.data_home).X_test * 255
        result["test_sse_memmap"] = test_sse(est, X_test) / 255**2
        in_memory = AutoEncoderTransformer(max_iter=extra["max_iter"], random_state=0)
        in_memory.fit(np.asarray(X, dtype=np.float32))
        result["test_sse_in_memory"] = test_sse(in_memory, X_test) / 255**2
    return result


def ddp_child(args, extra):
    """One rank of a torchrun launch: fit on this rank's share of MNIST, time it."""
    import torch
    import torch.distributed as dist

    from skae import AutoEncoderTransformer

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = mnist(args.data_home)
    shard = np.array_split(data.X_train, world)[rank]
    warnings.simplefilter("ignore")
    est = AutoEncoderTransformer(
        max_iter=extra["epochs"], batch_size=extra["batch_size"], random_state=0
    )
    dist.barrier()
    started = time.perf_counter()
    est.fit(shard)
    dist.barrier()
    seconds = time.perf_counter() - started
    result = {"processes": world, "fit_s": seconds, "s_per_epoch": seconds / est.n_iter_,
              "epochs": est.n_iter_, "batch_size": est.batch_size_,
              "test_sse": test_sse(est, data.X_test)}  # fmt: skip
    dist.destroy_process_group()
    return result if rank == 0 else None


# -- the four parts ----------------------------------------------------------------------------


def measure_memory(args, work_dir, images):
    rows = []
    for n_rows in MEMORY_ROWS:
        path = work_dir / f"mnist_{n_rows}.npy"
        write_memmap(path, images, n_rows)
        extra = {"path": str(path), "threads": 2, "max_iter": 1, "quality": False}
        rows.append(run_child("memory", args, extra))
        print(f"memory: {rows[-1]}", flush=True)
    # Quality: the default budget from the 1x memmap against the same fit in memory.
    extra = {"path": str(work_dir / f"mnist_{MNIST_ROWS}.npy"), "threads": 2,
             "max_iter": "auto", "quality": True}  # fmt: skip
    quality = run_child("memory", args, extra)
    print(f"memory, default fit: {quality}", flush=True)
    return {"one_epoch": rows, "default_fit": quality}


def measure_epochs(args, work_dir, images):
    import torch

    from skae import AutoEncoderTransformer

    torch.set_num_threads(2)
    memmap = np.load(work_dir / f"mnist_{MNIST_ROWS}.npy", mmap_mode="r")
    in_memory = np.asarray(memmap, dtype=np.float32)  # the same values, 0..255
    warnings.simplefilter("ignore")
    models = {
        "in_memory": (AutoEncoderTransformer(random_state=0), in_memory),
        "memmap": (AutoEncoderTransformer(random_state=0), memmap),
    }
    times = {name: [] for name in models}
    for _ in range(args.epoch_rounds + 1):  # the first round builds the models: left out
        for name, (est, X) in models.items():
            started = time.perf_counter()
            est.partial_fit(X)
            times[name].append(time.perf_counter() - started)
    ratios = [m / i for m, i in zip(times["memmap"][1:], times["in_memory"][1:], strict=True)]
    result = {
        "s_per_epoch_in_memory": statistics.median(times["in_memory"][1:]),
        "s_per_epoch_memmap": statistics.median(times["memmap"][1:]),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
    }
    print(f"epoch: {result}", flush=True)
    return result


def measure_ddp(args):
    results = []
    for batch_size in args.ddp_batch_sizes:
        single = None
        for processes in (1, 2):
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc_per_node={processes}"]  # fmt: skip
            extra = {"epochs": args.ddp_epochs, "batch_size": batch_size}
            result = run_child("ddp", args, extra, launcher=launcher)
            single = single or result
            result["speed_up"] = single["s_per_epoch"] / result["s_per_epoch"]
            results.append(result)
            print(f"ddp: {result}", flush=True)
    return results


def measure_grid(args):
    import joblib
    from dask.distributed import Client, LocalCluster
    from sklearn.model_selection import GridSearchCV

    from skae import AutoEncoderTransformer

    X = mnist(args.data_home).X_train[: args.grid_rows]
    warnings.simplefilter("ignore")

    def search():
        est = AutoEncoderTransformer(max_iter=20, random_state=0)
        started = time.perf_counter()
        GridSearchCV(est, GRID, cv=3).fit(X)
        return time.perf_counter() - started

    import torch

    torch.set_num_threads(1)
    serial = search()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):  # fmt: skip
        with joblib.parallel_backend("dask"):
            on_dask = search()
    result = {"fits": 3 * 4, "rows": len(X), "serial_s": serial, "dask_2_workers_s": on_dask,
              "speed_up": serial / on_dask}  # fmt: skip
    print(f"grid: {result}", flush=True)
    return result


# -- report ------------------------------------------------------------------------------------


def report(results, args, machine, argv, *, final=True):
    """Write the markdown and JSON (after every part, so a stopped run keeps the parts it
    finished); print the markdown at the end."""
    import pandas as pd

    sections = [
        f"## Scaling out (machine: {describe_machine(machine)})",
        f"{describe_load(machine)}.",  # brings machine["load"], in the JSON, up to date
    ]
    if "memory" in results:
        frame = pd.DataFrame(results["memory"]["one_epoch"])
        sections.append(
            "Peak anonymous-memory growth of one epoch of fit() on a uint8 memmap:\n\n"
            + markdown_table(frame, {"growth_mb": ".0f", "fit_s": ".1f"})
        )
        quality = results["memory"]["default_fit"]
        sections.append(
            f"Default fit (max_iter='auto', {quality['epochs']} epochs) from the 60,000-row "
            f"memmap: test SSE {quality['test_sse_memmap']:.2f} against "
            f"{quality['test_sse_in_memory']:.2f} in memory; memory growth "
            f"{quality['growth_mb']:.0f} MB."
        )
    if "epoch" in results:
        epoch = results["epoch"]
        sections.append(
            f"Seconds per epoch (2 threads): in memory {epoch['s_per_epoch_in_memory']:.2f}, "
            f"memmap {epoch['s_per_epoch_memmap']:.2f}; median paired ratio "
            f"{epoch['ratio_median']:.2f}."
        )
    if "ddp" in results:
        frame = pd.DataFrame(results["ddp"])
        sections.append(
            "Data-parallel fit (torchrun, gloo, 1 thread per process):\n\n"
            + markdown_table(
                frame, {"fit_s": ".1f", "s_per_epoch": ".2f", "test_sse": ".2f", "speed_up": ".2f"}
            )  # fmt: skip
        )
    if "grid" in results:
        grid = results["grid"]
        sections.append(
            f"GridSearchCV of {grid['fits']} fits on {grid['rows']} MNIST rows: "
            f"{grid['serial_s']:.1f} s with n_jobs=1, {grid['dask_2_workers_s']:.1f} s on 2 "
            f"dask workers ({grid['speed_up']:.2f}x)."
        )
    if not final:
        sections.insert(
            1, f"**Incomplete run: parts {', '.join(results)} of {', '.join(args.parts)}.**"
        )
    text = "\n\n".join(sections)
    if final:
        print(text)
    out = Path(args.output_dir)
    write_text(out / "scale_out.md", text + "\n")
    write_json(
        out / "scale_out.json",
        {
            "command": command_line("benchmarks/scale_out.py", argv),
            "machine": machine,
            "complete": final,
            "results": results,
        },  # fmt: skip
    )


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        child = {"memory": memory_child, "ddp": ddp_child}[args.child]
        result = child(args, json.loads(args.child_args))
        if result is not None:
            print(json.dumps(result))
        return 0
    print("Scaling-out benchmark: about 4 minutes on 2 CPU cores.", flush=True)
    images = mnist(args.data_home).X_train
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="skae_scale_out_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    results, machine = {}, machine_info("cpu")
    measures = {
        "memory": lambda: measure_memory(args, work_dir, images),
        "epoch": lambda: measure_epochs(args, work_dir, images),
        "ddp": lambda: measure_ddp(args),
        "grid": lambda: measure_grid(args),
    }
    try:
        if "memory" in args.parts or "epoch" in args.parts:
            write_memmap(work_dir / f"mnist_{MNIST_ROWS}.npy", images, MNIST_ROWS)
        for part in (p for p in PARTS if p in args.parts):
            results[part] = measures[part]()
            report(results, args, machine, argv, final=False)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    report(results, args, machine, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
