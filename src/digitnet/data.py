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

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import DataError
from .idx import (MNIST_FILES, IdxFile, check_sha256, check_shape, idx_bytes, idx_size,
                  parse_idx, read_maybe_gzip)

DATA_DIR_ENV = "DIGITNET_DATA_DIR"
CACHE_DIR_ENV = "DIGITNET_CACHE_DIR"

# Keras ships the same arrays as one file with these keys.
NPZ_NAME = "mnist.npz"
NPZ_KEYS = {"train_images": "x_train", "train_labels": "y_train",
            "test_images": "x_test", "test_labels": "y_test"}

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
            check_sha256(idx_bytes(array), spec, path)
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


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in NPZ_KEYS.values()}
    except (OSError, ValueError, KeyError, zlib.error, EOFError) as exc:
        raise DataError(f"{path} is not a readable Keras mnist.npz ({exc})") from None


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
