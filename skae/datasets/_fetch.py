"""Locate, verify and download the files of a dataset.

A dataset named ``name`` lives in ``<data_home>/<name>/``; read-only copies installed by the
system (e.g. Debian's ``dataset-fashion-mnist`` package) are looked up in ``SYSTEM_DATA_DIRS``.
Every file is checked against known digests before use, and a download only ever appears under
its final name once it has been verified. Downloads announce themselves and show one progress
bar per file on stderr; nothing is written outside ``<data_home>/<name>/``, and folders created
for a download that failed are removed again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from ._idx import decompress_gzip

__all__ = [
    "SYSTEM_DATA_DIRS",
    "Checksum",
    "ChecksumError",
    "DatasetUnavailableError",
    "fetch_dataset_files",
    "resolve_data_home",
    "verified_payload",
]

#: Folders searched (after ``data_home``) for system-installed datasets, as ``<dir>/<name>/``.
SYSTEM_DATA_DIRS: tuple[str, ...] = ("/usr/share/datasets",)

#: Seconds a download may stall before the mirror is given up.
DOWNLOAD_TIMEOUT = 30.0

_CHUNK_SIZE = 1 << 16
_USER_AGENT = "skae-datasets (Python urllib)"


class DatasetUnavailableError(OSError):
    """A dataset's files are neither present and valid locally nor downloadable.

    Attributes
    ----------
    missing : list of str
        Names of the files that could not be obtained.
    directory : Path
        The folder where the files are expected.
    urls : list of str
        The URLs tried (or, with ``download=False``, the URLs to fetch them from).
    """

    def __init__(self, message: str, *, missing=(), directory=None, urls=()):
        super().__init__(message)
        self.missing = list(missing)
        self.directory = directory
        self.urls = list(urls)

    def __str__(self) -> str:
        return self.args[0]


class ChecksumError(ValueError):
    """A file's content does not match any of its known digests."""


@dataclass(frozen=True)
class Checksum:
    """Known digests of one gzip-compressed dataset file; matching any one of them suffices.

    Parameters
    ----------
    uncompressed_md5 : str or None, default=None
        MD5 of the decompressed bytes. It identifies the content whatever gzip settings a mirror
        or a distribution used to compress it.
    gzip_md5 : tuple of str, default=()
        MD5s of the ``.gz`` file itself, as published by the dataset's authors.
    """

    uncompressed_md5: str | None = None
    gzip_md5: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"md5 {d} of the .gz file" for d in self.gzip_md5]
        if self.uncompressed_md5 is not None:
            parts.append(f"md5 {self.uncompressed_md5} of the uncompressed bytes")
        return " or ".join(parts) or "no known checksum"


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def verified_payload(blob: bytes, checksum: Checksum, *, name: str) -> bytes:
    """Return the decompressed content of a ``.gz`` file after checking it against ``checksum``.

    Parameters
    ----------
    blob : bytes
        The content of the ``.gz`` file.
    checksum : Checksum
        The digests it must match (any one of them).
    name : str
        What to call the file in error messages.

    Returns
    -------
    payload : bytes
        The decompressed bytes.

    Raises
    ------
    ValueError
        If ``blob`` is not valid gzip data, or (as :class:`ChecksumError`) matches no digest.
    """
    gzip_md5 = _md5(blob)
    if gzip_md5 in checksum.gzip_md5:
        return decompress_gzip(blob, name=name)
    uncompressed_md5 = "(not computed)"
    if checksum.uncompressed_md5 is not None:
        payload = decompress_gzip(blob, name=name)
        uncompressed_md5 = _md5(payload)
        if uncompressed_md5 == checksum.uncompressed_md5:
            return payload
    raise ChecksumError(
        f"{name}: checksum mismatch: got md5 {gzip_md5} of the .gz file and md5 "
        f"{uncompressed_md5} of the uncompressed bytes, expected {checksum.describe()}"
    )


def resolve_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """Return ``data_home``, else ``$SKAE_DATA``, else scikit-learn's data home.

    Parameters
    ----------
    data_home : str or path-like, default=None
        An explicit folder, used as given.

    Returns
    -------
    path : Path
        The folder holding one subfolder per dataset. It is not created.
    """
    if data_home is None:
        # scikit-learn's get_data_home() would create its folder, even for a lookup that then
        # fails; its rule is repeated here so that only a download creates folders.
        data_home = os.environ.get("SKAE_DATA") or os.environ.get(
            "SCIKIT_LEARN_DATA", os.path.join("~", "scikit_learn_data")
        )
    return Path(data_home).expanduser()


def fetch_dataset_files(
    name: str,
    checksums: Mapping[str, Checksum],
    mirrors: Sequence[str],
    *,
    data_home: str | os.PathLike | None = None,
    download: bool = True,
) -> dict[str, bytes]:
    """Return the verified, decompressed content of each file of a dataset.

    Each file is taken from the first valid copy among ``<data_home>/<name>/`` and
    ``<dir>/<name>/`` for ``dir`` in ``SYSTEM_DATA_DIRS``; copies that fail verification are
    ignored. Files with no valid copy are downloaded into ``<data_home>/<name>/`` when
    ``download`` is true, trying each mirror in turn.

    Parameters
    ----------
    name : str
        The dataset's folder name, e.g. ``"mnist"``.
    checksums : mapping of str to Checksum
        The files to get, with their digests.
    mirrors : sequence of str
        Base URLs; a file's URL is the base followed by its name.
    data_home : str or path-like, default=None
        See :func:`resolve_data_home`.
    download : bool, default=True
        Whether missing or invalid files may be downloaded.

    Returns
    -------
    payloads : dict of str to bytes
        The decompressed content of each file, keyed by file name.

    Raises
    ------
    DatasetUnavailableError
        If some file has no valid local copy and could not (or may not) be downloaded.
    """
    directory = resolve_data_home(data_home) / name
    payloads: dict[str, bytes] = {}
    rejected: dict[str, list[str]] = {filename: [] for filename in checksums}
    for filename, checksum in checksums.items():
        candidates = _local_candidates(directory, name, filename)
        payload = _first_valid_copy(candidates, checksum, rejected[filename])
        if payload is not None:
            payloads[filename] = payload
    missing = [filename for filename in checksums if filename not in payloads]
    if not missing:
        return payloads
    rejected = {filename: rejected[filename] for filename in missing}
    if not download:
        raise _unavailable(name, checksums, directory, mirrors, rejected, attempts=None)

    for reason in (reason for reasons in rejected.values() for reason in reasons):
        # stacklevel points at the caller of the public loader (load_mnist, ...).
        warnings.warn(f"Ignoring invalid file, downloading it again: {reason}", stacklevel=4)
    attempts: dict[str, list[str]] = {filename: [] for filename in missing}
    unreachable: set[str] = set()
    new_folders = _missing_folders(directory)
    try:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            attempts[missing[0]].append(f"cannot create {directory}: {exc}")
            raise _unavailable(name, checksums, directory, mirrors, rejected, attempts) from exc
        print(
            f"Downloading {len(missing)} file(s) of dataset {name!r} into {directory}",
            file=sys.stderr,
            flush=True,
        )
        for filename in missing:
            payload = _download_from_mirrors(
                filename, checksums[filename], mirrors, directory, attempts[filename], unreachable
            )
            if payload is not None:
                payloads[filename] = payload
    finally:
        # After a failure or an interruption, leave no empty folder behind (the data home
        # included, when the download created it); folders holding a file are kept.
        _remove_empty_folders(new_folders)
    still_missing = [filename for filename in missing if filename not in payloads]
    if still_missing:
        failed = {filename: attempts[filename] for filename in still_missing}
        rejected = {filename: rejected[filename] for filename in still_missing}
        offline = bool(mirrors) and unreachable == set(mirrors)
        raise _unavailable(name, checksums, directory, mirrors, rejected, failed, offline=offline)
    return payloads


def _local_candidates(directory: Path, name: str, filename: str) -> list[Path]:
    candidates = [directory / filename]
    candidates += [Path(system_dir) / name / filename for system_dir in SYSTEM_DATA_DIRS]
    return list(dict.fromkeys(candidates))


def _first_valid_copy(paths: list[Path], checksum: Checksum, rejected: list[str]) -> bytes | None:
    for path in paths:
        if not path.is_file():
            continue
        try:
            return verified_payload(path.read_bytes(), checksum, name=str(path))
        except (OSError, ValueError) as exc:
            rejected.append(str(exc))
    return None


def _url(base: str, filename: str) -> str:
    return base.rstrip("/") + "/" + filename


def _download_from_mirrors(
    filename: str,
    checksum: Checksum,
    mirrors: Sequence[str],
    directory: Path,
    attempts: list[str],
    unreachable: set[str],
) -> bytes | None:
    for base in mirrors:
        url = _url(base, filename)
        if base in unreachable:
            # Offline, every request would wait for its own timeout: ask each host only once.
            attempts.append(f"{url}: skipped, the mirror was unreachable")
            continue
        try:
            return _download_verified(url, directory / filename, checksum)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            attempts.append(f"{url}: {exc}")
            if isinstance(exc, urllib.error.URLError) and not isinstance(
                exc, urllib.error.HTTPError
            ):
                unreachable.add(base)
    return None


def _download_verified(url: str, destination: Path, checksum: Checksum) -> bytes:
    # A temporary file in the same folder makes os.replace atomic, so a reader never sees a
    # partial file under the final name, and concurrent downloads cannot corrupt each other.
    fd, tmp_name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream_to(url, out, label=destination.name)
        payload = verified_payload(tmp_path.read_bytes(), checksum, name=url)
        os.replace(tmp_path, destination)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return payload


def _stream_to(url: str, out: BinaryIO, *, label: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        # Shown on stderr even when it is not a terminal (notebooks, logs): a first download
        # can take minutes and must not look like a hang. The finished bar stays as a record;
        # TQDM_DISABLE=1 silences it (hence no disable= here, which would override it).
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr, leave=True
        ) as bar:
            while chunk := response.read(_CHUNK_SIZE):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns a short body without complaint when the connection drops early.
    if total is not None and received != total:
        raise OSError(f"incomplete download: received {received} of {total} bytes")


def _missing_folders(directory: Path) -> list[Path]:
    """``directory`` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; stop at the first that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            # Not empty (or gone): its ancestors are not empty either (or not ours to remove).
            return


def _unavailable(
    name: str,
    checksums: Mapping[str, Checksum],
    directory: Path,
    mirrors: Sequence[str],
    rejected: dict[str, list[str]],
    attempts: dict[str, list[str]] | None,
    *,
    offline: bool = False,
) -> DatasetUnavailableError:
    """Build the error for the files keyed in ``rejected``, telling the user how to fix it."""
    missing = list(rejected)
    urls = [_url(base, filename) for filename in missing for base in mirrors]
    lines = [f"Dataset {name!r}: {len(missing)} file(s) unavailable in {directory}:"]
    lines += [f"  {filename}  ({checksums[filename].describe()})" for filename in missing]
    reasons = [reason for filename in missing for reason in rejected[filename]]
    if reasons:
        lines.append("Local copies rejected:")
        lines += [f"  {reason}" for reason in reasons]
    if attempts is None:
        lines.append("Downloading is disabled (download=False); the files can be fetched from:")
        lines += [f"  {url}" for url in urls] or ["  (no mirrors configured)"]
    else:
        failures = [attempt for filename in missing for attempt in attempts.get(filename, [])]
        lines.append("Download attempts failed" + (" (no network access?):" if offline else ":"))
        lines += [f"  {attempt}" for attempt in failures] or ["  (no mirrors configured)"]
    # The fix comes last, where a traceback leaves the reader.
    retry = "call again with download=True, or " if attempts is None else ""
    source = ", e.g. from the URLs above" if urls else ""
    lines += [
        f"To fix this, {retry}put these files (gzipped, under these exact names{source}) in:",
        f"  {directory}{os.sep}",
        f"or set the SKAE_DATA environment variable (or pass data_home=) to a folder whose "
        f"{name}/ subfolder holds them.",
    ]
    return DatasetUnavailableError(
        "\n".join(lines), missing=missing, directory=directory, urls=urls
    )
