"""The per-epoch training history and its two files (CSV for spreadsheets, JSON for code)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_write
from .errors import ModelFileError
from .files import MAX_JSON_BYTES, read_file


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did. Accuracies are fractions in [0, 1]; losses are mean cross-entropy
    in nats; lr is the learning rate at the epoch's last step; seconds is the wall time since
    the previous epoch's record (the first's since training started), so they add up.
    note says what else happened at that epoch, "; "-separated: "resumed" (the first epoch a
    resumed run trained), "kept" (its weights became the model), "stopped early" (the last
    epoch, when early stopping ended the training)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float
    note: str = ""

    def noted(self, note: str) -> EpochRecord:
        """This record with `note` added to its notes."""
        return dataclasses.replace(self, note=f"{self.note}; {note}" if self.note else note)


FIELDS = [f.name for f in dataclasses.fields(EpochRecord)]


def history_rows(history: list[EpochRecord]) -> list[dict]:
    return [dataclasses.asdict(r) for r in history]


def history_from_rows(rows, source: str) -> list[EpochRecord]:
    """Records from history_rows()' output (read back from JSON); raises ModelFileError
    naming `source` unless they are the epochs 1, 2, ... in order."""
    try:
        history = [EpochRecord(**row) for row in rows]
    except TypeError as exc:
        raise ModelFileError(f"{source} is damaged: {exc}") from None
    for record in history:
        for name in FIELDS:
            value = getattr(record, name)
            kind = {"epoch": int, "note": str}.get(name, (int, float))
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ModelFileError(f"{source} is damaged: {name} of epoch {record.epoch!r} "
                                     f"is {value!r}")
    if [r.epoch for r in history] != list(range(1, len(history) + 1)):
        raise ModelFileError(f"{source} is damaged: its epochs are not 1, 2, ... in order")
    return history


def write_history(folder: Path, history: list[EpochRecord]) -> None:
    """Write history.csv and history.json into `folder`, each atomically."""
    rows = history_rows(history)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(folder / "history.csv", text.getvalue())
    atomic_write(folder / "history.json", json.dumps(rows, indent=1) + "\n")


def read_history(folder: Path) -> list[EpochRecord]:
    """The records in `folder`/history.json (empty if the run has none)."""
    path = folder / "history.json"
    if not path.exists():
        return []
    try:
        rows = json.loads(read_file(path, MAX_JSON_BYTES))
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ModelFileError(f"{path} is damaged: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ModelFileError(f"{path} is damaged: not a list of epochs")
    return history_from_rows(rows, str(path))
