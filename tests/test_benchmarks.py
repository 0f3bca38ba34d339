"""Smoke tests of the benchmark scripts: scikit-learn's digits, tiny settings, no network."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
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
        modules = {name: _load(name) for name in ("compare_pca", "grid_search", "bench_speed")}
        yield {"_common": importlib.import_module("_common"), **modules}


@pytest.fixture
def no_mnist(tmp_path, monkeypatch):
    """An empty data home, no system-wide copies, and a network that always fails."""

    def offline(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr("skae.datasets._fetch.SYSTEM_DATA_DIRS", (), raising=False)
    home = tmp_path / "empty_data_home"
    home.mkdir()
    return home


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC, path


def _assert_no_temporaries(folder):
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


# -- compare_pca ---------------------------------------------------------------------------------

DIGITS_RUN = ["--n-components", "4,8", "--methods", "pca,ae", "--max-iter", "2"]
DIGITS_RUN += ["--device", "cpu", "--threads", "1"]


def test_compare_pca_on_digits(scripts, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["--dataset", "digits", *DIGITS_RUN, "--output-dir", str(out)]
    assert scripts["compare_pca"].main(argv) == 0

    stdout = capsys.readouterr().out
    assert stdout.startswith("## Autoencoders vs PCA on digits")
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
    pca = results[results["method"] == "pca"].set_index("n_components")["test_sse_per_image"]
    assert pca[8] < pca[4]
    assert results.loc[results["method"] == "ae", "epochs"].tolist() == [2, 2]
    assert results.loc[results["method"] == "pca", "epochs"].isna().all()
    for method in ("pca", "ae"):
        assert f"| {method} " in stdout

    report = json.loads((out / "compare_pca_digits.json").read_text())
    assert report["dataset"] == "digits" and report["fallback"] is None
    assert report["command"].startswith("python benchmarks/compare_pca.py --dataset digits")
    assert {"cpu", "torch_threads", "device", "date", "gpu"} <= set(report["machine"])
    assert report["machine"]["device"] == "cpu"
    assert len(report["results"]) == 4
    for name in ("reconstructions", "accuracy", "reconstruction_error"):
        _assert_png(out / f"{name}_digits.png")
    _assert_no_temporaries(out)


@pytest.mark.parametrize("download", [False, True], ids=["no-download", "download-fails"])
def test_compare_pca_falls_back_to_digits(scripts, tmp_path, no_mnist, capsys, download):
    out = tmp_path / "results"
    argv = ["--data-home", str(no_mnist), "--n-components", "4", "--methods", "pca"]
    argv += ["--device", "cpu", "--threads", "1", "--output-dir", str(out)]
    argv += [] if download else ["--no-download"]
    assert scripts["compare_pca"].main(argv) == 0

    captured = capsys.readouterr()
    first_line = captured.out.splitlines()[0]
    assert first_line.startswith("WARNING: mnist ")
    assert "digits" in first_line
    assert "## Autoencoders vs PCA on digits" in captured.out
    assert "standing in for mnist" in captured.out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"compare_pca_digits.{ext}" for ext in ("csv", "json", "md")]
        + [f"{name}_digits.png" for name in ("accuracy", "reconstruction_error", "reconstructions")]
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
    assert (quick.n_train, quick.n_test, quick.n_components) == (5000, 1000, [16, 64])
    assert quick.methods == list(compare.METHODS)
    mixed = compare.parse_args(["--quick", "--n-components", "32", "--methods", "pca,vae"])
    assert (mixed.n_components, mixed.methods, mixed.max_iter) == ([32], ["pca", "vae"], 10)
    full = compare.parse_args([])
    assert (full.n_train, full.max_iter, full.n_components) == (None, None, [16, 32, 64])
    assert (quick.threads, full.threads) == (1, None)


def test_limit_threads_restores_the_defaults(scripts):
    import torch
    from threadpoolctl import threadpool_info

    def pools():
        return [pool["num_threads"] for pool in threadpool_info()]

    before = (torch.get_num_threads(), pools())
    with scripts["_common"].limit_threads(1):
        assert torch.get_num_threads() == 1
        assert set(pools()) <= {1}
    assert (torch.get_num_threads(), pools()) == before


def test_compare_pca_rejects_unknown_method(scripts, capsys):
    with pytest.raises(SystemExit):
        scripts["compare_pca"].parse_args(["--methods", "pca,ica"])
    assert "ica" in capsys.readouterr().err


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
    assert sorted(table["rank_test_score"]) == [1, 2]
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

    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith("WARNING: mnist ") and "digits" in first_line
    assert {p.name for p in out.iterdir()} == {
        f"grid_search_digits.{ext}" for ext in ("csv", "json", "md")
    }


# -- shared helpers ------------------------------------------------------------------------------


def test_markdown_table_aligns_numbers_and_blanks_missing(scripts):
    frame = pd.DataFrame({"method": ["pca", "ae"], "score": [0.5, math.nan], "k": [4, 16]})
    lines = scripts["_common"].markdown_table(frame, {"score": ".2f"}).splitlines()
    assert lines[0] == "| method | score |  k |"
    assert lines[1] == "| ------ | ----: | -: |"
    assert lines[2] == "| pca    |  0.50 |  4 |"
    assert lines[3] == "| ae     |       | 16 |"


def test_atomic_save_leaves_nothing_behind_on_failure(scripts, tmp_path):
    common = scripts["_common"]
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

    parse = scripts["_common"].comma_list(int)
    assert parse("16, 32,64") == [16, 32, 64]
    with pytest.raises(argparse.ArgumentTypeError):
        parse("16,x")
    with pytest.raises(argparse.ArgumentTypeError):
        scripts["_common"].comma_list(str, ("pca", "ae"))("pca,ica")


# -- bench_speed ---------------------------------------------------------------------------------


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
