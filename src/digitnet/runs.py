"""Run folders: what `digitnet train` leaves behind, and reading it back.

    RUN_DIR/config.json              resolved TrainConfig
    RUN_DIR/checkpoint.safetensors   the training after the last finished epoch (written
                                     after every epoch; removed once the model is saved)
    RUN_DIR/history.csv, .json       one row per finished epoch (written after every epoch)
    RUN_DIR/metrics.json             test-set metrics (test_accuracy, test_loss, confusion,
                                     kept_epoch, stop_reason, ...)
    RUN_DIR/model.safetensors        weights + config + results; written last, atomically
    RUN_DIR/plots/*.png
    RUN_DIR/.digitnet.lock           locked while a process writes into the folder

Every file is written atomically. An interrupted or failed run keeps its config, the history
and the checkpoint of its finished epochs, and has no model file, so nothing half-trained
can be mistaken for a result; `resume_run` goes on from the checkpoint.

A process writing a run holds the folder's lock, and a new run starts only in a missing or
empty folder unless told to overwrite (run_folder.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import atomic_write
from .checkpoint import CHECKPOINT_FILENAME, Checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import MnistData
from .errors import ConfigError, DigitnetError, ModelFileError
from .files import MAX_JSON_BYTES, check_model_file, read_file
from .history import EpochRecord, read_history, write_history
from .metrics import Metrics, compute_metrics
from .modelfile import save_model
from .predict import MODEL_FILENAME, Predictor, model_path
from .run_folder import check_new_run_folder, clear_run_files, locked_run_folder


@dataclass(frozen=True)
class Run:
    folder: Path | None  # None for a model file read on its own
    config: TrainConfig
    history: list[EpochRecord]
    metrics: dict  # metrics.json as written (empty if the run never finished)
    predictor: Predictor

    def __repr__(self) -> str:
        return (f"Run({str(self.folder) if self.folder else 'a model file'}: {self.predictor!r}"
                f", {len(self.history)} epochs)")


def _read_json_file(path: Path):
    """The JSON value in the run's file `path`; ModelFileError if unreadable or damaged."""
    try:
        return json.loads(read_file(path, MAX_JSON_BYTES))
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # UnicodeDecodeError is one
        raise ModelFileError(f"{path} is damaged: {exc}") from None


def _write(path: Path, content: str | bytes) -> None:
    try:
        atomic_write(path, content)
    except OSError as exc:
        raise DigitnetError(f"cannot write {path}: {exc.strerror or exc}") from None


def train_run(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    data: MnistData,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    plots: bool = True,
    *,
    overwrite: bool = False,
    devices: int | str | None = None,
) -> Run:
    """Train, evaluate on the test set, save the model (and plots) into `out_dir`, holding
    its lock. `out_dir` must be missing or empty unless `overwrite` (then digitnet's files
    there are removed first; see check_new_run_folder). `devices`: as train takes it."""
    with locked_run_folder(out_dir) as folder:
        check_new_run_folder(folder, overwrite)
        clear_run_files(folder)
        _write(folder / "config.json", cfg.to_json() + "\n")
        return _train_into(folder, cfg, data, on_epoch, plots, resume=None, devices=devices)


def resume_point(run_dir: str | os.PathLike) -> tuple[TrainConfig, Checkpoint | None]:
    """The config of the interrupted run in `run_dir` and its last checkpoint (None when no
    epoch had finished). Raises DigitnetError for a finished run, a folder that is not a run,
    or a damaged checkpoint; nothing in the folder is changed."""
    folder = Path(run_dir)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelFileError(f"{folder} is not a run folder (it has no config.json): nothing "
                             "to resume")
    if (folder / MODEL_FILENAME).exists():
        raise DigitnetError(f"{folder} is a finished run (it has its {MODEL_FILENAME}): "
                            "nothing to resume")
    try:
        cfg = TrainConfig.from_json(read_file(config_path, MAX_JSON_BYTES).decode())
    except (ConfigError, OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{config_path} is damaged: {exc}") from None
    checkpoint_path = folder / CHECKPOINT_FILENAME
    if checkpoint_path.exists():
        checkpoint = load_checkpoint(checkpoint_path)
        if checkpoint.config != cfg:
            raise ModelFileError(f"{checkpoint_path} and {config_path} hold different configs")
        return cfg, checkpoint
    finished = read_history(folder)
    if finished:
        raise ModelFileError(f"{folder} has {len(finished)} finished epochs but no "
                             f"{CHECKPOINT_FILENAME} (a run made before checkpoints, or the "
                             "file was removed): train it again")
    return cfg, None


def resume_run(
    run_dir: str | os.PathLike,
    data: MnistData,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    plots: bool = True,
    *,
    devices: int | str | None = None,
) -> Run:
    """Go on with the interrupted run in `run_dir` from its last finished epoch, with the
    config stored there, and finish it as train_run would have (see resume_point), holding
    the folder's lock. `devices` (as train takes it) need not be the count the run started
    on: the history notes a change."""
    with locked_run_folder(run_dir, create=False) as folder:
        cfg, checkpoint = resume_point(folder)
        for unfinished in folder.glob(".*.tmp"):  # atomic writes a killed process cut short
            unfinished.unlink(missing_ok=True)
        return _train_into(folder, cfg, data, on_epoch, plots, resume=checkpoint,
                           devices=devices)


def _train_into(folder: Path, cfg: TrainConfig, data: MnistData,
                on_epoch: Callable[[EpochRecord], None] | None, plots: bool,
                resume: Checkpoint | None, devices: int | str | None = None) -> Run:
    """Train in `folder`, writing the checkpoint and then the history after every epoch,
    and finish the run."""
    from .training import train  # imports JAX; reading runs back does not need it

    checkpoint_path = folder / CHECKPOINT_FILENAME

    def write_checkpoint(checkpoint: Checkpoint) -> None:
        try:
            save_checkpoint(checkpoint_path, checkpoint)
        except OSError as exc:
            kept = (f"the checkpoint of epoch {checkpoint.epoch - 1} is intact; "
                    if checkpoint.epoch > 1 else "")
            raise DigitnetError(f"cannot write {checkpoint_path}: {exc.strerror or exc} "
                                f"({kept}make room and `digitnet train --resume {folder}`)"
                                ) from None

    history = list(resume.history) if resume is not None else []

    def record_epoch(record: EpochRecord) -> None:
        history.append(record)
        _write_history(folder, history)
        if on_epoch is not None:
            on_epoch(record)

    result = train(cfg, data, on_epoch=record_epoch, resume=resume,
                   on_checkpoint=write_checkpoint, devices=devices)
    _write_history(folder, result.history)  # with the notes of the kept epoch and the stop
    run = _finish_run(folder, cfg, result.weights, result.history, data, plots=plots,
                      provenance=result.fitted, training=(result.kept_epoch, result.stop_reason))
    checkpoint_path.unlink(missing_ok=True)  # the model file now holds what it was for
    return run


def _write_history(folder: Path, history: list[EpochRecord]) -> None:
    try:
        write_history(folder, history)
    except OSError as exc:
        raise DigitnetError(f"cannot write the history into {folder}: "
                            f"{exc.strerror or exc}") from None


def _finish_run(folder: Path, cfg: TrainConfig, weights: dict[str, np.ndarray],
                history: list[EpochRecord], data: MnistData | None, *, plots: bool,
                provenance: dict | None = None,
                training: tuple[int, str] | None = None) -> Run:
    """Evaluate on the test set (when `data` is given), write metrics.json, then the model
    file (written last but the plots: its presence marks a finished run), then the plots.
    `training` is (kept epoch, stop reason) for a run digitnet trained."""
    results = dict(provenance or {})  # where the model came from, and its calibration
    summary: dict = {}
    test_probs = None
    if data is not None:  # the probabilities are calibrated, for the metrics and the plots
        test_probs = Predictor(cfg, weights, results).probabilities(data.test_images)
        summary = {**results, **metrics_summary(
            compute_metrics(test_probs, data.test_labels,
                            refuse_below=(results.get("refusal") or {}).get("threshold")),
            history, cfg, training)}
        _write(folder / "metrics.json", json.dumps(summary, indent=1) + "\n")
        results.update((k, summary[k]) for k in ("test_accuracy", "test_loss"))
    try:
        save_model(folder / MODEL_FILENAME, weights, cfg, results=results)
    except OSError as exc:
        raise DigitnetError(f"cannot write the model file: {exc.strerror or exc}") from None
    run = Run(folder, cfg, history, summary, Predictor(cfg, weights, results))
    if data is not None and plots:
        plot_run(folder, data, run=run, test_probs=test_probs)
    return run


def metrics_summary(metrics: Metrics, history: list[EpochRecord], cfg: TrainConfig,
                    training: tuple[int, str] | None = None) -> dict:
    """metrics.json's content: test results first, then how training ended, then the full
    metrics. `training` is (kept epoch, stop reason); without it the last epoch is kept."""
    kept_epoch, stop_reason = training or (len(history), None)
    kept = history[kept_epoch - 1] if history else None
    return {
        "test_accuracy": metrics.accuracy,
        "test_loss": metrics.loss,
        "val_accuracy": kept.val_accuracy if kept else None,
        "validated_on": cfg.validate_on,
        "epochs_trained": len(history),
        "kept_epoch": kept_epoch if history else None,
        "stop_reason": stop_reason,
        **metrics.to_dict(),
    }


def load_run(run_dir: str | os.PathLike) -> Run:
    """Read a finished run folder back (no JAX needed). A model file (digitnet's, or a Keras
    or ONNX one) is read as a run without history or metrics, and without a folder."""
    folder = Path(run_dir)
    check_model_file(model_path(folder))
    if folder.is_file():
        predictor = Predictor.load(folder)
        return Run(None, predictor.config, [], {}, predictor)
    if not folder.is_dir():
        raise ModelFileError(f"{folder} is not a run folder (run `digitnet train --out {folder}`)")
    predictor = Predictor.load(folder / MODEL_FILENAME)
    metrics_path = folder / "metrics.json"
    metrics = _read_json_file(metrics_path) if metrics_path.exists() else {}
    return Run(folder, predictor.config, read_history(folder), metrics, predictor)


def plot_run(
    folder: str | os.PathLike,
    data: MnistData,
    *,
    run: Run | None = None,
    test_probs: np.ndarray | None = None,
) -> list[Path]:
    """(Re)draw the run's plots into `folder`/plots; return the files written. `run` and
    `test_probs` (the model's (N, 10) probabilities on the test set) are read or computed
    when not given."""
    from .plots import save_run_plots

    folder = Path(folder)
    if not folder.is_dir():
        raise DigitnetError(f"{folder} is not a run folder: plots are drawn into one")
    run = run or load_run(folder)
    if test_probs is None:
        test_probs = run.predictor.probabilities(data.test_images)
    metrics = run.metrics
    if "confusion_matrix" not in metrics:
        metrics = {**metrics, **compute_metrics(
            test_probs, data.test_labels, refuse_below=run.predictor.refuse_below).to_dict()}
    try:
        return save_run_plots(folder / "plots", run.history, metrics, data.train_images,
                              data.train_labels, data.test_images, data.test_labels, test_probs,
                              run.predictor.refuse_below)
    except OSError as exc:
        raise DigitnetError(f"cannot write plots into {folder / 'plots'}: "
                            f"{exc.strerror or exc}") from None


def import_run(model_file: str | os.PathLike, out_dir: str | os.PathLike,
               data: MnistData | None = None, input_scale: float | None = None,
               plots: bool = True, *, input_mean: float = 0.0, input_std: float = 1.0,
               overwrite: bool = False) -> Run:
    """A run folder made from a Keras or ONNX model file (see interop.load_foreign_model):
    the model file with its config, and, when `data` is given, the test metrics and plots,
    so every command works on it. `out_dir` is taken as train_run takes it (its lock held,
    and `overwrite` needed unless empty)."""
    from .interop import load_foreign_model

    cfg, weights, provenance = load_foreign_model(model_file, input_scale, input_mean,
                                                  input_std)
    with locked_run_folder(out_dir) as folder:
        check_new_run_folder(folder, overwrite)
        clear_run_files(folder)
        _write(folder / "config.json", cfg.to_json() + "\n")
        return _finish_run(folder, cfg, weights, [], data, plots=plots, provenance=provenance)
