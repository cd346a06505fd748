"""The files MNIST is made of: the IDX format (an unsigned-byte array behind a header of its
shape), read with bounded memory from plain or gzip files, checked against the SHA-256 of its
decompressed content and its shape, and written. A leaf below the data and download modules.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import DataError
from .files import FileTooLarge, read_file

_IDX_UBYTE = 0x08  # the only element type MNIST uses

@dataclass(frozen=True)
class IdxFile:
    """One IDX file: its canonical name (without .gz), the SHA-256 of its decompressed
    content (None: not checked) and the array shape it must hold."""

    name: str
    sha256: str | None
    shape: tuple[int, ...]


MNIST_FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        (60000, 28, 28),
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        (60000,),
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        (10000, 28, 28),
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        (10000,),
    ),
}
def read_maybe_gzip(path: Path, max_size: int | None = None) -> bytes:
    """The content of `path`, decompressed if it is gzip. With `max_size`, a file that is (or
    decompresses to) more bytes is refused before more than that is held in memory."""
    return maybe_gunzip(read_raw(path, max_size), path, max_size)


def read_raw(path: Path, max_size: int | None = None) -> bytes:
    """The bytes of the regular file `path`, as stored: at most what a gzip file of
    `max_size` decompressed bytes can take (when given)."""
    try:
        return read_file(path, sys.maxsize if max_size is None else stored_size(max_size))
    except FileTooLarge:
        raise DataError(f"{path} holds more than the {max_size:,} bytes expected: it is not "
                        "the file it is named after") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def stored_size(max_size: int) -> int:
    """The most bytes a file of `max_size` bytes can take raw or gzip-compressed."""
    return max_size + max_size // 1000 + 64  # compressing adds ~0.03% to incompressible data


def maybe_gunzip(raw: bytes, path: Path, max_size: int | None = None) -> bytes:
    """`raw` decompressed if it is gzip (one member), else `raw`; DataError if it is damaged
    or decompresses to more than `max_size` bytes. `path` names it in messages."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # one gzip member
        content = inflate.decompress(raw, (max_size or 0) + 1 if max_size is not None else 0)
        if max_size is not None and len(content) > max_size:
            raise DataError(f"{path} holds more than the {max_size:,} bytes expected: it is "
                            "not the file it is named after")
        if not inflate.eof:
            raise EOFError("compressed data ended before the end-of-stream marker")
        if inflate.unused_data:
            raise EOFError("bytes follow the end of the compressed data")
    except (EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a truncated or corrupt gzip file ({exc}); delete it and "
                        "download or copy it again") from None
    return content


def check_sha256(content: bytes, spec: IdxFile, path: Path) -> None:
    if spec.sha256 is None:
        return
    digest = hashlib.sha256(content).hexdigest()
    if digest != spec.sha256:
        raise DataError(
            f"{path} fails its checksum (SHA-256 of the content is {digest[:12]}..., expected "
            f"{spec.sha256[:12]}...): the file is corrupt or not MNIST; delete it and fetch it again"
        )


def check_shape(array: np.ndarray, spec: IdxFile, path: Path) -> None:
    if array.shape != spec.shape or array.dtype != np.uint8:
        raise DataError(f"{path}: expected uint8 {spec.shape}, found {array.dtype} {array.shape}")


def idx_size(shape: tuple[int, ...]) -> int:
    """The bytes of an unsigned-byte IDX file of `shape`: header and data."""
    return 4 + 4 * len(shape) + math.prod(shape)


def parse_idx(content: bytes, *, source: str = "IDX data") -> np.ndarray:
    """Parse an IDX file's bytes (unsigned-byte type) into a uint8 array of its shape."""
    if len(content) < 4 or content[0:2] != b"\x00\x00":
        raise DataError(f"{source} is not an IDX file (bad magic number)")
    dtype_code, ndim = content[2], content[3]
    if dtype_code != _IDX_UBYTE:
        raise DataError(f"{source}: IDX element type 0x{dtype_code:02x} is not unsigned byte")
    header = 4 + 4 * ndim
    if ndim == 0 or len(content) < header:
        raise DataError(f"{source}: truncated IDX header")
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)  # exact: np.prod would wrap round at 2**63
    if len(content) != expected:
        raise DataError(
            f"{source}: IDX header promises {shape} ({expected} bytes) but the file has "
            f"{len(content)} bytes; it is truncated or corrupt"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array (the inverse of parse_idx)."""
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool = False) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed if `compress`)."""
    content = idx_bytes(np.asarray(array, dtype=np.uint8))
    atomic_write(Path(path), gzip.compress(content) if compress else content)
