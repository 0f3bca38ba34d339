"""Tests of the benchmark scripts and their harness: scikit-learn's digits, tiny settings, no
network. Runs are real (no mocks): killed and interrupted runs are killed and interrupted.

Nothing here reads the real MNIST files: the data home is always an explicit empty folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# The runs here train for an epoch or two, to test the scripts' plumbing, not their models:
# each fit's ConvergenceWarning is expected (the reports count them, through timed_fit).
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scripts():
    # The scripts import their helper module from their own folder, as `python script.py` does.
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCHMARKS))
        names = ("compare_pca", "grid_search", "bench_speed", "bench_variants",
                 "never_worse_than_pca", "bench_threads")  # fmt: skip
        modules = {name: _load(name) for name in names}
        yield {"_harness": importlib.import_module("_harness"), **modules}


@pytest.fixture
def no_mnist(tmp_path, monkeypatch):
    """An empty data home, no system-wide copies, and a network that always fails."""

    def offline(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr("skae.datasets._fetch.SYSTEM_DATA_DIRS", (), raising=False)
    # The development copy that SKAE_DATA may point at must not be found instead.
    monkeypatch.delenv("SKAE_DATA", raising=False)
    home = tmp_path / "empty_data_home"
    home.mkdir()
    return home


MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _assert_says_where_to_put_mnist(first_line, data_home):
    """The fallback notice alone tells the user how to get MNIST: files, folder, SKAE_DATA."""
    assert first_line.startswith("WARNING: mnist ") and "digits" in first_line
    assert all(name in first_line for name in MNIST_FILES)
    assert f"{data_home / 'mnist'}/" in first_line
    assert "SKAE_DATA" in first_line and "--data-home" in first_line


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC, path


def _assert_no_temporaries(folder):
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


# -- compare_pca ---------------------------------------------------------------------------------

DIGITS_RUN = ["--n-components", "4,8", "--methods", "pca,ae", "--max-iter", "2"]
DIGITS_RUN += ["--device", "cpu", "--threads", "1"]


def _figure_text(fig):
    """Everything written on a figure: title, caption, labels."""
    from matplotlib.text import Text

    return " ".join(text.get_text() for text in fig.findobj(Text))


def _bars(ax):
    from matplotlib.container import BarContainer

    return [bar for c in ax.containers if isinstance(c, BarContainer) for bar in c]


def _data_lines(ax):
    """The lines that join measurements (not horizontal reference lines such as chance)."""
    return [
        line
        for line in ax.get_lines()
        if len(set(line.get_ydata())) > 1 and line.get_linestyle() != "None"  # not whisker caps
    ]


def test_compare_pca_on_digits(scripts, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["--dataset", "digits", *DIGITS_RUN, "--output-dir", str(out)]
    assert scripts["compare_pca"].main(argv) == 0

    captured = capsys.readouterr()
    stdout = captured.out
    # The expected duration comes first, then where the results go, then the table.
    assert "minute" in stdout.splitlines()[0]
    assert "rewritten after each run" in stdout.splitlines()[1]
    assert "\n## Autoencoders vs PCA on digits" in stdout
    # Progress: a bar over the runs and one per fit's epochs, on stderr.
    assert "digits:" in captured.err and "ae n_components=8:" in captured.err
    results = pd.read_csv(out / "compare_pca_digits.csv")
    assert list(zip(results["method"], results["n_components"], strict=True)) == [
        ("pca", 4), ("pca", 8), ("ae", 4), ("ae", 8),
    ]  # fmt: skip
    assert (results["dataset"] == "digits").all()
    for column in ("test_accuracy_logreg", "test_accuracy_knn"):
        assert results[column].between(0, 1).all()
    # Chance is 10%; even 2 epochs of training must do much better on digits.
    assert (results["test_accuracy_knn"] > 0.3).all()
    assert (results["test_sse_per_image"] > 0).all()
    assert results["test_sse_per_image"].to_numpy() == pytest.approx(
        64 * results["test_mse_per_pixel"].to_numpy()
    )
    assert (results["fit_time_s"] > 0).all() and (results["transform_time_train_test_s"] > 0).all()
    # Every fit time comes with its spread, which holds it.
    assert (results["fit_time_low_s"] <= results["fit_time_s"]).all()
    assert (results["fit_time_s"] <= results["fit_time_high_s"]).all()
    pca = results[results["method"] == "pca"].set_index("n_components")["test_sse_per_image"]
    assert pca[8] < pca[4]
    assert results.loc[results["method"] == "ae", "epochs"].tolist() == [2, 2]
    assert results.loc[results["method"] == "pca", "epochs"].isna().all()
    # Unknown (never guessed) until the estimators record their fit_plan_; then --threads 1's.
    threads = results.loc[results["method"] == "ae", "fit_threads"]
    assert threads.isna().all() or threads.tolist() == [1, 1]
    assert (results["other_processes_cores"] >= 0).all()  # each fit's view of the machine
    for method in ("pca", "ae"):
        assert f"| {method} " in stdout

    report = json.loads((out / "compare_pca_digits.json").read_text())
    assert report["dataset"] == "digits" and report["fallback"] is None
    assert report["run"] == "full" and (report["n_train"], report["n_test"]) == (1347, 450)
    assert report["complete"] and report["rows_done"] == report["rows_expected"] == 4
    assert report["command"].startswith("python benchmarks/compare_pca.py --dataset digits")
    assert {"cpu", "torch_threads", "device", "date", "gpu"} <= set(report["machine"])
    assert report["machine"]["device"] == "cpu"
    load = report["machine"]["load"]  # over the whole run, up to its last write
    assert 0 < load["seconds"] and load["load_average_end"] >= 0
    assert load["busy"] == (load["other_processes_cores"] >= scripts["_harness"].BUSY_CORES)
    machine_line = (out / "compare_pca_digits.md").read_text().split("\n\n")[1]
    assert machine_line.startswith(("Quiet machine: other", "**Busy machine, timings indicative"))
    assert len(report["results"]) == 4
    # The JSON keeps each epoch's time; they add up to (nearly) the whole fit.
    for row in report["results"]:
        assert len(row["epoch_times_s"]) == (row["epochs"] or 0)
        if row["epochs"]:
            assert 0 < sum(row["epoch_times_s"]) <= row["fit_time_s"]
    assert "Incomplete" not in (out / "compare_pca_digits.md").read_text()
    for name in ("reconstructions", "accuracy", "reconstruction_error", "fit_time"):
        _assert_png(out / f"{name}_digits.png")
    _assert_no_temporaries(out)


@pytest.mark.parametrize("sizes", ["8", "4,8"], ids=["one-size", "two-sizes"])
def test_compare_pca_figures_are_honest_and_say_their_settings(scripts, tmp_path, sizes):
    compare = scripts["compare_pca"]
    argv = ["--dataset", "digits", *DIGITS_RUN, "--n-components", sizes]
    outcome = compare.benchmark([*argv, "--output-dir", str(tmp_path)])

    figures = outcome.figures
    assert {"accuracy", "reconstruction_error", "fit_time", "reconstructions"} <= set(figures)
    for name in figures:
        _assert_png(tmp_path / f"{name}_digits.png")
    frame = outcome.frame
    n_sizes = frame["n_components"].nunique()
    for name in ("reconstruction_error", "fit_time"):
        (ax,) = figures[name].axes
        if n_sizes == 1:
            # One bar per method, no line suggesting an order between methods.
            assert len(ax.patches) == 2 and not _data_lines(ax), name
        else:
            lines = _data_lines(ax)
            assert len(lines) == 2 and all(len(line.get_xdata()) == 2 for line in lines)
        # Heights compare as ratios only on an axis that starts at zero.
        assert ax.get_ylim()[0] == 0, name

    # Accuracy: the autoencoder's minus PCA's at the same size, in points; PCA is the 0 line.
    for ax, name in zip(figures["accuracy"].axes, ("logreg", "knn"), strict=True):
        by_size = frame.pivot(
            index="n_components", columns="method", values=f"test_accuracy_{name}"
        )
        expected = ((by_size["ae"] - by_size["pca"]) * 100).tolist()
        # A grey band for the test set's sampling noise: two binomial standard errors.
        pca_accuracy = by_size["pca"].to_numpy()
        noise = 200 * np.sqrt(pca_accuracy * (1 - pca_accuracy) / 450)
        grey = [p for p in ax.patches if p not in _bars(ax)] + list(ax.collections)
        (band,) = [b for b in grey if np.ravel(b.get_facecolor())[:3] == pytest.approx([0.88] * 3)]
        extent = band.get_bbox() if n_sizes == 1 else band.get_paths()[0].get_extents()
        assert (extent.y0, extent.y1) == pytest.approx((-noise.max(), noise.max()))
        if n_sizes == 1:
            assert [bar.get_height() for bar in _bars(ax)] == pytest.approx(expected)
            assert [t.get_text() for t in ax.get_xticklabels()] == ["ae"]
            assert f"pca: {by_size['pca'].iloc[0]:.1%}" in ax.get_title()
        else:
            (line,) = _data_lines(ax)
            assert list(line.get_ydata()) == pytest.approx(expected)
            ticks = [t.get_text() for t in ax.get_xticklabels()]
            assert ticks == [f"{k}\npca {by_size.loc[k, 'pca']:.1%}" for k in (4, 8)]
        low, high = ax.get_ylim()
        assert low <= min(0, *expected, *-noise) and high >= max(0, *expected, *noise)
        assert any(list(line.get_ydata()) == [0, 0] for line in ax.get_lines())  # PCA's level
    assert "percentage points" in figures["accuracy"].axes[0].get_ylabel()
    caption = " ".join(_figure_text(figures["accuracy"]).split())  # captions are wrapped
    assert "Grey band: two standard errors of pca's accuracy on 450 test images" in caption

    # Fit time: whiskers from each fit's spread, and a caption that says what they are.
    (ax,) = figures["fit_time"].axes
    whiskers = [c for c in ax.containers if hasattr(c, "has_yerr") and c.has_yerr]
    spans = sorted(
        (float(min(seg[:, 1])), float(max(seg[:, 1])))
        for c in whiskers
        for seg in c.lines[2][0].get_segments()
    )
    expected = sorted(zip(frame["fit_time_low_s"], frame["fit_time_high_s"], strict=True))
    assert np.array(spans) == pytest.approx(np.array(expected))
    caption = " ".join(_figure_text(figures["fit_time"]).split())
    assert "Whiskers: the machine's noise, as the time the fit would have taken" in caption
    if n_sizes == 1:
        fit_times = [bar.get_height() for bar in ax.patches]
        assert fit_times == pytest.approx(frame["fit_time_s"].tolist())
    for name, fig in figures.items():
        text = _figure_text(fig)
        assert "1,347 training / 450 test images" in text, name
        assert "epochs (n_iter_): ae 2" in text and "torch threads at most 1" in text, name
        words = " ".join(text.split())  # captions are wrapped
        assert "torch threads per fit: " in words, name
        assert "machine" in words and ": other processes used" in words, name
        assert "Quick run" not in text
    # Each reconstruction row is labelled with that method's test error.
    sse = frame[frame["n_components"] == 8].set_index("method")["test_sse_per_image"]
    gallery = _figure_text(figures["reconstructions"])
    assert f"pca\nSSE {sse['pca']:.2f}" in gallery and f"ae\nSSE {sse['ae']:.2f}" in gallery


def test_compare_pca_keeps_a_colour_per_method(scripts, tmp_path):
    outcome = scripts["compare_pca"].benchmark(
        ["--dataset", "digits", *DIGITS_RUN, "--n-components", "8", "--methods", "ae"]
        + ["--output-dir", str(tmp_path)]
    )
    from matplotlib.colors import to_hex

    # PCA runs, as the reference, though --methods did not list it.
    assert outcome.frame["method"].tolist() == ["pca", "ae"]
    for name in ("reconstruction_error", "fit_time"):
        ax = outcome.figures[name].axes[0]
        labels = [tick.get_text() for tick in ax.get_xticklabels()]
        colors = [to_hex(bar.get_facecolor()) for bar in ax.patches]
        # The same order and colours as in a run listing the methods the other way round.
        assert labels == ["pca", "ae"] and colors == [to_hex("C0"), to_hex("C1")], name
    for ax in outcome.figures["accuracy"].axes:
        assert [to_hex(bar.get_facecolor()) for bar in _bars(ax)] == [to_hex("C1")]


def test_compare_pca_quick_run_says_so_everywhere(scripts, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["--quick", "--dataset", "digits", "--n-train", "500", "--methods", "pca,ae"]
    argv += ["--n-components", "16", "--max-iter", "2", "--device", "cpu", "--threads", "1"]
    argv += ["--output-dir", str(out)]
    outcome = scripts["compare_pca"].benchmark(argv)

    stdout = capsys.readouterr().out
    assert "quick run" in stdout.splitlines()[0].lower()
    banner = "Quick run on a 500-image subset"
    assert f"## {banner}" in stdout
    assert (out / "compare_pca_digits.md").read_text().startswith(f"## {banner}")
    report = json.loads((out / "compare_pca_digits.json").read_text())
    assert report["run"] == "quick" and report["n_train"] == 500 and banner in report["title"]
    for name, fig in outcome.figures.items():
        assert banner in fig.get_suptitle(), name


def test_compare_pca_prints_the_expected_duration(scripts):
    compare = scripts["compare_pca"]
    quick = compare.expected_duration(compare.parse_args(["--quick"]), 10_000, [64])
    assert quick == f"Quick run: about {compare.QUICK_RUN_MINUTES} minutes on 2 CPU cores"
    full = compare.expected_duration(compare.parse_args([]), 60_000, [16, 32, 64])
    assert full == f"Full run: about {compare.FULL_RUN_MINUTES} minutes on 2 CPU cores"
    # Other runs are scaled from the default run they resemble.
    small = compare.parse_args(["--methods", "pca,ae", "--n-components", "64", "--max-iter", "2"])
    assert compare.expected_duration(small, 3000, [64]).startswith("This run: under a minute")
    longer = compare.parse_args(["--quick", "--methods", "pca,ae,vae,sparse,denoising"])
    assert "roughly" in compare.expected_duration(longer, 60_000, [64])


@pytest.mark.parametrize("download", [False, True], ids=["no-download", "download-fails"])
def test_compare_pca_falls_back_to_digits(scripts, tmp_path, no_mnist, capsys, download):
    out = tmp_path / "results"
    argv = ["--data-home", str(no_mnist), "--n-components", "4", "--methods", "pca"]
    argv += ["--device", "cpu", "--threads", "1", "--output-dir", str(out)]
    argv += [] if download else ["--no-download"]
    assert scripts["compare_pca"].main(argv) == 0

    captured = capsys.readouterr()
    _assert_says_where_to_put_mnist(captured.out.splitlines()[0], no_mnist)
    assert "## Autoencoders vs PCA on digits" in captured.out
    assert "standing in for mnist" in captured.out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"compare_pca_digits.{ext}" for ext in ("csv", "json", "md")]
        + [
            f"{name}_digits.png"
            for name in ("accuracy", "fit_time", "reconstruction_error", "reconstructions")
        ]
    )
    assert (pd.read_csv(out / "compare_pca_digits.csv")["dataset"] == "digits").all()
    report = json.loads((out / "compare_pca_digits.json").read_text())
    assert report["dataset"] == "digits"
    assert report["fallback"].startswith("mnist ")
    # Nothing was downloaded into the data home.
    assert not any(no_mnist.rglob("*.gz"))


def test_compare_pca_quick_defaults_yield_to_explicit_options(scripts):
    compare = scripts["compare_pca"]
    quick = compare.parse_args(["--quick"])
    # A representative subset: all test images, the estimators' own training budget.
    assert (quick.n_train, quick.n_test, quick.n_components) == (10_000, None, [64])
    assert (quick.methods, quick.max_iter, quick.threads) == (["pca", "ae", "vae"], None, 2)
    assert quick.quiet is False  # progress bars unless asked not to
    mixed = compare.parse_args(
        ["--quick", "--n-components", "32", "--methods", "pca,sparse", "--threads", "1"]
        + ["--max-iter", "3"]
    )
    assert (mixed.n_components, mixed.methods, mixed.threads) == ([32], ["pca", "sparse"], 1)
    # PCA is the reference: it runs, first, whether listed or not.
    assert compare.parse_args(["--methods", "vae,pca,ae"]).methods == ["pca", "vae", "ae"]
    assert compare.parse_args(["--methods", "ae"]).methods == ["pca", "ae"]
    assert (mixed.max_iter, mixed.n_train) == (3, 10_000)
    full = compare.parse_args([])
    assert (full.n_train, full.max_iter, full.n_components) == (None, None, [16, 32, 64])
    assert (full.methods, full.threads) == (list(compare.METHODS), None)


def test_limit_threads_restores_the_defaults(scripts):
    import torch
    from threadpoolctl import threadpool_info

    def pools():
        return [pool["num_threads"] for pool in threadpool_info()]

    before = (torch.get_num_threads(), pools())
    with scripts["_harness"].limit_threads(1):
        assert torch.get_num_threads() == 1
        assert set(pools()) <= {1}
    assert (torch.get_num_threads(), pools()) == before


def test_compare_pca_keeps_only_code_sizes_that_compress(scripts, capsys):
    compare, common = scripts["compare_pca"], scripts["_harness"]
    digits = common.digits_images(0)  # 64 features
    assert compare.usable_sizes([16, 32, 64, 128], digits) == [16, 32]
    assert "Skipping n_components [64, 128]" in capsys.readouterr().out
    # The quick run's 64 components on digits standing in for MNIST: a quarter of the features.
    assert compare.usable_sizes([64], digits) == [16]
    assert "would not compress the 64 features of digits; using 16" in capsys.readouterr().out


def test_compare_pca_rejects_unknown_method(scripts, capsys):
    with pytest.raises(SystemExit):
        scripts["compare_pca"].parse_args(["--methods", "pca,ica"])
    assert "ica" in capsys.readouterr().err


# -- runs that stop: every finished row is on disk -----------------------------------------------

# PCA, then an autoencoder that would train for minutes: the run is stopped during its fit.
ENDLESS = ["--dataset", "digits", "--n-components", "8", "--methods", "pca,ae"]
ENDLESS += ["--max-iter", "100000", "--device", "cpu", "--threads", "1"]


def _wait_for_rows(path, n_rows, timeout=60.0):
    """Wait until the CSV at ``path`` holds n_rows rows (it is replaced whole, atomically)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(pd.read_csv(path)) >= n_rows:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never held {n_rows} rows")


def _assert_kept_pca_row_only(out):
    results = pd.read_csv(out / "compare_pca_digits.csv")
    assert results["method"].tolist() == ["pca"] and results["test_sse_per_image"].gt(0).all()
    report = json.loads((out / "compare_pca_digits.json").read_text())
    assert not report["complete"] and report["rows_done"] == 1 and report["rows_expected"] == 2
    assert [row["method"] for row in report["results"]] == ["pca"]
    assert "Incomplete run: 1 of 2 runs finished" in (out / "compare_pca_digits.md").read_text()
    _assert_no_temporaries(out)


def test_compare_pca_killed_during_a_fit_keeps_the_finished_rows(tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, str(BENCHMARKS / "compare_pca.py"), *ENDLESS, "--quiet"]
    process = subprocess.Popen(
        [*command, "--output-dir", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_for_rows(out / "compare_pca_digits.csv", 1)
        time.sleep(0.3)  # well into the autoencoder's fit
    finally:
        process.kill()  # SIGKILL: nothing runs after it
        _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    _assert_kept_pca_row_only(out)


def test_ctrl_c_during_a_fit_stops_the_run_and_keeps_the_finished_rows(
    scripts, tmp_path, capsys, monkeypatch, ctrl_c_raises
):
    # An endless fit: no validation split (early_stopping="auto" would end it on digits).
    monkeypatch.setattr("skae._plan.EARLY_STOPPING_BELOW", 0)
    out = tmp_path / "results"

    def press_ctrl_c():
        _wait_for_rows(out / "compare_pca_digits.csv", 1)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)  # the main thread gets a KeyboardInterrupt

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    # skae's fit turns Ctrl-C into an early return with a warning; the run stops all the same,
    # and the half-trained model does not become a row.
    with pytest.raises(SystemExit) as stopped:
        scripts["compare_pca"].main([*ENDLESS, "--output-dir", str(out)])
    presser.join()
    assert stopped.value.code == 130
    assert "Interrupted after 1 finished runs; kept: " in capsys.readouterr().err
    _assert_kept_pca_row_only(out)
    assert not list(out.glob("*.png"))  # figures come at the end of a complete run


# -- grid_search ---------------------------------------------------------------------------------

GRID_RUN = ["--n-samples", "300", "--cv", "2", "--n-components", "4", "--C", "1"]
GRID_RUN += [
    "--noise-types",
    "none,masking",
    "--max-iter",
    "1",
    "--device",
    "cpu",
    "--threads",
    "1",
]


def test_grid_search_on_digits(scripts, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["--dataset", "digits", *GRID_RUN, "--output-dir", str(out)]
    assert scripts["grid_search"].main(argv) == 0

    stdout = capsys.readouterr().out
    assert "Best parameters: {'ae__n_components': 4" in stdout
    assert "| rank_test_score |" in stdout
    table = pd.read_csv(out / "grid_search_digits.csv")
    assert len(table) == 2
    assert table["mean_test_score"].between(0, 1).all()
    # Ranks 1 and 2, or 1 and 1 when one epoch leaves both models at the same score.
    assert sorted(table["rank_test_score"])[0] == 1 and set(table["rank_test_score"]) <= {1, 2}
    report = json.loads((out / "grid_search_digits.json").read_text())
    assert report["dataset"] == "digits" and report["n_samples"] == 300
    assert set(report["best_params"]) == {"ae__n_components", "ae__noise_type", "clf__C"}
    assert 0 <= report["test_accuracy"] <= 1
    assert {r["ae__noise_type"] for r in report["cv_results"]} == {None, "masking"}
    _assert_no_temporaries(out)


def test_grid_search_falls_back_to_digits(scripts, tmp_path, no_mnist, capsys):
    out = tmp_path / "results"
    argv = ["--data-home", str(no_mnist), "--no-download", *GRID_RUN, "--output-dir", str(out)]
    assert scripts["grid_search"].main(argv) == 0

    _assert_says_where_to_put_mnist(capsys.readouterr().out.splitlines()[0], no_mnist)
    assert {p.name for p in out.iterdir()} == {
        f"grid_search_digits.{ext}" for ext in ("csv", "json", "md")
    }


# -- shared helpers ------------------------------------------------------------------------------


def test_markdown_table_aligns_numbers_and_blanks_missing(scripts):
    frame = pd.DataFrame({"method": ["pca", "ae"], "score": [0.5, math.nan], "k": [4, 16]})
    lines = scripts["_harness"].markdown_table(frame, {"score": ".2f"}).splitlines()
    assert lines[0] == "| method | score |  k |"
    assert lines[1] == "| ------ | ----: | -: |"
    assert lines[2] == "| pca    |  0.50 |  4 |"
    assert lines[3] == "| ae     |       | 16 |"


def test_bars_draw_when_a_mean_rounds_past_its_seeds_range(scripts):
    # Three seeds that gave the same value (as fits that all kept PCA's start do), whose mean
    # rounds above their maximum.
    import matplotlib.pyplot as plt

    seeds = [0.1, 0.1, 0.1]
    mean = np.mean(seeds)
    assert mean > max(seeds)  # the rounding this test is about
    frame = pd.DataFrame({"method": ["ae", "ae"], "k": [8, 16], "ratio": [mean, 0.5],
                          "low": [min(seeds), 0.4], "high": [max(seeds), 0.7]})  # fmt: skip
    fig, ax = plt.subplots()
    try:
        figures = importlib.import_module("_harness.figures")
        figures.grouped_bars(ax, frame, "k", "ratio", {"ae": "C0"}, low="low",
                             high="high", fmt=lambda v: f"{v:.2f}")  # fmt: skip
        assert [round(bar.get_height(), 2) for bar in ax.patches] == [0.1, 0.5]
    finally:
        plt.close(fig)


def test_report_rewrites_every_output_after_each_row(scripts, tmp_path, capsys):
    harness = scripts["_harness"]
    report = harness.Report(
        tmp_path, "bench", title="A benchmark", meta={"command": "python x.py"},
        notes=lambda: [f"{len(report.rows)} so far"], columns=["method"], expected=2,
    )  # fmt: skip
    report.add({"k": 4, "method": "pca", "epochs": None, "times": []})
    frame = pd.read_csv(tmp_path / "bench.csv")
    assert list(frame.columns) == ["method", "k", "epochs"]  # lists stay in the JSON only
    assert frame["method"].tolist() == ["pca"]
    first = json.loads((tmp_path / "bench.json").read_text())
    assert first["command"] == "python x.py" and first["results"][0]["times"] == []
    assert (first["complete"], first["rows_done"], first["rows_expected"]) == (False, 1, 2)
    markdown = (tmp_path / "bench.md").read_text()
    assert markdown.startswith("## A benchmark\n\n**Incomplete run: 1 of 2 runs finished.**")
    assert "1 so far" in markdown

    report.add({"k": 4, "method": "ae", "epochs": 3, "times": [0.1, 0.1, 0.1]})
    assert report.frame["epochs"].dtype == "Int64"  # whole numbers, with PCA's gap
    assert pd.read_csv(tmp_path / "bench.csv")["method"].tolist() == ["pca", "ae"]
    assert report.finish() in capsys.readouterr().out
    done = json.loads((tmp_path / "bench.json").read_text())
    assert done["complete"] and done["rows_done"] == 2
    assert "Incomplete" not in (tmp_path / "bench.md").read_text()
    assert "2 so far" in (tmp_path / "bench.md").read_text()
    _assert_no_temporaries(tmp_path)


def test_report_with_a_summary_writes_it_beside_the_rows(scripts, tmp_path):
    def mean_by_method(frame):
        return frame.groupby("method", as_index=False)["error"].mean()

    report = scripts["_harness"].Report(
        tmp_path, "bench", title="t", summarise=mean_by_method, rows_key="runs"
    )
    for seed, error in enumerate([1.0, 3.0]):
        report.add({"method": "ae", "seed": seed, "error": error})
    assert pd.read_csv(tmp_path / "bench.csv").to_dict("records") == [
        {"method": "ae", "error": 2.0}
    ]
    assert len(pd.read_csv(tmp_path / "bench_runs.csv")) == 2
    payload = json.loads((tmp_path / "bench.json").read_text())
    assert payload["summary"] == [{"method": "ae", "error": 2.0}] and len(payload["runs"]) == 2


def test_timed_fit_times_each_epoch_and_shows_progress(scripts, capsys):
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning

    from skae import AutoEncoderTransformer

    harness = scripts["_harness"]
    X = harness.digits_images(0).X_train
    ae = AutoEncoderTransformer(n_components=4, max_iter=3, random_state=0)
    with pytest.warns(ConvergenceWarning):  # counted, and passed on
        fit = harness.timed_fit(ae, X, label="tiny ae")
    assert len(fit.epoch_seconds) == ae.n_iter_ == 3
    assert 0 < sum(fit.epoch_seconds) <= fit.seconds
    assert fit.low <= fit.seconds <= fit.high
    assert fit.threads == harness.fit_threads(ae) and len(fit.convergence_warnings) == 1
    assert "tiny ae" in capsys.readouterr().err  # the epoch bar, on stderr
    columns = fit.columns()
    assert columns["epoch_time_median_s"] == pytest.approx(statistics.median(fit.epoch_seconds))

    # Without epochs: the spread of repeated fits, and no bar.
    pca = harness.timed_fit(PCA(4), X, repeats=3, progress=False)
    assert pca.epoch_seconds == [] and pca.threads is None
    assert pca.low <= pca.seconds <= pca.high
    assert capsys.readouterr().err == ""


class _Planned(BaseEstimator):
    """Says the threads its fit used, as skae's fit_plan_ does."""

    def fit(self, X, y=None):
        self.fit_plan_ = SimpleNamespace(n_threads=3, batch_size=32)
        return self


def test_fit_threads_are_what_the_fit_plan_says_and_never_guessed(scripts):
    from sklearn.decomposition import PCA

    harness = scripts["_harness"]
    X = harness.digits_images(0).X_train
    fits = {name: harness.timed_fit(est, X, progress=False)
            for name, est in [("planned", _Planned()), ("pca", PCA(4))]}  # fmt: skip
    assert (fits["planned"].threads, fits["pca"].threads) == (3, None)
    assert fits["planned"].columns()["fit_threads"] == 3

    machine = harness.machine_info("cpu")
    for name, threads in [("ae", 3), ("vae", None)]:
        frame = pd.DataFrame({"method": [name], "epochs": [5], "fit_threads": [threads]})
        expected = "ae 3" if threads else "unknown"
        caption = scripts["_harness"].figures.caption(frame, "digits", machine)
        assert f"torch threads per fit: {expected}\n" in caption
        assert f"torch threads at most {machine['torch_threads']}," in caption


def test_the_load_of_other_processes_marks_a_run_busy(scripts):
    harness = scripts["_harness"]
    machine = harness.machine_info("cpu")
    # Another process spinning for a second: at least half a core of other work, however
    # busy the machine was before (this process only sleeps meanwhile).
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.5)
        load = dict(harness.machine_load(machine))
        # While it spins: the sentence measures the load again, up to now.
        described = harness.describe_load(machine)
    finally:
        spinner.kill()
        spinner.wait()
    assert load["busy"] and load["other_processes_cores"] >= harness.BUSY_CORES
    assert load["own_cores"] < 0.5 and load["seconds"] >= 1.5
    assert described.startswith("Busy machine, timings indicative only")


@pytest.mark.parametrize(
    "start, end, busy", [(0.1, 0.3, False), (0.1, 1.1, True), (2.5, 0.2, True)]
)
def test_without_proc_stat_the_load_averages_judge(scripts, monkeypatch, start, end, busy):
    harness = scripts["_harness"]
    monkeypatch.setattr(harness.machine, "_machine_cpu_seconds", lambda: None)
    readings = itertools.chain([start], itertools.repeat(end))  # the start's, then the end's
    monkeypatch.setattr(harness.machine.os, "getloadavg", lambda: (next(readings), 0, 0))
    monkeypatch.setattr(harness.machine, "_own_cpu_seconds", lambda: 0.0)  # this run: idle

    machine = harness.machine_info("cpu")
    load = harness.machine_load(machine)
    # Others' share: the load average at the start, or the one at the end less this run's own.
    assert load["other_processes_cores"] == pytest.approx(max(start, end))
    assert load["busy"] is busy


def test_a_busy_run_says_so_in_its_markdown_and_json(scripts, tmp_path):
    harness = scripts["_harness"]
    machine = harness.machine_info("cpu")
    machine["load"]["machine_cpu_s_start"] -= 1e6  # as if others had kept every core busy
    report = harness.Report(tmp_path, "bench", title="A benchmark", meta={"machine": machine})
    report.add({"method": "ae", "fit_time_s": 1.0})
    report.finish()

    markdown = (tmp_path / "bench.md").read_text()
    assert markdown.split("\n\n")[1].startswith("**Busy machine, timings indicative only: ")
    load = json.loads((tmp_path / "bench.json").read_text())["machine"]["load"]
    assert load["busy"] and {"load_average_start", "load_average_end"} <= set(load)


def test_atomic_save_leaves_nothing_behind_on_failure(scripts, tmp_path):
    common = scripts["_harness"]
    target = tmp_path / "out" / "table.csv"
    common.write_text(target, "old\n")

    def half_written(tmp):
        Path(tmp).write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        common.atomic_save(target, half_written)
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_comma_list_parses_and_validates(scripts):
    import argparse

    parse = scripts["_harness"].comma_list(int)
    assert parse("16, 32,64") == [16, 32, 64]
    with pytest.raises(argparse.ArgumentTypeError):
        parse("16,x")
    with pytest.raises(argparse.ArgumentTypeError):
        scripts["_harness"].comma_list(str, ("pca", "ae"))("pca,ica")


# -- bench_speed ---------------------------------------------------------------------------------


# Digits stand in for MNIST: the benchmark's 64 codes are as many as their pixels.
@pytest.mark.filterwarnings("ignore:n_components=64 is not smaller than the 64:UserWarning")
def test_bench_speed_alternates_epochs_and_reports_paired_ratios(scripts, tmp_path, no_mnist):
    output = tmp_path / "speed.json"
    argv = ["--data-home", str(no_mnist), "--no-download", "--epochs", "3", "--repeats", "2"]
    scripts["bench_speed"].main([*argv, "--threads", "1", "--output", str(output)])

    report = json.loads(output.read_text())
    assert report["dataset"] == "digits"
    rows = {row["method"]: row for row in report["rows"]}
    assert list(rows) == ["plain", "skae", "skae_fit", "skorch", "pca"]
    assert len(report["rounds"]) == 2
    times = [{name: run["epoch_times"] for name, run in r.items()} for r in report["rounds"]]
    for round_times in times:
        assert {name: len(t) for name, t in round_times.items()} == dict.fromkeys(
            ("plain", "skae", "skorch"), 3
        )
    # vs_plain is the median of epoch-by-epoch ratios, epochs after each round's first.
    ratios = [
        t / t_plain
        for round_times in times
        for t, t_plain in zip(round_times["skae"][1:], round_times["plain"][1:], strict=True)
    ]
    assert rows["skae"]["vs_plain"] == pytest.approx(statistics.median(ratios))
    assert rows["plain"]["vs_plain"] == 1
    # The same model trained the same way reaches a similar error, whoever trains it (the
    # table gives means over the rounds' seeds).
    mean_test_mse = statistics.fmean(r["skae"]["test_mse"] for r in report["rounds"])
    assert rows["skae"]["test_mse_per_pixel"] == pytest.approx(mean_test_mse)
    assert rows["skae"]["test_mse_per_pixel"] < 1.5 * rows["plain"]["test_mse_per_pixel"]
    assert rows["skae"]["transform_rows_per_s"] > 0
    assert len(report["fits"]) == 2 and rows["skae_fit"]["s_per_epoch"] > 0


# -- bench_variants ------------------------------------------------------------------------------


def test_bench_variants_falls_back_saying_where_to_put_mnist(scripts, no_mnist, capsys):
    name, X_train, X_test = scripts["bench_variants"].load_data(
        "mnist", no_mnist, 100, 50, seed=0, download=False
    )

    _assert_says_where_to_put_mnist(capsys.readouterr().out.splitlines()[0], no_mnist)
    assert name == "digits (standing in for mnist)"
    assert X_train.shape == (100, 64) and X_test.shape == (50, 64)


@pytest.mark.parametrize("script", ["compare_pca", "grid_search", "bench_speed", "bench_variants"])
def test_help_points_at_the_library_data_home(scripts, capsys, script):
    with pytest.raises(SystemExit):
        scripts[script].main(["--help"])

    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert "$SKAE_DATA, else scikit-learn's data home" in text
    assert "../shared" not in scripts[script].__doc__ + text


# -- never_worse_than_pca, bench_threads --------------------------------------------------------


def test_never_worse_than_pca_reports_each_code_size(scripts, tmp_path):
    scripts["never_worse_than_pca"].main(
        ["--datasets", "iris", "--seeds", "2", "--output-dir", str(tmp_path), "--quiet"]
    )
    summary = pd.read_csv(tmp_path / "never_worse_than_pca.csv")
    assert summary["n_components"].tolist() == [1, 2, 3]  # every size below iris's 4 features
    assert (summary["worst_seed"] >= summary["ae_over_pca"]).all()
    runs = pd.read_csv(tmp_path / "never_worse_than_pca_runs.csv")
    assert len(runs) == 6 and set(runs["init"]) == {"pca"}
    assert (
        "data set and code size pairs at or below PCA's error"
        in (tmp_path / "never_worse_than_pca.md").read_text()
    )


def test_one_busy_core_keeps_a_core_busy_while_it_lasts(scripts):
    from skae._threads import _usable_cores, _watch_idle_cores

    with scripts["bench_threads"].OneBusyCore() as busy:
        assert busy.process.poll() is None
        assert min(_watch_idle_cores() for _ in range(3)) <= len(_usable_cores()) - 1
    assert busy.process.poll() is not None


# -- the hole simulator (benchmarks/_harness/holes.py) -------------------------------------------


@pytest.mark.parametrize("mechanism", ["MCAR", "MAR", "MNAR", "MNAR_self"])
def test_simulated_holes_take_the_share_asked_for(scripts, mechanism):
    X = np.random.default_rng(1).normal(size=(3000, 10)) @ np.eye(10, k=1) + 0.5
    for share in (0.1, 0.2, 0.4):
        mask = scripts["_harness"].simulate_holes(X, share, mechanism, seed=3)
        assert mask.shape == X.shape and mask.dtype == bool
        assert abs(mask.mean() - share) < 0.015, (share, mask.mean())


def test_mar_holes_depend_on_the_fully_observed_columns_only(scripts):
    simulate = scripts["_harness"].simulate_holes
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 10))
    mask = simulate(X, 0.2, "MAR", seed=5)
    observed = ~mask.any(axis=0)
    assert observed.sum() == 3  # 30% of the columns, untouched
    # Other values in the columns that lose entries: the same holes, bit for bit.
    changed = X.copy()
    changed[:, ~observed] = rng.normal(size=(2000, (~observed).sum())) * 5
    assert np.array_equal(simulate(changed, 0.2, "MAR", seed=5), mask)
    # Other values in the observed columns: other holes, and they follow those values.
    moved = X.copy()
    moved[:, observed] = rng.normal(size=(2000, 3))
    assert not np.array_equal(simulate(moved, 0.2, "MAR", seed=5), mask)
    logits = X[:, observed].sum(axis=1)  # every weight is positive
    high = logits > np.median(logits)
    assert mask[high].mean() > 1.5 * mask[~high].mean()


def test_mnar_holes_depend_on_the_values_that_go_missing(scripts):
    simulate = scripts["_harness"].simulate_holes
    X = np.random.default_rng(0).normal(size=(4000, 6))
    self_masked = simulate(X, 0.2, "MNAR_self", seed=2)
    high = X > np.median(X, axis=0)  # every weight is positive: high values go missing more
    assert self_masked[high].mean() > 1.5 * self_masked[~high].mean()
    mask = simulate(X, 0.2, "MNAR", seed=2)
    assert mask.all(axis=0).sum() == 0 and mask.any(axis=0).all()  # every column loses some
    assert np.array_equal(simulate(X, 0.2, "MNAR", seed=2), mask)  # seeded


@pytest.mark.parametrize("mechanism", ["MCAR", "MAR", "MNAR", "MNAR_self"])
def test_only_mnar_holes_change_with_the_values_they_hide(scripts, mechanism):
    """The definitions themselves: change only the values that went missing, column by
    column, and redraw with the same seed. MCAR and MAR give the same holes every time (they
    depend on observed values only); MNAR's change."""
    simulate = scripts["_harness"].simulate_holes
    rng = np.random.default_rng(4)
    X = rng.normal(size=(500, 8))
    mask = simulate(X, 0.2, mechanism, seed=7)
    changes = []
    for j in range(X.shape[1]):
        hidden_changed = X.copy()
        hidden_changed[mask[:, j], j] = rng.normal(size=mask[:, j].sum()) * 3
        changes.append(not np.array_equal(simulate(hidden_changed, 0.2, mechanism, seed=7), mask))
    assert any(changes) == mechanism.startswith("MNAR")
    with pytest.raises(ValueError, match="complete"):
        simulate(np.where(mask, np.nan, X), 0.2, "MAR")


# -- compare_imputers.py's real tables --------------------------------------------------------


@pytest.fixture(scope="module")
def compare_imputers():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCHMARKS))
        yield _load("compare_imputers")


@pytest.mark.filterwarnings("ignore::UserWarning")  # tiny budgets, few bars
def test_compare_imputers_real_tables_run_on_penguins(compare_imputers, tmp_path, capsys):
    status = compare_imputers.main(
        ["--cases", "penguins", "--methods", "mean,knn,iterative_trees,autoencoder",
         "--seeds", "1", "--max-iter", "2", "--quiet", "--output-dir", str(tmp_path)]
    )  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert re.search(r"\| penguins +\| autoencoder +\| +1 \|", printed)
    payload = json.loads((tmp_path / "compare_imputers_real.json").read_text())
    assert payload["complete"] and len(payload["runs"]) == 4
    assert "penguins" in payload["tables"]
    for run in payload["runs"]:
        assert 0 < run["nrmse"] < 2 and 0 <= run["pfc"] <= 1 and run["seconds"] >= 0
    (skae,) = [run for run in payload["runs"] if run["method"] == "autoencoder"]
    assert skae["contract"] == "kept"
    assert (tmp_path / "compare_imputers_real.png").read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "compare_imputers.json").exists()  # no numeric case asked for


def test_real_tables_drop_ids_and_many_levelled_text_by_rule(compare_imputers):
    frame, dropped = compare_imputers.load_real_table("MASS:Cars93")
    assert set(dropped) == {"rownames", "Manufacturer", "Model", "Make"}
    assert frame.shape == (93, 24) and frame.isna().to_numpy().sum() == 47
    kinds = frame.dtypes.map(str).value_counts().to_dict()
    assert kinds == {"float64": 18, "object": 6}
    holed, hidden = compare_imputers.hide_cells(frame, 0)
    assert not (hidden & frame.isna().to_numpy()).any()  # own holes are never scored
    assert holed.isna().to_numpy().sum() == 47 + hidden.sum()
    assert 0.15 < hidden.sum() / frame.notna().to_numpy().sum() < 0.25


def test_the_frame_contract_check_catches_each_breach(compare_imputers):
    frame, _ = compare_imputers.load_real_table("penguins")
    holed, _ = compare_imputers.hide_cells(frame, 1)
    check, Violation = compare_imputers.check_frame_contract, compare_imputers.ContractViolation
    # The truth, its own holes filled with anything, keeps every observed cell: it passes.
    filled = frame.apply(lambda column: column.fillna(column.dropna().iloc[0]))
    check(holed, filled)
    with pytest.raises(Violation, match="missing cells left"):
        check(holed, holed)
    changed = filled.copy()
    row = holed["species"].first_valid_index()
    changed.loc[row, "species"] = "Gentoo" if frame.at[row, "species"] != "Gentoo" else "Adelie"
    with pytest.raises(Violation, match="species: 1 observed cells changed"):
        check(holed, changed)
    with pytest.raises(Violation, match="columns changed"):
        check(holed, filled.iloc[:, 1:])


def test_compare_imputers_default_and_quick_runs_pick_their_methods_and_tables(compare_imputers):
    parse = compare_imputers.parse_args
    full, quick = parse([]), parse(["--quick"])
    assert "missforest" not in full.methods and "miceforest" in full.methods
    assert "missforest" in quick.methods
    assert set(compare_imputers.TABLES) <= set(full.cases) and full.mechanisms == ["MCAR"]
    assert [c for c in quick.cases if c in compare_imputers.TABLES] == list(
        compare_imputers.QUICK_TABLES
    )
    assert parse(["--quick", "--methods", "knn"]).methods == ["knn"]


def test_held_out_numeric_cases_load_complete_and_scaled(compare_imputers):
    shapes = {"boston": (506, 14), "auto": (392, 8), "birthwt": (189, 10)}
    for case, shape in shapes.items():
        X, _, described = compare_imputers.load_case(case, argparse.Namespace(quick=False))
        assert X.shape == shape and described.startswith(case)
        assert not np.isnan(X).any()
        np.testing.assert_allclose(X.min(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(X.max(axis=0), 1, atol=1e-12)
