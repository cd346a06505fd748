"""Shared fixtures: synthetic digits drawn with Pillow, tiny IDX folders, real-MNIST access."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from digitnet.data import MnistData
from digitnet.idx import IdxFile, write_idx


def pytest_configure(config):
    # All tests share this process. Start JAX here, so that the first `digitnet train` a test
    # runs cannot limit every later test to one core (see train.limit_xla_to_one_core).
    import jax

    jax.devices()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder; the real data folder is kept when set."""
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@functools.lru_cache(maxsize=None)
def _font(size: int):
    return ImageFont.load_default(size=size)


def draw_digit(digit: int, *, size: int = 28, scale: float = 0.8, dx: int = 0, dy: int = 0,
               ink: int = 255, paper: int = 0, width: int = 0) -> Image.Image:
    """A digit glyph drawn with Pillow's built-in font, centred then shifted by (dx, dy)."""
    image = Image.new("L", (size, size), paper)
    draw = ImageDraw.Draw(image)
    font = _font(max(6, int(size * scale)))
    draw.text((size / 2 + dx, size / 2 + dy), str(digit), fill=ink, font=font, anchor="mm",
              stroke_width=width, stroke_fill=ink)
    return image


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 (28, 28) light-on-dark digit images with labels, shifted at random."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.stack([
        np.asarray(draw_digit(int(d), dx=int(rng.integers(-3, 4)), dy=int(rng.integers(-3, 4))))
        for d in labels
    ])
    return images, labels


def random_weights(cfg, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights for every array the network `cfg` describes, drawn from N(0, 0.3)."""
    from digitnet.network import tensor_shapes

    rng = np.random.default_rng(seed)
    return {n: rng.normal(0, 0.3, s).astype(np.float32)
            for n, s in tensor_shapes(cfg.network).items()}


def added_to_training(data: MnistData, **extra) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels that `extra` (a TrainConfig field, such as pen_digits=4) adds to
    the training split of `data` at seed 2, once it is checked that the validation split and
    the training split's own images stay as they were."""
    from digitnet.config import TrainConfig
    from digitnet.training import split_for_training

    plain = split_for_training(TrainConfig(validate_on="split", seed=2), data)
    mixed = split_for_training(TrainConfig(validate_on="split", seed=2, **extra), data)
    np.testing.assert_array_equal(mixed.val_images, plain.val_images)
    np.testing.assert_array_equal(mixed.val_labels, plain.val_labels)
    n = len(plain.train_images)
    np.testing.assert_array_equal(mixed.train_images[:n], plain.train_images)
    np.testing.assert_array_equal(mixed.train_labels[:n], plain.train_labels)
    return mixed.train_images[n:], mixed.train_labels[n:]


@pytest.fixture(scope="session")
def tiny_mnist() -> MnistData:
    """A small MNIST-shaped data set of drawn digits: 600 training and 200 test images."""
    train_images, train_labels = synthetic_digits(600, seed=1)
    test_images, test_labels = synthetic_digits(200, seed=2)
    return MnistData(train_images, train_labels, test_images, test_labels, source="synthetic")


def tiny_idx_files(folder: Path, data: MnistData, *, compress: bool = True) -> dict[str, IdxFile]:
    """Write `data` as the four IDX files into `folder`; return their IdxFile specs."""
    import gzip
    import hashlib

    from digitnet.idx import MNIST_FILES

    specs = {}
    for key, spec in MNIST_FILES.items():
        array = getattr(data, key)
        write_idx(folder / (spec.name + (".gz" if compress else "")), array, compress=compress)
        content = (folder / (spec.name + (".gz" if compress else ""))).read_bytes()
        raw = gzip.decompress(content) if compress else content
        specs[key] = IdxFile(spec.name, hashlib.sha256(raw).hexdigest(), array.shape)
    return specs


@pytest.fixture
def http_folder(tmp_path):
    """(folder, base URL): a loopback HTTP server serving files from `folder`."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # (polled every 50 ms, shutdown() returns at once instead of in half a second)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The real MNIST folder from $DIGITNET_DATA_DIR. Missing data skips locally but fails in
    CI, where a skipped real-data test would hide a broken set-up."""
    folder = os.environ.get("DIGITNET_DATA_DIR")
    if folder and Path(folder).is_dir():
        return Path(folder)
    message = "real MNIST needed: set DIGITNET_DATA_DIR (CI points it at ../shared/mnist)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_mnist(real_mnist_dir) -> MnistData:
    from digitnet.data import load_mnist

    return load_mnist(real_mnist_dir, download=False, use_cache=False)


@pytest.fixture(scope="session")
def tutorial_run(real_mnist_dir, tmp_path_factory) -> Path:
    """The README's main job, `digitnet train` (the tutorial recipe, plots included), run once
    through the CLI for every test that needs the fully trained tutorial model."""
    from digitnet.cli import main

    folder = tmp_path_factory.mktemp("runs") / "tutorial"
    assert main(["train", "--out", str(folder), "--data-dir", str(real_mnist_dir),
                 "--no-download"]) == 0
    return folder
