"""A progress bar for training, as an `on_epoch` callback: one step per epoch, showing the
epoch's losses and accuracies. tqdm chooses the display: a widget in a Jupyter notebook, a
line of text in a terminal."""

from __future__ import annotations

from typing import TextIO

from .config import TrainConfig
from .history import EpochRecord


class ProgressBar:
    """`train(cfg, data, on_epoch=ProgressBar(cfg))`. It closes itself after the last epoch;
    call close() when training ends earlier (early stopping, an error)."""

    def __init__(self, cfg: TrainConfig, *, done: int = 0, file: TextIO | None = None):
        from tqdm.auto import tqdm

        self.epochs = cfg.epochs
        self._bar = tqdm(total=cfg.epochs, initial=done, unit="epoch", file=file,
                         dynamic_ncols=True)

    def __call__(self, record: EpochRecord) -> None:
        self._bar.set_postfix(loss=f"{record.train_loss:.4f}",
                              acc=f"{record.train_accuracy:.2%}",
                              val_loss=f"{record.val_loss:.4f}",
                              val_acc=f"{record.val_accuracy:.2%}")
        self._bar.update(1)
        if record.epoch >= self.epochs:
            self.close()

    def close(self) -> None:
        self._bar.close()
