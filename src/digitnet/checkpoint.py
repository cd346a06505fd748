"""Checkpoints: everything an interrupted training needs to go on as if it had not stopped.

A checkpoint is one safetensors file (no pickle) written atomically after every epoch:

    state/...   the training state, network and optimizer (Adam's moments and step count),
                named by its place in the state tree (see training/state.py)
    best/...    with keep='best': the model weights of the best epoch so far, named as in
                the model file
    metadata    format and version, the config, the history of the finished epochs, and
                the number of devices the training ran on (a resume on another count goes
                on to float rounding, not bit for bit: see training/devices.py)

The random streams need no state of their own: the shuffling of epoch e is seeded by
(seed, e), its augmentation by fold_in(key(seed), e), and the validation hold-out by the
seed, so the number of finished epochs is their position. Early stopping's bookkeeping is
replayed from the history. This module reads and writes the file and needs no JAX.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .config import TrainConfig
from .errors import ConfigError, ModelFileError
from .history import EpochRecord, history_from_rows, history_rows
from .modelfile import check_weights, read_safetensors

CHECKPOINT_FILENAME = "checkpoint.safetensors"
FORMAT = "digitnet-checkpoint"
FORMAT_VERSION = "1"
STATE, BEST = "state/", "best/"


@dataclass(frozen=True)
class Checkpoint:
    """The training after `epoch` finished epochs (`history` has one record per epoch)."""

    config: TrainConfig
    history: tuple[EpochRecord, ...]
    state: dict[str, np.ndarray]
    best_weights: dict[str, np.ndarray] | None = None  # with keep='best' only
    devices: int = 1  # how many devices the last epoch trained on (training/devices.py)

    @property
    def epoch(self) -> int:
        return len(self.history)


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically (the previous one stays until it is replaced).
    Raises OSError (disk full, no permission)."""
    from safetensors.numpy import save

    # (np.ascontiguousarray would make the scalars, such as the step count, 1-d)
    arrays = {STATE + name: np.asarray(a, order="C") for name, a in checkpoint.state.items()}
    for name, a in (checkpoint.best_weights or {}).items():
        arrays[BEST + name] = np.ascontiguousarray(a, dtype=np.float32)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": checkpoint.config.to_json(),
        "history": json.dumps(history_rows(list(checkpoint.history))),
        "devices": str(checkpoint.devices),
    }
    atomic_write(Path(path), save(arrays, metadata=metadata))


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint file. Raises ModelFileError saying what is wrong."""
    path = Path(path)
    arrays, metadata = read_safetensors(path, "checkpoint", missing="the run saved none")
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not a digitnet checkpoint")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path} has checkpoint format version "
                             f"{metadata.get('format_version')!r}; this digitnet reads "
                             f"version {FORMAT_VERSION}")
    damaged = f"{path} is damaged"
    try:
        cfg = TrainConfig.from_json(metadata.get("config", ""))
        rows = json.loads(metadata.get("history", ""))
        devices = int(metadata.get("devices", "1"))  # absent before data parallelism: one
    except (ConfigError, ValueError) as exc:
        raise ModelFileError(f"{damaged}: {exc}") from None
    if devices < 1:
        raise ModelFileError(f"{damaged}: trained on {devices} devices")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ModelFileError(f"{damaged}: its history is not a list of epochs")
    history = history_from_rows(rows, str(path))
    if not 1 <= len(history) <= cfg.epochs:
        raise ModelFileError(f"{damaged}: {len(history)} finished epochs of {cfg.epochs}")
    unknown = sorted(n for n in arrays if not n.startswith((STATE, BEST)))
    if unknown:
        raise ModelFileError(f"{damaged}: unexpected tensors {unknown[:3]}")
    state = {n[len(STATE):]: a for n, a in arrays.items() if n.startswith(STATE)}
    best = {n[len(BEST):]: a for n, a in arrays.items() if n.startswith(BEST)} or None
    if not state:
        raise ModelFileError(f"{damaged}: it holds no training state")
    for name, array in state.items():
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ModelFileError(f"{damaged}: {name} holds NaN or infinite values")
    if (best is not None) != (cfg.keep == "best"):
        raise ModelFileError(f"{damaged}: best-epoch weights {'without' if best else 'missing for'}"
                             f" keep='best'")
    if best is not None:
        check_weights(best, cfg, source=str(path))
    return Checkpoint(cfg, tuple(history), state, best, devices)
