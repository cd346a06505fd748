import json

import pytest

from digitnet.config import TrainConfig
from digitnet.errors import DigitnetError
from digitnet.history import read_history
from digitnet.runs import load_run, train_run

CFG = TrainConfig(epochs=3, hidden=(32,), lr=3e-3)


def test_run_folder_holds_everything(tmp_path, tiny_mnist):
    run = train_run(CFG, tmp_path / "run", tiny_mnist)
    folder = tmp_path / "run"
    names = {p.name for p in folder.iterdir()}
    assert names == {".digitnet.lock", "config.json", "history.csv", "history.json",
                     "metrics.json", "model.safetensors", "plots"}
    assert TrainConfig.from_json((folder / "config.json").read_text()) == CFG
    metrics = json.loads((folder / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["test_loss"] > 0
    assert sum(map(sum, metrics["confusion_matrix"])) == len(tiny_mnist.test_images)
    assert (folder / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    assert len(read_history(folder)) == 3
    assert sorted(p.name for p in (folder / "plots").iterdir()) == [
        "confident_mistakes.png", "confusion_matrix.png", "predictions_test.png",
        "reliability.png", "risk_coverage.png", "samples_train.png", "training_curves.png"]
    again = load_run(folder)
    assert again.config == CFG and again.history == run.history
    assert again.predictor.results["test_accuracy"] == metrics["test_accuracy"]


def test_interrupted_run_keeps_history_and_writes_no_model(tmp_path, tiny_mnist):
    def interrupt_after_two(record):
        if record.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(CFG, tmp_path / "run", tiny_mnist, on_epoch=interrupt_after_two)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert [r.epoch for r in read_history(tmp_path / "run")] == [1, 2]


def test_unwritable_output_fails_before_training(tmp_path, tiny_mnist):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DigitnetError, match="cannot write to the output folder"):
        train_run(CFG, tmp_path / "a-file" / "run", tiny_mnist)


def test_existing_model_is_not_overwritten(tmp_path, tiny_mnist):
    train_run(CFG.replace(epochs=1), tmp_path / "run", tiny_mnist, plots=False)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(DigitnetError, match="already holds a trained model"):
        train_run(CFG, tmp_path / "run", tiny_mnist)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_disk_full_while_saving_leaves_no_model(tmp_path, tiny_mnist, monkeypatch):
    import digitnet.modelfile

    def disk_full(path, content):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(digitnet.modelfile, "atomic_write", disk_full)
    with pytest.raises(DigitnetError, match="No space left on device"):
        train_run(CFG.replace(epochs=1), tmp_path / "run", tiny_mnist)
    assert not (tmp_path / "run" / "model.safetensors").exists()
