import json

import numpy as np
import pytest
from safetensors.numpy import save

from digitnet.config import TrainConfig
from digitnet.errors import ModelFileError
from digitnet.modelfile import load_model, save_model, weight_shapes
from digitnet.predict import Predictor

CFG = TrainConfig(hidden=(16, 8))


def random_weights(cfg=CFG, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.normal(size=s).astype(np.float32) for n, s in weight_shapes(cfg).items()}


def test_save_load_gives_identical_predictions(tmp_path, tiny_mnist):
    weights = random_weights()
    save_model(tmp_path / "m.safetensors", weights, CFG, results={"test_accuracy": 0.5})
    cfg, loaded, results = load_model(tmp_path / "m.safetensors")
    assert cfg == CFG and results == {"test_accuracy": 0.5}
    before = Predictor(CFG, weights).probabilities(tiny_mnist.test_images)
    after = Predictor.load(tmp_path / "m.safetensors").probabilities(tiny_mnist.test_images)
    np.testing.assert_array_equal(before, after)


def write_raw(path, tensors, metadata):
    path.write_bytes(save(tensors, metadata=metadata))


def metadata_for(cfg=CFG, **changes):
    meta = {"format": "digitnet-model", "format_version": "1", "config": cfg.to_json(),
            "results": "{}"}
    meta.update(changes)
    return meta


@pytest.mark.parametrize(
    "tensors, metadata, message",
    [
        (random_weights(), metadata_for(config=TrainConfig(hidden=(32, 8)).to_json()),
         r"dense_0.kernel has shape \(784, 16\) but the config says \(784, 32\)"),
        (random_weights(), metadata_for(config=TrainConfig(hidden=(16,)).to_json()),
         "does not match its config"),
        (random_weights(), metadata_for(config='{"epochs": 3, "dropout": 1}'),
         "damaged metadata: unknown config key"),
        (random_weights(), metadata_for(config="{not json"), "damaged metadata"),
        (random_weights(), metadata_for(format="other"), "not a digitnet model"),
        (random_weights(), metadata_for(format_version="9"), "format version '9'"),
        ({**random_weights(), "dense_0.bias": np.full(16, np.nan, np.float32)}, metadata_for(),
         "NaN or infinite"),
    ],
)
def test_tampered_or_mismatched_files_are_refused(tmp_path, tensors, metadata, message):
    write_raw(tmp_path / "m.safetensors", tensors, metadata)
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / "m.safetensors")


@pytest.mark.parametrize("content", [b"", b"hello world, not a model", b"\xff" * 64,
                                     json.dumps({"a": 1}).encode()])
def test_non_safetensors_files_are_refused(tmp_path, content):
    (tmp_path / "m.safetensors").write_bytes(content)
    with pytest.raises(ModelFileError, match="is not a safetensors model file"):
        load_model(tmp_path / "m.safetensors")


def test_missing_file_says_how_to_get_one(tmp_path):
    with pytest.raises(ModelFileError, match="digitnet train"):
        load_model(tmp_path / "nothing.safetensors")


def test_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_model(path, random_weights(seed=1), CFG)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(OSError):
        save_model(path, random_weights(seed=2), CFG)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left
