"""Serving one run folder from several `digitnet serve` replicas, as behind a load balancer:
each replica only reads the folder, so it may be read-only and shared."""

import io
import os
import socket
import subprocess
import sys
import time

import httpx
from digitnet.config import TrainConfig
from digitnet.runs import train_run

from conftest import draw_digit

# `digitnet serve ARGS` in a process where writing anything into the run folder (argv[1])
# fails, as in a read-only folder (the tests run as root, whom file modes do not stop)
READ_ONLY_SERVE = """
import os, sys
folder = os.path.realpath(sys.argv[1])
WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
CHANGES = ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.chmod", "os.chown",
           "os.link", "os.symlink", "os.truncate", "os.utime", "shutil.rmtree")

def inside(path):
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False  # a file descriptor
    path = os.path.realpath(os.fsdecode(path))
    return path == folder or path.startswith(folder + os.sep)

def read_only(event, args):
    if event == "open":
        path, mode, flags = args
        writes = any(c in (mode or "") for c in "wax+") or (flags or 0) & WRITES
        if writes and inside(path):
            raise PermissionError(f"read-only run folder: {event} {path}")
    elif event in CHANGES and any(inside(a) for a in args[:2] if a is not None):
        raise PermissionError(f"read-only run folder: {event} {args[0]}")

sys.addaudithook(read_only)
sys.argv = ["digitnet", "serve", *sys.argv[1:]]
from digitnet.cli import entry_point
entry_point()
"""


def _png(image) -> bytes:
    with io.BytesIO() as out:
        image.save(out, format="PNG")
        return out.getvalue()


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_replicas_serve_a_run_folder_they_cannot_write_to(tmp_path, tiny_mnist):
    folder = tmp_path / "run"
    train_run(TrainConfig(hidden=(8,), epochs=1), folder, tiny_mnist, plots=False)
    (folder / "plots").mkdir()
    (folder / "plots" / "confusion_matrix.png").write_bytes(_png(draw_digit(1)))
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    ports = [_port(), _port()]
    replicas = [subprocess.Popen([sys.executable, "-c", READ_ONLY_SERVE, str(folder), "--port",
                                  str(port)], stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
                for port in ports]
    try:
        answers = []
        deadline = time.monotonic() + 90
        for i in range(8):  # round robin, as a load balancer would
            base = f"http://127.0.0.1:{ports[i % 2]}"
            while time.monotonic() < deadline:
                try:
                    pages = [httpx.get(base + path).status_code for path in
                             ("/", "/model", "/api/model", "/api/plots/confusion_matrix.png",
                              "/healthz")]
                    predicted = httpx.post(base + "/api/predict",
                                           files={"file": ("d.png", _png(draw_digit(3, size=64)))})
                    answers.append((pages, predicted.status_code))
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
        assert answers == [([200] * 5, 200)] * 8
    finally:
        for replica in replicas:
            replica.terminate()
        errors = [replica.communicate(timeout=30)[1] for replica in replicas]
    assert not any("read-only run folder" in err or "Traceback" in err for err in errors), errors
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
