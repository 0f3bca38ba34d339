"""Tests for skae.datasets: the IDX reader, local lookup, verified downloads, and real MNIST.

Every test runs offline: mirrors point at an HTTP server on 127.0.0.1, a fake urlopen or
nowhere, and the loaders are fed tiny IDX files written here, with the checksum tables swapped to
match them. The tests of the real MNIST files read them where users keep them: $SKAE_DATA/mnist/
when it is set (development and CI set SKAE_DATA=../shared/data), else
~/scikit_learn_data/mnist/; they are skipped, saying where they looked, when the files are absent.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import re
import socket
import threading
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tqdm import tqdm

import skae.datasets._fetch as fetch
import skae.datasets._mnist as mnist
from skae.datasets import DatasetUnavailableError, load_fashion_mnist, load_mnist
from skae.datasets._fetch import Checksum, ChecksumError, resolve_data_home, verified_payload
from skae.datasets._idx import decompress_gzip, parse_idx, read_idx

N_TRAIN, N_TEST = 5, 3
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# Read at import: the autouse fixture below unsets SKAE_DATA for every test. The real files
# are where the README tells users to put them: $SKAE_DATA/mnist/ when it is set, else
# ~/scikit_learn_data/mnist/ (the library's own default). Resolved now, so that a relative
# path (../shared/data) means the same whatever the tests do with the cwd.
REAL_DATA_HOME = resolve_data_home().resolve()


def _real_mnist_skip_reason() -> str | None:
    folder = REAL_DATA_HOME / "mnist"
    absent = [name for name in FILES if not (folder / name).is_file()]
    if absent:
        return (
            f"real MNIST not found: {', '.join(absent)} missing from {folder} (put the files "
            "there, or point SKAE_DATA at a folder holding mnist/)"
        )
    return None


REAL_MNIST_SKIP_REASON = _real_mnist_skip_reason()
SYSTEM_FASHION_HOME = Path("/usr/share/datasets")
HAS_SYSTEM_FASHION = (SYSTEM_FASHION_HOME / "fashion-mnist" / FILES[0]).is_file()


# --- helpers -------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in IDX format."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class TinyDataset:
    """Five training and three test images with labels, as the four gzipped IDX files."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.images = {
            "train": rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8),
            "test": rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8),
        }
        self.images["train"][0, 0, 0], self.images["train"][0, 0, 1] = 0, 255
        self.labels = {
            "train": np.array([0, 9, 3, 3, 7], np.uint8),
            "test": np.array([1, 2, 9], np.uint8),
        }
        raw = {
            FILES[0]: idx_bytes(self.images["train"]),
            FILES[1]: idx_bytes(self.labels["train"]),
            FILES[2]: idx_bytes(self.images["test"]),
            FILES[3]: idx_bytes(self.labels["test"]),
        }
        self.gz = {name: gzip.compress(data, mtime=0) for name, data in raw.items()}
        self.checksums = {name: Checksum(gzip_md5=(md5(blob),)) for name, blob in self.gz.items()}

    def write(self, directory: Path, only=FILES) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for name in only:
            (directory / name).write_bytes(self.gz[name])
        return directory


def scaled(images: np.ndarray) -> np.ndarray:
    """What the loaders must return: rows of float32 pixels divided by 255."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def forbid_network(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("no network access expected")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", fail)


class FakeResponse(io.BytesIO):
    """What urlopen returns, enough for the downloader: a body and its Content-Length."""

    def __init__(self, body: bytes):
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body))}


def serve_from_memory(monkeypatch, blobs: dict[str, bytes]) -> list[str]:
    """Answer urlopen with blobs[file name]; return the list of URLs requested."""
    requested: list[str] = []

    def urlopen(request, timeout=None):
        requested.append(request.full_url)
        return FakeResponse(blobs[request.full_url.rsplit("/", 1)[-1]])

    monkeypatch.setattr(fetch.urllib.request, "urlopen", urlopen)
    return requested


def no_network(monkeypatch):
    """urlopen fails as it does on a machine without network access."""

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(fetch.urllib.request, "urlopen", unreachable)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No real mirror, no system copy, no user data home: each test sets what it needs."""
    for name in ("mnist", "fashion-mnist"):
        monkeypatch.setitem(mnist.MIRRORS, name, ())
    monkeypatch.setattr(fetch, "SYSTEM_DATA_DIRS", ())
    monkeypatch.delenv("SKAE_DATA", raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sklearn_home"))
    # A proxy configured on the machine must not intercept requests to the local test server.
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "*")


@pytest.fixture
def tiny(monkeypatch):
    """A tiny dataset that the loaders accept as both MNIST and Fashion-MNIST."""
    data = TinyDataset()
    for name in ("mnist", "fashion-mnist"):
        monkeypatch.setitem(mnist.CHECKSUMS, name, data.checksums)
        monkeypatch.setitem(mnist.SPLIT_SIZES, name, {"train": N_TRAIN, "test": N_TEST})
    return data


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files quietly; under /short/ it promises the full length but sends half."""

    def __init__(self, *args, requests_log, **kwargs):
        self.requests_log = requests_log
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.requests_log.append(self.path)
        if not self.path.startswith("/short/"):
            return super().do_GET()
        body = (Path(self.directory) / "good" / Path(self.path).name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        return None

    def log_message(self, format, *args):
        pass


class Server:
    def __init__(self, root: Path, base_url: str, requests_log: list[str]):
        self.root, self.base_url, self.requests_log = root, base_url, requests_log

    def mirror(self, folder: str) -> str:
        return f"{self.base_url}/{folder}/"


@pytest.fixture
def server(tmp_path_factory, tiny):
    """An HTTP server on 127.0.0.1 with mirror folders good/, corrupt/, truncated/, short/, and
    partial/ (good but for a corrupt first file)."""
    root = tmp_path_factory.mktemp("www")
    tiny.write(root / "good")
    tiny.write(root / "partial", only=FILES[1:])
    (root / "partial" / FILES[0]).write_bytes(tiny.gz[FILES[0]][::-1])
    for name, blob in tiny.gz.items():
        corrupt = bytearray(blob)
        corrupt[len(corrupt) // 2] ^= 0xFF
        (root / "corrupt").mkdir(exist_ok=True)
        (root / "corrupt" / name).write_bytes(bytes(corrupt))
        (root / "truncated").mkdir(exist_ok=True)
        (root / "truncated" / name).write_bytes(blob[: len(blob) // 2])
    requests_log: list[str] = []
    handler = functools.partial(_Handler, directory=str(root), requests_log=requests_log)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", requests_log)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# --- the IDX reader ------------------------------------------------------------------------


def test_parse_idx_reads_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([3, 1], dtype=np.uint8)

    np.testing.assert_array_equal(parse_idx(idx_bytes(images)), images)
    np.testing.assert_array_equal(parse_idx(idx_bytes(labels)), labels)
    assert parse_idx(idx_bytes(images)).dtype == np.uint8


def test_parse_idx_converts_big_endian_types_to_native_order():
    values = np.array([[1, -2], [70000, 3]], dtype=">i4")
    data = bytes([0, 0, 0x0C, 2]) + np.array([2, 2], ">u4").tobytes() + values.tobytes()

    parsed = parse_idx(data)

    np.testing.assert_array_equal(parsed, values)
    assert parsed.dtype == np.dtype("int32") and parsed.dtype.isnative


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_parse_idx_round_trips_any_uint8_shape(shape, seed):
    array = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)

    np.testing.assert_array_equal(parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "bad magic"),
        (b"\x00", "bad magic"),
        (b"\x01\x00\x08\x01" + b"\x00" * 8, "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x04\x01\x02", "payload truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "trailing bytes"),
    ],
)
def test_parse_idx_rejects_malformed_data_naming_the_file(data, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_idx(data, name="some-file.idx")
    assert "some-file.idx" in str(info.value)


def test_read_idx_reads_gzipped_and_plain_files(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    (tmp_path / "x.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "x").write_bytes(idx_bytes(images))

    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), images)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "x")), images)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated-gzip"),
        pytest.param(lambda blob: blob[:-4] + b"\x00\x00\x00\x00", id="bad-length-trailer"),
        pytest.param(lambda blob: b"not gzip at all" + blob, id="not-gzip"),
        pytest.param(lambda blob: b"", id="empty"),
    ],
)
def test_read_idx_rejects_broken_gzip_naming_the_file(tmp_path, corrupt):
    blob = gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    path = tmp_path / "broken-idx3-ubyte.gz"
    path.write_bytes(corrupt(blob))

    with pytest.raises(ValueError, match="not a valid gzip file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_gzipped_idx_with_truncated_payload(tmp_path):
    path = tmp_path / "short-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10]))

    with pytest.raises(ValueError, match="payload truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_decompress_gzip_round_trips():
    assert decompress_gzip(gzip.compress(b"hello")) == b"hello"


# --- checksums -----------------------------------------------------------------------------


def test_verified_payload_accepts_any_known_digest():
    raw = idx_bytes(np.arange(10, dtype=np.uint8))
    blob = gzip.compress(raw, mtime=0)
    recompressed = gzip.compress(raw, compresslevel=1, mtime=12345)
    checksum = Checksum(uncompressed_md5=md5(raw), gzip_md5=("0" * 32, md5(blob)))

    assert verified_payload(blob, checksum, name="f") == raw
    # A copy compressed differently is still recognised by its uncompressed content.
    assert verified_payload(recompressed, checksum, name="f") == raw
    assert verified_payload(blob, Checksum(gzip_md5=(md5(blob),)), name="f") == raw


def test_verified_payload_rejects_mismatch_with_both_digests_in_message():
    raw = idx_bytes(np.arange(10, dtype=np.uint8))
    checksum = Checksum(uncompressed_md5="a" * 32, gzip_md5=("b" * 32,))

    with pytest.raises(ChecksumError, match="checksum mismatch") as info:
        verified_payload(gzip.compress(raw), checksum, name="the-file.gz")
    message = str(info.value)
    assert "the-file.gz" in message and "a" * 32 in message and "b" * 32 in message
    assert md5(raw) in message


# --- loading local files -------------------------------------------------------------------


def test_load_mnist_returns_scaled_float32_bunch(tmp_path, tiny):
    tiny.write(tmp_path / "mnist")

    data = load_mnist(data_home=tmp_path, download=False)

    assert data.X_train.shape == (N_TRAIN, 784) and data.X_test.shape == (N_TEST, 784)
    assert data.X_train.dtype == np.float32 and data.X_test.dtype == np.float32
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    np.testing.assert_array_equal(data.X_train, scaled(tiny.images["train"]))
    np.testing.assert_allclose(data.X_train, tiny.images["train"].reshape(N_TRAIN, -1) / 255)
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0
    np.testing.assert_array_equal(
        data.X_test[1].reshape(data.image_shape), scaled(tiny.images["test"])[1].reshape(28, 28)
    )
    np.testing.assert_array_equal(data.y_train, tiny.labels["train"])
    np.testing.assert_array_equal(data.y_test, tiny.labels["test"])
    assert data.image_shape == (28, 28)
    assert len(data.feature_names) == 784
    assert data.feature_names[:2] == ["pixel_0_0", "pixel_0_1"]
    assert data.feature_names[28] == "pixel_1_0" and data.feature_names[-1] == "pixel_27_27"
    assert list(data.target_names) == [str(d) for d in range(10)]
    assert data.name == "mnist"
    for word in ("MNIST", "float32", "255", "[0, 1]", "training", "test", "LeCun"):
        assert word in data.DESCR


def test_load_mnist_as_frame(tmp_path, tiny):
    tiny.write(tmp_path / "mnist")

    data = load_mnist(data_home=tmp_path, download=False, as_frame=True)
    arrays = load_mnist(data_home=tmp_path, download=False)

    assert isinstance(data.X_train, pd.DataFrame) and isinstance(data.X_test, pd.DataFrame)
    assert isinstance(data.y_train, pd.Series) and isinstance(data.y_test, pd.Series)
    assert list(data.X_train.columns) == data.feature_names
    assert (data.X_train.dtypes == np.float32).all()
    assert data.y_train.dtype == np.int64 and data.y_train.name == "label"
    np.testing.assert_array_equal(data.X_train.to_numpy(), arrays.X_train)
    np.testing.assert_array_equal(data.y_test.to_numpy(), arrays.y_test)


@pytest.mark.parametrize("as_frame", [False, True])
def test_load_mnist_return_X_y_is_one_subsets_X_and_y(tmp_path, tiny, as_frame):
    tiny.write(tmp_path / "mnist")
    both = load_mnist(data_home=tmp_path, download=False)

    for subset, n in [("train", N_TRAIN), ("test", N_TEST)]:
        kwargs = dict(subset=subset, data_home=tmp_path, download=False, as_frame=as_frame)
        result = load_mnist(**kwargs, return_X_y=True)

        assert isinstance(result, tuple) and len(result) == 2
        X, y = result
        assert X.shape == (n, 784) and y.shape == (n,)
        assert isinstance(X, pd.DataFrame) == as_frame and isinstance(y, pd.Series) == as_frame
        np.testing.assert_array_equal(np.asarray(X), both[f"X_{subset}"])
        np.testing.assert_array_equal(np.asarray(y), both[f"y_{subset}"])
        bunch = load_mnist(**kwargs)
        np.testing.assert_array_equal(np.asarray(bunch.data), both[f"X_{subset}"])
        np.testing.assert_array_equal(np.asarray(bunch.target), both[f"y_{subset}"])
        assert "X_train" not in bunch and bunch.image_shape == (28, 28)


@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist])
def test_return_X_y_without_a_subset_says_how_before_reading_anything(tmp_path, loader):
    # Four arrays from one call were unpacked in train_test_split's order, and the mix-up
    # surfaced in a classifier as "y should be a 1d array, got ... (10000, 784)".
    with pytest.raises(ValueError, match=r"needs a subset.*subset='train', return_X_y=True\)"):
        loader(data_home=tmp_path, download=False, return_X_y=True)
    with pytest.raises(ValueError, match=r"subset='validation' is invalid"):
        loader(subset="validation", data_home=tmp_path, download=False)


def test_a_subset_reads_only_its_own_files(tmp_path, tiny):
    tiny.write(tmp_path / "mnist")
    for name in FILES[:2]:  # no training files
        (tmp_path / "mnist" / name).unlink()

    X_test, y_test = load_mnist(subset="test", data_home=tmp_path, download=False, return_X_y=True)

    np.testing.assert_array_equal(y_test, tiny.labels["test"])
    with pytest.raises(DatasetUnavailableError, match="train-images"):
        load_mnist(subset="train", data_home=tmp_path, download=False)


def test_load_fashion_mnist_reads_its_own_folder(tmp_path, tiny):
    tiny.write(tmp_path / "fashion-mnist")

    data = load_fashion_mnist(data_home=tmp_path, download=False)

    assert data.name == "fashion-mnist"
    assert data.target_names[0] == "T-shirt/top" and data.target_names[9] == "Ankle boot"
    assert list(data.target_names[data.y_test]) == ["Trouser", "Pullover", "Ankle boot"]
    assert "Fashion-MNIST" in data.DESCR and "float32" in data.DESCR
    with pytest.raises(DatasetUnavailableError):
        load_mnist(data_home=tmp_path, download=False)


def test_skae_data_environment_variable_is_the_default_home(tmp_path, tiny, monkeypatch):
    tiny.write(tmp_path / "env_home" / "mnist")
    monkeypatch.setenv("SKAE_DATA", str(tmp_path / "env_home"))

    assert load_mnist(download=False).X_train.shape == (N_TRAIN, 784)


def test_explicit_data_home_wins_over_skae_data(tmp_path, tiny, monkeypatch):
    tiny.write(tmp_path / "explicit" / "mnist")
    monkeypatch.setenv("SKAE_DATA", str(tmp_path / "elsewhere"))

    assert load_mnist(data_home=tmp_path / "explicit", download=False).name == "mnist"


def test_sklearn_data_home_is_the_fallback(tmp_path, tiny):
    # The autouse fixture points SCIKIT_LEARN_DATA at tmp_path / "sklearn_home".
    tiny.write(tmp_path / "sklearn_home" / "mnist")

    assert load_mnist(download=False).X_test.shape == (N_TEST, 784)


def test_system_data_dirs_are_searched_and_left_alone(tmp_path, tiny, monkeypatch):
    system = tmp_path / "usr_share_datasets"
    tiny.write(system / "mnist")
    monkeypatch.setattr(fetch, "SYSTEM_DATA_DIRS", (str(tmp_path / "nothing_here"), str(system)))
    forbid_network(monkeypatch)
    before = {p: p.stat().st_mtime_ns for p in files_under(system)}

    data = load_mnist(data_home=tmp_path / "home", download=True)

    assert data.X_train.shape == (N_TRAIN, 784)
    assert not (tmp_path / "home").exists()
    assert {p: p.stat().st_mtime_ns for p in files_under(system)} == before


def test_valid_system_copy_replaces_corrupt_local_copy(tmp_path, tiny, monkeypatch):
    system = tmp_path / "system"
    tiny.write(system / "mnist")
    home = tiny.write(tmp_path / "home" / "mnist")
    (home / FILES[2]).write_bytes(tiny.gz[FILES[2]][:-8])
    monkeypatch.setattr(fetch, "SYSTEM_DATA_DIRS", (str(system),))

    data = load_mnist(data_home=tmp_path / "home", download=False)

    np.testing.assert_array_equal(data.X_test, scaled(tiny.images["test"]))


def test_download_false_with_missing_files_names_everything_and_stays_offline(
    tmp_path, tiny, monkeypatch
):
    monkeypatch.setitem(mnist.MIRRORS, "mnist", ("https://mirror.invalid/mnist/",))
    forbid_network(monkeypatch)
    tiny.write(tmp_path / "mnist", only=FILES[:2])

    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(data_home=tmp_path, download=False)

    error = info.value
    assert isinstance(error, OSError)
    message = str(error)
    assert "2 file(s) unavailable" in message
    assert str(tmp_path / "mnist") in message and "download=False" in message
    for name in FILES[2:]:
        assert name in message
        assert tiny.checksums[name].gzip_md5[0] in message
        assert f"https://mirror.invalid/mnist/{name}" in message
    assert FILES[0] not in message
    assert error.missing == list(FILES[2:])
    assert error.directory == tmp_path / "mnist"
    assert files_under(tmp_path / "mnist") == [tmp_path / "mnist" / n for n in sorted(FILES[:2])]


def test_download_false_never_creates_the_data_home(tmp_path, tiny):
    with pytest.raises(DatasetUnavailableError):
        load_mnist(data_home=tmp_path / "new_home", download=False)
    assert not (tmp_path / "new_home").exists()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated"),
        pytest.param(lambda blob: blob[:-1] + bytes([blob[-1] ^ 1]), id="flipped-byte"),
        pytest.param(lambda blob: b"", id="empty"),
    ],
)
def test_corrupt_local_file_is_never_used(tmp_path, tiny, damage):
    directory = tiny.write(tmp_path / "mnist")
    (directory / FILES[0]).write_bytes(damage(tiny.gz[FILES[0]]))

    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(data_home=tmp_path, download=False)

    message = str(info.value)
    assert "1 file(s) unavailable" in message
    assert "Local copies rejected" in message and str(directory / FILES[0]) in message


def test_wrong_number_of_images_is_rejected(tmp_path, tiny, monkeypatch):
    tiny.write(tmp_path / "mnist")
    monkeypatch.setitem(mnist.SPLIT_SIZES, "mnist", {"train": N_TRAIN + 1, "test": N_TEST})

    with pytest.raises(ValueError, match=f"{FILES[0]}: expected {N_TRAIN + 1} uint8 images"):
        load_mnist(data_home=tmp_path, download=False)


def test_labels_not_matching_images_are_rejected(tmp_path, tiny, monkeypatch):
    labels = gzip.compress(idx_bytes(np.zeros(N_TRAIN - 1, np.uint8)))
    tiny.write(tmp_path / "mnist")
    (tmp_path / "mnist" / FILES[1]).write_bytes(labels)
    checksums = dict(tiny.checksums, **{FILES[1]: Checksum(gzip_md5=(md5(labels),))})
    monkeypatch.setitem(mnist.CHECKSUMS, "mnist", checksums)

    with pytest.raises(ValueError, match=f"{FILES[1]}: expected {N_TRAIN} uint8 labels"):
        load_mnist(data_home=tmp_path, download=False)


def test_labels_outside_zero_to_nine_are_rejected(tmp_path, tiny, monkeypatch):
    labels = gzip.compress(idx_bytes(np.array([0, 1, 2, 10, 3], np.uint8)))
    tiny.write(tmp_path / "mnist")
    (tmp_path / "mnist" / FILES[1]).write_bytes(labels)
    checksums = dict(tiny.checksums, **{FILES[1]: Checksum(gzip_md5=(md5(labels),))})
    monkeypatch.setitem(mnist.CHECKSUMS, "mnist", checksums)

    with pytest.raises(ValueError, match="labels outside 0..9"):
        load_mnist(data_home=tmp_path, download=False)


# --- downloading from a local HTTP server --------------------------------------------------


def test_download_verifies_stores_and_loads(tmp_path, tiny, server, monkeypatch, capsys):
    monkeypatch.setitem(mnist.MIRRORS, "mnist", (server.mirror("good"),))
    home = tmp_path / "home"

    data = load_mnist(data_home=home)

    assert capsys.readouterr().out == ""

    np.testing.assert_array_equal(data.y_train, tiny.labels["train"])
    assert files_under(home) == sorted(home / "mnist" / name for name in FILES)
    for name in FILES:
        assert (home / "mnist" / name).read_bytes() == tiny.gz[name]
    assert sorted(server.requests_log) == sorted(f"/good/{name}" for name in FILES)

    # Once stored, the files are used without the network.
    forbid_network(monkeypatch)
    np.testing.assert_array_equal(load_mnist(data_home=home, download=False).X_test, data.X_test)


def test_download_fetches_only_missing_files(tmp_path, tiny, server, monkeypatch):
    monkeypatch.setitem(mnist.MIRRORS, "mnist", (server.mirror("good"),))
    tiny.write(tmp_path / "mnist", only=FILES[1:])

    load_mnist(data_home=tmp_path)

    assert server.requests_log == [f"/good/{FILES[0]}"]


@pytest.mark.parametrize("folder", ["corrupt", "truncated", "short"])
def test_bad_download_is_rejected_and_leaves_nothing_behind(
    tmp_path, tiny, server, monkeypatch, folder
):
    monkeypatch.setitem(mnist.MIRRORS, "mnist", (server.mirror(folder),))
    home = tmp_path / "home"

    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(data_home=home)

    message = str(info.value)
    assert "4 file(s) unavailable" in message and "Download attempts failed" in message
    expected = "incomplete download" if folder == "short" else "checksum mismatch|not a valid gzip"
    for name in FILES:
        assert f"{server.mirror(folder)}{name}: " in message
    assert any(word in message for word in expected.split("|"))
    assert files_under(home) == []


def test_corrupt_file_of_same_size_is_rejected(tmp_path, tiny, server, monkeypatch):
    assert all(
        (server.root / "corrupt" / name).stat().st_size == len(tiny.gz[name]) for name in FILES
    )
    monkeypatch.setitem(mnist.MIRRORS, "mnist", (server.mirror("corrupt"),))

    with pytest.raises(DatasetUnavailableError):
        load_mnist(data_home=tmp_path / "home")
    assert files_under(tmp_path / "home") == []


def test_missing_file_on_first_mirror_falls_through_to_the_next(
    tmp_path, tiny, server, monkeypatch
):
    mirrors = (
        closed_port_url(),
        server.mirror("absent"),
        server.mirror("corrupt"),
        server.mirror("good"),
    )
    monkeypatch.setitem(mnist.MIRRORS, "mnist", mirrors)

    data = load_mnist(data_home=tmp_path)

    np.testing.assert_array_equal(data.y_test, tiny.labels["test"])
    for name in FILES:
        assert server.requests_log.count(f"/absent/{name}") == 1
        assert server.requests_log.count(f"/good/{name}") == 1
        assert (tmp_path / "mnist" / name).read_bytes() == tiny.gz[name]
    assert files_under(tmp_path) == sorted(tmp_path / "mnist" / name for name in FILES)


def test_all_mirrors_failing_names_files_directory_checksums_and_urls(
    tmp_path, tiny, server, monkeypatch
):
    mirrors = (server.mirror("absent"), closed_port_url(), server.mirror("truncated"))
    monkeypatch.setitem(mnist.MIRRORS, "mnist", mirrors)
    tiny.write(tmp_path / "mnist", only=FILES[1:])

    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(data_home=tmp_path)

    error = info.value
    message = str(error)
    assert isinstance(error, OSError)
    assert error.missing == [FILES[0]]
    assert error.urls == [base + FILES[0] for base in mirrors]
    assert "1 file(s) unavailable" in message and FILES[0] in message
    assert str(tmp_path / "mnist") in message
    assert tiny.checksums[FILES[0]].gzip_md5[0] in message
    assert "404" in message
    for base in mirrors:
        assert base + FILES[0] in message
    assert files_under(tmp_path) == sorted(tmp_path / "mnist" / name for name in FILES[1:])


def test_error_reports_only_the_files_that_failed(tmp_path, tiny, server, monkeypatch):
    monkeypatch.setitem(mnist.MIRRORS, "mnist", (server.mirror("absent"), server.mirror("partial")))

    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(data_home=tmp_path)

    message = str(info.value)
    assert info.value.missing == [FILES[0]]
    assert "1 file(s) unavailable" in message
    assert f"/partial/{FILES[0]}: " in message and f"/absent/{FILES[0]}: " in message
    assert all(name not in message for name in FILES[1:])
    # The files that verified are kept, so a retry only fetches the missing one.
    assert files_under(tmp_path) == sorted(tmp_path / "mnist" / name for name in FILES[1:])


def test_unwritable_data_home_is_a_clear_error(tmp_path, tiny, server, monkeypatch):
    monkeypatch.setitem(mnist.MIRRORS, "mnist", (server.mirror("good"),))
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")

    with pytest.raises(DatasetUnavailableError, match="cannot create") as info:
        load_mnist(data_home=not_a_folder)
    assert info.value.missing == list(FILES)
    assert server.requests_log == []


def test_unreachable_mirror_is_asked_only_once(tmp_path, tiny, server, monkeypatch):
    dead = closed_port_url()
    monkeypatch.setitem(mnist.MIRRORS, "mnist", (dead, server.mirror("absent")))

    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(data_home=tmp_path)

    message = str(info.value)
    assert message.count(dead) == len(FILES)  # one attempt line per file
    assert message.count("skipped, the mirror was unreachable") == len(FILES) - 1
    assert len(server.requests_log) == len(FILES)


def test_no_mirrors_at_all_is_a_clear_error(tmp_path, tiny):
    with pytest.raises(DatasetUnavailableError, match="no mirrors configured"):
        load_mnist(data_home=tmp_path)
    assert files_under(tmp_path) == []


def test_corrupt_local_file_is_downloaded_again(tmp_path, tiny, server, monkeypatch):
    monkeypatch.setitem(mnist.MIRRORS, "mnist", (server.mirror("good"),))
    directory = tiny.write(tmp_path / "mnist")
    (directory / FILES[3]).write_bytes(b"garbage")

    with pytest.warns(UserWarning, match="Ignoring invalid file"):
        data = load_mnist(data_home=tmp_path)

    np.testing.assert_array_equal(data.y_test, tiny.labels["test"])
    assert (directory / FILES[3]).read_bytes() == tiny.gz[FILES[3]]
    assert server.requests_log == [f"/good/{FILES[3]}"]


# --- a first download on a fresh machine (fake urlopen) -----------------------------------

FAKE_MIRRORS = ("https://mirror-a.invalid/mnist/", "https://mirror-b.invalid/mnist/")


def data_home_given_by(how: str, home: Path, monkeypatch) -> dict:
    """The load_mnist keywords that make ``home`` the data home, the way ``how`` says."""
    if how == "argument":
        return {"data_home": home}
    if how == "SKAE_DATA":
        monkeypatch.setenv("SKAE_DATA", str(home))
    else:  # scikit-learn's data home, the default of a user who configured nothing
        monkeypatch.setenv("SCIKIT_LEARN_DATA", str(home))
    return {}


def test_download_shows_one_progress_bar_per_file_and_stores_verified_files(
    tmp_path, tiny, monkeypatch, capsys
):
    monkeypatch.setitem(mnist.MIRRORS, "mnist", FAKE_MIRRORS)
    requested = serve_from_memory(monkeypatch, tiny.gz)
    home = tmp_path / "home"

    data = load_mnist(data_home=home)

    err = capsys.readouterr().err
    assert f"Downloading 4 file(s) of dataset 'mnist' into {home / 'mnist'}" in err
    # tqdm redraws a bar with \r; the last state of each bar shows the file's bytes in full.
    states = [line for line in re.split(r"[\r\n]", err) if line.strip()]
    for name in FILES:
        size = tqdm.format_sizeof(len(tiny.gz[name]))
        finished = [line for line in states if line.startswith(f"{name}: 100%")]
        assert len(finished) == 1, err
        assert f"{size}/{size}" in finished[0] and "B/s" in finished[0]
    assert requested == [FAKE_MIRRORS[0] + name for name in FILES]
    # Verified files under their final names, nothing else, nowhere else.
    assert sorted(tmp_path.iterdir()) == [home]
    assert files_under(home) == sorted(home / "mnist" / name for name in FILES)
    for name in FILES:
        assert (home / "mnist" / name).read_bytes() == tiny.gz[name]
    np.testing.assert_array_equal(data.y_train, tiny.labels["train"])


@pytest.mark.parametrize("how", ["argument", "SKAE_DATA", "scikit-learn"])
def test_offline_error_says_which_files_to_put_where(tmp_path, tiny, monkeypatch, how):
    monkeypatch.setitem(mnist.MIRRORS, "mnist", FAKE_MIRRORS)
    no_network(monkeypatch)
    home = tmp_path / "fresh_home"

    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(**data_home_given_by(how, home, monkeypatch))

    message = str(info.value)
    assert info.value.directory == home / "mnist"
    assert info.value.missing == list(FILES)
    assert "no network access" in message
    for name in FILES:
        assert name in message and f"{FAKE_MIRRORS[0]}{name}" in message
    # The fix comes last: the files, gzipped, in this folder, or SKAE_DATA / data_home= elsewhere.
    fix = message[message.index("To fix this") :]
    assert "gzipped" in fix and f"  {home / 'mnist'}{os.sep}\n" in fix
    assert "SKAE_DATA" in fix and "data_home=" in fix and "mnist/ subfolder" in fix
    # Offline, each mirror is asked once, not once per file.
    assert message.count("Network is unreachable") == len(FAKE_MIRRORS)


class _InterruptedResponse(FakeResponse):
    def read(self, *args):
        raise KeyboardInterrupt


@pytest.mark.parametrize("how", ["argument", "SKAE_DATA", "scikit-learn"])
@pytest.mark.parametrize("failure", ["offline", "corrupt", "interrupted"])
def test_failed_download_into_a_new_data_home_leaves_no_folder(
    tmp_path, tiny, monkeypatch, how, failure
):
    monkeypatch.setitem(mnist.MIRRORS, "mnist", FAKE_MIRRORS)
    if failure == "offline":
        no_network(monkeypatch)
    elif failure == "corrupt":
        serve_from_memory(monkeypatch, {name: blob[::-1] for name, blob in tiny.gz.items()})
    else:  # the user presses Ctrl-C during the first file
        monkeypatch.setattr(
            fetch.urllib.request, "urlopen", lambda *a, **k: _InterruptedResponse(b"x" * 10)
        )
    # Two levels that do not exist yet: the download creates both, and must remove both.
    home = tmp_path / "new" / "data_home"
    kwargs = data_home_given_by(how, home, monkeypatch)

    expected = KeyboardInterrupt if failure == "interrupted" else DatasetUnavailableError
    with pytest.raises(expected):
        load_mnist(**kwargs)

    assert list(tmp_path.iterdir()) == []


def test_lookup_without_download_creates_no_default_data_home(tmp_path, tiny):
    # The autouse fixture points SCIKIT_LEARN_DATA at tmp_path / "sklearn_home", absent.
    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(download=False)

    assert info.value.directory == tmp_path / "sklearn_home" / "mnist"
    assert list(tmp_path.iterdir()) == []


# --- the real data sets --------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_mnist():
    return load_mnist(data_home=REAL_DATA_HOME, download=False)


@pytest.mark.skipif(REAL_MNIST_SKIP_REASON is not None, reason=str(REAL_MNIST_SKIP_REASON))
class TestRealMNIST:
    def test_shapes_dtypes_and_range(self, real_mnist):
        assert real_mnist.X_train.shape == (60000, 784) and real_mnist.X_test.shape == (10000, 784)
        assert real_mnist.X_train.dtype == np.float32 and real_mnist.X_test.dtype == np.float32
        assert real_mnist.y_train.dtype == np.int64 and real_mnist.y_test.dtype == np.int64
        for X in (real_mnist.X_train, real_mnist.X_test):
            assert X.min() == 0.0 and X.max() == 1.0

    def test_label_counts(self, real_mnist):
        train = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        test = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        assert np.bincount(real_mnist.y_train).tolist() == train
        assert np.bincount(real_mnist.y_test).tolist() == test

    def test_training_pixel_statistics(self, real_mnist):
        X = real_mnist.X_train
        assert X.mean(dtype=np.float64) == pytest.approx(33.318 / 255, abs=1e-3)
        assert X.std(dtype=np.float64) == pytest.approx(78.567 / 255, abs=1e-3)
        # Pixels are exactly k / 255.
        np.testing.assert_array_equal(X[:100], scaled(np.round(X[:100] * 255).astype(np.uint8)))

    def test_as_frame_and_return_X_y(self, real_mnist):
        kwargs = dict(data_home=REAL_DATA_HOME, download=False, return_X_y=True, as_frame=True)
        X_train, y_train = load_mnist(subset="train", **kwargs)
        X_test, y_test = load_mnist(subset="test", **kwargs)
        assert isinstance(X_train, pd.DataFrame) and X_train.shape == (60000, 784)
        assert isinstance(y_test, pd.Series) and y_test.shape == (10000,)
        assert list(X_test.columns) == real_mnist.feature_names
        np.testing.assert_array_equal(X_test.to_numpy(), real_mnist.X_test)
        np.testing.assert_array_equal(y_train.to_numpy(), real_mnist.y_train)

    def test_loading_never_writes_to_the_data_home(self, monkeypatch):
        forbid_network(monkeypatch)
        # Through $SKAE_DATA, as users and CI reach it (the autouse fixture unset it).
        monkeypatch.setenv("SKAE_DATA", str(REAL_DATA_HOME))
        before = {p: p.stat().st_mtime_ns for p in files_under(REAL_DATA_HOME)}
        folders = sorted(p for p in REAL_DATA_HOME.rglob("*") if p.is_dir())

        # download=True as well: valid files must be read, not fetched or rewritten.
        data = load_mnist()

        assert data.X_test.shape == (10000, 784)
        assert {p: p.stat().st_mtime_ns for p in files_under(REAL_DATA_HOME)} == before
        assert sorted(p for p in REAL_DATA_HOME.rglob("*") if p.is_dir()) == folders


@pytest.mark.skipif(not HAS_SYSTEM_FASHION, reason="Debian's dataset-fashion-mnist not installed")
def test_system_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.setattr(fetch, "SYSTEM_DATA_DIRS", (str(SYSTEM_FASHION_HOME),))
    forbid_network(monkeypatch)

    data = load_fashion_mnist(data_home=tmp_path, download=False)

    assert data.X_train.shape == (60000, 784) and data.X_test.shape == (10000, 784)
    assert np.bincount(data.y_train).tolist() == [6000] * 10
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert data.X_train.mean(dtype=np.float64) == pytest.approx(72.940 / 255, abs=1e-3)
    assert not tmp_path.joinpath("fashion-mnist").exists()
