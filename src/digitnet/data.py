"""MNIST on disk: locate, verify, download and parse; `load_mnist()` returns uint8 arrays.

Where the files are looked for, in order: the `data_dir` argument, `$DIGITNET_DATA_DIR`, then
the user cache directory (`$DIGITNET_CACHE_DIR` or the OS cache folder). The first of these
that is set is *the* data folder; if it lacks files and downloading is allowed, they are
fetched into it from the public mirrors, or from `$DIGITNET_MNIST_URL` (download.py). Content
is trusted only after its SHA-256 (of the decompressed bytes, so a re-compressed copy still
passes), IDX magic numbers, shapes and label range have been checked. Parsed arrays are
cached so a second load does no decompression.
"""

from __future__ import annotations

import gzip
import hashlib
import json
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

DATA_DIR_ENV = "DIGITNET_DATA_DIR"
CACHE_DIR_ENV = "DIGITNET_CACHE_DIR"

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
# Keras ships the same arrays as one file with these keys.
NPZ_NAME = "mnist.npz"
NPZ_KEYS = {"train_images": "x_train", "train_labels": "y_train",
            "test_images": "x_test", "test_labels": "y_test"}

_IDX_UBYTE = 0x08  # the only element type MNIST uses
_PARSED_CACHE_VERSION = 1


@dataclass(frozen=True)
class MnistData:
    """The four MNIST arrays. Images: uint8 (N, 28, 28), 0 = background, 255 = ink.
    Labels: uint8 (N,) in 0..9. `source` says where they were read from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str = ""

    def __repr__(self) -> str:
        return (f"MnistData({len(self.train_images):,} training and {len(self.test_images):,} "
                f"test images of {'x'.join(map(str, self.train_images.shape[1:]))}, "
                f"source={self.source!r})")


def default_cache_dir() -> Path:
    """The folder for downloads and parsed-array caches: $DIGITNET_CACHE_DIR or the OS cache."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("digitnet"))


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data folder and how it was chosen ('--data-dir', '$DIGITNET_DATA_DIR', 'cache')."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "--data-dir"
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser(), f"${DATA_DIR_ENV}"
    return default_cache_dir() / "mnist", "cache"


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    mirrors: tuple[str, ...] | None = None,
    files: dict[str, IdxFile] = MNIST_FILES,
    progress: bool = False,
    use_cache: bool = True,
) -> MnistData:
    """Load MNIST as uint8 arrays, downloading into the data folder if allowed and needed.

    `mirrors` are base URLs tried in order (default: $DIGITNET_MNIST_URL, else
    download.MIRRORS). `files` describes the
    expected files (pass your own for IDX data sets of the same layout,
    such as Fashion-MNIST, with sha256=None to skip the checksum). Raises DataError with a
    message naming the folder and the fix.
    """
    arrays, source = _load_arrays(data_dir, download, mirrors, files, progress, use_cache)
    return MnistData(**arrays, source=source)


def load_mnist_test(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    mirrors: tuple[str, ...] | None = None,
    files: dict[str, IdxFile] = MNIST_FILES,
    progress: bool = False,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's test set alone, as load_mnist finds, checks and caches it: (images uint8
    (N, 28, 28), labels uint8 (N,)). Evaluating a model needs no more, so only the test
    files must be there, and only they are downloaded when missing."""
    tests = {key: spec for key, spec in files.items() if key.startswith("test_")}
    arrays, _ = _load_arrays(data_dir, download, mirrors, tests, progress, use_cache)
    return arrays["test_images"], arrays["test_labels"]


def _load_arrays(data_dir: str | os.PathLike | None, download: bool,
                 mirrors: tuple[str, ...] | None, files: dict[str, IdxFile], progress: bool,
                 use_cache: bool) -> tuple[dict[str, np.ndarray], str]:
    """The arrays `files` describes, and where they were read from (see load_mnist)."""
    folder, how = resolve_data_dir(data_dir)
    sources = _find_sources(folder, files)
    if sources is None:
        if not download:
            raise DataError(
                f"MNIST not found in {folder} (chosen by {how}): expected "
                f"{', '.join(f.name + '[.gz]' for f in files.values())} or {NPZ_NAME}; pass "
                f"--data-dir or set {DATA_DIR_ENV} to a folder holding them, or allow download"
            )
        from .download import default_mirrors, download_mnist

        download_mnist(folder, mirrors=mirrors or default_mirrors(), files=files,
                       progress=progress)
        sources = _find_sources(folder, files)
        if sources is None:
            raise DataError(f"MNIST files in {folder} vanished right after downloading")
    cache_file = _parsed_cache_path(sources, files) if use_cache else None
    if cache_file is not None:
        cached = _read_parsed_cache(cache_file, files)
        if cached is not None:
            return cached, f"{folder} (parsed cache)"
    arrays = _parse_sources(sources, files)
    if cache_file is not None:
        _write_parsed_cache(cache_file, arrays)
    return arrays, str(folder)


def _find_sources(folder: Path, files: dict[str, IdxFile]) -> dict[str, Path] | None:
    """Paths of the four IDX files (raw or .gz), or of one mnist.npz; None if incomplete."""
    found = {}
    for key, spec in files.items():
        for candidate in (folder / spec.name, folder / (spec.name + ".gz")):
            if candidate.is_file():
                found[key] = candidate
                break
    if len(found) == len(files):
        return found
    npz = folder / NPZ_NAME
    if npz.is_file() and set(files) <= set(NPZ_KEYS):
        return {key: npz for key in files}
    return None


def _parse_sources(sources: dict[str, Path], files: dict[str, IdxFile]) -> dict[str, np.ndarray]:
    arrays = {}
    npz_arrays = None
    for key, path in sources.items():
        spec = files[key]
        if path.name == NPZ_NAME:
            if npz_arrays is None:
                npz_arrays = _read_npz(path)
            array = npz_arrays[NPZ_KEYS[key]]
            # The npz holds the same bytes as the IDX payload: rebuild the IDX file to check it.
            check_sha256(_idx_bytes(array), spec, path)
        else:
            content = read_maybe_gzip(path, max_size=idx_size(spec.shape))
            check_sha256(content, spec, path)
            array = parse_idx(content, source=str(path))
        check_shape(array, spec, path)
        arrays[key] = array
    for kind in sorted({key.split("_")[0] for key in sources}):  # train, test or both
        labels = arrays[f"{kind}_labels"]
        if labels.size and labels.max() > 9:
            raise DataError(f"{sources[kind + '_labels']}: labels must be 0..9, found {labels.max()}")
        if len(labels) != len(arrays[f"{kind}_images"]):
            raise DataError(f"{kind} images and labels differ in count")
    return arrays


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


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in NPZ_KEYS.values()}
    except (OSError, ValueError, KeyError, zlib.error, EOFError) as exc:
        raise DataError(f"{path} is not a readable Keras mnist.npz ({exc})") from None


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


def _idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array (the inverse of parse_idx)."""
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool = False) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed if `compress`)."""
    content = _idx_bytes(np.asarray(array, dtype=np.uint8))
    atomic_write(Path(path), gzip.compress(content) if compress else content)


def _parsed_cache_path(sources: dict[str, Path], files: dict[str, IdxFile]) -> Path:
    """Cache file keyed by the sources' identity (path, size, mtime) and expected checksums."""
    ident = []
    for key in sorted(sources):
        stat = sources[key].stat()
        ident.append([key, str(sources[key].resolve()), stat.st_size, stat.st_mtime_ns,
                      files[key].sha256])
    key = hashlib.sha256(json.dumps([_PARSED_CACHE_VERSION, ident]).encode()).hexdigest()[:24]
    return default_cache_dir() / "parsed" / f"mnist-{key}.npz"


def _read_parsed_cache(path: Path, files: dict[str, IdxFile]) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in files}
    except (OSError, ValueError, KeyError, zlib.error, EOFError):
        return None  # absent or damaged: parse the sources again
    if any(arrays[k].shape != s.shape or arrays[k].dtype != np.uint8 for k, s in files.items()):
        return None
    return arrays


def _write_parsed_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        atomic_write(path, buffer.getvalue())
    except OSError:
        pass  # the cache is an optimisation: an unwritable cache folder only costs speed
