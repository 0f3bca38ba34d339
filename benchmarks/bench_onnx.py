"""Inference of an exported model with onnxruntime against the estimator's own ``transform``.

For each default estimator (AutoEncoderTransformer(), VariationalAutoEncoderTransformer()),
fitted briefly on MNIST training rows (the time of inference depends on the network's shape,
not on its weights), the model is exported with ``skae.onnx.to_onnx`` and both are timed on the
10,000 MNIST test images, with the same number of threads (torch's and the estimator's
``n_threads`` for ``transform``, onnxruntime's intra-op pool), alternating call by call so
that drifts in the machine's speed hit both alike:

  all rows     one call on the 10,000 rows: the median of ``--repeats`` calls
  one row      one call per row over the first ``--single-rows`` rows, the median of the
               ``--repeats`` runs' mean time per call: the latency a service would see

The largest absolute difference between the two outputs over the 10,000 rows is reported too.
A markdown table is printed and everything is written as JSON (``--output``).

MNIST is read from, or downloaded into, <data home>/mnist/ (``--data-home``, else $SKAE_DATA,
else scikit-learn's data home). Needs the onnx extra: ``pip install "skae[onnx]"``.

    python benchmarks/bench_onnx.py                  # 1 thread
    python benchmarks/bench_onnx.py --threads 2
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning

import skae
import skae.onnx
from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer
from skae.datasets import load_mnist

ESTIMATORS = {
    "AutoEncoderTransformer()": AutoEncoderTransformer,
    "VariationalAutoEncoderTransformer()": VariationalAutoEncoderTransformer,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-home",
        default=None,
        help="folder holding mnist/ (default: $SKAE_DATA, else scikit-learn's)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="fail instead of downloading MNIST when it is missing",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="threads for torch and onnxruntime alike (default 1)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (default 7)")
    parser.add_argument(
        "--single-rows",
        type=int,
        default=500,
        help="rows sent one at a time per repeat (default 500)",
    )
    parser.add_argument(
        "--fit-rows",
        type=int,
        default=10_000,
        help="training rows for the brief fit (default 10,000)",
    )
    parser.add_argument("--max-iter", type=int, default=2, help="epochs of the fit (default 2)")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("bench_onnx.json"),
        help="where to write the JSON results (default ./bench_onnx.json)",
    )
    return parser.parse_args(argv)


def make_session(model, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # onnxruntime's pool spins after each run by default, holding a core while transform's
    # torch threads run in alternation with it (transform measured 43 ms instead of 26 ms at 2
    # threads): no spinning, so that each meets an idle machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def clock(function, *args):
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def per_row(function, rows):
    """Mean seconds per call of ``function`` on each row alone."""
    start = time.perf_counter()
    for i in range(len(rows)):
        function(rows[i : i + 1])
    return (time.perf_counter() - start) / len(rows)


def measure(estimator, X_test, args):
    model = skae.onnx.to_onnx(estimator, X_test[:1])
    sess = make_session(model, args.threads)

    def run_onnx(rows):
        return sess.run(None, {"X": rows})[0]

    difference = float(np.abs(run_onnx(X_test) - estimator.transform(X_test)).max())
    single = X_test[: args.single_rows]
    timings = {"transform": ([], []), "onnxruntime": ([], [])}
    for _ in range(args.repeats):  # alternating, so that both meet the same machine
        for name, function in (("transform", estimator.transform), ("onnxruntime", run_onnx)):
            timings[name][0].append(clock(function, X_test))
            timings[name][1].append(per_row(function, single))
    result = {"max_abs_difference": difference, "onnx_bytes": len(model.SerializeToString())}
    for name, (whole, rows) in timings.items():
        result[name] = {
            "all_rows_s": statistics.median(whole),
            "one_row_ms": 1e3 * statistics.median(rows),
            "all_rows_runs_s": whole,
            "one_row_runs_ms": [1e3 * r for r in rows],
        }
    return result


def markdown(results, n_rows, threads, load):
    lines = [
        "| model | rows per call | transform | onnxruntime | speed-up | max abs diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        torch_, onnx_ = result["transform"], result["onnxruntime"]
        diff = f"{result['max_abs_difference']:.1e}"
        lines.append(
            f"| `{name}` | {n_rows:,} | {1e3 * torch_['all_rows_s']:.1f} ms | "
            f"{1e3 * onnx_['all_rows_s']:.1f} ms | "
            f"{torch_['all_rows_s'] / onnx_['all_rows_s']:.2f}x | {diff} |"
        )
        lines.append(
            f"| `{name}` | 1 | {torch_['one_row_ms']:.3f} ms | {onnx_['one_row_ms']:.3f} ms | "
            f"{torch_['one_row_ms'] / onnx_['one_row_ms']:.1f}x | |"
        )
    lines.append(
        f"\n{threads} thread(s) each; speed-up: transform's time over onnxruntime's. Load "
        f"average {load[0]:.1f} on {os.cpu_count()} cores when timing began (near or above the "
        "core count: a busy machine, timings indicative only)."
    )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    mnist = load_mnist(data_home=args.data_home, download=not args.no_download)
    X_train, X_test = mnist.X_train[: args.fit_rows], mnist.X_test
    load_before = os.getloadavg()
    results = {}
    for name, cls in ESTIMATORS.items():
        estimator = cls(max_iter=args.max_iter, random_state=0, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a short fit on purpose
            estimator.fit(X_train)
        if "n_threads" in estimator.get_params():
            estimator.set_params(n_threads=args.threads)
        print(f"timing {name} ...", file=sys.stderr)
        results[name] = measure(estimator, X_test, args)
    table = markdown(results, len(X_test), args.threads, load_before)
    print(table)
    payload = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if argv is None else argv,
        "threads": args.threads,
        "repeats": args.repeats,
        "test_rows": len(X_test),
        "single_rows": min(args.single_rows, len(X_test)),
        "fit": {"rows": len(X_train), "max_iter": args.max_iter},
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "versions": {
            "python": platform.python_version(),
            "skae": skae.__version__,
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
        "results": results,
        "table": table,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
