"""Fetching MNIST's .gz files from the public mirrors with pooch, verified before use."""

from __future__ import annotations

import os
from pathlib import Path

from .data import (MNIST_FILES, IdxFile, check_shape, check_sha256, idx_size, parse_idx,
                   read_maybe_gzip)
from .errors import DataError

# Mirrors serving the four canonical .gz files, tried in order.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


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

    pooch.get_logger().setLevel("WARNING")  # the library does not print; errors are raised
    folder = Path(folder)
    staging = folder / ".download"
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {folder} to download MNIST into: {exc.strerror}") from None
    for spec in files.values():
        if (folder / spec.name).is_file() or (folder / (spec.name + ".gz")).is_file():
            continue
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + spec.name + ".gz"
            try:
                fetched = Path(pooch.retrieve(url, known_hash=None, fname=spec.name + ".gz",
                                              path=staging, progressbar=progress))
            except Exception as exc:  # pooch raises requests/OS errors of many kinds
                failures.append(f"{url}: {exc}")
                continue
            try:
                content = read_maybe_gzip(fetched, max_size=idx_size(spec.shape))
                check_sha256(content, spec, fetched)
                check_shape(parse_idx(content, source=url), spec, fetched)
            except DataError as exc:
                failures.append(f"{url}: {exc}")
                fetched.unlink(missing_ok=True)
                continue
            os.replace(fetched, folder / (spec.name + ".gz"))
            break
        else:
            raise DataError(f"could not download {spec.name}.gz into {folder}: "
                            + "; ".join(failures))
    try:
        staging.rmdir()
    except OSError:
        pass
