"""digitnet models out to Keras and ONNX, checked with the real Keras (JAX backend) and the
real onnxruntime."""

import os
import sys

import numpy as np
import pytest

from digitnet.cli import main
from digitnet.config import TrainConfig
from digitnet.errors import DigitnetError
from digitnet.interop import export_model
from digitnet.modelfile import save_model
from digitnet.predict import Predictor

from conftest import random_weights

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported; no TensorFlow here

CONFIGS = [TrainConfig(hidden=(32, 16)), TrainConfig(model="cnn", conv=(8, 16), dense=(32,)),
           TrainConfig(model="cnn", conv=(4, 8, 8), convs_per_block=2, dense=()),
           TrainConfig(hidden=(20, 12), activation="tanh"),
           TrainConfig(model="cnn", conv=(6, 12), dense=(16,), activation="sigmoid", pool="avg")]
IDS = ["mlp", "cnn", "cnn-deep", "mlp-tanh", "cnn-sigmoid-avg"]


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (64, 28, 28)).astype(np.uint8)


def keras_probabilities(path, images):
    import keras

    model = keras.saving.load_model(path)
    return model.predict(images.astype(np.float32) / 255, verbose=0, batch_size=1000)


def onnx_probabilities(path, images):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"images": images.astype(np.float32) / 255})[0]


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_keras_export_predicts_what_digitnet_predicts(cfg, images, tmp_path):
    weights = random_weights(cfg)
    path = export_model(cfg, weights, "keras", tmp_path / "model.keras")
    expected = Predictor(cfg, weights).probabilities(images)
    np.testing.assert_allclose(keras_probabilities(path, images), expected, atol=1e-5)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_onnx_export_predicts_what_digitnet_predicts_at_any_batch_size(cfg, images, tmp_path):
    weights = random_weights(cfg)
    path = export_model(cfg, weights, "onnx", tmp_path / "model.onnx")
    expected = Predictor(cfg, weights).probabilities(images)
    for batch in (images[:1], images[:7], images):
        np.testing.assert_allclose(onnx_probabilities(path, batch),
                                   expected[:len(batch)], atol=1e-5)


def test_export_command_writes_both_formats(tmp_path, capsys):
    cfg = CONFIGS[1]
    save_model(tmp_path / "m.safetensors", random_weights(cfg), cfg)
    for fmt, name in (("keras", "m.keras"), ("onnx", "m.onnx")):
        assert main(["export", str(tmp_path / "m.safetensors"), "--format", fmt,
                     "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out


def test_export_of_a_missing_model_or_to_an_unwritable_place_exits_1(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none"), "--format", "onnx",
                 "--out", str(tmp_path / "m.onnx")]) == 1
    assert "no model file" in capsys.readouterr().err
    cfg = CONFIGS[0]
    save_model(tmp_path / "m.safetensors", random_weights(cfg), cfg)
    (tmp_path / "file").write_text("")
    assert main(["export", str(tmp_path / "m.safetensors"), "--format", "keras",
                 "--out", str(tmp_path / "file" / "m.keras")]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err


@pytest.mark.parametrize("fmt, package, extra", [("onnx", "onnx", "onnx"),
                                                  ("keras", "h5py", "keras")])
def test_a_missing_format_package_names_the_extra(fmt, package, extra, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    with pytest.raises(DigitnetError, match=rf"pip install 'digitnet\[{extra}\]'"):
        export_model(CONFIGS[0], random_weights(CONFIGS[0]), fmt, tmp_path / "m")


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_digitnet_reads_back_its_own_keras_export(cfg, images, tmp_path):
    weights = random_weights(cfg)
    path = export_model(cfg, weights, "keras", tmp_path / "model.keras")
    back = Predictor.load(path)
    assert back.network == cfg.network
    for name, array in weights.items():
        np.testing.assert_array_equal(back.weights[name], array)
