import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digitnet.errors import ImageError
from digitnet.preprocess import naive_resize, open_image, prepare_image

from conftest import draw_digit


def png_bytes(image: Image.Image, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation of two images over shifts of up to one pixel (centring rounds)."""
    return max(np.corrcoef(np.roll(a, (dy, dx), (0, 1)).ravel(), b.ravel())[0, 1]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def assert_mnist_like(pixels: np.ndarray):
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    rows, cols = np.nonzero(pixels > 30)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21  # fits MNIST's 20x20 box
    cy, cx = ndimage.center_of_mass(pixels.astype(float))
    assert abs(cy - 14) <= 1.5 and abs(cx - 14) <= 1.5
    assert pixels[0].max() == 0 and pixels[:, 0].max() == 0  # background stays black


def test_big_off_centre_dark_ink_on_paper_becomes_mnist_like():
    photo = draw_digit(7, size=400, scale=0.3, dx=-110, dy=90, ink=20, paper=235, width=4)
    result = prepare_image(open_image(png_bytes(photo)))
    assert_mnist_like(result.pixels)
    assert result.notes == ()


def test_polarity_does_not_matter():
    dark_on_light = prepare_image(draw_digit(3, size=120, ink=0, paper=255, width=3)).pixels
    light_on_dark = prepare_image(draw_digit(3, size=120, ink=255, paper=0, width=3)).pixels
    assert similarity(dark_on_light, light_on_dark) > 0.97


def test_uneven_lighting_and_specks_are_removed():
    digit = np.asarray(draw_digit(5, size=200, scale=0.6, ink=0, paper=255, width=3), float)
    ramp = np.linspace(0.45, 1.0, 200)[None, :]  # a shadow across the page
    page = digit * ramp
    rng = np.random.default_rng(0)
    for y, x in rng.integers(5, 195, (12, 2)):
        page[y, x] = 40.0  # isolated dark specks
    pixels = prepare_image(Image.fromarray(page.astype(np.uint8))).pixels
    assert_mnist_like(pixels)
    clean = prepare_image(draw_digit(5, size=200, scale=0.6, ink=0, paper=255, width=3)).pixels
    assert similarity(pixels, clean) > 0.9


def test_transparent_canvas_with_dark_strokes():
    rgba = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    rgba.paste(Image.new("RGBA", (10, 60), (0, 0, 0, 255)), (45, 20))  # a dark "1"
    assert_mnist_like(prepare_image(rgba).pixels)


def test_numpy_array_input_and_mnist_input_stay_mnist_like():
    glyph = np.asarray(draw_digit(2))  # already MNIST-sized and light on dark
    assert_mnist_like(prepare_image(glyph).pixels)
    assert_mnist_like(prepare_image(glyph.astype(np.float32) / 255).pixels)


@pytest.mark.parametrize(
    "image, message",
    [
        (Image.new("L", (64, 64), 255), "no ink found"),
        (Image.new("RGB", (64, 64), (30, 30, 30)), "no ink found"),
        (Image.fromarray(np.full((50, 50), 128, np.uint8) + np.random.default_rng(0).integers(
            0, 8, (50, 50)).astype(np.uint8)), "no ink found"),
    ],
)
def test_images_without_ink_are_refused(image, message):
    with pytest.raises(ImageError, match=message):
        prepare_image(image)


def test_several_marks_are_flagged():
    page = Image.new("L", (300, 100), 255)
    for i, digit in enumerate([1, 2, 3, 4, 5]):
        page.paste(draw_digit(digit, size=60, ink=0, paper=255, width=2), (i * 60, 20))
    notes = prepare_image(page).notes
    assert any("single digit" in n for n in notes)


def test_bad_files_are_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    good = png_bytes(draw_digit(4, size=64))
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    cases = {
        tmp_path / "notes.txt": "not an image Pillow can read",
        tmp_path / "cut.png": "damaged or truncated",
        tmp_path / "missing.png": "no such file",
        tmp_path: "a folder, not an image",
    }
    for path, message in cases.items():
        with pytest.raises(ImageError, match=message):
            open_image(path)
    with pytest.raises(ImageError, match="more than the 1,000 allowed"):
        open_image(good, max_pixels=1000)


def test_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="too large"):
        open_image(png_bytes(Image.new("L", (200, 200))))


def test_naive_resize_squashes_without_centring():
    photo = draw_digit(1, size=200, scale=0.3, dx=-60, ink=0, paper=255)
    pixels = naive_resize(photo)
    assert pixels.shape == (28, 28)
    assert ndimage.center_of_mass(pixels.astype(float))[1] < 10  # still off-centre
