"""Printed digits: the ten digits in the typefaces matplotlib ships, prepared like a user's image.

Typefaces draw some digits the way many people write them and MNIST's writers seldom did: a 6
whose stem curves over a loop that fills most of its height, a 1 with a flag and a base, a 4
with a closed top. `printed_digits(copies)` renders each digit in each typeface, at a regular
and a heavier weight, puts it through `prepare_image` (crop, fit 20x20, centre of mass in
28x28, the same as any user's picture) and returns `copies` of the lot; `--printed-digits N`
adds them to the training split (never to the validation or the test set), where the
augmentation distorts every copy differently.

The fonts come with matplotlib (in the `train` extra), so every installation that trains
renders the same images: DejaVu Sans and Serif, STIX and Computer Modern, upright and slanted.
The monospaced faces are left out: their 0 carries a dot.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..geometry import IMAGE_PIXELS

TYPEFACES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
             "DejaVuSans-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
             "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf",
             "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
             "cmr10.ttf", "cmb10.ttf", "cmti10.ttf", "cmss10.ttf", "cmtt10.ttf")
GLYPH_PIXELS = 96  # font size the glyphs are drawn at, before they are fitted to 20x20
HEAVIER = 3  # outline width, in pixels at that size, of the heavier weight
PER_COPY = len(TYPEFACES) * 2 * 10  # typefaces x weights x digits


@functools.lru_cache(maxsize=1)
def _renderings() -> tuple[np.ndarray, np.ndarray]:
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    from ..preprocess import prepare_image

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    images, labels = [], []
    for typeface in TYPEFACES:
        font = ImageFont.truetype(str(folder / typeface), GLYPH_PIXELS)
        for outline in (0, HEAVIER):
            for digit in range(10):
                canvas = Image.new("L", (2 * GLYPH_PIXELS, 2 * GLYPH_PIXELS), 0)
                ImageDraw.Draw(canvas).text((GLYPH_PIXELS, GLYPH_PIXELS), str(digit), fill=255,
                                            font=font, anchor="mm", stroke_width=outline,
                                            stroke_fill=255)
                images.append(prepare_image(canvas).pixels.reshape(IMAGE_PIXELS))
                labels.append(digit)
    return np.stack(images), np.asarray(labels, np.int32)


def printed_digits(copies: int) -> tuple[np.ndarray, np.ndarray]:
    """`copies` of every rendering: images uint8 (N, 784) and labels int32 (N,), N =
    copies x PER_COPY."""
    images, labels = _renderings()
    return np.tile(images, (copies, 1)), np.tile(labels, copies)
