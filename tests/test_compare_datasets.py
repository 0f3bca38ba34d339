"""Tests of benchmarks/compare_datasets.py and the small data sets of benchmarks/_harness: tiny
settings, no network, seconds."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_swiss_roll
from sklearn.exceptions import ConvergenceWarning

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--seeds", "1", "--max-iter", "2", "--methods", "pca,ae", "--threads", "1"]
TINY += ["--device", "cpu"]


@pytest.fixture(scope="module")
def script():
    # The script imports _harness from its own folder, as `python benchmarks/...py` does.
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCHMARKS))
        path = BENCHMARKS / "compare_datasets.py"
        spec = importlib.util.spec_from_file_location("benchmarks_compare_datasets", path)
        module = importlib.util.module_from_spec(spec)
        # Registered before it runs: dataclasses look their module up in sys.modules.
        mp.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        yield module


@pytest.fixture(scope="module")
def harness(script):
    return importlib.import_module("_harness")


@pytest.fixture
def no_mnist(tmp_path, monkeypatch):
    """$SKAE_DATA is an empty folder, there are no system-wide copies, the network fails."""

    def offline(*args, **kwargs):
        raise OSError("network disabled in tests")

    home = tmp_path / "empty_data_home"
    home.mkdir()
    monkeypatch.setenv("SKAE_DATA", str(home))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr("skae.datasets._fetch.SYSTEM_DATA_DIRS", (), raising=False)
    return home


def test_runs_digits_and_swiss_roll(script, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["--datasets", "digits,swiss_roll", *TINY, "--output-dir", str(out)]
    # Two epochs cannot converge: the warnings are counted, and not silenced.
    with pytest.warns(ConvergenceWarning):
        assert script.main(argv) == 0
    stdout = capsys.readouterr().out

    assert sorted(p.name for p in out.iterdir()) == [
        "compare_datasets.csv", "compare_datasets.json", "compare_datasets.md",
        "compare_datasets.png", "compare_datasets_runs.csv",
    ]  # fmt: skip
    assert (out / "compare_datasets.png").read_bytes()[:8] == PNG_MAGIC

    # One row per (data set, code size, method), in the data sets' default code sizes.
    summary = pd.read_csv(out / "compare_datasets.csv")
    keys = summary[["dataset", "n_components", "method"]].itertuples(index=False, name=None)
    assert list(keys) == [
        ("digits", 8, "pca"), ("digits", 8, "ae"), ("digits", 16, "pca"), ("digits", 16, "ae"),
        ("swiss_roll", 2, "pca"), ("swiss_roll", 2, "ae"),
    ]  # fmt: skip
    pca = summary[summary["method"] == "pca"]
    ae = summary[summary["method"] == "ae"]
    for column in ("mse_ratio_to_pca", "mse_ratio_min", "mse_ratio_max"):
        assert (pca[column] == 1.0).all()  # exactly: PCA is its own reference
    assert (summary["test_mse"] > 0).all()
    assert np.allclose(ae["mse_ratio_to_pca"], ae["test_mse"].to_numpy() / pca["test_mse"])
    assert summary["logreg_accuracy"].between(0, 1).all()
    assert (ae["epochs"] == 2).all() and pca["epochs"].isna().all()
    assert (ae["convergence_warnings"] >= 1).all() and (pca["convergence_warnings"] == 0).all()
    assert (summary["seeds"] == 1).all()

    runs = pd.read_csv(out / "compare_datasets_runs.csv")
    assert len(runs) == len(summary) and (runs["threads"] == 1).all()
    assert set(runs["n_features"]) == {64, 50}

    # The printed table is the written one, a row per run.
    table = (out / "compare_datasets.md").read_text()
    assert table.strip() in stdout
    rows = [line for line in table.splitlines() if line.startswith("| digits") or "| swiss" in line]
    assert len(rows) == len(summary)

    report = json.loads((out / "compare_datasets.json").read_text())
    assert report["command"].startswith("python benchmarks/compare_datasets.py --datasets digits")
    assert {"cpu", "device", "date", "torch_threads"} <= set(report["machine"])
    assert report["datasets"]["swiss_roll"]["code_sizes"] == [2]
    assert report["datasets"]["digits"]["threads"] == 1
    assert report["skipped"] == []
    assert len(report["summary"]) == len(summary) and len(report["runs"]) == len(runs)
    assert report["complete"] and report["rows_done"] == len(runs)
    assert "Incomplete" not in table
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries


def test_mixed_table_codes_against_one_hot_pca(script, tmp_path):
    data = script.load("penguins")
    assert isinstance(data.X_train, pd.DataFrame) and "species" not in data.X_train
    assert set(data.y_train) == {"Adelie", "Chinstrap", "Gentoo"}
    assert not set(data.train_index) & set(data.test_index)
    assert data.X_train[["island", "sex"]].dtypes.eq(object).all()
    assert data.X_train.isna().any().any()  # the table's own holes stay
    # The reference: numbers mean-filled and standardised, categories mode-filled, one-hot.
    pca = script.make_reducer("pca", 3, 0, None, data).fit(data.X_train)
    assert pca.transform(data.X_test).shape == (len(data.X_test), 3)
    assert pca[0].transform(data.X_test[:1]).shape[1] == 5 + 3 + 2  # island 3, sex 2

    out = tmp_path / "results"
    argv = ["--datasets", "penguins", "--n-components", "2", *TINY, "--output-dir", str(out)]
    with pytest.warns(ConvergenceWarning):
        assert script.main(argv) == 0
    summary = pd.read_csv(out / "compare_datasets.csv")
    assert summary["method"].tolist() == ["pca", "ae"]
    assert summary["test_mse"].isna().all()  # no squared error for categories
    assert summary["logreg_accuracy"].between(0.5, 1).all()
    assert json.loads((out / "compare_datasets.json").read_text())["datasets"]["penguins"]["mixed"]
    assert (out / "compare_datasets.png").read_bytes()[:8] == PNG_MAGIC


def test_swiss_roll_is_a_2d_manifold_in_50_dimensions(harness):
    X, t = harness.swiss_roll()
    assert X.shape == (3000, 50) and X.dtype == np.float32
    # Linearly the roll spans 3 dimensions of the 50 ...
    singular = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    assert singular[3] < 1e-4 * singular[2]
    # ... because it is scikit-learn's 3-D swiss roll (a 2-D manifold), moved isometrically.
    X3, t3 = make_swiss_roll(3000, noise=0.05, random_state=0)
    assert np.array_equal(t, t3)
    pairs = np.random.default_rng(0).integers(0, 3000, size=(500, 2))
    d50 = np.linalg.norm(X[pairs[:, 0]] - X[pairs[:, 1]], axis=1)
    d3 = np.linalg.norm(X3[pairs[:, 0]] - X3[pairs[:, 1]], axis=1)
    assert np.allclose(d50, d3, rtol=1e-4, atol=1e-4)

    data = harness.load_table("swiss_roll")
    # Quartiles of the roll coordinate: four classes of (about) equal size.
    assert np.bincount(np.concatenate([data.y_train, data.y_test])).tolist() == [750] * 4


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "swiss_roll"])
def test_held_out_rows_are_not_training_rows(harness, name):
    data = harness.load_table(name)
    n = len(data.train_index) + len(data.test_index)
    assert len(data.X_test) == pytest.approx(0.3 * n, abs=1)
    assert np.intersect1d(data.train_index, data.test_index).size == 0
    assert np.union1d(data.train_index, data.test_index).size == n
    train_rows = {row.tobytes() for row in data.X_train}
    assert not any(row.tobytes() in train_rows for row in data.X_test)
    assert data.X_train.dtype == np.float32


def test_breast_cancer_is_standardised_on_the_training_split(harness):
    data = harness.load_table("breast_cancer")
    assert data.n_features == 30
    assert np.allclose(data.X_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(data.X_train.std(axis=0), 1, atol=1e-4)
    # The held-out rows went through the same scaler, so they are not exactly standard.
    assert not np.allclose(data.X_test.mean(axis=0), 0, atol=1e-5)


def test_missing_mnist_is_skipped_with_a_notice(script, tmp_path, no_mnist, capsys):
    out = tmp_path / "results"
    argv = ["--datasets", "mnist,swiss_roll", *TINY, "--methods", "pca", "--output-dir", str(out)]
    assert script.main(argv) == 0

    stdout = capsys.readouterr().out
    assert stdout.startswith("NOTICE: mnist could neither be found nor downloaded")
    summary = pd.read_csv(out / "compare_datasets.csv")
    assert set(summary["dataset"]) == {"swiss_roll"}  # no digits standing in
    report = json.loads((out / "compare_datasets.json").read_text())
    assert list(report["datasets"]) == ["swiss_roll"]
    assert report["skipped"] and report["skipped"][0].startswith("mnist ")
    assert "Skipped: mnist" in (out / "compare_datasets.md").read_text()
    assert not any(no_mnist.rglob("*.gz"))


def test_nothing_to_run_fails(script, tmp_path, no_mnist, capsys):
    argv = ["--datasets", "mnist", *TINY, "--output-dir", str(tmp_path / "results")]
    assert script.main(argv) == 1
    assert not (tmp_path / "results").exists()


def test_reports_the_budget_the_estimators_chose(script, monkeypatch):
    # Estimators that choose their own budget expose it after fit; older ones do not.
    class Budgeted(script.ESTIMATORS["vae"]):
        def fit(self, X, y=None):
            super().fit(X, y)
            self.batch_size_, self.max_iter_, self.hidden_layer_sizes_ = 32, 2, (16, 8)
            self.n_active_components_ = 3
            return self

    monkeypatch.setitem(script.ESTIMATORS, "vae", Budgeted)
    args = script.parse_args(["--max-iter", "2", "--device", "cpu"])
    data = script.load("swiss_roll")
    with pytest.warns(ConvergenceWarning):
        row = script.run_one("vae", 2, 0, data, args)
    assert (row["batch_size_"], row["max_iter_"], row["hidden_layer_sizes_"]) == (32, 2, "(16, 8)")
    assert row["n_active_components_"] == 3 and row["epochs"] == 2
    assert row["convergence_warnings"] >= 1
    assert "max_iter" in row["convergence_warning_message"]
    old = script.run_one("pca", 2, 0, data, args)
    assert old["batch_size_"] is None and old["n_active_components_"] is None


def test_dataset_shorthands_and_code_size_override(script):
    args = script.parse_args(["--datasets", "small,mnist"])
    assert args.datasets == ["digits", "breast_cancer", "swiss_roll", "mnist"]
    assert script.parse_args(["--datasets", "all"]).datasets == [
        "digits", "breast_cancer", "swiss_roll", "penguins", "credit_data", "fashion-mnist",
        "mnist",
    ]  # fmt: skip
    assert script.parse_args(["--datasets", "mixed"]).datasets == ["penguins", "credit_data"]
    assert script.parse_args([]).datasets == ["digits", "breast_cancer", "swiss_roll"]
    with pytest.raises(SystemExit):
        script.parse_args(["--datasets", "cifar"])
    with pytest.raises(SystemExit):
        script.parse_args(["--methods", "pca,sparse"])
    # A code size larger than the data allows is dropped for that data set only.
    data = script.load("swiss_roll")
    assert script.usable_sizes([2, 60], data) == [2]


def test_a_stopped_run_keeps_every_finished_fit(
    script, tmp_path, capsys, monkeypatch, ctrl_c_raises
):
    # An endless fit: no validation split (early_stopping="auto" would end it here).
    monkeypatch.setattr("skae._plan.EARLY_STOPPING_BELOW", 0)
    out = tmp_path / "results"
    argv = ["--datasets", "swiss_roll", "--seeds", "1", "--methods", "pca,ae", "--quiet"]
    argv += ["--max-iter", "100000", "--device", "cpu", "--output-dir", str(out)]

    def press_ctrl_c():  # once PCA's row is on disk, during the autoencoder's long fit
        deadline = time.monotonic() + 60
        while not (out / "compare_datasets_runs.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    with pytest.raises(SystemExit) as stopped:
        script.main(argv)
    presser.join()
    assert stopped.value.code == 130
    assert "Interrupted after 1 finished runs" in capsys.readouterr().err
    runs = pd.read_csv(out / "compare_datasets_runs.csv")
    assert runs["method"].tolist() == ["pca"] and runs["mse_ratio_to_pca"].tolist() == [1.0]
    assert pd.read_csv(out / "compare_datasets.csv")["method"].tolist() == ["pca"]
    report = json.loads((out / "compare_datasets.json").read_text())
    assert not report["complete"] and report["rows_done"] == 1
    assert list(report["datasets"]) == []  # the data set did not finish
    assert "Incomplete run: 1 runs finished" in (out / "compare_datasets.md").read_text()
    assert not (out / "compare_datasets.png").exists()
