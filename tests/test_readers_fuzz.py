"""Property-based tests of every reader of outside bytes: IDX files (raw and gzip), model
files, checkpoints, images and Keras files. Random bytes and mutations of valid files raise
only digitnet's own error, with a one-line message, and quickly; sizes a header claims are not
believed before the bytes are there."""

import atexit
import gzip
import io
import json
import shutil
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitnet.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from digitnet.config import TrainConfig
from digitnet.idx import parse_idx, read_maybe_gzip
from digitnet.errors import DataError, ImageError, ModelFileError
from digitnet.history import EpochRecord
from digitnet.interop import export_model
from digitnet.interop.keras_import import load_keras_model
from digitnet.interop.onnx_import import load_onnx_model
from digitnet.modelfile import load_model, save_model, weight_shapes
from digitnet.preprocess import open_image, prepare_image

from conftest import draw_digit

FOLDER = Path(tempfile.mkdtemp(prefix="digitnet-fuzz-"))  # Hypothesis reruns cannot use tmp_path
atexit.register(shutil.rmtree, FOLDER, ignore_errors=True)  # made at import: gone at exit
CFG = TrainConfig(hidden=(8,), epochs=3)
_rng = np.random.default_rng(0)
WEIGHTS = {n: _rng.normal(0, 0.1, s).astype(np.float32) for n, s in weight_shapes(CFG).items()}


def _file_bytes(write) -> bytes:
    path = FOLDER / f"sample-{write.__name__}"
    write(path)
    return path.read_bytes()


def _idx(array: np.ndarray) -> bytes:
    return (bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
            + array.tobytes())


VALID_IDX = _idx(_rng.integers(0, 256, (3, 28, 28), np.uint8))
VALID_MODEL = _file_bytes(lambda p: save_model(p, WEIGHTS, CFG, {"test_accuracy": 0.5}))
VALID_CHECKPOINT = _file_bytes(lambda p: save_checkpoint(p, Checkpoint(
    CFG, (EpochRecord(1, 2.3, 0.1, 2.2, 0.1, 1e-3, 1.0),),
    {"network/layers/0/kernel": WEIGHTS["dense_0.kernel"],
     "optimizer/step": np.array(10, np.uint32)})))
_png = io.BytesIO()
draw_digit(7, size=40).save(_png, format="PNG")
VALID_PNG = _png.getvalue()
VALID_KERAS = export_model(CFG, WEIGHTS, "keras", FOLDER / "sample.keras").read_bytes()
VALID_ONNX = export_model(CFG, WEIGHTS, "onnx", FOLDER / "sample.onnx").read_bytes()


@st.composite
def mutations(draw, valid: bytes):
    """`valid` with some bytes replaced, a stretch cut out or inserted, or cut short."""
    content = bytearray(valid)
    for _ in range(draw(st.integers(0, 8))):
        content[draw(st.integers(0, len(content) - 1))] = draw(st.integers(0, 255))
    kind = draw(st.sampled_from(["replace only", "truncate", "cut", "insert"]))
    at = draw(st.integers(0, len(content)))
    if kind == "truncate":
        del content[at:]
    elif kind == "cut":
        del content[at:at + draw(st.integers(1, 64))]
    elif kind == "insert":
        content[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(content)


def inputs(valid: bytes):
    return st.one_of(st.binary(max_size=512), mutations(valid))


FUZZ = settings(max_examples=150, deadline=2000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _only(error_type, read, content: bytes, suffix: str = "", path: Path | None = None):
    """Write `content` (to `path`, or a file named with `suffix`) and `read` it: it may
    succeed or raise `error_type` with a one-line message, and nothing else."""
    path = path or FOLDER / f"input{suffix}"
    path.write_bytes(content)
    try:
        read(path)
    except error_type as exc:
        assert str(exc) and "\n" not in str(exc)


@FUZZ
@given(inputs(VALID_IDX))
def test_idx_reader(content):
    _only(DataError, lambda path: parse_idx(path.read_bytes()), content)


@FUZZ
@given(inputs(gzip.compress(VALID_IDX)))
def test_gzip_idx_reader(content):
    _only(DataError, lambda path: parse_idx(read_maybe_gzip(path, max_size=len(VALID_IDX))),
          content, ".gz")


@FUZZ
@given(inputs(VALID_MODEL))
def test_model_file_reader(content):
    _only(ModelFileError, load_model, content)


@FUZZ
@given(inputs(VALID_CHECKPOINT))
def test_checkpoint_reader(content):
    _only(ModelFileError, load_checkpoint, content)


@FUZZ
@given(inputs(VALID_PNG))
def test_image_reader(content):
    def read(path):
        prepare_image(open_image(path))

    _only(ImageError, read, content)


@FUZZ
@given(inputs(VALID_KERAS))
def test_keras_file_reader(content):
    _only(ModelFileError, load_keras_model, content, ".keras")


@FUZZ
@given(inputs(VALID_ONNX))
def test_onnx_file_reader(content):
    _only(ModelFileError, load_onnx_model, content, ".onnx")


@FUZZ
@given(st.one_of(
    st.integers(1, 3).flatmap(lambda ndim: st.tuples(*[st.integers(1, 60)] * ndim)).flatmap(
        lambda shape: st.sampled_from([np.uint8, np.float32, np.int64, np.bool_]).map(
            lambda dtype: (_rng.random(shape) * 300).astype(dtype))),
    st.just(np.zeros((28, 28), np.uint8)), st.just(np.full((5, 5), np.nan, np.float32))))
def test_prepare_image_takes_any_array(array):
    try:
        prepared = prepare_image(array)
    except ImageError as exc:
        assert str(exc)
    else:
        assert prepared.pixels.shape == (28, 28) and prepared.pixels.dtype == np.uint8


def _peak_and_error(read) -> tuple[int, Exception | None]:
    """The most memory `read()` held at once (Python and NumPy allocations), and what it
    raised."""
    tracemalloc.start()
    try:
        read()
        error = None
    except Exception as exc:  # noqa: BLE001 - returned for the test to judge
        error = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, error


def test_an_idx_header_claiming_a_trillion_images_is_not_believed():
    claims = [(10**12 // 784, 28, 28), (2**32 - 1,) * 3]  # the second: 2**96 bytes
    for shape in claims:
        header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in shape)
        peak, error = _peak_and_error(lambda: parse_idx(header + bytes(100)))
        assert isinstance(error, DataError) and "promises" in str(error)
        assert peak < 1 << 20


def test_a_gzip_bomb_is_refused_before_it_is_inflated(tmp_path):
    size = 4 + 12 + 60000 * 784  # MNIST's training images
    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"".join(bomb.compress(chunk) for _ in range(1024)) + bomb.flush())
    assert path.stat().st_size < 2 << 20  # 1 GiB of zeros
    peak, error = _peak_and_error(lambda: read_maybe_gzip(path, max_size=size))
    assert isinstance(error, DataError)
    assert "more than the 47,040,016 bytes expected" in str(error)
    assert peak < 3 * size  # what the file may hold, not the 1 GiB it inflates to


def test_a_safetensors_header_claiming_a_huge_tensor_is_not_believed(tmp_path):
    header = json.dumps({"__metadata__": {"format": "digitnet-model"},
                         "dense_0.kernel": {"dtype": "F32", "shape": [10**6, 10**6],
                                            "data_offsets": [0, 4 * 10**12]}}).encode()
    for reader, name in ((load_model, "model.safetensors"),
                         (load_checkpoint, "checkpoint.safetensors")):
        path = tmp_path / name
        path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(64))
        with pytest.raises(ModelFileError, match="not a safetensors"):
            reader(path)


VALID_HISTORY = json.dumps([{"epoch": 1, "train_loss": 0.3, "train_accuracy": 0.9,
                             "val_loss": 0.2, "val_accuracy": 0.95, "lr": 1e-3, "seconds": 1.0,
                             "note": ""}]).encode()


def _run_folder_file(name: str, read, content: bytes) -> None:
    """`content` as the run folder's file `name`, read by `read(folder)`."""
    folder = FOLDER / f"run-{name}"
    folder.mkdir(exist_ok=True)
    _only(ModelFileError, lambda path: read(path.parent), content, path=folder / name)


@FUZZ
@given(inputs(VALID_HISTORY))
def test_run_folder_history_reader(content):
    from digitnet.history import read_history

    _run_folder_file("history.json", read_history, content)


@FUZZ
@given(inputs(CFG.to_json().encode()))
def test_run_folder_config_reader(content):
    from digitnet.runs import resume_point

    _run_folder_file("config.json", resume_point, content)
