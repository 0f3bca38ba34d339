"""The CUDA path: graph-captured training, device placement, moving models between devices.

These run only where torch sees a CUDA device (benchmarks/gpu_check.sh runs them on one).
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer
from skae._training import CudaGraphStep, TrainingStep

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def X():
    return (load_digits().data / 16.0).astype(np.float32)


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def ae(**params):
    defaults = dict(n_components=8, hidden_layer_sizes=(32,), max_iter=4, random_state=0)
    return AutoEncoderTransformer(**{**defaults, **params})


def test_auto_device_is_cuda_and_outputs_come_back_as_numpy(X):
    model = ae(learning_rate="cosine").fit(X)
    assert model.device_.type == "cuda"
    codes = model.transform(X)
    assert isinstance(codes, np.ndarray) and codes.dtype == np.float32
    assert model.inverse_transform(codes).shape == X.shape


def test_graph_captured_training_matches_eager_training(X, monkeypatch):
    graphed = ae(learning_rate="cosine").fit(X)
    monkeypatch.setattr(CudaGraphStep, "__call__", TrainingStep.__call__)
    eager = ae(learning_rate="cosine").fit(X)
    # Same data order, same initial weights, same updates: only kernel rounding differs.
    assert_allclose(graphed.loss_curve_, eager.loss_curve_, rtol=1e-3)
    assert_allclose(graphed.transform(X[:50]), eager.transform(X[:50]), atol=1e-3)


def test_cuda_training_matches_cpu_training(X):
    on_gpu = ae().fit(X)
    on_cpu = ae(device="cpu").fit(X)
    assert_allclose(on_gpu.loss_curve_, on_cpu.loss_curve_, rtol=1e-3)


@pytest.mark.parametrize(
    "model",
    [ae(noise_type="masking", noise_level=0.2), ae(contractive_penalty=0.01),
     VariationalAutoEncoderTransformer(2, hidden_layer_sizes=(16,), max_iter=2, random_state=0)],
)  # fmt: skip
def test_random_losses_train_eagerly_and_reproducibly(X, model):
    first = model.fit(X).transform(X[:20])
    assert_allclose(model.fit(X).transform(X[:20]), first)


def test_partial_fit_and_warm_start_continue_on_cuda(X):
    model = ae()
    for _ in range(3):
        model.partial_fit(X)
    assert model.n_iter_ == 3
    warm = ae(warm_start=True).fit(X)
    warm.fit(X)
    assert warm.n_iter_ == 8


def test_cuda_model_pickles_onto_the_cpu_without_cuda(X, monkeypatch):
    model = ae().fit(X)
    payload = pickle.dumps(model)
    expected = model.transform(X[:20])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="loaded onto the CPU"):
        restored = pickle.loads(payload)
    assert restored.device_.type == "cpu"
    assert_allclose(restored.transform(X[:20]), expected, atol=1e-5)
    restored.partial_fit(X)  # the optimizer state moved along


def test_sparse_input_on_cuda(X):
    import scipy.sparse as sp

    dense = ae().fit(X).transform(X[:20])
    sparse = ae().fit(sp.csr_matrix(X)).transform(sp.csr_matrix(X[:20]))
    assert_allclose(sparse, dense, atol=1e-4)


def test_streamed_training_on_cuda_matches_in_memory_quality(X, tmp_path):
    # A uint8 memmap streamed through pinned buffers to the GPU.
    stored = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8,
                                       shape=X.shape)  # fmt: skip
    stored[:] = np.round(X * 16)
    stored.flush()
    memmap = np.load(tmp_path / "x.npy", mmap_mode="r")
    streamed = ae(device="cuda", max_iter=10).fit(memmap)
    in_memory = ae(device="cuda", max_iter=10).fit(np.asarray(memmap, np.float32))
    assert streamed.device_.type == "cuda"
    assert streamed.score(memmap) > 1.15 * in_memory.score(memmap)
    assert_allclose(streamed.transform(memmap), streamed.transform(np.asarray(memmap)),
                    rtol=1e-5, atol=1e-6)  # fmt: skip
