"""Early stopping and the best epoch, decided from each epoch's validation result.

An epoch improves on the best so far when its monitored value is strictly better (lower
val_loss, higher val_accuracy); the first epoch to reach a value is the one kept. With
early_stopping = P, training stops once P epochs in a row have not improved, as Keras'
EarlyStopping(patience=P) does. Nothing here is stored: it is replayed from the history
when a run resumes.
"""

from __future__ import annotations

from ..config import TrainConfig
from ..history import EpochRecord


class EpochChooser:
    def __init__(self, cfg: TrainConfig, history: list[EpochRecord] = ()):
        self.cfg = cfg
        self.best_epoch = 0
        self.best_value = float("nan")
        self.last_epoch = 0
        for record in history:
            self.record(record)

    def record(self, record: EpochRecord) -> bool:
        """Take the next epoch's result; return whether it is the best so far."""
        value = getattr(record, self.cfg.monitor)
        lower_is_better = self.cfg.monitor.endswith("loss")
        improved = self.best_epoch == 0 or (value < self.best_value if lower_is_better
                                            else value > self.best_value)
        if improved:
            self.best_epoch, self.best_value = record.epoch, value
        self.last_epoch = record.epoch
        return improved

    @property
    def stopped_early(self) -> bool:
        patience = self.cfg.early_stopping
        return (patience > 0 and self.last_epoch < self.cfg.epochs
                and self.last_epoch - self.best_epoch >= patience)

    @property
    def done(self) -> bool:
        return self.stopped_early or self.last_epoch >= self.cfg.epochs

    @property
    def kept_epoch(self) -> int:
        return self.best_epoch if self.cfg.keep == "best" else self.last_epoch

    def stop_reason(self) -> str:
        if self.stopped_early:
            return (f"early stopping: {self.cfg.monitor} did not improve for "
                    f"{self.last_epoch - self.best_epoch} epochs after epoch {self.best_epoch}")
        return f"trained all {self.cfg.epochs} epochs"
