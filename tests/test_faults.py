"""Training under real faults: a `digitnet train` process killed with SIGKILL in the middle of
an epoch, and a disk that fills (a file-size limit), each resumed and compared with a run that
was never interrupted. Real MNIST, real processes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from digitnet.checkpoint import CHECKPOINT_FILENAME
from digitnet.history import read_history
from digitnet.modelfile import load_model

pytestmark = pytest.mark.slow

TRAIN = ["train", "--hidden", "64", "--epochs", "8", "--no-plots", "--no-download"]


@pytest.fixture(scope="module")
def environment(real_mnist_dir, tmp_path_factory):
    """The environment of every process here; they share one cache (the parsed MNIST and
    the compiled programs), as the runs of one user would."""
    return {**os.environ, "DIGITNET_DATA_DIR": str(real_mnist_dir),
            "DIGITNET_CACHE_DIR": str(tmp_path_factory.mktemp("shared-cache"))}


def digitnet(environment, *args, file_size_limit=None):
    """Run `digitnet ARGS`; with `file_size_limit`, no file it writes may grow past that
    many bytes (RLIMIT_FSIZE: a write beyond it fails with EFBIG, as on a full disk)."""
    command = [sys.executable, "-m", "digitnet", *args]
    if file_size_limit:  # set in the child itself: a preexec_fn would fork this JAX process
        command[1:3] = ["-c", f"import resource, runpy, sys; resource.setrlimit("
                              f"resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit})); "
                              "runpy.run_module('digitnet', run_name='__main__')"]
    return subprocess.run(command, env=environment, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(environment, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = digitnet(environment, *TRAIN, "--out", str(folder))
    assert done.returncode == 0, done.stderr
    assert not (folder / "plots").exists()  # --no-plots drew none
    return folder


def _killed_after_two_epochs(environment, folder):
    """Start training into `folder` and SIGKILL it once two epochs have finished, while the
    third trains (each epoch is validated while the next one runs)."""
    process = subprocess.Popen([sys.executable, "-m", "digitnet", *TRAIN, "--out", str(folder)],
                               env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if len(read_history(folder)) >= 2:
                break
        except Exception:  # noqa: BLE001 - not written yet
            pass
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    finished = len(read_history(folder))
    assert 2 <= finished < 8 and not (folder / "model.safetensors").exists()
    return finished


def _assert_same_model(folder, reference):
    cfg, weights, results = load_model(folder / "model.safetensors")
    ref_cfg, ref_weights, ref_results = load_model(reference / "model.safetensors")
    assert cfg == ref_cfg and weights.keys() == ref_weights.keys()
    for name in weights:
        assert np.array_equal(weights[name], ref_weights[name]), name
    assert results == ref_results
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["confusion_matrix"] == json.loads(
        (reference / "metrics.json").read_text())["confusion_matrix"]


def test_sigkill_in_the_middle_of_an_epoch_then_resume_gives_the_same_model(
        environment, uninterrupted, tmp_path):
    folder = tmp_path / "run"
    finished = _killed_after_two_epochs(environment, folder)
    resumed = digitnet(environment, "train", "--resume", str(folder), "--no-plots")
    assert resumed.returncode == 0, resumed.stderr
    assert not list(folder.glob(".*.tmp"))  # a write the kill cut short is cleared away
    assert f"resuming after epoch {finished} of 8" in resumed.stderr
    _assert_same_model(folder, uninterrupted)
    history = read_history(folder)
    assert [r.epoch for r in history] == list(range(1, 9))
    assert [r.note for r in history] == [""] * finished + ["resumed"] + [""] * (
        6 - finished) + ["kept"]


def test_a_full_disk_stops_training_cleanly_and_the_run_resumes_when_space_returns(
        environment, uninterrupted, tmp_path):
    folder = tmp_path / "run"
    finished = _killed_after_two_epochs(environment, folder)
    checkpoint = folder / CHECKPOINT_FILENAME
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    full = digitnet(environment, "train", "--resume", str(folder), "--no-plots",
                    file_size_limit=checkpoint.stat().st_size // 2)
    assert full.returncode == 1, full.stderr
    last_line = full.stderr.strip().splitlines()[-1]
    assert last_line == (f"digitnet: error: cannot write {checkpoint}: File too large (the "
                         f"checkpoint of epoch {finished} is intact; make room and `digitnet "
                         f"train --resume {folder}`)")
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after[CHECKPOINT_FILENAME] == before[CHECKPOINT_FILENAME]
    assert set(after) == set(before)  # nothing half-written left behind
    resumed = digitnet(environment, "train", "--resume", str(folder), "--no-plots")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_model(folder, uninterrupted)
