"""Reading numbers: segmentation into digits, refusals, the CLI's --number and /api/number."""

import json

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitnet.cli import main
from digitnet.config import TrainConfig
from digitnet.modelfile import save_model
from digitnet.numbers import MIN_CONFIDENCE, read_number
from digitnet.predict import Prediction, Predictor
from digitnet.preprocess import find_ink, prepare_image, strong_ink
from digitnet.segment import cuts, segment, several_digits
from digitnet.web.app import create_app

from conftest import draw_digit, random_weights

CFG = TrainConfig(hidden=(16,))


def strokes(*lines, size=(240, 200), width=14) -> np.ndarray:
    """Black polylines on white paper: uint8 (height, width)."""
    paper = np.full((size[1], size[0]), 255, np.uint8)
    for line in lines:
        cv2.polylines(paper, [np.asarray(line, np.int32)], False, 0, width, cv2.LINE_AA)
    return paper


def side_by_side(digits: list[np.ndarray], gaps: list[int], pad: int = 20) -> np.ndarray:
    """Light-on-dark 28x28 digits placed left to right with the given gaps (negative:
    overlapping columns), enlarged 4x."""
    width = 28 * len(digits) + sum(gaps) + 2 * pad
    canvas = np.zeros((28 + 2 * pad, width), np.uint8)
    x = pad
    for i, digit in enumerate(digits):
        canvas[pad: pad + 28, x: x + 28] = np.maximum(canvas[pad: pad + 28, x: x + 28], digit)
        x += 28 + (gaps[i] if i < len(gaps) else 0)
    return cv2.resize(canvas, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)


def groups_of(image: np.ndarray):
    ink, _ = find_ink(image, (1024, 256))
    return segment(strong_ink(ink))


@pytest.mark.slow
def test_mnist_digits_side_by_side_are_found_one_by_one(real_mnist):
    rng = np.random.default_rng(0)
    images, labels = real_mnist.test_images, real_mnist.test_labels
    right = 0
    for _ in range(100):
        picks = rng.integers(0, len(images), int(rng.integers(2, 7)))
        gaps = [int(g) for g in rng.integers(2, 12, len(picks) - 1)]
        found = groups_of(side_by_side([images[i] for i in picks], gaps))
        right += len(found.groups) == len(picks)
        lefts = [g.box[0] for g in found.groups]
        assert lefts == sorted(lefts)
    # the 28x28 fields hold margins of ~4 pixels: gaps of 2-12 more leave 6-20 of paper,
    # but a few MNIST digits come in pieces that lie side by side
    assert right >= 95


@pytest.mark.parametrize("name, lines", [
    ("5 with its bar lifted", [[(70, 40), (65, 100), (110, 90), (150, 120), (145, 165),
                                (100, 180), (65, 160)], [(80, 35), (160, 38)]]),
    ("4 in two strokes", [[(90, 30), (60, 120), (170, 120)], [(140, 50), (140, 180)]]),
    ("7 with a crossbar", [[(60, 40), (170, 40), (100, 180)], [(90, 110), (160, 110)]]),
    ("1 with a flag and a base", [[(95, 60), (125, 30), (125, 175)], [(90, 178), (160, 178)]]),
])
def test_a_digit_in_broken_strokes_is_one_digit(name, lines):
    image = strokes(*lines)
    found = groups_of(image)
    assert len(found.groups) == 1, name
    assert several_digits(strong_ink(find_ink(image)[0])) == 1
    assert prepare_image(image).refused is None  # single-digit mode reads it as one digit


def test_specks_are_left_out_and_slanted_digits_kept_apart():
    # three slanted strokes close together: upright columns overlap, the slant's do not
    lines = [[(60 + 70 * i + 45, 30), (60 + 70 * i, 170)] for i in range(3)]
    image = strokes(*lines, size=(320, 200), width=10)
    for x, y in ((30, 100), (300, 20), (165, 185)):
        cv2.circle(image, (x, y), 3, 0, -1)
    found = groups_of(image)
    assert len(found.groups) == 3 and found.specks == 3
    assert found.slant == pytest.approx(45 / 140, abs=0.06)


def test_touching_digits_make_one_wide_group_with_a_cut_between_them():
    two = np.asarray(draw_digit(2, size=28, scale=0.9, width=1))
    five = np.asarray(draw_digit(5, size=28, scale=0.9, width=1))
    image = side_by_side([two, five], [-16])  # the glyphs' ink spans columns 6-20 of 28
    ink, (width, _) = find_ink(image, (1024, 256))
    found = segment(strong_ink(ink))
    [group] = found.groups
    assert group.aspect > 1.0
    seam = (20 + 28 - 16 + 6) * 4 * ink.shape[1] / width  # where the 5's ink starts, in ink pixels
    assert any(abs(cut - seam) < 0.1 * group.box[3] for cut in cuts(group, found.slant))


def test_several_digits_side_by_side_are_refused_in_single_digit_mode():
    page = Image.new("L", (300, 100), 255)
    for i, digit in enumerate([4, 2]):
        page.paste(draw_digit(digit, size=60, ink=0, paper=255, width=2), (40 + i * 90, 20))
    prepared = prepare_image(page)
    assert prepared.refused.startswith("2 digits side by side")
    assert prepare_image(draw_digit(4, size=60, ink=0, paper=255, width=2)).refused is None


class ScriptedPredictor:
    """Answers each image in turn with the next of `answers`: (digit, confidence) or None
    for a refusal, the way Predictor.predict would."""

    def __init__(self, answers):
        self.answers = list(answers)

    def predict(self, images, notes=None, refused=None):
        out = []
        for _ in images:
            answer = self.answers.pop(0)
            digit, sure = answer if answer else (3, 0.4)
            probs = np.full(10, (1 - sure) / 9)
            probs[digit] = sure
            out.append(Prediction(None if answer is None else digit, tuple(probs), (),
                                  None if answer else "that doesn't look like a digit"))
        return out


def number_image(count: int) -> np.ndarray:
    page = Image.new("L", (100 * count + 40, 120), 255)
    for i in range(count):
        page.paste(draw_digit(i + 1, size=70, ink=0, paper=255, width=3), (20 + 100 * i, 25))
    return np.asarray(page)


def test_a_refused_or_unsure_digit_refuses_the_number_and_says_which():
    image = number_image(3)
    reading = read_number(ScriptedPredictor([(1, 0.99), (2, 0.98), (3, 0.97)]), image)
    assert reading.number == "123" and reading.refused is None
    assert [d.digit for d in reading.digits] == [1, 2, 3]
    boxes = [d.box for d in reading.digits]
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)
    for i, (left, top, width, height) in enumerate(boxes):  # in the image's pixels
        assert 20 + 100 * i <= left + width / 2 <= 90 + 100 * i and 25 <= top < top + height <= 95

    reading = read_number(ScriptedPredictor([(1, 0.99), None, (3, 0.97)]), image)
    assert reading.number is None and reading.refused.startswith("digit 2 of 3: that doesn't")
    assert [d.digit for d in reading.digits] == [1, None, 3]

    unsure = MIN_CONFIDENCE - 0.05
    reading = read_number(ScriptedPredictor([(1, 0.99), (2, 0.99), (8, unsure)]), image)
    assert reading.number is None and "digit 3 of 3: unsure" in reading.refused
    assert reading.digits[2].digit is None and reading.digits[2].confidence == pytest.approx(unsure)


def test_the_reads_of_one_image_are_bounded(monkeypatch):
    """Two touching digits that never read surely: every parting is tried, unless the image's
    budget of reads runs out first."""
    import digitnet.numbers as numbers

    two = np.asarray(draw_digit(2, size=28, scale=0.9, width=1))
    five = np.asarray(draw_digit(5, size=28, scale=0.9, width=1))
    image = side_by_side([two, five], [-16])

    def reads() -> int:
        unsure = ScriptedPredictor([(3, 0.5)] * 10_000)
        reading = read_number(unsure, image)
        assert reading.number is None
        return 10_000 - len(unsure.answers)

    unbounded = reads()
    monkeypatch.setattr(numbers, "MAX_READS", 3)
    bounded = reads()
    assert bounded <= 3 + numbers.SPLIT_DEPTH < unbounded


def test_a_blank_image_is_an_error():
    from digitnet.errors import ImageError

    with pytest.raises(ImageError, match="no ink"):
        read_number(ScriptedPredictor([]), np.full((100, 300), 255, np.uint8))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_model(path, random_weights(CFG), CFG)
    return path


def test_cli_number_json_text_and_usage(model_file, tmp_path, capsys):
    Image.fromarray(number_image(4)).save(tmp_path / "1234.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    code = main(["predict", str(model_file), str(tmp_path / "1234.png"),
                 str(tmp_path / "broken.png"), "--number", "--json"])
    assert code == 1  # one file was not an image
    rows = {row["file"].split("/")[-1]: row for row in json.loads(capsys.readouterr().out)}
    assert "not an image" in rows["broken.png"]["error"]
    row = rows["1234.png"]
    assert set(row) == {"file", "number", "refused", "digits", "notes"}
    assert len(row["digits"]) == 4  # a random network: the digits are found, not read
    for digit in row["digits"]:
        assert set(digit) == {"digit", "confidence", "box", "refused"}
        assert len(digit["box"]) == 4 and all(isinstance(v, int) for v in digit["box"])
        assert (digit["digit"] is None) == (digit["refused"] is not None)
    if row["number"] is None:
        assert row["refused"].startswith("digit ")
    else:
        assert row["number"] == "".join(str(d["digit"]) for d in row["digits"])

    assert main(["predict", str(model_file), str(tmp_path / "1234.png"), "--number"]) == 0
    assert "1234.png: " in capsys.readouterr().out
    assert main(["predict", str(model_file), str(tmp_path / "1234.png")]) == 0
    assert "4 digits side by side" in capsys.readouterr().out
    assert main(["predict", str(model_file), "--number", "--test-index", "1"]) == 2
    assert "--number reads image files" in capsys.readouterr().err


@pytest.fixture(scope="module")
def client():
    predictor = Predictor(CFG, random_weights(CFG))
    return TestClient(create_app(predictor), base_url="http://127.0.0.1",
                      raise_server_exceptions=False)


def png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_api_number_answers_and_refuses_bad_input(client):
    response = client.post("/api/number", files={"file": ("n.png", png(number_image(3)))})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"number", "refused", "digits", "notes"} and len(body["digits"]) == 3
    assert all(np.asarray(d["image"]).shape == (28, 28) for d in body["digits"])
    assert "/api/number" in client.get("/openapi.json").json()["paths"]
    blank = png(np.full((50, 150), 255, np.uint8))
    for request, status, message in [
        (dict(json={"pixels": [0] * 784}), 415, "multipart"),
        (dict(files={"file": ("n.png", b"not an image")}), 422, "not an image"),
        (dict(files={"other": ("n.png", blank)}), 422, "field 'file'"),
        (dict(files={"file": ("n.png", blank)}), 422, "no ink"),
    ]:
        response = client.post("/api/number", **request)
        assert response.status_code == status and message in response.json()["detail"]
    response = client.post("/api/predict", files={"file": ("n.png", png(number_image(3)))})
    assert response.json()["digit"] is None and "side by side" in response.json()["refused"]


@pytest.mark.parametrize("size", [(3001, 205), (1537, 3)])
def test_api_number_boxes_stay_in_an_upload_read_at_a_reduced_size(client, size):
    wide = np.asarray(Image.fromarray(number_image(3)).resize(size))
    response = client.post("/api/number", files={"file": ("n.png", png(wide))})
    assert response.status_code in (200, 422)  # a 3-pixel strip may hold no ink left
    width, height = size
    for digit in response.json().get("digits", []):
        left, top, w, h = digit["box"]
        assert 0 <= left < left + w <= width and 0 <= top < top + h <= height


@pytest.mark.slow
def test_the_tutorial_model_reads_mnist_numbers(tutorial_run, real_mnist):
    predictor = Predictor.load(tutorial_run)
    rng = np.random.default_rng(1)
    images, labels = real_mnist.test_images, real_mnist.test_labels
    whole = wrong = 0
    for _ in range(40):
        picks = rng.integers(0, len(images), int(rng.integers(2, 6)))
        reading = read_number(predictor, side_by_side([images[i] for i in picks], [10] * 4))
        truth = "".join(str(labels[i]) for i in picks)
        whole += reading.number == truth
        wrong += reading.number not in (None, truth)
    print(f"{whole} of 40 read whole, {wrong} wrong")
    assert whole >= 24 and wrong <= 2  # 28 and 1 with the tutorial model here


def test_a_short_thin_stroke_on_a_wide_pad_is_ink():
    # under 0.5 % of the pixels: once taken for a blank image
    pad = strokes([(480, 130), (476, 190)], size=(960, 320), width=6)
    assert prepare_image(pad).pixels.max() == 255
    assert len(groups_of(pad).groups) == 1
