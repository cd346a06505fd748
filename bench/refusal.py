"""How often each recipe refuses what is not a digit, and how often it refuses digits.

Non-digits, drawn here as a user would photograph or upload them (dark ink on white, read
through `prepare_image`, as `digitnet predict` reads a file):
- letters printed in the typefaces matplotlib ships (DejaVu Sans, Serif and Mono, upright,
  bold and oblique), without those people write like digits (O o I l i j S s Z z B b G g q D);
  training's non-digits (--not-digits) never use DejaVu;
- letters written on the drawing page (bench/drawing.py's shapes, painted as the page paints);
- scribbles: random curves of 3 to 8 points in several pen widths;
- shapes: triangles, squares, stars, crosses, arrows and hearts (no circles: a 0);
- noise: grey noise and scattered specks;
- numbers: two to four printed digits side by side (one image should not read as one digit).
Digits: MNIST's test set, and Semeion's handwriting where $DIGITNET_EXTERNAL_DIR has it.

Refusal is chosen on the validation split after training (calibration.refusal_threshold).
The images of `--images-seed 2026` were looked at when the `handwriting` recipe's
non-digits were chosen (a grey-noise kind was added to them after this benchmark showed
noise refused less): they are for choosing now. The numbers reported are for 2027, images
no choice saw. The issue's targets are at
least 90 % of non-digits refused, at most 1 % of MNIST's test set, and an accuracy on the
accepted digits no lower than today's on all of them.

Usage: DIGITNET_DATA_DIR=../shared/mnist python bench/refusal.py [--recipes tutorial,cnn]
       [--seed 0] [--per-kind 200] [--images-seed 2027] [--runs RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from harness import trained_run

CANVAS = 112  # pixels a side: a small photo of one character
DIGIT_LIKE = set("OoIlijSsZzBbGgqD")
LETTERS = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in DIGIT_LIKE]
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
         "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf")


def _fonts(size: int) -> list[ImageFont.FreeTypeFont]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [ImageFont.truetype(str(folder / name), size) for name in FONTS]


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (CANVAS, CANVAS), 255)
    return image, ImageDraw.Draw(image)


def _text(rng, text: str) -> Image.Image:
    image, draw = _canvas()
    size = int(rng.integers(56, 84)) if len(text) == 1 else int(rng.integers(30, 44))
    font = _fonts(size)[int(rng.integers(len(FONTS)))]
    draw.text((CANVAS / 2, CANVAS / 2), text, fill=0, font=font, anchor="mm")
    return image.rotate(float(rng.uniform(-12, 12)), fillcolor=255)


def letter(rng) -> Image.Image:
    return _text(rng, LETTERS[int(rng.integers(len(LETTERS)))])


def written_letter(rng) -> Image.Image:
    """A letter written on the drawing page's pad with the mouse, painted as the page paints
    it (bench/drawing.py's letters and painting; bench/drawing.py --non-digits reads the same
    shapes in the real browser)."""
    from drawing import NOT_A_DIGIT, drawings, rasterise

    letters = [item for item in drawings(1, int(rng.integers(2**31)), non_digits=True)
               if item["digit"] == NOT_A_DIGIT and len(item["style"]) == 1]
    return Image.fromarray(rasterise(letters[int(rng.integers(len(letters)))]))


def number(rng) -> Image.Image:
    return _text(rng, "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(2, 5)))))


def scribble(rng) -> Image.Image:
    image, draw = _canvas()
    points = rng.uniform(15, CANVAS - 15, (int(rng.integers(3, 9)), 2))
    t = np.linspace(0, 1, 60)[:, None]
    path = []
    for a, b, c in zip(points, points[1:], points[2:]):  # smooth quadratic pieces
        start, end = (a + b) / 2, (b + c) / 2
        path += list(map(tuple, (1 - t) ** 2 * start + 2 * (1 - t) * t * b + t ** 2 * end))
    draw.line(path or list(map(tuple, points)), fill=0, width=int(rng.integers(3, 11)),
              joint="curve")
    return image


def shape(rng) -> Image.Image:
    image, draw = _canvas()
    c, r = CANVAS / 2, float(rng.uniform(25, 45))
    kind = int(rng.integers(6))
    width = int(rng.integers(3, 9))
    angles = np.linspace(0, 2 * np.pi, 4 if kind == 0 else 5 if kind == 1 else 11)[:-1]
    if kind in (0, 1):  # triangle, square
        sides = 3 if kind == 0 else 4
        corners = [(c + r * np.cos(a), c + r * np.sin(a))
                   for a in np.linspace(0, 2 * np.pi, sides + 1) + rng.uniform(0, np.pi)]
        draw.line(corners, fill=0, width=width)
    elif kind == 2:  # star
        radii = np.where(np.arange(len(angles)) % 2, r * 0.45, r)
        corners = [(c + q * np.cos(a), c + q * np.sin(a)) for q, a in zip(radii, angles)]
        draw.line([*corners, corners[0]], fill=0, width=width)
    elif kind == 3:  # cross
        draw.line([(c - r, c - r), (c + r, c + r)], fill=0, width=width)
        draw.line([(c - r, c + r), (c + r, c - r)], fill=0, width=width)
    elif kind == 4:  # arrow
        draw.line([(c - r, c), (c + r, c)], fill=0, width=width)
        draw.line([(c + r * 0.5, c - r * 0.5), (c + r, c), (c + r * 0.5, c + r * 0.5)], fill=0,
                  width=width)
    else:  # heart
        t = np.linspace(0, 2 * np.pi, 80)
        x, y = 16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t)
                                      - np.cos(4 * t))
        draw.line(list(zip(c + x * r / 17, c + y * r / 17)), fill=0, width=width)
    return image


def noise(rng) -> Image.Image:
    if rng.random() < 0.5:
        return Image.fromarray(rng.integers(0, 256, (CANVAS, CANVAS)).astype(np.uint8))
    specks = np.full((CANVAS, CANVAS), 255, np.uint8)
    specks[rng.random((CANVAS, CANVAS)) < 0.02] = 0
    return Image.fromarray(specks)


KINDS = {"letters": letter, "written letters": written_letter, "scribbles": scribble,
         "shapes": shape, "noise": noise, "numbers": number}


def non_digits(per_kind: int, seed: int) -> dict[str, np.ndarray]:
    """Per kind, uint8 (per_kind, 28, 28) images as prepare_image leaves them."""
    from digitnet.errors import ImageError
    from digitnet.preprocess import prepare_image

    rng = np.random.default_rng(seed)
    out = {}
    for name, draw in KINDS.items():
        pixels = []
        while len(pixels) < per_kind:
            try:
                pixels.append(prepare_image(draw(rng)).pixels)
            except ImageError:  # nothing left to read (blank after cleaning): not counted
                continue
        out[name] = np.stack(pixels)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"))
    parser.add_argument("--recipes", default="tutorial,cnn,handwriting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--images-seed", type=int, default=2027,
                        help="draws the non-digits (2026 chose; 2027 reports: see above)")
    parser.add_argument("--runs", type=Path, nargs="*", default=[])
    parser.add_argument("--save", type=Path, help="write a PNG of some non-digits as read")
    args = parser.parse_args()
    if args.data_dir is None:
        sys.exit("give --data-dir or set DIGITNET_DATA_DIR")
    from digitnet.data import load_mnist_test
    from digitnet.predict import Predictor

    negatives = non_digits(args.per_kind, args.images_seed)
    if args.save:
        row = np.concatenate([np.concatenate(list(images[:12]), axis=1)
                              for images in negatives.values()])
        Image.fromarray(row).resize((row.shape[1] * 3, row.shape[0] * 3)).save(args.save)
    test_images, test_labels = load_mnist_test(args.data_dir, download=False)
    semeion = _semeion()
    runs = args.runs or [trained_run(name, args.seed, args.data_dir)
                         for name in args.recipes.split(",")]
    header = ["run", "threshold", *KINDS, "non-digits", "MNIST refused", "accepted acc.",
              "all acc."] + (["Semeion refused"] if semeion is not None else [])
    print("  ".join(f"{h:>14}" for h in header))
    for run in runs:
        predictor = Predictor.load(run)
        threshold = predictor.refuse_below
        refused = {name: _refused(predictor, images) for name, images in negatives.items()}
        letters_to_noise = [refused[k] for k in KINDS if k != "numbers"]
        test_refused = _refused(predictor, test_images)
        confidence = predictor.probabilities(test_images)
        right = confidence.argmax(1) == test_labels
        accepted = confidence.max(1) >= (threshold or 0)
        row = [run.name, "none" if threshold is None else f"{threshold:.3f}",
               *(f"{refused[k]:.1%}" for k in KINDS), f"{np.mean(letters_to_noise):.1%}",
               f"{test_refused:.2%}", f"{right[accepted].mean():.2%}", f"{right.mean():.2%}"]
        if semeion is not None:
            row.append(f"{_refused(predictor, semeion):.1%}")
        print("  ".join(f"{c:>14}" for c in row))
    print("non-digits: the mean over printed and written letters, scribbles, shapes and noise "
          "(numbers apart); "
          f"{args.per_kind} images of each kind")


def _refused(predictor, images: np.ndarray) -> float:
    return float(np.mean([p.digit is None for p in predictor.predict(images)]))


def _semeion() -> np.ndarray | None:
    """Semeion's digits rendered as pages a user would supply and read through
    prepare_image (as bench/handwriting.py does), or None where it is not there."""
    import tempfile

    folder = os.environ.get("DIGITNET_EXTERNAL_DIR")
    if not folder or not (Path(folder) / "semeion.data").exists():
        return None
    from digitnet.external import load_semeion, prepare_pages, write_pages

    digits, labels = load_semeion(Path(folder) / "semeion.data")
    with tempfile.TemporaryDirectory() as tmp:
        _, prepared = prepare_pages(write_pages(digits, labels, tmp, seed=0))
    return prepared


if __name__ == "__main__":
    main()
