"""Atomic file writes: a temporary file in the target folder, flushed, then renamed over the
target, and the folder synced. A crash, Ctrl-C, power loss or full disk leaves the old file
(or none), never half a file. The file gets the permissions any new file gets (0666 less the
umask), as other tools' files do: a shared run folder stays readable by whom the user allows."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, content: bytes | str) -> None:
    """Write `content` to `path` atomically, creating parent folders. Raises OSError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new empty file beside `path`, opened for writing. Not tempfile.mkstemp: it makes
    files 0600 whatever the umask, and a rename keeps that mode."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{os.urandom(4).hex()}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # another writer drew the same name: draw again
            continue


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (it lives in the folder's entries), where the platform
    allows a folder to be synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not supported here (some file systems, Windows): the rename is still atomic
    finally:
        os.close(fd)
