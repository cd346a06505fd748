"""The web API, in-process."""

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitnet.config import TrainConfig
from digitnet.modelfile import weight_shapes
from digitnet.predict import Predictor
from digitnet.runs import Run
from digitnet.web import app as web_app
from digitnet.web.app import create_app

from conftest import draw_digit

CFG = TrainConfig(hidden=(16,))


@pytest.fixture(scope="module")
def client():
    rng = np.random.default_rng(0)
    weights = {n: rng.normal(0, 0.1, s).astype(np.float32) for n, s in weight_shapes(CFG).items()}
    predictor = Predictor(CFG, weights, {"test_accuracy": 0.5})
    return TestClient(create_app(predictor), base_url="http://127.0.0.1",
                      raise_server_exceptions=False)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def post_file(client, content: bytes, name: str = "digit.png"):
    return client.post("/api/predict", files={"file": (name, content, "image/png")})


def check_answer(body: dict):
    assert set(body) == {"digit", "refused", "probabilities", "image", "notes"}
    assert len(body["probabilities"]) == 10 and sum(body["probabilities"]) == pytest.approx(1)
    if body["refused"] is None:
        assert body["digit"] == int(np.argmax(body["probabilities"]))
    else:
        assert body["digit"] is None and "doesn't look like a digit" in body["refused"]
    image = np.array(body["image"])
    assert image.shape == (28, 28) and 0 <= image.min() and image.max() <= 255


def test_health_model_docs_and_pages(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    model = client.get("/api/model").json()
    assert model["config"]["hidden"] == [16] and model["metrics"]["test_accuracy"] == 0.5
    assert model["plots"] == []
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert "<canvas" in client.get("/").text and "/api/model" in client.get("/static/model.js").text


def test_predict_upload(client):
    response = post_file(client, encode(draw_digit(7, size=200, ink=0, paper=255, width=5)))
    assert response.status_code == 200
    check_answer(response.json())


def test_predict_pixels_nested_flat_and_raw(client):
    pixels = np.asarray(draw_digit(3)).astype(int)
    for payload in ({"pixels": pixels.tolist()}, {"pixels": pixels.ravel().tolist()},
                    {"pixels": pixels.tolist(), "preprocess": False}):
        response = client.post("/api/predict", json=payload)
        assert response.status_code == 200, response.text
        check_answer(response.json())
    raw = client.post("/api/predict", json={"pixels": pixels.tolist(), "preprocess": False})
    assert raw.json()["image"] == pixels.tolist()  # passed through untouched


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "CMYK", "1", "RGB"])
def test_any_image_mode_is_handled(client, mode):
    image = draw_digit(5, size=120, ink=0, paper=255, width=4)
    converted = image.convert(mode) if mode != "I;16" else Image.fromarray(
        np.asarray(image).astype(np.uint16) * 257)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    response = post_file(client, encode(converted, fmt))
    assert response.status_code == 200, response.text
    check_answer(response.json())


def test_animated_gif_uses_its_first_frame(client):
    frames = [draw_digit(d, size=80, ink=0, paper=255, width=3) for d in (1, 2)]
    content = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert post_file(client, content).status_code == 200


def bomb_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    "send, status, message",
    [
        (lambda c: post_file(c, b"just some text"), 422, "not an image"),
        (lambda c: post_file(c, b""), 422, "not an image"),
        (lambda c: post_file(c, encode(draw_digit(4, size=64))[:100]), 422, "damaged"),
        (lambda c: post_file(c, bomb_png()), 422, "too large"),
        (lambda c: post_file(c, encode(Image.new("L", (300, 300), 255))), 422, "no ink"),
        (lambda c: post_file(c, encode(Image.new("L", (1, 1), 0))), 422, "no ink"),
        (lambda c: c.post("/api/predict", files={"image": ("x.png", b"x")}), 422, "field 'file'"),
        (lambda c: c.post("/api/predict", content=b"x", headers={"content-type": "text/plain"}),
         415, "multipart"),
        (lambda c: c.post("/api/predict", json={"pixels": [1, 2, 3]}), 422, "28x28 or 784"),
        (lambda c: c.post("/api/predict", json={"pixels": [[0] * 28] * 27}), 422, "28x28 or 784"),
        (lambda c: c.post("/api/predict", json={"pixels": [[1, 2], [3]]}), 422,
         "rows differ in length"),
        (lambda c: c.post("/api/predict", json={"pixels": [[0] * 28] * 27 + [[0] * 27]}), 422,
         "rows differ in length"),
        (lambda c: c.post("/api/predict", json={"pixels": [300] * 784}), 422, "0 to 255"),
        (lambda c: c.post("/api/predict", json={"pixels": [-1] * 784}), 422, "0 to 255"),
        (lambda c: c.post("/api/predict", json={"pixels": [0] * 784}), 422, "no ink"),
        (lambda c: c.post("/api/predict", json={"pixels": "abc"}), 422, "bad JSON body"),
        (lambda c: c.post("/api/predict", content=b"{not json",
                          headers={"content-type": "application/json"}), 422, "bad JSON body"),
        (lambda c: c.get("/api/plots/..%2Fmodel.png"), 404, "Not Found"),
        (lambda c: c.get("/api/plots/training_curves.png"), 404, "no such plot"),
    ],
)
def test_bad_input_gets_a_4xx_json_message_and_the_server_keeps_serving(
        client, send, status, message):
    response = send(client)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_oversized_upload_is_refused(client, monkeypatch):
    monkeypatch.setattr(web_app, "MAX_UPLOAD_BYTES", 1000)
    response = post_file(client, encode(draw_digit(2, size=300), "BMP"))
    assert response.status_code == 413 and "over 1,000 bytes" in response.json()["detail"]


@pytest.mark.parametrize("kind", ["application/json", "multipart/form-data; boundary=xyz"])
def test_oversized_chunked_body_is_refused_as_it_arrives(client, monkeypatch, kind):
    # A chunked request has no Content-Length: the size is counted as the body arrives.
    monkeypatch.setattr(web_app, "MAX_UPLOAD_BYTES", 1000)
    monkeypatch.setattr(web_app, "MAX_JSON_BYTES", 1000)
    chunks = (b"x" * 1024 for _ in range(1000))
    response = client.post("/api/predict", content=chunks, headers={"content-type": kind})
    assert response.status_code == 413 and "over 1,000 bytes" in response.json()["detail"]


def test_plots_come_only_from_the_run_folder(tmp_path):
    rng = np.random.default_rng(1)
    weights = {n: rng.normal(0, 0.1, s).astype(np.float32) for n, s in weight_shapes(CFG).items()}
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "confusion_matrix.png").write_bytes(encode(Image.new("L", (4, 4))))
    (tmp_path / "plots" / "secret.png").write_bytes(b"not for clients")
    predictor = Predictor(CFG, weights)
    client = TestClient(create_app(predictor, Run(tmp_path, CFG, [], {}, predictor)),
                        base_url="http://127.0.0.1")
    assert client.get("/api/model").json()["plots"] == ["/api/plots/confusion_matrix.png"]
    assert client.get("/api/plots/confusion_matrix.png").status_code == 200
    assert client.get("/api/plots/secret.png").status_code == 404


def test_serve_with_two_workers_answers_from_two_processes(tmp_path):
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    from digitnet.modelfile import save_model

    rng = np.random.default_rng(0)
    save_model(tmp_path / "model.safetensors",
               {n: rng.normal(0, 0.1, s).astype(np.float32) for n, s in weight_shapes(CFG).items()},
               CFG)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", str(tmp_path),
                               "--port", str(port), "--workers", "2"], stderr=subprocess.PIPE)
    try:
        deadline, answers = time.monotonic() + 60, []
        while len(answers) < 4 and time.monotonic() < deadline:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/api/predict",
                                      files={"file": ("d.png", encode(draw_digit(3, size=64)))})
                answers.append(response.status_code)
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answers == [200] * 4
        children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True,
                                  text=True).stdout.split()
        workers = [pid for pid in children  # uvicorn spawns them with multiprocessing
                   if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_serve_refuses_zero_workers(capsys):
    from digitnet.cli import main

    assert main(["serve", "nowhere", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
