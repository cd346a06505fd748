"""Reading what a user names: only regular files, never more than a bound, and folders walked
so that one that cannot be listed is reported instead of silently skipped.

A FIFO blocks a reader until something writes into it, and /dev/zero never ends: `read_file`
refuses both before reading, and a regular file over its bound before holding it in memory.
Its errors are OSErrors (with `strerror` set), so callers that already turn OSError into a
message need no new case. `check_model_file` makes the same checks with one stat, for a
caller that hands the path to a reader of its own.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import ModelFileError

MAX_IMAGE_BYTES = 128 * 2**20  # an image file (a 40-megapixel RGB image stored raw is 120 MB)
MAX_MODEL_BYTES = 512 * 2**20  # a model file: digitnet's networks hold a few MB of weights
MAX_JSON_BYTES = 16 * 2**20  # a run's config.json, metrics.json, history.json

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotARegularFile(OSError):
    """The path is a FIFO, a device or a socket: reading it could block or never end."""


class FileTooLarge(OSError):
    """The file holds more bytes than the caller allows."""


def read_model_file(path: str | os.PathLike) -> bytes:
    """The bytes of the model file at `path` (at most MAX_MODEL_BYTES); ModelFileError says
    in one line why they cannot be read."""
    try:
        return read_file(path, MAX_MODEL_BYTES)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`, which must hold at most `max_bytes`.

    Raises FileNotFoundError, IsADirectoryError, PermissionError (as open() does),
    NotARegularFile or FileTooLarge; all are OSErrors whose `strerror` says what is wrong."""
    # O_NONBLOCK: opening a FIFO that has no writer returns at once instead of waiting
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "a folder, not a file", str(path))
        if not stat.S_ISREG(mode):
            raise NotARegularFile(errno.EINVAL, f"not a regular file ({_kind(mode)})",
                                  str(path))
        too_large = FileTooLarge(errno.EFBIG, f"larger than the {max_bytes:,} bytes allowed",
                                 str(path))
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise too_large
        content = fh.read(size + 1)  # (read(max_bytes) would allocate max_bytes first)
        if len(content) > size:  # it grew since fstat (or is a /proc file): read on
            content += fh.read(max_bytes + 1 - len(content))
    if len(content) > max_bytes:
        raise too_large
    return content


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def check_model_file(path: str | os.PathLike) -> None:
    """ModelFileError if the model file `path` is there but not a regular file of at most
    MAX_MODEL_BYTES: what a reader must not start on (a FIFO would block it, /dev/zero never
    ends). One stat; a missing or unreachable file is left to the reader to report."""
    try:
        info = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
        raise ModelFileError(f"{path} is not a regular file ({_kind(info.st_mode)}), so "
                             "neither a model file nor a run folder")
    if info.st_size > MAX_MODEL_BYTES and stat.S_ISREG(info.st_mode):
        raise ModelFileError(f"{path} holds {info.st_size:,} bytes, more than a model file "
                             f"digitnet reads ({MAX_MODEL_BYTES:,})")


def find_files(paths: list[str | os.PathLike],
               suffixes: set[str]) -> list[tuple[Path, OSError | None]]:
    """Each path that is not a folder as given (reading it says what is wrong with it), and
    the files whose suffix is in `suffixes` (lower case) found in folders, recursively,
    sorted. A folder that cannot be listed comes as (folder, its OSError) in its place."""
    found: list[tuple[Path, OSError | None]] = []
    for path in map(Path, paths):
        try:
            is_folder = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError:
            is_folder = False  # missing or not reachable: reading it will say which
        if not is_folder:
            found.append((path, None))
            continue
        inside: list[tuple[Path, OSError | None]] = []

        def unlisted(exc: OSError) -> None:
            inside.append((Path(exc.filename) if exc.filename else path, exc))

        for folder, _, names in os.walk(path, onerror=unlisted):
            inside.extend((Path(folder, name), None) for name in names
                          if Path(name).suffix.lower() in suffixes)
        found.extend(sorted(inside, key=lambda item: item[0]))
    return found
