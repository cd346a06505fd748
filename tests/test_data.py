import gzip
import hashlib
import shutil

import numpy as np
import pytest

from digitnet.data import NPZ_NAME, default_cache_dir, load_mnist, resolve_data_dir
from digitnet.idx import MNIST_FILES, IdxFile, parse_idx, write_idx
from digitnet.download import download_mnist
from digitnet.errors import DataError

from conftest import tiny_idx_files


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def test_idx_write_read_round_trip(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for compress in (False, True):
        path = tmp_path / f"x{compress}"
        write_idx(path, array, compress=compress)
        raw = path.read_bytes()
        assert (raw[:2] == b"\x1f\x8b") is compress
        content = gzip.decompress(raw) if compress else raw
        assert content == idx_bytes(array)  # oracle: the format written out by hand
        np.testing.assert_array_equal(parse_idx(content), array)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "bad magic number"),
        (b"\x08\x03\x00\x00" + bytes(16), "bad magic number"),
        (b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + bytes(12), "is not unsigned byte"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-5], "truncated or corrupt"),
        (idx_bytes(np.zeros((4,), np.uint8)) + b"\x00", "truncated or corrupt"),
    ],
)
def test_bad_idx_is_refused(content, message):
    with pytest.raises(DataError, match=message):
        parse_idx(content)


def test_loads_gzipped_and_raw_files_and_checks_content_hash(tmp_path, tiny_mnist):
    gz_folder, raw_folder = tmp_path / "gz", tmp_path / "raw"
    gz_specs = tiny_idx_files(gz_folder, tiny_mnist, compress=True)
    raw_specs = tiny_idx_files(raw_folder, tiny_mnist, compress=False)
    assert gz_specs == raw_specs  # the checksum is of content, not of the .gz bytes
    for folder in (gz_folder, raw_folder):
        data = load_mnist(folder, download=False, files=gz_specs)
        np.testing.assert_array_equal(data.train_images, tiny_mnist.train_images)
        np.testing.assert_array_equal(data.test_labels, tiny_mnist.test_labels)


def test_recompressed_copy_passes(tmp_path, tiny_mnist):
    specs = tiny_idx_files(tmp_path, tiny_mnist)
    path = tmp_path / (specs["train_images"].name + ".gz")
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=1))
    load_mnist(tmp_path, download=False, files=specs, use_cache=False)


def test_keras_npz_is_accepted_and_verified(tmp_path, tiny_mnist):
    specs = tiny_idx_files(tmp_path / "idx", tiny_mnist)
    folder = tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / NPZ_NAME, x_train=tiny_mnist.train_images, y_train=tiny_mnist.train_labels,
             x_test=tiny_mnist.test_images, y_test=tiny_mnist.test_labels)
    data = load_mnist(folder, download=False, files=specs)
    np.testing.assert_array_equal(data.train_labels, tiny_mnist.train_labels)
    tampered = tiny_mnist.test_images.copy()
    tampered[0, 0, 0] ^= 1
    np.savez(folder / NPZ_NAME, x_train=tiny_mnist.train_images, y_train=tiny_mnist.train_labels,
             x_test=tampered, y_test=tiny_mnist.test_labels)
    with pytest.raises(DataError, match="fails its checksum"):
        load_mnist(folder, download=False, files=specs, use_cache=False)


def corrupt_truncate(path):
    path.write_bytes(path.read_bytes()[:-40])


def corrupt_flip_byte(path):
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[-1] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(content)))


def corrupt_not_gzip(path):
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (corrupt_truncate, "truncated or corrupt gzip"),
        (corrupt_flip_byte, "fails its checksum"),
        (corrupt_not_gzip, "truncated or corrupt gzip"),
    ],
)
def test_corrupt_files_are_refused(tmp_path, tiny_mnist, corrupt, message):
    specs = tiny_idx_files(tmp_path, tiny_mnist)
    corrupt(tmp_path / (specs["train_images"].name + ".gz"))
    with pytest.raises(DataError, match=message):
        load_mnist(tmp_path, download=False, files=specs, use_cache=False)


def test_labels_out_of_range_are_refused_without_checksum(tmp_path, tiny_mnist):
    labels = tiny_mnist.train_labels.copy()
    labels[3] = 11
    specs = tiny_idx_files(tmp_path, tiny_mnist)
    write_idx(tmp_path / (specs["train_labels"].name + ".gz"), labels, compress=True)
    unchecked = {k: IdxFile(s.name, None, s.shape) for k, s in specs.items()}
    with pytest.raises(DataError, match="labels must be 0..9"):
        load_mnist(tmp_path, download=False, files=unchecked, use_cache=False)


def test_wrong_shape_is_refused(tmp_path, tiny_mnist):
    specs = tiny_idx_files(tmp_path, tiny_mnist)
    wrong = {**specs, "test_images": IdxFile(specs["test_images"].name, None, (10000, 28, 28))}
    with pytest.raises(DataError, match=r"expected uint8 \(10000, 28, 28\)"):
        load_mnist(tmp_path, download=False, files=wrong, use_cache=False)


def test_missing_data_names_folder_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITNET_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"MNIST not found in .* \$DIGITNET_DATA_DIR.*--data-dir"):
        load_mnist(download=False)


def test_location_order(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITNET_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path / "cache"))
    assert resolve_data_dir(tmp_path / "arg") == (tmp_path / "arg", "--data-dir")
    assert resolve_data_dir() == (tmp_path / "env", "$DIGITNET_DATA_DIR")
    monkeypatch.delenv("DIGITNET_DATA_DIR")
    assert resolve_data_dir() == (tmp_path / "cache" / "mnist", "cache")


def test_second_load_uses_parsed_cache_and_survives_a_damaged_one(tmp_path, tiny_mnist):
    specs = tiny_idx_files(tmp_path / "data", tiny_mnist)
    first = load_mnist(tmp_path / "data", download=False, files=specs)
    second = load_mnist(tmp_path / "data", download=False, files=specs)
    assert "parsed cache" not in first.source and "parsed cache" in second.source
    np.testing.assert_array_equal(second.train_images, first.train_images)
    [cache_file] = default_cache_dir().glob("parsed/*.npz")
    cache_file.write_bytes(b"not an npz")
    third = load_mnist(tmp_path / "data", download=False, files=specs)
    assert "parsed cache" not in third.source
    np.testing.assert_array_equal(third.test_images, tiny_mnist.test_images)


def serve(folder, data, *, corrupt_key=None):
    """Put .gz files of `data` into the HTTP-served folder (one corrupted if asked)."""
    specs = tiny_idx_files(folder, data)
    if corrupt_key:
        corrupt_flip_byte(folder / (specs[corrupt_key].name + ".gz"))
    return specs


def test_download_from_local_mirror(tmp_path, http_folder, tiny_mnist):
    served, url = http_folder
    specs = serve(served, tiny_mnist)
    data = load_mnist(tmp_path / "dest", mirrors=(url,), files=specs)
    np.testing.assert_array_equal(data.train_labels, tiny_mnist.train_labels)
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == sorted(
        [".download.lock"] + [s.name + ".gz" for s in specs.values()])  # no staging left


def test_corrupt_download_is_rejected_and_not_cached(tmp_path, http_folder, tiny_mnist):
    served, url = http_folder
    specs = serve(served, tiny_mnist, corrupt_key="test_images")
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="could not download t10k-images.*fails its checksum"):
        load_mnist(dest, mirrors=(url,), files=specs)
    assert not (dest / (specs["test_images"].name + ".gz")).exists()
    assert not list(dest.rglob("t10k-images*"))  # no partial file left anywhere
    # The good files are kept, so a retry fetches only what is missing.
    assert (dest / (specs["train_images"].name + ".gz")).exists()


def test_download_falls_back_to_the_next_mirror(tmp_path, http_folder, tiny_mnist):
    served, url = http_folder
    (served / "bad").mkdir()
    (served / "good").mkdir()
    specs = serve(served / "good", tiny_mnist)
    serve(served / "bad", tiny_mnist, corrupt_key="train_labels")
    dead = "http://127.0.0.1:9/"  # discard port: nothing listens
    download_mnist(tmp_path, mirrors=(dead, url + "bad/", url + "good/"), files=specs)
    load_mnist(tmp_path, download=False, files=specs)


def test_all_mirrors_failing_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="could not download train-images-idx3-ubyte.gz"):
        download_mnist(tmp_path / "dest", mirrors=("http://127.0.0.1:9/",), files=MNIST_FILES)
    assert not list((tmp_path / "dest").glob("*.gz"))


@pytest.mark.slow
def test_real_mnist_verifies(real_mnist):
    assert real_mnist.train_images.shape == (60000, 28, 28)
    assert real_mnist.test_images.shape == (10000, 28, 28)
    assert np.bincount(real_mnist.train_labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(real_mnist.train_images.mean() / 255 - 0.1307) < 1e-3


@pytest.mark.slow
def test_real_mnist_recompressed_and_raw_copies_pass(tmp_path, real_mnist_dir):
    for spec in MNIST_FILES.values():
        content = gzip.decompress((real_mnist_dir / (spec.name + ".gz")).read_bytes())
        assert hashlib.sha256(content).hexdigest() == spec.sha256
        if "labels" in spec.name:
            (tmp_path / spec.name).write_bytes(content)  # raw
        else:
            (tmp_path / (spec.name + ".gz")).write_bytes(gzip.compress(content, compresslevel=1))
    load_mnist(tmp_path, download=False, use_cache=False)
    shutil.rmtree(tmp_path)
