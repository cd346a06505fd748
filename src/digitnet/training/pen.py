"""Pen digits: synthetic digits drawn as strokes with a round pen, prepared like a user's image.

MNIST's writers used pens on paper forms; people on a drawing pad write some digits in ways
those forms seldom show, most of all a 6 whose loop takes most of its height under a short
hook (MNIST's 6s have narrow loops under a tall stem, and a model trained on them reads the
large-looped one as 0). `pen_digits(per_digit, seed)` draws each digit from a few stroke
skeletons (centre lines in a unit box, y down), each with its own random proportions — the
share of the height a loop takes, how far a hook or a tail reaches, whether a 4 is closed or
a 7 has a bar — then slants, turns, squeezes and wobbles it, paints it with a round pen
between 5 % and 22 % of the digit's height and puts it through `prepare_image` (crop, fit
20x20, centre of mass in 28x28, like any user's picture). `--pen-digits N` adds N of every
digit to the training split, never to the validation or the test set.

The skeletons are written here, for training; the drawing benchmark (bench/drawing.py) has
its own, and neither reads the other's: the benchmark draws the same common ways of writing
with its own curves, so what it measures are drawings the model was not trained on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from ..geometry import IMAGE_PIXELS

CANVAS = 192  # pixels of the square the strokes are painted on
DIGIT_HEIGHT = 120  # the digit's height on that canvas before slant and turn
PEN_SHARE = (0.05, 0.22)  # the pen's width as a share of the digit's height
_STREAM = 0x9E2  # keeps the pen digits' random numbers apart from the run's other uses of its seed
ONE_FLAG_LENGTH = (0.15, 0.6)  # a 1's flag, of the height (its horizontal part is then squeezed)
ONE_FLAG_ANGLE = (15, 60)  # degrees below the horizontal

Stroke = np.ndarray  # (n, 2) points (x, y) in the unit box, y down


def ellipse(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> Stroke:
    """Points on an ellipse from angle `start` to `end`, in degrees (0 = right, 90 = down)."""
    angles = np.radians(np.linspace(start, end, max(6, int(abs(end - start) / 8))))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1)


def curve(*points: tuple[float, float]) -> Stroke:
    """A Bezier curve through its first and last control points (any number of them)."""
    control = np.asarray(points, np.float64)
    t = np.linspace(0.0, 1.0, 8 * len(points))[:, None, None]
    level = np.broadcast_to(control, (len(t), *control.shape))
    while level.shape[1] > 1:  # de Casteljau
        level = level[:, :-1] * (1 - t) + level[:, 1:] * t
    return level[:, 0]


def join(*parts: Stroke) -> Stroke:
    """One stroke drawn through the parts in turn."""
    return np.concatenate(parts)


def _zero(rng: np.random.Generator) -> list[Stroke]:
    start = rng.uniform(-130, -50)
    turn = 360 + rng.uniform(-15, 35)
    direction = rng.choice([-1, 1])
    return [ellipse(0.5, 0.5, 0.5, 0.5, start, start + direction * turn)]


def _one(rng: np.random.Generator) -> list[Stroke]:
    lean = rng.uniform(-0.08, 0.08)
    stem = curve((0.5 + lean, 0.0), (0.5 + rng.normal(0, 0.03), 0.5), (0.5 - lean, 1.0))
    kind = rng.choice(["stick", "flag", "flag and base", "flag and foot"],
                      p=[0.4, 0.3, 0.15, 0.15])
    if kind == "stick":
        return [stem]
    length = rng.uniform(*ONE_FLAG_LENGTH)
    angle = math.radians(rng.uniform(*ONE_FLAG_ANGLE))
    flag = np.array([[stem[0, 0] - length * math.cos(angle), length * math.sin(angle)]])
    if kind == "flag and foot":  # the stem's end turned up to the right
        x, reach = stem[-1, 0], rng.uniform(0.1, 0.25)
        foot = curve((x, 1.0), (x + reach / 2, 1.05), (x + reach, rng.uniform(0.85, 0.95)))
        return [join(flag, stem, foot)]
    strokes = [join(flag, stem)]
    if kind == "flag and base":
        half = rng.uniform(0.2, 0.35)
        strokes.append(np.array([[stem[-1, 0] - half, 1.0], [stem[-1, 0] + half, 1.0]]))
    return strokes


def _two(rng: np.random.Generator) -> list[Stroke]:
    top = rng.uniform(0.25, 0.4)
    arc = ellipse(0.5, top, 0.45, top, rng.uniform(170, 210), rng.uniform(345, 380))
    if rng.random() < 0.3:  # a small loop where the diagonal meets the base
        loop = ellipse(0.18, 0.9, 0.1, 0.08, 270, 630)
        return [join(arc, curve(tuple(arc[-1]), (0.5, 0.7), (0.12, 0.82)), loop,
                      np.array([[0.95, rng.uniform(0.9, 1.0)]]))]
    corner = (rng.uniform(0.0, 0.1), 1.0)
    return [join(arc, curve(tuple(arc[-1]), (0.55, 0.65), corner),
                  np.array([[rng.uniform(0.8, 1.0), rng.uniform(0.95, 1.05)]]))]


def _three(rng: np.random.Generator) -> list[Stroke]:
    middle = rng.uniform(0.4, 0.5)
    lower = ellipse(0.45, (1 + middle) / 2, 0.5, (1 - middle) / 2, 270, rng.uniform(490, 530))
    if rng.random() < 0.3:  # a flat top
        return [join(np.array([[0.05, 0.0], [0.9, 0.0]]), np.array([[0.4, middle]]), lower)]
    upper = ellipse(0.45, middle / 2, 0.42, middle / 2, rng.uniform(190, 220), 450)
    return [join(upper, lower)]


def _four(rng: np.random.Generator) -> list[Stroke]:
    bar, stem_x = rng.uniform(0.55, 0.72), rng.uniform(0.6, 0.75)
    if rng.random() < 0.5:  # open: the left stroke stops short of the stem
        left = np.array([[rng.uniform(0.1, 0.35), 0.0], [0.0, bar], [1.0, bar]])
        stem_top = rng.uniform(0.0, 0.25)
    else:  # closed: one stroke from the stem's top down to the left and across
        left = np.array([[stem_x, 0.0], [0.0, bar], [1.0, bar]])
        stem_top = 0.0
    return [left, np.array([[stem_x, stem_top], [stem_x + rng.normal(0, 0.03), 1.0]])]


def _five(rng: np.random.Generator) -> list[Stroke]:
    waist = rng.uniform(0.35, 0.5)
    bowl = ellipse(0.45, (1 + waist) / 2, 0.5, (1 - waist) / 2, rng.uniform(210, 240),
                    rng.uniform(480, 520))
    stem = np.array([[0.1, 0.0], [0.05, waist]])
    bar = np.array([[0.1, 0.0], [rng.uniform(0.8, 1.0), rng.normal(0, 0.03)]])
    if rng.random() < 0.5:  # bar drawn first, in the same stroke
        return [join(bar[::-1], stem, bowl)]
    return [join(stem, bowl), bar]


def _six(rng: np.random.Generator) -> list[Stroke]:
    loop_share = rng.uniform(0.35, 0.8)  # of the height, from small loops to large ones
    ry, rx = loop_share / 2, rng.uniform(0.4, 0.5)
    cy = 1.0 - ry
    hook = curve((rng.uniform(0.6, 0.95), rng.uniform(0.0, 0.08)),
                  (rng.uniform(0.1, 0.35), 0.0), (0.5 - rx, cy * rng.uniform(0.4, 0.8)),
                  (0.5 - rx, cy))
    loop = ellipse(0.5, cy, rx, ry, 180, rng.uniform(-200, -150))
    return [join(hook, loop)]


def _seven(rng: np.random.Generator) -> list[Stroke]:
    foot = (rng.uniform(0.2, 0.5), 1.0)
    bend = (rng.uniform(0.55, 0.8), 0.4)
    strokes = [join(np.array([[0.0, rng.uniform(0.0, 0.1)]]), curve((1.0, 0.0), bend, foot))]
    if rng.random() < 0.3:
        y = rng.uniform(0.45, 0.55)
        strokes.append(np.array([[0.3, y], [0.9, y]]))
    return strokes


def _eight(rng: np.random.Generator) -> list[Stroke]:
    waist, top_rx = rng.uniform(0.4, 0.5), rng.uniform(0.3, 0.45)
    if rng.random() < 0.5:  # two loops
        return [ellipse(0.5, waist / 2, top_rx, waist / 2, 90, 450),
                ellipse(0.5, (1 + waist) / 2, 0.5, (1 - waist) / 2, -90, 270)]
    theta = np.linspace(0.0, 2 * math.pi, 60) + rng.uniform(-0.2, 0.2)
    upper = np.cos(theta) > 0  # a figure eight crossing at the waist
    y = np.where(upper, waist * (1 - np.cos(theta)), waist + (1 - waist) * (-np.cos(theta)))
    x = 0.5 + np.where(upper, top_rx, 0.5) * np.sin(2 * theta)
    return [np.stack([x, y], 1)]


def _nine(rng: np.random.Generator) -> list[Stroke]:
    head = rng.uniform(0.25, 0.4)
    loop = ellipse(0.5, head, 0.5, head, rng.uniform(-20, 20), rng.uniform(-370, -330))
    start = loop[-1]
    if rng.random() < 0.5:
        tail = curve(tuple(start), (rng.uniform(0.8, 1.0), 0.7), (rng.uniform(0.4, 0.9), 1.0))
    else:
        tail = curve(tuple(start), (rng.uniform(0.9, 1.0), 0.9), (rng.uniform(0.0, 0.3), 1.0))
    return [join(loop, tail)]


SKELETONS: tuple[Callable[[np.random.Generator], list[Stroke]], ...] = (
    _zero, _one, _two, _three, _four, _five, _six, _seven, _eight, _nine)


def place(strokes: list[Stroke], rng: np.random.Generator) -> list[np.ndarray]:
    """Unit-box strokes -> canvas pixels: squeezed or widened, slanted, turned, wobbled."""
    width = rng.uniform(0.55, 0.85)
    slant, turn = rng.uniform(-0.3, 0.3), math.radians(rng.uniform(-10, 10))
    wobble_phase = rng.uniform(0, 2 * math.pi, 2)
    wobble = rng.uniform(0.0, 0.025)
    placed = []
    for stroke in strokes:
        x = (stroke[:, 0] - 0.5) * width
        y = stroke[:, 1] - 0.5
        x = x - slant * y + wobble * np.sin(3 * y * math.pi + wobble_phase[0])
        y = y + wobble * np.sin(3 * x * math.pi + wobble_phase[1])
        x, y = x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)
        placed.append(np.stack([CANVAS / 2 + DIGIT_HEIGHT * x, CANVAS / 2 + DIGIT_HEIGHT * y], 1))
    return placed


def paint(strokes: list[np.ndarray], pen: float) -> Image.Image:
    """White strokes of width `pen` on a black canvas, with round joints and ends."""
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(pen))
    for stroke in strokes:
        points = [tuple(p) for p in stroke]
        draw.line(points, fill=255, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round caps
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    return canvas


@functools.lru_cache(maxsize=2)
def pen_digits(per_digit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_digit` drawings of every digit: images uint8 (10 x per_digit, 784) and labels
    int32, in digit order; the same for the same arguments on every machine."""
    from ..preprocess import prepare_image

    rng = np.random.default_rng([seed, _STREAM])
    images, labels = [], []
    for digit, skeleton in enumerate(SKELETONS):
        for _ in range(per_digit):
            strokes = place(skeleton(rng), rng)
            pen = DIGIT_HEIGHT * rng.uniform(*PEN_SHARE)
            images.append(prepare_image(paint(strokes, pen)).pixels.reshape(IMAGE_PIXELS))
            labels.append(digit)
    return np.stack(images), np.asarray(labels, np.int32)
