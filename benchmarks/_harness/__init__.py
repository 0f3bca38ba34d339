"""The benchmarks' shared harness. Not part of skae: the scripts import it from their own folder
(``from _harness import ...``), as ``python benchmarks/<script>.py`` puts that folder first.

A benchmark script is its protocol and little else:

- ``cli``: the shared options (data, --seed, --device, --threads, --output-dir, --quiet);
- ``data``: MNIST-like images with a digits fallback (``load_dataset``), small tables
  (``load_table``), R's and palmerpenguins' real incomplete tables (``load_real_table``),
  subsets;
- ``machine``: a cap on threads, the machine's description, how busy it was over the run
  (``machine_load``) and the threads a fit used (``fit_threads``), warm-up, peak memory;
- ``fitting``: ``timed_fit`` (wall time, each epoch's time, a progress bar, warnings counted,
  Ctrl-C stops the run) and ``runs`` (a bar over the runs);
- ``report``: ``Report``, whose CSV, JSON and markdown are rewritten atomically after every row,
  so a killed run keeps every row it finished;
- ``holes``: where the holes go: MCAR, MAR and MNAR (``simulate_holes``), the same for every
  imputer;
- ``figures``: bars and lines per method with whiskers, differences from a reference, captions.
"""

# ruff: noqa: F401 (the names the scripts import)
from .cli import (
    add_common_arguments,
    add_data_arguments,
    add_machine_arguments,
    add_output_arguments,
    benchmark_parser,
    comma_list,
    command_line,
    positive_int,
)
from .data import (
    Dataset,
    DatasetUnavailable,
    announce_fallback,
    digits_images,
    load_dataset,
    load_real_table,
    load_table,
    subsample,
    swiss_roll,
)
from .fitting import Fit, fixed_epoch_budget, runs, timed_fit
from .holes import MECHANISMS, simulate_holes
from .machine import (
    BUSY_CORES,
    PeakMemory,
    anonymous_mb,
    describe_load,
    describe_machine,
    fit_threads,
    limit_threads,
    machine_caption,
    machine_info,
    machine_load,
    resolve_device,
    start_load_watch,
    warm_up,
)
from .report import Report, atomic_save, markdown_table, write_csv, write_json, write_text
