"""Property-based tests of the web API: random and mutated bodies never get a 5xx."""

import json

import numpy as np
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitnet.config import TrainConfig
from digitnet.modelfile import weight_shapes
from digitnet.predict import Predictor
from digitnet.web.app import create_app

from conftest import draw_digit

CFG = TrainConfig(hidden=(8,))
_rng = np.random.default_rng(0)
CLIENT = TestClient(create_app(Predictor(CFG, {
    n: _rng.normal(0, 0.1, s).astype(np.float32) for n, s in weight_shapes(CFG).items()})),
    base_url="http://127.0.0.1", raise_server_exceptions=False)

numbers = st.one_of(st.integers(-300, 300), st.floats(allow_nan=True, allow_infinity=True),
                    st.booleans(), st.none(), st.text(max_size=3))
json_values = st.recursive(numbers, lambda inner: st.one_of(
    st.lists(inner, max_size=30), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=60)
pixel_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"pixels": json_values}),
    st.fixed_dictionaries({"pixels": st.lists(st.lists(numbers, max_size=30), max_size=30),
                           "preprocess": json_values}),
    # nearly right: 28 rows of 28 with a few cells replaced by anything
    st.lists(st.tuples(st.integers(0, 783), numbers), max_size=5).map(lambda edits: {
        "pixels": [[0] * 28 for _ in range(28)]} | {"edits": edits}),
)

UPLOAD_ROUTES = ["/api/predict", "/api/number"]
_PNG = __import__("io").BytesIO()
draw_digit(3, size=64).save(_PNG, format="PNG")
VALID_PNG = _PNG.getvalue()


def _still_answers() -> None:
    assert CLIENT.get("/healthz").status_code == 200


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=pixel_bodies)
def test_random_json_bodies_get_a_4xx_or_an_answer(body):
    if isinstance(body, dict) and "edits" in body:
        for index, value in body.pop("edits"):
            body["pixels"][index // 28][index % 28] = value
    content = json.dumps(body, allow_nan=True).encode()
    response = CLIENT.post("/api/predict", content=content,
                           headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert isinstance(response.json()["detail"], str)
    _still_answers()


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.tuples(st.integers(0, len(VALID_PNG) - 1), st.integers(0, 255)),
                     max_size=8),
       truncate=st.integers(0, len(VALID_PNG)), route=st.sampled_from(UPLOAD_ROUTES))
def test_mutated_image_uploads_get_a_4xx_or_an_answer(cuts, truncate, route):
    content = bytearray(VALID_PNG)
    for position, value in cuts:
        content[position] = value
    response = CLIENT.post(route,
                           files={"file": ("d.png", bytes(content[:truncate]), "image/png")})
    assert response.status_code < 500, response.text
    _still_answers()


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=400),
       kind=st.sampled_from(["multipart/form-data; boundary=x", "multipart/form-data",
                             "application/json", "application/json; charset=latin-1",
                             "image/png", ""]), route=st.sampled_from(UPLOAD_ROUTES))
def test_random_bytes_under_any_content_type_get_a_4xx(raw, kind, route):
    response = CLIENT.post(route, content=raw, headers={"content-type": kind})
    assert response.status_code < 500, response.text
    _still_answers()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), width=st.integers(1, 900), height=st.integers(1, 300),
       lines=st.integers(0, 12), pen=st.integers(1, 40), dots=st.integers(0, 40))
def test_random_scribbles_read_as_numbers_get_a_4xx_or_an_answer(seed, width, height, lines,
                                                                  pen, dots):
    import cv2

    rng = np.random.default_rng(seed)
    image = np.full((height, width), 255, np.uint8)
    for _ in range(lines):
        points = rng.integers(0, [width, height], (int(rng.integers(2, 6)), 2)).astype(np.int32)
        cv2.polylines(image, [points], False, 0, pen)
    for x, y in rng.integers(0, [width, height], (dots, 2)):
        cv2.circle(image, (int(x), int(y)), int(rng.integers(1, 4)), 0, -1)
    buffer = __import__("io").BytesIO()
    __import__("PIL.Image").Image.fromarray(image).save(buffer, format="PNG")
    response = CLIENT.post("/api/number", files={"file": ("n.png", buffer.getvalue())})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        body = response.json()
        assert (body["number"] is None) == (body["refused"] is not None)
        for digit in body["digits"]:
            left, top, w, h = digit["box"]
            assert 0 <= left < left + w <= width and 0 <= top < top + h <= height
