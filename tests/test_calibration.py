"""Calibration: the temperature fitted on the validation split, the expected calibration
error, and where they reach a user (model file, evaluate, export, plots)."""

import json

import numpy as np
import pytest

from digitnet.calibration import (expected_calibration_error, fit_temperature, nll,
                                  reliability, softmax, with_temperature)
from digitnet.cli import main
from digitnet.config import TrainConfig
from digitnet.errors import ModelFileError
from digitnet.modelfile import load_model, save_model
from digitnet.network import tensor_shapes
from digitnet.predict import Predictor


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (20_000, 10))
    for true_temperature in (0.5, 1.0, 2.5):
        probs = softmax(logits / true_temperature)
        labels = (probs.cumsum(1) > rng.random((len(probs), 1))).argmax(1)
        fitted = fit_temperature(logits, labels)
        assert fitted == pytest.approx(true_temperature, rel=0.05)
        assert nll(logits, labels, fitted) <= nll(logits, labels, 1.0) + 1e-9


def test_ece_by_hand():
    # two bins used: confidence 0.95 (both right: gap 0.05) and 0.55 (one of two right: 0.05)
    probs = np.full((4, 10), 0.0)
    probs[0, 1] = probs[1, 2] = 0.95
    probs[2, 3] = probs[3, 4] = 0.55
    probs[probs == 0] = 0.01  # (rows need not sum to 1 for this measure)
    labels = np.array([1, 2, 3, 0])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.05)
    bins = reliability(probs, labels)
    assert bins.count.sum() == 4 and np.nansum(bins.accuracy * bins.count) == 3


def test_the_temperature_folds_into_the_last_layer_exactly():
    cfg = TrainConfig(model="layers", layers="flatten,dense8-relu,dense10")
    rng = np.random.default_rng(1)
    weights = {n: rng.normal(0, 0.3, s).astype(np.float32)
               for n, s in tensor_shapes(cfg.network).items()}
    images = rng.integers(0, 256, (16, 28, 28)).astype(np.uint8)
    calibrated = Predictor(cfg, weights, {"calibration": {"temperature": 1.7}})
    folded = Predictor(cfg, with_temperature(cfg.network, weights, 1.7))
    np.testing.assert_allclose(folded.probabilities(images), calibrated.probabilities(images),
                               rtol=1e-5, atol=1e-7)
    assert (calibrated.probabilities(images).argmax(1)
            == Predictor(cfg, weights).probabilities(images).argmax(1)).all()


@pytest.mark.parametrize("calibration", [{"temperature": 0}, {"temperature": "hot"},
                                         {"temperature": float("nan")}, [1.5], {}])
def test_a_damaged_calibration_is_refused(calibration, tmp_path):
    cfg = TrainConfig(hidden=(4,))
    weights = {n: np.zeros(s, np.float32) for n, s in tensor_shapes(cfg.network).items()}
    save_model(tmp_path / "m.safetensors", weights, cfg, {"calibration": calibration})
    with pytest.raises(ModelFileError, match="calibration temperature"):
        load_model(tmp_path / "m.safetensors")


def test_training_calibrates_on_the_validation_split_only(tiny_mnist):
    from digitnet.training import train

    cfg = TrainConfig(hidden=(16,), epochs=2, validate_on="split")
    result = train(cfg, tiny_mnist)
    calibration = result.calibration
    assert calibration["fitted_on"] == "the validation split (60 images)"
    assert 0.05 < calibration["temperature"] < 20
    assert result.predictor.temperature == calibration["temperature"]
    assert train(cfg.replace(validate_on="test", epochs=1), tiny_mnist).calibration is None


def test_a_run_stores_its_calibration_and_every_command_uses_it(tiny_mnist, tmp_path,
                                                                 monkeypatch, capsys):
    import onnxruntime

    import digitnet.cli.common

    monkeypatch.setattr(digitnet.cli.common, "load_data", lambda args: tiny_mnist)
    monkeypatch.setattr(digitnet.cli.common, "load_test_set",
                        lambda args: (tiny_mnist.test_images, tiny_mnist.test_labels))
    run = tmp_path / "run"
    assert main(["train", "--hidden", "16", "--epochs", "2", "--out", str(run)]) == 0
    assert "expected calibration error" in capsys.readouterr().out
    predictor = Predictor.load(run)
    assert predictor.temperature != 1.0
    assert (run / "plots" / "reliability.png").stat().st_size > 10_000
    assert main(["evaluate", str(run), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    ece = evaluated["ece"]
    assert 0 <= evaluated["refused"] < 0.2 and predictor.refuse_below is not None
    assert ece == pytest.approx(expected_calibration_error(
        predictor.probabilities(tiny_mnist.test_images), tiny_mnist.test_labels))
    assert json.loads((run / "metrics.json").read_text())["ece"] == pytest.approx(ece)
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"),
                                           providers=["CPUExecutionProvider"])
    exported = session.run(None, {"images": tiny_mnist.test_images.astype(np.float32) / 255})[0]
    np.testing.assert_allclose(exported, predictor.probabilities(tiny_mnist.test_images),
                               atol=1e-5)


def test_the_refusal_threshold_refuses_its_share_of_the_validation_digits():
    from digitnet.calibration import REFUSED_VALIDATION_SHARE, refusal_threshold

    rng = np.random.default_rng(3)
    probs = softmax(rng.normal(0, 3, (4000, 10)))
    refusal = refusal_threshold(probs, probs.argmax(1), "test data")
    refused = np.mean(probs.max(1) < refusal["threshold"])
    assert refused == pytest.approx(REFUSED_VALIDATION_SHARE, abs=1 / 4000)
    assert refusal["val_refused"] == pytest.approx(refused)


def test_a_refused_image_has_no_digit_everywhere_it_is_shown(tiny_mnist, tmp_path, capsys):
    from conftest import draw_digit

    cfg = TrainConfig(hidden=(4,))
    weights = {n: np.zeros(s, np.float32) for n, s in tensor_shapes(cfg.network).items()}
    weights["dense_1.bias"][3] = 0.5  # every image: 3, at 15% (0.5 over nine zeros)
    results = {"refusal": {"threshold": 0.2}}
    [prediction] = Predictor(cfg, weights, results).predict(tiny_mnist.test_images[:1])
    assert prediction.digit is None and prediction.likeliest == 3
    assert "doesn't look like a digit: the network is only 15% sure" in prediction.refused
    [kept] = Predictor(cfg, weights).predict(tiny_mnist.test_images[:1])
    assert kept.digit == 3 and kept.refused is None  # no threshold: nothing refused
    save_model(tmp_path / "m.safetensors", weights, cfg, results)
    draw_digit(3, size=64).save(tmp_path / "three.png")
    assert main(["predict", str(tmp_path / "m.safetensors"), str(tmp_path / "three.png"),
                 "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["digit"] is None and "doesn't look like a digit" in row["refused"]
    assert main(["predict", str(tmp_path / "m.safetensors"), str(tmp_path / "three.png")]) == 0
    assert "three.png: not a digit" in capsys.readouterr().out
