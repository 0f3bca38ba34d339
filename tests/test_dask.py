"""Searches and inference on a real Dask cluster: worker processes started by nannies, as users
run them, not threads or mocks. Needs the ``dask`` extra; skipped without it."""

import functools
import logging
import os
import warnings

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")

# Read by torch at import (MKL_NUM_THREADS wins over OMP_NUM_THREADS); the nannies set them for
# their workers from distributed.nanny.pre-spawn-environ unless this process already has them.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
BLOCK_ROWS = 300


def small(cls=AutoEncoderTransformer, **params):
    defaults = dict(
        n_components=8,
        hidden_layer_sizes=(16,),
        max_iter=4,
        batch_size=64,
        learning_rate="constant",
        random_state=0,
        device="cpu",
    )
    return cls(**{**defaults, **params})


@pytest.fixture(scope="module")
def client():
    saved = dict(os.environ)
    # The workers must take their thread settings from dask's own configuration, as they do
    # for users, not from this test process's environment (which would take precedence).
    for name in THREAD_VARIABLES:
        os.environ.pop(name, None)
    try:
        with (
            distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.WARNING,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            # Short test fits end before convergence on purpose.
            client.run(
                functools.partial(warnings.filterwarnings, "ignore", category=ConvergenceWarning)
            )
            yield client
    finally:
        # The nannies run in this process and write the pre-spawn variables into its
        # environment; put it back as it was for the tests that follow.
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _workers_that_ran(stream):
    return {task["worker"] for task in stream.data}


def test_torch_threads_in_workers_follow_the_worker_thread_count(client):
    nthreads = client.nthreads()
    assert sorted(nthreads.values()) == [1, 1]
    # In each worker process (client.run executes in the worker's main thread) ...
    assert client.run(torch.get_num_threads) == nthreads
    # ... and in the worker's task threads, where fit and transform actually run.
    in_tasks = {
        address: client.submit(torch.get_num_threads, pure=False, workers=[address]).result()
        for address in nthreads
    }
    assert in_tasks == nthreads


def test_grid_search_under_dask_backend_matches_sequential(client, digits):
    X, y = digits
    X, y = X[:600], y[:600]
    pipe = Pipeline([("ae", small()), ("clf", LogisticRegression(max_iter=300))])
    grid = {"ae__n_components": [4, 8], "ae__noise_type": [None, "gaussian"]}

    sequential = GridSearchCV(pipe, grid, cv=3, n_jobs=1).fit(X, y)
    with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        on_dask = GridSearchCV(pipe, grid, cv=3, n_jobs=-1).fit(X, y)

    # The fits ran on the cluster's worker processes.
    assert _workers_that_ran(stream) <= set(client.nthreads())
    assert len(stream.data) > 0
    got, expected = on_dask.cv_results_, sequential.cv_results_
    assert got["params"] == expected["params"]
    for key in ["mean_test_score", "std_test_score"] + [f"split{i}_test_score" for i in range(3)]:
        assert_allclose(got[key], expected[key], rtol=1e-6)
    assert_array_equal(got["rank_test_score"], expected["rank_test_score"])
    assert on_dask.best_params_ == sequential.best_params_
    # The scores are not all equal, so the comparison above could tell the settings apart.
    assert np.ptp(expected["mean_test_score"]) > 0


def test_incremental_partial_fit_over_dask_blocks(client, digits):
    X, _ = digits
    X_dask = da.from_array(X, chunks=(BLOCK_ROWS, X.shape[1]))
    n_blocks = X_dask.numblocks[0]
    assert n_blocks == 6

    incremental = dask_ml_wrappers.Incremental(small(), shuffle_blocks=False)
    with distributed.get_task_stream(client) as stream:
        incremental.fit(X_dask)
    fitted = incremental.estimator_

    assert len(stream.data) > 0
    # One partial_fit (one epoch) per block, each continuing from the one before.
    assert fitted.n_iter_ == n_blocks
    assert len(fitted.loss_curve_) == n_blocks
    assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]
    # The same as partial_fit over the blocks in order, here.
    local = clone(small())
    for start in range(0, X.shape[0], BLOCK_ROWS):
        local.partial_fit(X[start : start + BLOCK_ROWS])
    assert_allclose(fitted.loss_curve_, local.loss_curve_, rtol=1e-5)
    codes = fitted.transform(X)
    assert codes.shape == (X.shape[0], 8)
    assert_allclose(codes, local.transform(X), rtol=1e-5, atol=1e-6)
    # Incremental's own transform encodes the dask array blockwise.
    assert_allclose(incremental.transform(X_dask).compute(), codes, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", [AutoEncoderTransformer, VariationalAutoEncoderTransformer])
def test_blockwise_transform_on_workers_matches_local(client, digits, cls):
    X, _ = digits
    est = small(cls).fit(X)
    expected = est.transform(X)
    X_dask = da.from_array(X, chunks=(BLOCK_ROWS, X.shape[1]))

    with distributed.get_task_stream(client) as stream:
        codes = X_dask.map_blocks(
            est.transform,
            chunks=(X_dask.chunks[0], (est.n_components,)),
            dtype=np.float32,
        ).compute()
    assert len(_workers_that_ran(stream)) >= 1
    assert codes.dtype == np.float32
    assert_allclose(codes, expected, rtol=1e-6, atol=1e-7)

    post_fit = dask_ml_wrappers.ParallelPostFit(est)
    assert_allclose(post_fit.transform(X_dask).compute(), expected, rtol=1e-6, atol=1e-7)
