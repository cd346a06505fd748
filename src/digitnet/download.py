"""Fetching MNIST's .gz files from the public mirrors (or `$DIGITNET_MNIST_URL`) with pooch,
verified before use.

One download at a time per data folder: a lock file in the folder makes a second process wait
for the first, which then finds the files there. Under that lock, what a killed download left
in the staging folder is removed first. A response is cut off as soon as it is larger than the
file it stands for can be, so a wrong or hostile server cannot fill the disk.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from .atomic import atomic_write
from .errors import DataError
from .idx import (MNIST_FILES, IdxFile, check_sha256, check_shape, idx_size, maybe_gunzip,
                  parse_idx, read_raw, stored_size)

# Mirrors serving the four canonical .gz files, tried in order.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MIRROR_ENV = "DIGITNET_MNIST_URL"
_SCHEMES = ("http", "https", "ftp")  # what pooch downloads from a base URL and a file name


def default_mirrors() -> tuple[str, ...]:
    """The base URLs in $DIGITNET_MNIST_URL (separated by spaces or commas) when it is set,
    else MIRRORS. DataError if one is not an http, https or ftp URL."""
    urls = tuple(os.environ.get(MIRROR_ENV, "").replace(",", " ").split())
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.netloc:
            raise DataError(f"${MIRROR_ENV} must hold http://, https:// or ftp:// base URLs "
                            f"(the folder holding {MNIST_FILES['train_images'].name}.gz and "
                            f"the others), got {url!r}")
    return urls or MIRRORS


def download_mnist(
    folder: str | os.PathLike,
    *,
    mirrors: tuple[str, ...] = MIRRORS,
    files: dict[str, IdxFile] = MNIST_FILES,
    progress: bool = False,
) -> None:
    """Download the missing .gz files into `folder`, trying each mirror in turn.

    A file is moved into place only after its decompressed content passes its checksum and
    parses as IDX, so a failed or corrupt download never looks like a cached file.
    """
    import pooch
    from filelock import FileLock

    pooch.get_logger().setLevel("WARNING")  # the library does not print; errors are raised
    folder = Path(folder)
    staging = folder / ".download"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / ".download.lock")
        lock.acquire()  # waits while another process downloads into this folder
    except OSError as exc:
        raise DataError(f"cannot create {folder} to download MNIST into: {exc.strerror}") from None
    try:
        shutil.rmtree(staging, ignore_errors=True)  # what a killed download left behind
        for spec in files.values():
            if not ((folder / spec.name).is_file() or (folder / (spec.name + ".gz")).is_file()):
                _download_one(spec, folder, staging, mirrors, progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        lock.release()


def _download_one(spec: IdxFile, folder: Path, staging: Path, mirrors: tuple[str, ...],
                  progress: bool) -> None:
    import pooch

    max_size = idx_size(spec.shape)
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + spec.name + ".gz"
        try:
            downloader = _capped(pooch.downloaders.choose_downloader(url, progress),
                                 stored_size(max_size))
            fetched = Path(pooch.retrieve(url, known_hash=None, fname=spec.name + ".gz",
                                          path=staging, progressbar=progress,
                                          downloader=downloader))
        except Exception as exc:  # pooch raises requests/OS errors of many kinds
            failures.append(f"{url}: {exc}")
            continue
        try:
            raw = read_raw(fetched, max_size)
            content = maybe_gunzip(raw, fetched, max_size)
            check_sha256(content, spec, fetched)
            check_shape(parse_idx(content, source=url), spec, fetched)
        except DataError as exc:
            failures.append(f"{url}: {exc}")
            continue
        finally:
            fetched.unlink(missing_ok=True)
        try:  # written anew: pooch's temporary file is 0600, the umask decides for ours
            atomic_write(folder / (spec.name + ".gz"), raw)
        except OSError as exc:
            raise DataError(f"cannot write {folder / (spec.name + '.gz')}: "
                            f"{exc.strerror or exc}") from None
        return
    raise DataError(f"could not download {spec.name}.gz into {folder}: " + "; ".join(failures)
                    + f" (set ${MIRROR_ENV} to a mirror, or put the files in {folder})")


def _capped(downloader, max_bytes: int):
    """`downloader` (a pooch downloader) writing through a file that refuses to grow past
    `max_bytes`: a larger response is cut off as it arrives, not after it is saved."""

    def download(url: str, output_file: str, pooch_obj, check_only: bool = False):
        if check_only:
            return downloader(url, output_file, pooch_obj, check_only=True)
        with open(output_file, "w+b") as fh:
            return downloader(url, _CappedFile(fh, max_bytes), pooch_obj)

    return download


class _CappedFile:
    def __init__(self, fh, max_bytes: int):
        self.fh, self.max_bytes, self.size = fh, max_bytes, 0

    def write(self, chunk: bytes) -> int:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise DataError(f"the response is larger than the {self.max_bytes:,} bytes the file "
                            "can take: stopped there")
        return self.fh.write(chunk)

    def flush(self) -> None:
        self.fh.flush()
