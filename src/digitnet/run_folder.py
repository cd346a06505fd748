"""A run folder's safety: one writer at a time, and no run written over the user's files.

A process writing a run holds the folder's lock (filelock on RUN_DIR/.digitnet.lock, a file
kept there: the system lets the lock go when the process ends, however it ends), so a second
one fails at once instead of mixing its files with the first's. A new run starts only in a
missing or empty folder, unless told to overwrite: then digitnet's own files there are
removed first, and other files are left alone.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .checkpoint import CHECKPOINT_FILENAME
from .config import TrainConfig
from .errors import ConfigError, DigitnetError, ModelFileError
from .files import MAX_JSON_BYTES, read_file
from .predict import MODEL_FILENAME

LOCK_FILENAME = ".digitnet.lock"
_PROBE = ".digitnet-write-test"
# What a run folder holds that digitnet wrote, the model first: removed in this order by an
# overwrite, so that a folder cut short by a crash never looks like a finished run.
RUN_FILES = (MODEL_FILENAME, CHECKPOINT_FILENAME, "metrics.json", "history.csv",
             "history.json", "config.json")
# what plots.save_run_plots draws into RUN_DIR/plots, in the order the model page shows them
PLOT_NAMES = ("training_curves", "confusion_matrix", "reliability", "risk_coverage",
              "confident_mistakes", "predictions_test", "samples_train")


@contextmanager
def locked_run_folder(out_dir: str | os.PathLike, *, create: bool = True) -> Iterator[Path]:
    """Hold the lock of the run folder `out_dir` (made when `create`; a folder this call
    made is removed again if the block fails leaving it empty) while the block runs.
    DigitnetError at once when another process holds it. Re-entrant within a thread."""
    from filelock import FileLock, Timeout

    folder = Path(out_dir)
    if not create and not folder.is_dir():
        raise ModelFileError(f"{folder} is not a run folder (no such folder)")
    made = not folder.exists()
    writable_folder(folder)
    lock = FileLock(folder / LOCK_FILENAME, timeout=0, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise DigitnetError(f"another digitnet process is writing into {folder} (it holds "
                            f"{LOCK_FILENAME} there): wait for it to end, or choose another "
                            "folder") from None
    except OSError as exc:
        raise DigitnetError(f"cannot lock {folder / LOCK_FILENAME}: {exc.strerror or exc}"
                            ) from None
    failed = True
    try:
        yield folder
        failed = False
    finally:
        lock.release()
        if made and failed and lock.lock_counter == 0:
            _remove_if_unused(folder)


def _remove_if_unused(folder: Path) -> None:
    """Remove `folder` if it holds nothing but its lock file (a run that failed before
    writing anything, such as one without MNIST, leaves no folder behind)."""
    try:
        if os.listdir(folder) == [LOCK_FILENAME]:
            (folder / LOCK_FILENAME).unlink()
            folder.rmdir()
    except OSError:
        pass


def check_new_run_folder(out_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """DigitnetError unless a new run may start in `out_dir`: it is missing or empty, or
    `overwrite` is given. Changes nothing."""
    folder = Path(out_dir)
    try:
        entries = sorted(set(os.listdir(folder)) - {LOCK_FILENAME, _PROBE})
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DigitnetError(f"cannot use {folder} as the output folder: "
                            f"{exc.strerror or exc}") from None
    if not entries or overwrite:
        return
    if MODEL_FILENAME in entries:
        raise DigitnetError(f"{folder} already holds a trained model: choose another --out, "
                            "or pass --overwrite to replace it")
    if "config.json" in entries and _holds_a_config(folder / "config.json"):
        raise DigitnetError(f"{folder} holds an unfinished run: `digitnet train --resume "
                            f"{folder}` goes on with it, --overwrite starts afresh")
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3
                                      else "")
    raise DigitnetError(f"{folder} is not empty ({shown}) and is not a digitnet run: choose "
                        "another --out, or pass --overwrite to write the run into it anyway")


def _holds_a_config(path: Path) -> bool:
    """Whether `path` is a run's config.json (and not some other program's)."""
    try:
        TrainConfig.from_json(read_file(path, MAX_JSON_BYTES).decode())
    except (ConfigError, OSError, ValueError):
        return False
    return True


def clear_run_files(folder: Path) -> None:
    """Remove what an earlier run left in `folder` (digitnet's files only)."""
    leftovers = [folder / name for name in RUN_FILES]
    leftovers += [folder / "plots" / f"{name}.png" for name in PLOT_NAMES]
    leftovers += list(folder.glob(".*.tmp"))  # atomic writes a killed process cut short
    try:
        for path in leftovers:
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise DigitnetError(f"cannot remove {path} to overwrite the run: "
                            f"{exc.strerror or exc}") from None


def writable_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / _PROBE
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DigitnetError(f"cannot write to the output folder {folder}: "
                            f"{exc.strerror or exc}") from None
    return folder
