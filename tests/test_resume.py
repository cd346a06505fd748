"""Checkpoints, resuming and early stopping, in-process on tiny synthetic data."""

import json

import numpy as np
import pytest

from digitnet.checkpoint import CHECKPOINT_FILENAME, load_checkpoint, save_checkpoint
from digitnet.cli import main
from digitnet.config import TrainConfig
from digitnet.errors import ConfigError, DigitnetError, ModelFileError
from digitnet.metrics import loss_and_accuracy
from digitnet.history import EpochRecord, read_history
from digitnet.predict import Predictor
from digitnet.runs import resume_point, resume_run, train_run
from digitnet.training import checkpoint_weights, split_for_training, train
from digitnet.training.stopping import EpochChooser

CONFIGS = {
    "mlp": TrainConfig(hidden=(32,), epochs=4, lr=3e-3),  # with the blank-pixel pruning
    "cnn, augmented, one-cycle": TrainConfig(
        model="cnn", conv=(4, 8), dense=(), epochs=4, lr=3e-3, lr_schedule="onecycle",
        augment=True, validate_on="split"),
    "keep best": TrainConfig(hidden=(32,), epochs=4, lr=3e-2, keep="best"),
}


def _same_training(a: list[EpochRecord], b: list[EpochRecord]) -> bool:
    """The same numbers in every epoch (the times and notes differ between runs)."""
    strip = lambda r: (r.epoch, r.train_loss, r.train_accuracy, r.val_loss,  # noqa: E731
                       r.val_accuracy, r.lr)
    return [strip(r) for r in a] == [strip(r) for r in b]


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_a_resumed_run_ends_with_the_same_weights_bit_for_bit(cfg, tiny_mnist):
    checkpoints = []
    whole = train(cfg, tiny_mnist, on_checkpoint=checkpoints.append)
    assert [c.epoch for c in checkpoints] == [1, 2, 3, 4]
    resumed = train(cfg, tiny_mnist, resume=checkpoints[1])
    assert resumed.weights.keys() == whole.weights.keys()
    for name, array in whole.weights.items():
        assert np.array_equal(resumed.weights[name], array), name
    assert _same_training(resumed.history, whole.history)
    assert [r.note for r in resumed.history[2:]][0].startswith("resumed")
    assert resumed.kept_epoch == whole.kept_epoch


def test_checkpoint_weights_are_each_epochs_weights(tiny_mnist):
    """What a checkpoint holds, restored: the last one's weights are the run's final weights
    (keep='last'), and an earlier one's are not."""
    cfg = CONFIGS["mlp"].replace(epochs=2)
    checkpoints = []
    whole = train(cfg, tiny_mnist, on_checkpoint=checkpoints.append)
    read = list(checkpoint_weights(iter(checkpoints), tiny_mnist))
    assert [c.epoch for c, _ in read] == [1, 2]
    (_, first), (_, last) = read
    assert last.keys() == whole.weights.keys()
    assert all(np.array_equal(last[n], whole.weights[n]) for n in last)
    assert not all(np.array_equal(first[n], whole.weights[n]) for n in first)


def test_checkpoint_file_round_trip(tmp_path, tiny_mnist):
    checkpoints = []
    train(CONFIGS["keep best"].replace(epochs=2), tiny_mnist, on_checkpoint=checkpoints.append)
    save_checkpoint(tmp_path / "c.safetensors", checkpoints[-1])
    back = load_checkpoint(tmp_path / "c.safetensors")
    assert back.config == checkpoints[-1].config and back.history == checkpoints[-1].history
    for part in ("state", "best_weights"):
        ours, theirs = getattr(back, part), getattr(checkpoints[-1], part)
        assert ours.keys() == theirs.keys()
        assert all(np.array_equal(ours[n], theirs[n]) and ours[n].dtype == theirs[n].dtype
                   for n in ours)
    assert "network/layers/0/kernel" in back.state
    assert "optimizer/opt_state/nu/layers/0/kernel" in back.state


def test_a_checkpoint_of_another_config_is_refused(tiny_mnist):
    checkpoints = []
    cfg = CONFIGS["mlp"].replace(epochs=1)
    train(cfg, tiny_mnist, on_checkpoint=checkpoints.append)
    with pytest.raises(ConfigError, match="another config"):
        train(cfg.replace(lr=1e-3), tiny_mnist, resume=checkpoints[0])


def _interrupted_run(folder, data, cfg, after_epoch):
    def interrupt(record):
        if record.epoch == after_epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, folder, data, on_epoch=interrupt, plots=False)


def test_resume_run_finishes_the_folder_and_the_history_shows_it(tmp_path, tiny_mnist):
    cfg = CONFIGS["mlp"]
    _interrupted_run(tmp_path / "run", tiny_mnist, cfg, after_epoch=2)
    assert {p.name for p in (tmp_path / "run").iterdir()} == {
        ".digitnet.lock", "config.json", "history.csv", "history.json", CHECKPOINT_FILENAME}
    assert resume_point(tmp_path / "run")[1].epoch == 2
    run = resume_run(tmp_path / "run", tiny_mnist, plots=False)
    whole = train_run(cfg, tmp_path / "whole", tiny_mnist, plots=False)
    for name, array in whole.predictor.weights.items():
        assert np.array_equal(run.predictor.weights[name], array)
    history = read_history(tmp_path / "run")
    assert [r.note for r in history] == ["", "", "resumed", "kept"]
    assert _same_training(history, read_history(tmp_path / "whole"))
    assert not (tmp_path / "run" / CHECKPOINT_FILENAME).exists()  # the model replaced it
    with pytest.raises(DigitnetError, match="is a finished run"):
        resume_run(tmp_path / "run", tiny_mnist)


def test_a_run_stopped_before_its_first_epoch_resumes_from_the_start(tmp_path, tiny_mnist):
    cfg = CONFIGS["mlp"].replace(epochs=2)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(cfg.to_json())
    run = resume_run(tmp_path / "run", tiny_mnist, plots=False)
    assert [r.epoch for r in run.history] == [1, 2]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("damage", ["truncated", "not a checkpoint", "bit flip in the history",
                                    "checkpoint removed", "other config"])
def test_a_damaged_run_gets_one_clear_error_and_loses_nothing(damage, tmp_path, tiny_mnist):
    folder = tmp_path / "run"
    _interrupted_run(folder, tiny_mnist, CONFIGS["mlp"], after_epoch=2)
    checkpoint = folder / CHECKPOINT_FILENAME
    content = checkpoint.read_bytes()
    if damage == "truncated":
        checkpoint.write_bytes(content[: len(content) // 2])
    elif damage == "not a checkpoint":
        checkpoint.write_bytes(b"\x00" * 64)
    elif damage == "bit flip in the history":
        checkpoint.write_bytes(content.replace(b'\\"epoch\\": 2', b'\\"epoch\\": 7'))
        assert checkpoint.read_bytes() != content
    elif damage == "checkpoint removed":
        checkpoint.unlink()
    else:
        (folder / "config.json").write_text(CONFIGS["mlp"].replace(seed=3).to_json())
    before = _snapshot(folder)
    with pytest.raises(ModelFileError) as error:
        resume_run(folder, tiny_mnist)
    assert "\n" not in str(error.value) and str(folder) in str(error.value)
    assert _snapshot(folder) == before


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, tiny_mnist):
    with pytest.raises(ModelFileError, match="not a run folder"):
        resume_run(tmp_path, tiny_mnist)


def _records(values, monitor="val_loss"):
    return [EpochRecord(i + 1, 0.0, 0.0, v if monitor == "val_loss" else 0.0,
                        v if monitor == "val_accuracy" else 0.0, 1e-3, 1.0)
            for i, v in enumerate(values)]


@pytest.mark.parametrize("monitor, values, patience, stop_after, best", [
    ("val_loss", [0.5, 0.4, 0.45, 0.41, 0.3, 0.31, 0.32, 0.33], 3, 8, 5),
    ("val_loss", [0.5, 0.4, 0.4, 0.4, 0.3], 2, 4, 2),  # equal is no improvement
    ("val_accuracy", [0.9, 0.95, 0.94, 0.96, 0.96, 0.95], 2, 6, 4),
    ("val_loss", [0.5, 0.4, 0.3], 1, None, 3),
])
def test_epoch_chooser(monitor, values, patience, stop_after, best):
    cfg = TrainConfig(epochs=len(values) + 1, early_stopping=patience, monitor=monitor,
                      keep="best")
    chooser = EpochChooser(cfg)
    stopped = None
    for record in _records(values, monitor):
        chooser.record(record)
        if chooser.done:
            stopped = record.epoch
            break
    assert (stopped, chooser.best_epoch, chooser.kept_epoch) == (stop_after, best, best)
    replayed = EpochChooser(cfg, _records(values[:stopped or len(values)], monitor))
    assert (replayed.done, replayed.best_epoch) == (stopped is not None, best)


def test_early_stopping_keeps_the_best_epoch_and_says_why(tmp_path, tiny_mnist):
    cfg = TrainConfig(hidden=(64,), epochs=60, lr=1e-2, early_stopping=2, keep="best",
                      validate_on="split")
    run = train_run(cfg, tmp_path / "run", tiny_mnist, plots=False)
    history = run.history
    assert len(history) < 60
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    kept = metrics["kept_epoch"]
    assert len(history) - kept == 2
    assert min(history, key=lambda r: r.val_loss).epoch == kept
    assert metrics["stop_reason"] == (f"early stopping: val_loss did not improve for 2 epochs "
                                      f"after epoch {kept}")
    assert "kept" in history[kept - 1].note and history[-1].note == "stopped early"
    assert metrics["val_accuracy"] == history[kept - 1].val_accuracy
    # the model is the kept epoch's: its validation loss is that epoch's
    split = split_for_training(cfg, tiny_mnist)
    loss, _ = loss_and_accuracy(run.predictor.logits(split.val_images), split.val_labels)
    assert loss == pytest.approx(history[kept - 1].val_loss, rel=1e-5)
    assert read_history(tmp_path / "run") == history


def test_choosing_an_epoch_on_the_test_set_is_refused():
    for options in ({"early_stopping": 3}, {"keep": "best"}):
        with pytest.raises(ConfigError, match="test set choose"):
            TrainConfig(validate_on="test", **options)
    with pytest.raises(ConfigError, match="early_stopping"):
        TrainConfig(early_stopping=-1)


def test_cli_resume_refuses_config_flags_and_finishes_after_ctrl_c(tmp_path, tiny_mnist,
                                                                   monkeypatch, capsys):
    import digitnet.cli.common
    import digitnet.runs

    monkeypatch.setattr(digitnet.cli.common, "load_data", lambda args: tiny_mnist)
    run = tmp_path / "run"
    real_train = digitnet.runs.train_run

    def interrupted(cfg, out, data, on_epoch=None, plots=True, **options):
        def press_ctrl_c(record):
            on_epoch(record)
            raise KeyboardInterrupt
        return real_train(cfg, out, data, on_epoch=press_ctrl_c, plots=plots, **options)

    monkeypatch.setattr(digitnet.runs, "train_run", interrupted)
    assert main(["train", "--epochs", "3", "--hidden", "16", "--out", str(run)]) == 130
    assert f"interrupted; `digitnet train --resume {run}`" in capsys.readouterr().err
    assert [r.epoch for r in read_history(run)] == [1]
    assert not (run / "model.safetensors").exists()
    for extra in (["--epochs", "5"], ["--recipe", "fast"], ["--out", str(tmp_path / "x")]):
        assert main(["train", "--resume", str(run), *extra]) == 2
        assert f"drop {extra[0]}" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--no-plots"]) == 0
    out = capsys.readouterr()
    assert "resuming after epoch 1 of 3" in out.err and "test accuracy" in out.out
    assert [r.note for r in read_history(run)] == ["", "resumed", "kept"]
    assert main(["train", "--resume", str(run)]) == 1
    assert "is a finished run" in capsys.readouterr().err
    assert Predictor.load(run).config.epochs == 3
