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


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did. Accuracies are fractions in [0, 1]; losses are mean cross-entropy
    in nats; lr is the learning rate at the epoch's last step; seconds is the wall time since
    the previous epoch's record (the first's since training started), so they add up."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float


FIELDS = [f.name for f in dataclasses.fields(EpochRecord)]


def write_history(folder: Path, history: list[EpochRecord]) -> None:
    """Write history.csv and history.json into `folder`, each atomically."""
    rows = [dataclasses.asdict(r) for r in history]
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
        return [EpochRecord(**row) for row in json.loads(path.read_text())]
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path} is damaged: {exc}") from None
