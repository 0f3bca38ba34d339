"""The options the benchmark scripts share, and argparse types for comma lists."""

from __future__ import annotations

import argparse
import shlex
import sys

DATASETS = ("mnist", "fashion-mnist", "digits")

DATA_HOME_HELP = (
    "folder holding <dataset>/ with the four *-ubyte.gz IDX files, downloaded there when "
    "missing (default: $SKAE_DATA, else scikit-learn's data home, ~/scikit_learn_data)"
)


def benchmark_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose --help shows the script's docstring as written."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_data_arguments(parser, *, datasets=DATASETS, default="mnist", download=True) -> None:
    """--dataset (when datasets is given), --data-home and --no-download."""
    if datasets:
        parser.add_argument("--dataset", choices=datasets, default=default)
    parser.add_argument("--data-home", default=None, help=DATA_HOME_HELP)
    if download:
        parser.add_argument(
            "--no-download",
            action="store_true",
            help="never download: fall back to scikit-learn's digits at once when the files "
            "are missing",
        )


def add_machine_arguments(parser, *, device="auto", threads=None, threads_help=None) -> None:
    """--device and --threads (a cap on torch's and the BLAS/OpenMP pools' threads)."""
    parser.add_argument("--device", default=device, help='"auto", "cpu", "cuda", "cuda:N", ...')
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=threads,
        help=threads_help
        or "at most this many threads for torch and for BLAS/OpenMP (default: the libraries' "
        "own); 1 behaves best on a busy machine",
    )


def add_output_arguments(parser, *, output_dir="benchmark_results", quiet=True) -> None:
    """--output-dir and (for scripts with progress bars) --quiet."""
    parser.add_argument(
        "--output-dir", default=output_dir, help=f"where results go (default {output_dir})"
    )
    if quiet:
        parser.add_argument(
            "--quiet", action="store_true", help="no progress bars (runs and epochs) on stderr"
        )


def add_common_arguments(parser, *, output_dir="benchmark_results", quiet=True) -> None:
    """Data, --seed, machine and outputs: the options of a script run on one image dataset."""
    add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seeds subsets, splits and models")
    add_machine_arguments(parser)
    add_output_arguments(parser, output_dir=output_dir, quiet=quiet)


def comma_list(item_type, choices=None):
    """An argparse type for "a,b,c" lists, each item converted and checked against choices."""

    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        try:
            values = [item_type(item) for item in items]
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        unknown = [v for v in values if choices is not None and v not in choices]
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


def command_line(script: str, argv=None) -> str:
    """The command as typed (argv defaults to sys.argv[1:], as for argparse)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", script, *args])
