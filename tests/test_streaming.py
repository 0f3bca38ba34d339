"""Out-of-core fit and inference: arrays read block by block, never whole."""

import math
import warnings

import h5py
import numpy as np
import pytest
import torch
import zarr
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer
from skae._scaling import AffineScaling
from skae._training import StreamedRows, is_out_of_core
from skae._training._data import block_bounds

da = pytest.importorskip("dask.array")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

DIGITS = load_digits().data.astype(np.uint8)  # pixel values 0..16


def small(cls=AutoEncoderTransformer, **params):
    defaults = dict(
        n_components=8, hidden_layer_sizes=(32,), max_iter=15, random_state=0, device="cpu"
    )
    return cls(**{**defaults, **params})


class RecordingArray:
    """An out-of-core array (it has ``chunks``) that records every slice read from it."""

    def __init__(self, data, chunk_rows):
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.chunks = (chunk_rows, data.shape[1])
        self.reads = []

    def __getitem__(self, key):
        rows = range(*key.indices(self.shape[0]))
        self.reads.append(len(rows))
        return self.data[key]


@pytest.fixture
def memmap(tmp_path):
    path = tmp_path / "digits.npy"
    stored = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=DIGITS.shape)
    stored[:] = DIGITS
    stored.flush()
    return np.load(path, mmap_mode="r")


def test_which_inputs_are_streamed(memmap, tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as file:
        file.create_dataset("X", data=DIGITS, chunks=(100, 64))
        assert is_out_of_core(file["X"])
    assert is_out_of_core(memmap)
    assert is_out_of_core(zarr.array(DIGITS, chunks=(100, 64)))
    assert is_out_of_core(da.from_array(DIGITS, chunks=(300, 64)))
    assert not is_out_of_core(DIGITS)
    assert not is_out_of_core(torch.as_tensor(DIGITS))


def test_blocks_follow_the_arrays_own_chunks():
    X = da.from_array(np.zeros((1000, 3)), chunks=((300, 300, 300, 100), 3))
    assert block_bounds(X, block_rows=250) == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    # Small chunks are grouped into reads of at least block_rows rows.
    assert block_bounds(X, block_rows=500) == [(0, 600), (600, 1000)]
    assert block_bounds(zarr.array(np.zeros((10, 2)), chunks=(3, 2)), 4) == [(0, 6), (6, 10)]
    assert block_bounds(np.zeros((10, 2)), block_rows=4) == [(0, 4), (4, 8), (8, 10)]


@pytest.mark.parametrize("batch_size", [7, 32, 100])
def test_an_epoch_visits_every_row_once_in_full_batches(batch_size):
    # Row i holds the value i, so the batches show which rows they took.
    n_rows = 1000
    X = np.repeat(np.arange(n_rows, dtype=np.float32)[:, None], 2, axis=1)
    rows = StreamedRows(RecordingArray(X, 30), AffineScaling(np.zeros(2), 1.0, "cpu"),
                        torch.device("cpu"), check_block=np.asarray)  # fmt: skip
    rows.buffer_rows = 95  # several buffers, none a multiple of the batch size
    n_steps = math.ceil(n_rows / batch_size)
    batches = list(rows.batches(batch_size, n_steps + 2, seed=0))
    assert len(batches) == n_steps + 2  # the steps asked for: past the rows, empty batches
    sizes = [len(b) for b in batches]
    assert sizes[: n_steps - 1] == [batch_size] * (n_steps - 1)
    assert sizes[n_steps:] == [0, 0]
    seen = np.concatenate([b[:, 0].numpy() for b in batches]).astype(int)
    assert sorted(seen) == list(range(n_rows))
    # Shuffled: not in storage order, and another seed gives another order.
    assert not np.array_equal(seen, np.arange(n_rows))
    other = np.concatenate([b[:, 0].numpy() for b in rows.batches(batch_size, n_steps, 1)])
    assert not np.array_equal(seen, other)


def test_fit_on_a_uint8_memmap_never_reads_more_than_a_block(memmap):
    X = RecordingArray(memmap, chunk_rows=200)
    est = small(max_iter=3).fit(X)
    assert max(X.reads) <= 200  # statistics, training and the check of the first row
    X.reads.clear()
    codes = est.transform(X)
    assert max(X.reads) <= 200
    # The same model on the same rows held in memory encodes alike.
    assert_allclose(codes, est.transform(DIGITS.astype(np.float32)), rtol=1e-6)
    assert est.score(X) == pytest.approx(est.score(DIGITS.astype(np.float32)), rel=1e-6)


@pytest.mark.parametrize("kind", ["memmap", "h5py", "zarr", "dask"])
def test_streamed_fit_trains_as_well_as_in_memory(kind, memmap, tmp_path):
    if kind == "memmap":
        X = memmap
    elif kind == "h5py":
        file = h5py.File(tmp_path / "x.h5", "w")
        X = file.create_dataset("X", data=DIGITS, chunks=(128, 64))
    elif kind == "zarr":
        X = zarr.array(DIGITS, chunks=(128, 64))
    else:
        X = da.from_array(DIGITS, chunks=(300, 64))
    in_memory = DIGITS.astype(np.float32)
    streamed = small().fit(X)
    reference = small().fit(in_memory)
    # The same scaling (statistics gathered block by block) and the same budget.
    assert_allclose(streamed.input_offset_, reference.input_offset_, rtol=1e-6)
    assert streamed.input_scale_ == pytest.approx(reference.input_scale_, rel=1e-6)
    assert streamed.n_iter_ == reference.n_iter_
    assert streamed.batch_size_ == reference.batch_size_
    # Another shuffle, a similar model: within 15% of the in-memory fit's error.
    assert streamed.score(in_memory) > 1.15 * reference.score(in_memory)


def test_streamed_vae_and_early_stopping(memmap):
    vae = small(VariationalAutoEncoderTransformer, n_components=4).fit(memmap)
    assert vae.n_active_components_ >= 1
    est = small(early_stopping=True, max_iter=40, n_iter_no_change=3).fit(memmap)
    assert len(est.validation_scores_) == est.n_iter_


def test_a_bad_value_in_a_late_block_is_refused_and_changes_nothing(tmp_path):
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float64,
                                  shape=DIGITS.shape)  # fmt: skip
    X[:] = DIGITS
    est = small(max_iter=2).fit(X)
    before = est.transform(DIGITS[:5].astype(np.float32))
    X[-1, 3] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        est.fit(X)
    with pytest.raises(ValueError, match="Input X contains infinity"):
        est.transform(X)
    X[-1, 3] = 1e300
    with pytest.raises(ValueError, match="beyond float32's range"):
        est.fit(X)
    assert_array_equal(est.transform(DIGITS[:5].astype(np.float32)), before)


def test_wrong_shapes_get_sklearns_messages(memmap):
    est = small(max_iter=1).fit(memmap)
    with pytest.raises(ValueError, match="X has 10 features, but AutoEncoderTransformer is"):
        est.transform(zarr.array(np.zeros((5, 10), dtype=np.uint8)))
    with pytest.raises(ValueError, match="Expected a 2D array"):
        est.transform(zarr.array(np.zeros((5, 4, 4), dtype=np.uint8)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises(ValueError, match="0 sample"):
            small().fit(zarr.array(np.zeros((0, 64), dtype=np.uint8)))


def test_partial_fit_streams_too(memmap):
    est = small()
    for _ in range(2):
        est.partial_fit(memmap)
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2
    assert est.loss_curve_[1] < est.loss_curve_[0]


def test_in_memory_data_too_large_for_the_device_is_streamed(monkeypatch):
    # On a GPU with too little free memory, in-memory rows are read to it a buffer at a time;
    # simulated here on the CPU, whose training must then be the streamed one.
    from skae._training import _data

    X = DIGITS.astype(np.float32)
    on_device = small(max_iter=3).fit(X)
    monkeypatch.setattr(_data, "fits_on_device", lambda n_bytes, device: False)
    used = []
    batches = StreamedRows.batches
    monkeypatch.setattr(
        StreamedRows, "batches", lambda self, *a: used.append(1) or batches(self, *a)
    )
    streamed = small(max_iter=3).fit(X)
    assert len(used) == 3
    assert streamed.score(X) > 1.15 * on_device.score(X)
