"""Keras files that try to make the reader read other files, or more memory than a model
needs: each is refused with one line, before it does (issue #36, section 4). The files are
digitnet's own Keras export with one part replaced, built with zipfile and h5py."""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

from digitnet.cli import main
from digitnet.config import TrainConfig
from digitnet.errors import ModelFileError
from digitnet.interop import export_model, load_foreign_model
from digitnet.network import tensor_shapes

CFG = TrainConfig(hidden=(16,))  # flatten, dense16-relu, dense10


def _members(tmp_path):
    weights = {n: np.full(s, 0.01, np.float32) for n, s in tensor_shapes(CFG.network).items()}
    path = export_model(CFG, weights, "keras", tmp_path / "good.keras")
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _keras_file(tmp_path, members, name="bad.keras", compression=zipfile.ZIP_STORED):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return path


def _weights(edit) -> bytes:
    """A model.weights.h5 for CFG whose first dense layer's bias is made by `edit(group)`."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_group("vars")
        for name, (n_in, n_out) in (("dense", (784, 16)), ("dense_1", (16, 10))):
            group = h5.create_group(f"layers/{name}/vars")
            group["0"] = np.zeros((n_in, n_out), np.float32)
            if name == "dense":
                edit(group)
            else:
                group["1"] = np.zeros(n_out, np.float32)
        h5.create_group("layers/flatten/vars")
    return buffer.getvalue()


def _refused(path, message):
    with pytest.raises(ModelFileError, match=message):
        load_foreign_model(path)


def test_the_base_file_reads(tmp_path):
    members = _members(tmp_path)
    members["model.weights.h5"] = _weights(lambda g: g.create_dataset("1", data=np.ones(16,
                                                                                   np.float32)))
    cfg, weights, _ = load_foreign_model(_keras_file(tmp_path, members))
    np.testing.assert_array_equal(weights["dense_0.bias"], np.ones(16, np.float32))


def test_weights_in_external_storage_are_not_read(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"a local file that must not reach the model" * 4)
    members = _members(tmp_path)
    members["model.weights.h5"] = _weights(lambda g: g.create_dataset(
        "1", shape=(16,), dtype=np.float32, external=[(str(secret), 0, 64)]))
    path = _keras_file(tmp_path, members)
    _refused(path, "keeps its weights in other files")
    assert main(["import", str(path), "--out", str(tmp_path / "run"), "--data-dir",
                 str(tmp_path), "--no-download"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the note about MNIST
    assert error.startswith("digitnet: error: ") and "keeps its weights in other files" in error
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_virtual_dataset_is_not_read(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["bias"] = np.arange(16, dtype=np.float32)

    def virtual(group):
        layout = h5py.VirtualLayout(shape=(16,), dtype=np.float32)
        layout[:] = h5py.VirtualSource(str(other), "bias", shape=(16,))
        group.create_virtual_dataset("1", layout)

    members = _members(tmp_path)
    members["model.weights.h5"] = _weights(virtual)
    _refused(_keras_file(tmp_path, members), "keeps its weights in other files")


def test_an_external_link_is_not_followed(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["bias"] = np.arange(16, dtype=np.float32)
    members = _members(tmp_path)
    members["model.weights.h5"] = _weights(
        lambda g: g.__setitem__("1", h5py.ExternalLink(str(other), "bias")))
    _refused(_keras_file(tmp_path, members), "is a link to elsewhere")


def test_a_declared_huge_dataset_is_refused_before_it_is_read(tmp_path):
    def huge(group):  # 200000 x 200000 float32 is 160 GB; chunked and unwritten it takes none
        group.create_dataset("1", shape=(200_000, 200_000), dtype=np.float32, chunks=(64, 64))

    members = _members(tmp_path)
    members["model.weights.h5"] = _weights(huge)
    _refused(_keras_file(tmp_path, members),
             r"holds a float32 array of shape \(200000, 200000\) where its configuration needs "
             r"float \(16,\)")


def test_a_member_that_inflates_past_its_cap_is_refused_early(tmp_path, monkeypatch):
    import digitnet.interop.keras_import as keras_import

    monkeypatch.setattr(keras_import, "MAX_WEIGHTS_BYTES", 1 << 20)
    members = _members(tmp_path)
    members["model.weights.h5"] += bytes(4 << 20)  # 4 MB of zeros deflate to a few KB
    path = _keras_file(tmp_path, members, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    _refused(path, "its model.weights.h5 inflates to over 1 MB")


def test_deeply_nested_json_is_one_line(tmp_path):
    members = _members(tmp_path)
    members["config.json"] = "[" * 100_000 + "]" * 100_000
    _refused(_keras_file(tmp_path, members), "nested too deeply")
    members["config.json"] = json.dumps({"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Dense", "config": {"name": "x", "units": [[[[[]]]]] * 3}}]}})
    _refused(_keras_file(tmp_path, members, name="odd.keras"), r"layer 'x' \(Dense\) has \[")


def test_a_model_too_large_to_hold_is_refused_before_its_weights_are_read(tmp_path):
    """Chunked and never written, a dataset of the shape its layer declares costs the file
    nothing; reading it would cost what it declares (here 31 GB)."""
    members = _members(tmp_path)
    config = json.loads(members["config.json"])
    dense = [layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense"]
    dense[0]["config"]["units"] = 10_000_000
    members["config.json"] = json.dumps(config)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        group = h5.create_group("layers/dense/vars")
        group.create_dataset("0", shape=(784, 10_000_000), dtype=np.float32, chunks=(64, 4096))
        group.create_dataset("1", shape=(10_000_000,), dtype=np.float32, chunks=(4096,))
        second = h5.create_group("layers/dense_1/vars")
        second.create_dataset("0", shape=(10_000_000, 10), dtype=np.float32, chunks=(4096, 10))
        second["1"] = np.zeros(10, np.float32)
    members["model.weights.h5"] = buffer.getvalue()
    path = _keras_file(tmp_path, members)
    assert path.stat().st_size < 1_000_000
    _refused(path, "brings the model to 7,850,000,000 weights, more than")
