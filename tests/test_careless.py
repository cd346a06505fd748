"""Careless use (issue #36, section 5) and file modes: each attack ends in a clear error or a
correct result, never a hang, a traceback, lost files or an unreadable run folder. Every test
is bounded in time and memory; servers listen on 127.0.0.1 only."""

import contextlib
import http.server
import json
import os
import signal
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

import digitnet.cli
import digitnet.data
import digitnet.download
import digitnet.preprocess
from digitnet.cli import main
from digitnet.config import TrainConfig
from digitnet.data import default_cache_dir, load_mnist
from digitnet.download import download_mnist
from digitnet.errors import DataError
from digitnet.modelfile import save_model, weight_shapes
from digitnet.runs import train_run

from conftest import draw_digit, tiny_idx_files

CFG = TrainConfig(epochs=1, hidden=(16,))
TRAIN = ["train", "--epochs", "1", "--hidden", "16", "--no-plots"]


@contextlib.contextmanager
def deadline(seconds: float):
    """TimeoutError in this (the main) thread after `seconds`: a test of a hang must end."""
    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    weights = {n: rng.normal(size=s).astype(np.float32) for n, s in weight_shapes(CFG).items()}
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model(path, weights, CFG)
    return path


def no_mnist(args):
    raise AssertionError("MNIST was loaded before the output folder was checked")


def one_line(text: str) -> str:
    text = text.strip()
    assert "\n" not in text and "Traceback" not in text, text
    return text


# --- file modes ------------------------------------------------------------------------------

@pytest.fixture
def umask_027():
    previous = os.umask(0o027)  # group may read, others may not: neither 0600 nor 0644
    yield
    os.umask(previous)


def test_every_file_digitnet_writes_follows_the_umask(tmp_path, tiny_mnist, model_file,
                                                      umask_027):
    run = tmp_path / "run"
    train_run(CFG, run, tiny_mnist)  # config, history, metrics, model, plots
    specs = tiny_idx_files(tmp_path / "data", tiny_mnist)
    load_mnist(tmp_path / "data", download=False, files=specs)  # writes the parsed cache
    assert main(["export", str(model_file), "--format", "keras",
                 "--out", str(tmp_path / "m.keras")]) == 0
    written = [p for p in run.rglob("*") if p.is_file()]
    written += [*(tmp_path / "data").glob("*.gz"), *default_cache_dir().rglob("*.npz"),
                tmp_path / "m.keras"]
    assert len(written) >= 14
    modes = {p.relative_to(tmp_path) if p.is_relative_to(tmp_path) else p.name:
             oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert set(modes.values()) == {"0o640"}, modes
