"""Issue #36's attacks on the web app, each bounded in count and time, on 127.0.0.1 only:
memory and the event loop (1), idle and slow clients (2), the Host check, the headers, the
pages' own scripts and Pillow's plugins (3). bench/web_limits.py measures the memory and
/healthz figures these mechanisms give."""

import asyncio
import contextlib
import io
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import EpsImagePlugin, Image

from digitnet.cli import main
from digitnet.config import TrainConfig
from digitnet.errors import ImageError
from digitnet.modelfile import save_model, weight_shapes
from digitnet.predict import Predictor
from digitnet.preprocess import REDUCED_SIDE, open_image, prepare_image
from digitnet.web import app as web_app
from digitnet.web.app import create_app
from digitnet.web.server import ServerLimits, default_allowed_hosts, uvicorn_options

from conftest import draw_digit

CFG = TrainConfig(hidden=(16,))
_rng = np.random.default_rng(0)
WEIGHTS = {n: _rng.normal(0, 0.1, s).astype(np.float32) for n, s in weight_shapes(CFG).items()}
LOOPBACK = "http://127.0.0.1"


def new_app(**options):
    return create_app(Predictor(CFG, WEIGHTS), **options)


@pytest.fixture(scope="module")
def client():
    return TestClient(new_app(), base_url=LOOPBACK, raise_server_exceptions=False)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def post_file(client, content: bytes):
    return client.post("/api/predict", files={"file": ("digit", content, "image/png")})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# 1. Bounded memory, and the event loop kept free

def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height RGBA (8 bits), rows all zero."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = zlib.compress(b"\x00" * (1 + 4 * width) * 64)  # the first 64 rows only
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6,
                                                              0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_a_png_declaring_25_megapixels_is_refused_from_its_header(client):
    # issue #36: a 97 KB PNG declaring 5000x5000 RGBA took the server to 875 MB
    response = post_file(client, png_declaring(5000, 5000))
    assert response.status_code == 422
    assert "more than the 12,500,000 allowed" in response.json()["detail"]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_json_body_over_its_stated_size_is_refused_before_it_is_parsed(client, chunked):
    # issue #36: 2.6 M zeros in 5.2 MB of JSON took the server to 955 MB
    body = b'{"pixels": [' + b",".join([b"0"] * 40_000) + b"]}"  # 80 KB
    content = (body[i: i + 4096] for i in range(0, len(body), 4096)) if chunked else body
    response = client.post("/api/predict", content=content,
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"] == "the request is over 65,536 bytes"


def test_a_pixel_list_longer_than_784_is_refused_while_it_is_read(client):
    response = client.post("/api/predict", json={"pixels": [0] * 5000})
    assert response.status_code == 422
    assert "at most 784 items" in response.json()["detail"]


def test_a_prediction_runs_off_the_event_loop(monkeypatch):
    """/healthz answers while a prediction is still working (it used to wait for it)."""
    started, release, order = threading.Event(), threading.Event(), []

    def slow_prepare(image):  # stands in for a large image's decoding and preparation
        started.set()
        release.wait(timeout=5)  # on the event loop, this held everything up for 5 s
        order.append("prediction")
        return prepare_image(image)

    monkeypatch.setattr(web_app, "prepare_image", slow_prepare)
    app = new_app()

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOOPBACK) as http:
            predicting = asyncio.create_task(http.post(
                "/api/predict", files={"file": ("d", encode(draw_digit(3, size=64)))}))
            for _ in range(500):  # until the prediction has begun: at most 5 s
                if started.is_set():
                    break
                await asyncio.sleep(0.01)
            health = await http.get("/healthz")
            order.append("healthz")
            release.set()
            return health, await predicting

    health, prediction = asyncio.run(scenario())
    assert health.status_code == prediction.status_code == 200
    assert order == ["healthz", "prediction"]


def digit_page(mode: str, side: int = 1600) -> Image.Image:
    """A large, thick, dark 2 on white (or on transparency, for RGBA), in `mode`."""
    ink = draw_digit(2, size=side, ink=255, paper=0, width=side // 40)
    if mode == "RGBA":
        image = Image.new("RGBA", ink.size, (0, 0, 0, 0))
        image.putalpha(ink)
        return image
    paper = Image.eval(ink, lambda v: 255 - v)
    if mode == "I;16":
        return Image.fromarray(np.asarray(paper).astype(np.uint16) * 257)
    return paper.convert(mode)


@pytest.mark.parametrize("mode, fmt", [("RGBA", "PNG"), ("P", "PNG"), ("1", "PNG"),
                                       ("I;16", "PNG"), ("RGB", "JPEG"), ("CMYK", "JPEG"),
                                       ("L", "TIFF"), ("RGB", "WEBP")])
def test_a_large_image_is_decoded_small_and_still_read_the_same(mode, fmt):
    content = encode(digit_page(mode), fmt)
    reduced = open_image(content, reduce=True)
    assert REDUCED_SIDE <= max(reduced.size) < 2 * REDUCED_SIDE
    full = prepare_image(open_image(content)).pixels.astype(float)
    small = prepare_image(reduced).pixels.astype(float)
    assert np.abs(full - small).mean() < 6  # of 255: the same digit, the same placement


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_a_large_image_keeps_its_exif_orientation_when_decoded_small(fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise
    content = encode(digit_page("L").rotate(90, expand=True), fmt, exif=exif)
    full = prepare_image(open_image(content)).pixels.astype(float)
    small = prepare_image(open_image(content, reduce=True)).pixels.astype(float)
    assert np.abs(full - small).mean() < 6


# 2. Idle and slow clients

@contextlib.contextmanager
def live_server(limits: ServerLimits):
    """The app under uvicorn with `limits`, in a thread, on a free loopback port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(new_app(), host="127.0.0.1", port=port,
                                           log_level="warning", **uvicorn_options(limits)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):  # at most 10 s
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def quick_timeouts():
    with live_server(ServerLimits(keep_alive=1, head_timeout=0.5, body_timeout=0.5)) as port:
        yield port


def closed_by_server(sock: socket.socket, trickle: bytes = b"", seconds: float = 10) -> bool:
    """Whether the server closes `sock` within `seconds` while this client sends one byte
    of `trickle` every 50 ms (the deadlines must hold against a slow sender too)."""
    for byte in (trickle[i: i + 1] for i in range(int(seconds / 0.05) + 1)):
        try:
            if byte:
                sock.sendall(byte)
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable and sock.recv(4096) == b"":
                return True
        except OSError:  # reset or broken pipe: closed
            return True
    return False


@pytest.mark.parametrize("sent, trickle", [
    (b"", b""),  # connects and sends nothing
    (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"a" * 1000),  # a slow head
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
     b"content-length: 100000\r\n\r\n", b"0" * 1000),  # a slow body
], ids=["idle", "slow-head", "slow-body"])
def test_idle_and_slow_clients_are_disconnected(quick_timeouts, sent, trickle):
    with socket.create_connection(("127.0.0.1", quick_timeouts), timeout=5) as sock:
        sock.sendall(sent)
        assert closed_by_server(sock, trickle)


def test_a_client_that_keeps_its_connection_is_served_as_usual(quick_timeouts):
    with httpx.Client(base_url=f"{LOOPBACK}:{quick_timeouts}") as http:
        for _ in range(3):
            assert http.get("/healthz").status_code == 200
        response = http.post("/api/predict", files={"file": ("d", encode(draw_digit(4, size=64)))})
        assert response.status_code == 200


def test_idle_connections_over_the_cap_make_way_for_a_new_client():
    with live_server(ServerLimits(head_timeout=60, max_connections=8)) as port, \
            contextlib.ExitStack() as idle:
        sockets = [idle.enter_context(socket.create_connection(("127.0.0.1", port)))
                   for _ in range(30)]
        assert httpx.get(f"{LOOPBACK}:{port}/healthz", timeout=5).status_code == 200
        time.sleep(0.5)  # the closes reach the clients
        readable, _, _ = select.select(sockets, [], [], 0)
        still_open = [s for s in sockets if s not in readable or s.recv(1) != b""]
        assert len(still_open) <= 8


def test_idle_connections_cannot_use_up_the_open_files(tmp_path):
    """issue #36: with the open-file limit at 64, 60 idle connections stopped /healthz."""
    save_model(tmp_path / "model.safetensors", WEIGHTS, CFG)
    port = free_port()
    server = subprocess.Popen(
        ["bash", "-c", f'ulimit -n 64 && exec "{sys.executable}" -m digitnet serve '
                       f'"{tmp_path}" --port {port}'], stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):  # at most 30 s
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{LOOPBACK}:{port}/healthz").status_code == 200:
                    break
            time.sleep(0.1)
        with contextlib.ExitStack() as idle:
            for _ in range(60):
                idle.enter_context(socket.create_connection(("127.0.0.1", port)))
            assert httpx.get(f"{LOOPBACK}:{port}/healthz", timeout=5).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=20)


# 3. Safe defaults

@pytest.mark.parametrize("host, status", [
    ("evil.example", 400), ("localhost.evil.example", 400), ("127.0.0.1.nip.io", 400),
    ("127.0.0.1:8000", 200), ("localhost:8000", 200), ("[::1]:8000", 200), ("localhost", 200),
])
def test_only_loopback_host_names_are_served_by_default(client, host, status):
    assert client.get("/healthz", headers={"host": host}).status_code == status


def test_allowed_hosts_replace_the_loopback_names():
    client = TestClient(new_app(allowed_hosts=["digits.example.org"]),
                        base_url="http://digits.example.org")
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz", headers={"host": "localhost:8000"}).status_code == 400


@pytest.mark.parametrize("bind, hosts", [
    ("127.0.0.1", ["localhost", "127.0.0.1", "[::1]"]),
    ("localhost", ["localhost", "127.0.0.1", "[::1]"]),
    ("::1", ["localhost", "127.0.0.1", "[::1]"]),
    ("127.0.0.2", ["localhost", "127.0.0.1", "[::1]", "127.0.0.2"]),
    ("192.168.1.5", ["192.168.1.5"]),
    ("fe80::1", ["[fe80::1]"]),
    ("digits.example.org", ["digits.example.org"]),
    ("0.0.0.0", None), ("::", None), ("", None),
])
def test_the_hosts_accepted_by_default_follow_the_listening_address(bind, hosts):
    assert default_allowed_hosts(bind) == hosts


@pytest.mark.parametrize("argv, message", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0 listens on every interface"),
    (["--allowed-hosts", "digits.*.org"], "expected host names"),
    (["--allowed-hosts", ","], "expected host names"),
])
def test_serve_asks_for_allowed_hosts_where_it_cannot_know_them(capsys, argv, message):
    assert main(["serve", "nowhere", *argv]) == 2
    assert message in capsys.readouterr().err


RESPONSES = [
    lambda c: c.get("/"), lambda c: c.get("/model"), lambda c: c.get("/healthz"),
    lambda c: c.get("/api/model"), lambda c: c.get("/openapi.json"),
    lambda c: c.get("/static/draw.js"), lambda c: c.get("/no-such-page"),
    lambda c: c.post("/api/predict", json={"pixels": []}),
    lambda c: c.get("/healthz", headers={"host": "evil.example"}),
]


@pytest.mark.parametrize("send", RESPONSES)
def test_every_response_carries_the_security_headers(client, send):
    headers = send(client).headers
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "http" not in policy and "*" not in policy  # no other origin
    assert headers["x-content-type-options"] == "nosniff"


def test_no_page_loads_a_script_or_style_from_elsewhere_or_inline(client):
    import re

    assert client.get("/docs").status_code == 404  # Swagger UI's scripts come from a CDN
    assert client.get("/openapi.json").status_code == 200
    for path in ("/", "/model"):
        page = client.get(path).text
        assert not re.search(r"<style|style=|<script(?![^>]*\bsrc=)|\son\w+=", page)
        assets = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets)
        for asset in (a for a in assets if a.startswith("/static/")):
            assert client.get(asset).status_code == 200


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n%%EndComments\nshowpage\n%%EOF\n"


def test_an_eps_file_never_reaches_pillows_eps_plugin(client, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a))
    response = post_file(client, EPS)
    assert response.status_code == 422 and "not an image" in response.json()["detail"]
    (tmp_path / "digit.eps").write_bytes(EPS)  # a file, as `digitnet predict` opens it
    with pytest.raises(ImageError, match="not an image"):
        open_image(tmp_path / "digit.eps")
    assert calls == []


def test_a_lab_tiff_gets_a_clear_4xx(client):
    response = post_file(client, encode(Image.new("LAB", (64, 64), (50, 0, 0)), "TIFF"))
    assert response.status_code == 422
    assert "LAB colour" in response.json()["detail"]
