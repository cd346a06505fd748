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

import digitnet.cli.common
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


def test_every_file_digitnet_writes_follows_the_umask(tmp_path, tiny_mnist, http_folder,
                                                      model_file, umask_027):
    run = tmp_path / "run"
    train_run(CFG, run, tiny_mnist)  # config, history, metrics, model, plots
    served, url = http_folder
    specs = tiny_idx_files(served, tiny_mnist)
    load_mnist(tmp_path / "data", mirrors=(url,), files=specs)  # downloads, parsed cache
    assert main(["export", str(model_file), "--format", "keras",
                 "--out", str(tmp_path / "m.keras")]) == 0
    written = [p for p in run.rglob("*") if p.is_file()]
    written += [*(tmp_path / "data").glob("*.gz"), *default_cache_dir().rglob("*.npz"),
                tmp_path / "m.keras"]
    assert len(written) >= 14
    modes = {p.relative_to(tmp_path) if p.is_relative_to(tmp_path) else p.name:
             oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert set(modes.values()) == {"0o640"}, modes


# --- train --out into a folder that holds something -----------------------------------------

@pytest.mark.parametrize("files, message", [
    ({"config.json": '{"learning_rate": "mine"}', "metrics.json": "{}", "notes.txt": "x"},
     "is not empty (config.json, metrics.json, notes.txt) and is not a digitnet run: choose "
     "another --out, or pass --overwrite"),
    ({"config.json": CFG.to_json()}, "holds an unfinished run: `digitnet train --resume"),
    ({"model.safetensors": "x"}, "already holds a trained model: choose another --out, or pass "
                                 "--overwrite to replace it"),
])
def test_train_refuses_a_folder_that_holds_something_before_loading_mnist(
        files, message, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    monkeypatch.setattr(digitnet.cli.common, "load_data", no_mnist)
    assert main([*TRAIN, "--out", str(folder)]) == 1
    assert message in one_line(capsys.readouterr().err)
    assert {p.name: p.read_text() for p in folder.iterdir() if p.name[0] != "."} == files


def test_overwrite_replaces_a_runs_files_and_keeps_the_users(tmp_path, tiny_mnist, monkeypatch,
                                                              capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}')
    (folder / "notes.txt").write_text("keep me")
    monkeypatch.setattr(digitnet.cli.common, "load_data", lambda args: tiny_mnist)
    assert main([*TRAIN, "--out", str(folder), "--overwrite"]) == 0
    assert TrainConfig.from_json((folder / "config.json").read_text()).hidden == (16,)
    assert (folder / "notes.txt").read_text() == "keep me"
    capsys.readouterr()
    monkeypatch.setattr(digitnet.cli.common, "load_data", no_mnist)
    assert main([*TRAIN, "--out", str(folder)]) == 1  # now a finished run
    assert "already holds a trained model" in one_line(capsys.readouterr().err)


# --- two trainings into one folder --------------------------------------------------------------

LOCK_HOLDER = ("import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
               "lock.acquire(); print('held', flush=True); sys.stdin.read()")


@pytest.mark.parametrize("argv", [[*TRAIN, "--out"], ["train", "--resume"]])
def test_a_second_training_into_a_busy_folder_fails_at_once(argv, tmp_path, monkeypatch,
                                                            capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(CFG.to_json())  # a run that another process trains
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder / ".digitnet.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        monkeypatch.setattr(digitnet.cli.common, "load_data", no_mnist)
        assert main([*argv, str(folder)]) == 1
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert f"another digitnet process is writing into {folder}" in one_line(
        capsys.readouterr().err)


def test_a_training_holds_its_folders_lock_until_it_is_written(tmp_path, tiny_mnist):
    lock = tmp_path / "run" / ".digitnet.lock"
    probe = ("import sys; from filelock import FileLock, Timeout\n"
             "try: FileLock(sys.argv[1], timeout=0).acquire()\n"
             "except Timeout: sys.exit(3)")
    tries = []

    def try_to_lock(record):
        tries.append(subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode)

    train_run(CFG, tmp_path / "run", tiny_mnist, on_epoch=try_to_lock, plots=False)
    assert tries == [3]  # held during training
    assert subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode == 0  # let go


# --- what predict reads ----------------------------------------------------------------------

def test_a_fifo_as_image_or_as_run_is_refused_not_waited_on(tmp_path, model_file, capsys):
    good = tmp_path / "good.png"
    draw_digit(3, size=56).save(good)
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)
    with deadline(10):
        code = main(["predict", str(model_file), str(fifo), str(good)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{fifo}: error: cannot read the file: not a regular file (a FIFO)" in out
    assert f"{good}: " in out.replace(f"{good}: error", "")  # the other file is predicted
    for argv in (["predict", str(fifo), str(good)],
                 ["export", str(fifo), "--format", "keras", "--out", str(tmp_path / "m.keras")]):
        with deadline(10):
            assert main(argv) == 1
        assert f"{fifo} is not a regular file" in one_line(capsys.readouterr().err)


def test_dev_zero_as_run_is_refused_without_reading_it():
    # In a process of its own with 1.5 GiB of address space: reading /dev/zero fails there.
    limit = 3 * 2**29
    child = ("import resource, runpy, sys; "
             f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); "
             "sys.argv = ['digitnet', 'predict', '/dev/zero', '--test-index', '0', "
             "'--no-download']; runpy.run_module('digitnet', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "/dev/zero is not a regular file" in one_line(done.stderr)


def test_one_bad_image_does_not_stop_the_batch(tmp_path, model_file, monkeypatch, capsys):
    files = [tmp_path / name for name in
             ("a-good.png", "b-lab.tif", "c-garbage.png", "d-cursed.png", "e-good.png")]
    draw_digit(1, size=60).save(files[0])
    Image.new("LAB", (40, 40), (60, 0, 0)).save(files[1])
    files[2].write_bytes(b"not an image at all")
    draw_digit(5, size=60).resize((37, 41)).save(files[3])
    draw_digit(7, size=60).save(files[4])
    real_prepare = digitnet.preprocess.prepare_image

    def prepare(image):  # an error nobody foresaw, in one file only
        if getattr(image, "size", None) == (37, 41):
            raise RuntimeError("something nobody foresaw")
        return real_prepare(image)

    monkeypatch.setattr(digitnet.preprocess, "prepare_image", prepare)
    assert main(["predict", str(model_file), *map(str, files), "--json"]) == 1
    items = {item["file"]: item for item in json.loads(capsys.readouterr().out)}
    assert list(items) == [str(f) for f in files]
    for good in (files[0], files[4]):
        assert "digit" in items[str(good)]
    assert "error" in items[str(files[2])]
    assert items[str(files[3])]["error"] == ("cannot use this image (RuntimeError: something "
                                             "nobody foresaw)")
    assert "in LAB colour, which digitnet cannot read" in items[str(files[1])]["error"]
    assert main(["predict", str(model_file), *map(str, files)]) == 1
    out = capsys.readouterr().out
    assert out.count(": error: ") == 3


@pytest.fixture
def locked_folder(tmp_path, monkeypatch):
    """digits/one.png beside digits/locked/two.png, as if `chmod 000 digits/locked` had been
    run: listing or opening anything in it fails (the tests run as root, who is not stopped
    by file modes, so the system calls are made to answer as for anyone else)."""
    folder = tmp_path / "digits"
    (folder / "locked").mkdir(parents=True)
    draw_digit(1, size=60).save(folder / "one.png")
    draw_digit(2, size=60).save(folder / "locked" / "two.png")
    locked = str(folder / "locked")

    def denying(real, inside_only=False):
        def call(path, *args, **kwargs):
            path_text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
            if path_text.startswith(locked + os.sep) or (path_text == locked and not inside_only):
                raise PermissionError(13, "Permission denied", path_text)
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "scandir", denying(os.scandir))
    monkeypatch.setattr(os, "stat", denying(os.stat, inside_only=True))
    monkeypatch.setattr(os, "open", denying(os.open, inside_only=True))
    return folder


def test_unreadable_folders_are_named_not_skipped_or_a_traceback(locked_folder, model_file,
                                                                 capsys):
    locked, one = locked_folder / "locked", locked_folder / "one.png"
    assert main(["predict", str(model_file), str(locked_folder)]) == 1
    out = capsys.readouterr().out
    assert f"{locked}: error: cannot list this folder: Permission denied" in out
    assert f"{one}: " in out and f"{one}: error" not in out
    assert main(["predict", str(model_file), str(locked)]) == 1
    assert f"{locked}: error: cannot list this folder" in capsys.readouterr().out
    assert main(["predict", str(model_file), str(locked / "two.png"), str(one)]) == 1
    out = capsys.readouterr().out
    assert f"{locked / 'two.png'}: error: cannot read the file: Permission denied" in out
    assert f"{one}: error" not in out


# --- downloads -------------------------------------------------------------------------------

def test_a_killed_downloads_leftovers_are_removed_by_the_next(tmp_path, http_folder,
                                                              tiny_mnist):
    served, url = http_folder
    specs = tiny_idx_files(served, tiny_mnist)
    staging = tmp_path / "dest" / ".download"
    staging.mkdir(parents=True)
    (staging / "tmpk1ll3d").write_bytes(bytes(2**20))  # what pooch was writing when killed
    load_mnist(tmp_path / "dest", mirrors=(url,), files=specs)
    assert not staging.exists()


class EndlessHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with 64 MiB of zeros, counting what it could send."""

    size = 64 * 2**20
    sent = 0
    done = threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(self.size))
        self.end_headers()
        chunk = bytes(2**16)
        try:
            while EndlessHandler.sent < self.size:
                self.wfile.write(chunk)
                EndlessHandler.sent += len(chunk)
        except OSError:
            pass  # the client hung up
        finally:
            EndlessHandler.done.set()

    def log_message(self, *args):
        pass


def test_an_oversized_response_is_cut_off_as_it_arrives(tmp_path, tiny_mnist):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EndlessHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    EndlessHandler.sent, EndlessHandler.done = 0, threading.Event()
    specs = tiny_idx_files(tmp_path / "specs", tiny_mnist)
    try:
        with pytest.raises(DataError, match="larger than the 272 bytes the file can take"):
            download_mnist(tmp_path / "dest", files={"test_labels": specs["test_labels"]},
                           mirrors=(f"http://127.0.0.1:{server.server_address[1]}/",))
        assert EndlessHandler.done.wait(30)
    finally:
        server.shutdown()
        server.server_close()
    assert EndlessHandler.sent < EndlessHandler.size // 4  # what the socket buffers took
    assert [p.name for p in (tmp_path / "dest").iterdir()] == [".download.lock"]


def test_the_mirror_can_be_chosen_and_a_bad_one_is_named(tmp_path, http_folder, tiny_mnist,
                                                         monkeypatch):
    served, url = http_folder
    specs = tiny_idx_files(served, tiny_mnist)
    monkeypatch.setattr(digitnet.download, "MIRRORS", ("http://127.0.0.1:9/",))  # none here
    monkeypatch.setenv("DIGITNET_MNIST_URL", url)
    data = load_mnist(tmp_path / "data", files=specs)
    np.testing.assert_array_equal(data.test_labels, tiny_mnist.test_labels)
    monkeypatch.setenv("DIGITNET_MNIST_URL", str(served))
    with pytest.raises(DataError, match=r"\$DIGITNET_MNIST_URL must hold http://, https:// or"):
        load_mnist(tmp_path / "elsewhere", files=specs)


def test_evaluate_needs_and_downloads_only_the_test_set(tmp_path, http_folder, tiny_mnist,
                                                        model_file, monkeypatch, capsys):
    served, url = http_folder
    specs = tiny_idx_files(served, tiny_mnist)
    for key in ("train_images", "train_labels"):
        (served / (specs[key].name + ".gz")).unlink()
    monkeypatch.setenv("DIGITNET_MNIST_URL", url)
    monkeypatch.setitem(digitnet.data.load_mnist_test.__kwdefaults__, "files", specs)
    dest = tmp_path / "data"
    assert main(["evaluate", str(model_file), "--data-dir", str(dest), "--json"]) == 0
    assert np.sum(json.loads(capsys.readouterr().out)["confusion_matrix"]) == 200
    assert sorted(os.listdir(dest)) == [".download.lock", "t10k-images-idx3-ubyte.gz",
                                        "t10k-labels-idx1-ubyte.gz"]
    images, labels = digitnet.data.load_mnist_test(dest, download=False, files=specs)
    np.testing.assert_array_equal(labels, tiny_mnist.test_labels)
