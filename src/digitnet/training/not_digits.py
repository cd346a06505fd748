"""Non-digits for training: images a network should be unsure of, prepared like a user's image.

A network trained on digits alone has never seen anything else, and puts most of what is not
a digit confidently into one class. `--not-digits N` adds N generated non-digits to the
training split (never to the validation or the test set) with a uniform target: the loss
teaches the network to spread its probability evenly over the ten digits for them
("outlier exposure"), so that the refusal threshold fitted on the validation split after
training (calibration.refusal_threshold) refuses them.

The kinds, in the shares KINDS gives them, all drawn from one random stream of the run's seed:
- letters written with the pen digits' round pen (pen.py), from skeletons written here;
- letters printed in the STIX and Computer Modern typefaces matplotlib ships;
- scribbles: smooth random strokes, each through many points;
- shapes: polygons, stars, hatchings and grids (no circles or ovals: a 0);
- several digits: two or three pen digits side by side in one image;
- specks: scattered blobs;
- noise: grey noise, smoothed at a random scale.
The letters people write like digits (O o Q D I l i j J S s Z z B b G g q T y) are left out:
nobody can tell them from digits. Everything goes through `prepare_image`, as a user's
picture does. The refusal benchmark (bench/refusal.py) has its own generators and prints its
letters in DejaVu, a typeface this module never uses, so what it measures was not trained on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..geometry import IMAGE_PIXELS
from .pen import (CANVAS, DIGIT_HEIGHT, PEN_SHARE, SKELETONS, Stroke, curve, ellipse, join,
                  paint, place)

_TRIES = 100  # drawings of one kind tried in a row before that kind is taken to be broken
_STREAM = 0x4E0D  # keeps these random numbers apart from the run's other uses of its seed
TYPEFACES = ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
             "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf")
PRINTED = "ACEFHKMNPRUVWXYacefhkmnprtuvwx"  # letters no one writes like a digit


def _points(*xy: float) -> Stroke:
    return np.asarray(xy, np.float64).reshape(-1, 2)


def _bowl(top: float, bottom: float, reach: float) -> Stroke:
    """The right-hand bowl of a P, R or B: from the stem's top round to the stem at `bottom`."""
    return curve((0.0, top), (reach, top), (reach, bottom), (0.0, bottom))


# Each letter: a function of the random generator that returns its strokes in the unit box.
LETTERS: dict[str, Callable[[np.random.Generator], list[Stroke]]] = {
    "A": lambda r: [_points(0.0, 1.0, 0.5 + r.normal(0, 0.05), 0.0, 1.0, 1.0),
                    _points(0.25, r.uniform(0.55, 0.7), 0.75, r.uniform(0.55, 0.7))],
    "C": lambda r: [ellipse(0.55, 0.5, 0.5, 0.5, r.uniform(-60, -30), r.uniform(-300, -270))],
    "E": lambda r: [_points(1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0),
                    _points(0.0, 0.5, r.uniform(0.5, 0.9), 0.5)],
    "F": lambda r: [_points(1.0, 0.0, 0.0, 0.0, 0.0, 1.0),
                    _points(0.0, 0.5, r.uniform(0.5, 0.8), 0.5)],
    "H": lambda r: [_points(0.0, 0.0, 0.0, 1.0), _points(1.0, 0.0, 1.0, 1.0),
                    _points(0.0, r.uniform(0.4, 0.6), 1.0, r.uniform(0.4, 0.6))],
    "K": lambda r: [_points(0.0, 0.0, 0.0, 1.0),
                    _points(1.0, 0.0, 0.0, r.uniform(0.45, 0.65), 1.0, 1.0)],
    "M": lambda r: [_points(0.0, 1.0, 0.1, 0.0, 0.5, r.uniform(0.5, 0.9), 0.9, 0.0, 1.0, 1.0)],
    "N": lambda r: [_points(0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0)],
    "P": lambda r: [_points(0.0, 1.0, 0.0, 0.0), _bowl(0.0, r.uniform(0.45, 0.6), 1.3)],
    "R": lambda r: [_points(0.0, 1.0, 0.0, 0.0), join(_bowl(0.0, 0.5, 1.3), _points(1.0, 1.0))],
    "U": lambda r: [curve((0.0, 0.0), (0.0, 1.3), (1.0, 1.3), (1.0, 0.0))],
    "V": lambda r: [_points(0.0, 0.0, 0.5 + r.normal(0, 0.05), 1.0, 1.0, 0.0)],
    "W": lambda r: [_points(0.0, 0.0, 0.25, 1.0, 0.5, r.uniform(0.2, 0.5), 0.75, 1.0, 1.0, 0.0)],
    "X": lambda r: [_points(0.0, 0.0, 1.0, 1.0), _points(1.0, 0.0, 0.0, 1.0)],
    "Y": lambda r: [_points(0.0, 0.0, 0.5, 0.5, 1.0, 0.0), _points(0.5, 0.5, 0.5, 1.0)],
    "a": lambda r: [join(ellipse(0.45, 0.6, 0.45, 0.4, -30, -360),
                         _points(0.9, 0.15, 0.9, 1.0, 1.0, 0.95))],
    "e": lambda r: [join(_points(0.05, 0.55, 0.95, 0.55), ellipse(0.5, 0.55, 0.45, 0.45, 0, -300))],
    "h": lambda r: [_points(0.0, 0.0, 0.0, 1.0),
                    curve((0.0, 0.6), (0.5, 0.2), (1.0, 0.35), (1.0, 1.0))],
    "k": lambda r: [_points(0.0, 0.0, 0.0, 1.0), _points(0.8, 0.4, 0.0, 0.7, 0.9, 1.0)],
    "m": lambda r: [join(_points(0.0, 1.0, 0.0, 0.3), curve((0.0, 0.45), (0.25, 0.1), (0.5, 0.4)),
                         _points(0.5, 1.0)),
                    join(curve((0.5, 0.45), (0.75, 0.1), (1.0, 0.4)), _points(1.0, 1.0))],
    "n": lambda r: [_points(0.0, 1.0, 0.0, 0.2),
                    curve((0.0, 0.5), (0.4, 0.05), (1.0, 0.2), (1.0, 1.0))],
    "r": lambda r: [_points(0.0, 1.0, 0.0, 0.1), curve((0.0, 0.5), (0.3, 0.0), (0.9, 0.1))],
    "t": lambda r: [curve((0.45, 0.0), (0.45, 1.1), (0.9, 0.95)), _points(0.0, 0.3, 0.9, 0.3)],
    "u": lambda r: [join(curve((0.0, 0.0), (0.0, 1.2), (1.0, 1.0), (1.0, 0.0)),
                         _points(1.0, 1.0))],
    "v": lambda r: [_points(0.0, 0.0, 0.5, 1.0, 1.0, 0.0)],
    "w": lambda r: [curve((0.0, 0.0), (0.2, 1.3), (0.5, 0.2)),
                    curve((0.5, 0.2), (0.8, 1.3), (1.0, 0.0))],
    "x": lambda r: [curve((0.0, 0.0), (0.6, 0.4), (1.0, 1.0)), _points(1.0, 0.0, 0.0, 1.0)],
    "f": lambda r: [curve((1.0, 0.1), (0.5, -0.1), (0.4, 0.5), (0.4, 1.0)),
                    _points(0.05, 0.4, 0.8, 0.4)],
    "p": lambda r: [_points(0.0, 1.0, 0.0, 0.0), _bowl(0.05, 0.55, 1.3)],
}


def _pen_letter(rng: np.random.Generator) -> Image.Image:
    draw = LETTERS[rng.choice(list(LETTERS))]
    pen = DIGIT_HEIGHT * rng.uniform(*PEN_SHARE)
    return paint(place(draw(rng), rng), pen)


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple:
    import matplotlib
    from PIL import ImageFont

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return tuple(ImageFont.truetype(str(folder / name), 96) for name in TYPEFACES)


def _printed_letter(rng: np.random.Generator) -> Image.Image:
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    fonts = _fonts()
    ImageDraw.Draw(canvas).text((CANVAS / 2, CANVAS / 2), str(rng.choice(list(PRINTED))),
                                fill=255, font=fonts[rng.integers(len(fonts))], anchor="mm",
                                stroke_width=int(rng.integers(0, 4)), stroke_fill=255)
    return canvas.rotate(float(rng.uniform(-15, 15)))


def _scribble(rng: np.random.Generator) -> Image.Image:
    # many control points: a curve through few of them can look like a 1, a 2 or a 7
    strokes = [curve(*map(tuple, rng.uniform(0, 1, (int(rng.integers(6, 11)), 2))))
               for _ in range(int(rng.integers(1, 4)))]
    return paint(place(strokes, rng), DIGIT_HEIGHT * rng.uniform(*PEN_SHARE))


def _shape(rng: np.random.Generator) -> Image.Image:
    kind = rng.choice(["polygon", "star", "hatching", "grid"])
    if kind in ("polygon", "star"):
        corners = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * math.pi, corners)) if kind == "polygon" else \
            np.linspace(0, 2 * math.pi, 2 * corners, endpoint=False) + rng.uniform(0, 1)
        radii = rng.uniform(0.35, 0.5, len(angles))
        if kind == "star":
            radii[1::2] *= rng.uniform(0.3, 0.6)
        outline = np.stack([0.5 + radii * np.cos(angles), 0.5 + radii * np.sin(angles)], 1)
        strokes = [np.concatenate([outline, outline[:1]])]
    else:
        lines = int(rng.integers(3, 6))
        at = np.linspace(0.0, 1.0, lines)
        strokes = [_points(0.0, y, 1.0, y + rng.uniform(-0.3, 0.3)) for y in at]
        if kind == "grid":
            strokes += [_points(x, 0.0, x, 1.0) for x in at]
    return paint(place(strokes, rng), DIGIT_HEIGHT * rng.uniform(PEN_SHARE[0], 0.12))


def _several_digits(rng: np.random.Generator) -> Image.Image:
    count = int(rng.integers(2, 4))
    strokes: list[Stroke] = []
    for i in range(count):
        for stroke in SKELETONS[rng.integers(10)](rng):
            shifted = stroke.copy()
            shifted[:, 0] = (shifted[:, 0] * 0.6 + i * rng.uniform(0.85, 1.2)) / count
            strokes.append(shifted)
    return paint(place(strokes, rng), DIGIT_HEIGHT * rng.uniform(0.04, 0.1))


def _specks(rng: np.random.Generator) -> Image.Image:
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    for x, y in rng.uniform(0.2 * CANVAS, 0.8 * CANVAS, (int(rng.integers(3, 15)), 2)):
        radius = rng.uniform(2, 10)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    return canvas


def _noise(rng: np.random.Generator) -> Image.Image:
    """Grey noise, smoothed at a random scale (from single pixels to blotches)."""
    cells = int(rng.integers(6, CANVAS // 2))
    field = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
    return Image.fromarray(field).resize((CANVAS, CANVAS), Image.Resampling.BICUBIC)


# each kind, and its share of the non-digits
KINDS: dict[str, tuple[Callable[[np.random.Generator], Image.Image], float]] = {
    "pen letters": (_pen_letter, 0.3),
    "printed letters": (_printed_letter, 0.2),
    "scribbles": (_scribble, 0.15),
    "shapes": (_shape, 0.1),
    "several digits": (_several_digits, 0.15),
    "specks": (_specks, 0.05),
    "noise": (_noise, 0.05),
}


@functools.lru_cache(maxsize=2)
def not_digits(count: int, seed: int) -> np.ndarray:
    """`count` generated non-digits, uint8 (count, 784), prepared like a user's image; the
    same for the same arguments on every machine."""
    rng = np.random.default_rng([seed, _STREAM])
    shares = np.array([share for _, share in KINDS.values()])
    kinds = rng.choice(len(KINDS), count, p=shares / shares.sum())
    draws = [draw for draw, _ in KINDS.values()]
    images = [_prepared(draws[kind], rng) for kind in kinds]
    out = np.stack(images) if images else np.zeros((0, IMAGE_PIXELS), np.uint8)
    out.flags.writeable = False  # cached: shared by every caller
    return out


def _prepared(draw: Callable[[np.random.Generator], Image.Image],
              rng: np.random.Generator) -> np.ndarray:
    """A drawing of `draw`'s kind through prepare_image; drawn again where nothing readable
    is left of it (a shape placed off the canvas, specks too faint)."""
    from ..errors import ImageError
    from ..preprocess import prepare_image

    for _ in range(_TRIES):
        try:
            return prepare_image(draw(rng)).pixels.reshape(IMAGE_PIXELS)
        except ImageError:
            continue
    raise RuntimeError(f"{_TRIES} drawings of {draw.__name__} in a row had no ink")
