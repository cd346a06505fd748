"""Reading a number: several digits side by side, each found, prepared and read like one digit.

`read_number(predictor, image)` finds the digits (digitnet.segment), prepares each the way
`prepare_image` prepares a single digit, and reads them all with the Predictor. A group of
marks too wide for one digit may be digits that touch: it is cut where that makes two
digits the network is sure of, and is refused as touching digits where no cut does. The
number is given only when every digit is read with at least `min_confidence`: a doubtful
digit is never hidden inside an answer; the reading is refused and says which digit failed.
NumPy, OpenCV and Pillow only, like the rest of prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import ImageError
from .predict import Prediction, Predictor
from .preprocess import WORK_SIZE, digit_pixels, find_ink, strong_ink
from .segment import Group, segment, splits

# A number's ink map keeps the short side at WORK_SIZE, like a single digit's, for a number
# up to four times wider than tall; a longer one is reduced further.
NUMBER_SIZE = (4 * WORK_SIZE, WORK_SIZE)
# Each digit of a number must be read this sure (the calibrated top probability), on top of
# the model's own refusal threshold. Chosen on bench/multidigit.py's --seed 0 numbers whose
# digits do not touch, with the handwriting recipe: trained without non-digits, 0.7, 0.8, 0.9
# read 95.5 %, 91.0 %, 86.8 % whole (0.3 %, 0, 0 wrong without a refusal). Trained with them,
# confidences are lower; two such models (the same recipe, its code a few commits apart)
# read 93.5 % and 90.8 % whole at 0.5 (0.6 % and 1.6 % wrong), 91.9 % and 89.4 % at 0.6 (0.6 %
# and 0.4 % wrong), 91.2 % and 88.2 % at 0.7 (0.6 % and 0.4 %). A model without a threshold
# of its own (an imported one) is held to this alone.
MIN_CONFIDENCE = 0.6
# A group of marks wider than tall (Group.aspect) is parted into digits where that reads
# sure, and else read as one digit only where it is no wider than WIDE_DIGIT and reads
# WIDE_DIGIT_CONFIDENCE sure; one wider than MAYBE_WIDE is parted where it does not read as
# one digit. On --seed 0, no single digit's group was wider than 1.02, and half of the groups
# of touching digits were wider than 1.15; but a tenth of MNIST's digits are wider than tall
# (a 0, 2 or 5), which bench/multidigit.py's shapes never are. A parting is kept only where
# every digit it makes reads SPLIT_CONFIDENCE sure: parted digits are often mangled, and
# read wrong with high confidence. Refusing every group wider than tall as one digit read
# 61 % of 200 numbers of MNIST training digits side by side whole; WIDE_DIGIT 1.3 or 1.5 at
# 0.999, 84 % and 86 % (1.5 % wrong), at the cost of touching digits read wrong (18 % -> 27 %
# of those on --seed 0, with SPLIT_CONFIDENCE 0.999; the others unchanged). Then, on --seed
# 0's numbers with touching digits, SPLIT_CONFIDENCE 0.99, 0.995, 0.999 read 45 %, 36 %,
# 28 % whole and 25 %, 28 %, 27 % wrong without a refusal (96.1 %, 95.8 %, 95.5 % of the
# others whole, 0.3 % wrong), and on the MNIST numbers 0.99 and 0.999 read 84 % and 86 %
# whole, 3.5 % and 1.5 % wrong: over both, 0.999 read 9 numbers fewer and 3 fewer wrong.
SURELY_WIDE = 1.0
MAYBE_WIDE = 0.95
SPLIT_CONFIDENCE = 0.999
WIDE_DIGIT = 1.5
WIDE_DIGIT_CONFIDENCE = 0.999
SMALL = 0.3  # a group under this share of the tallest group's height is too small for a digit
MAX_DIGITS = 32  # more groups of marks than this are not read as one number
SPLIT_DEPTH = 2  # touching digits are cut at most this many times in a row (4 digits)
# At most this many single-digit reads for one image: the ways to part a wide group grow with
# its marks, and two cuts deep with their square, so a group of many small marks (a row of
# dashes) could otherwise ask for thousands. A number needs a few dozen at most; past the
# budget, no more partings are tried: wide groups are read whole or refused as touching digits.
MAX_READS = 400


@dataclass(frozen=True)
class DigitReading:
    """One digit of a number: `digit` (None where it is not read), its `prediction`, `box`
    (left, top, width, height) in the image's pixels, the 28x28 `pixels` the network saw,
    and `refused`: why it is not read (None when it is)."""

    digit: int | None
    prediction: Prediction | None
    box: tuple[int, int, int, int]
    pixels: np.ndarray
    refused: str | None = None

    @property
    def confidence(self) -> float:
        """The calibrated top probability (0 where the marks were not read at all)."""
        return self.prediction.confidence if self.prediction else 0.0


@dataclass(frozen=True)
class NumberReading:
    """`number`: the digits read, left to right, as a string, or None where the image is
    not read as a number (`refused` says why). `digits`: each one's reading."""

    number: str | None
    digits: tuple[DigitReading, ...]
    refused: str | None = None
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        answer = f"number {self.number}" if self.refused is None else f"refused ({self.refused})"
        read = ", ".join("?" if d.digit is None else f"{d.digit} {d.confidence:.0%}"
                         for d in self.digits)
        return f"NumberReading({answer}; digits: {read})"


def read_number(predictor: Predictor, image: Image.Image | np.ndarray, *,
                min_confidence: float = MIN_CONFIDENCE) -> NumberReading:
    """Read `image` (any mode and size, either polarity, digits side by side in one row) as
    a number. Raises ImageError when there is no ink at all."""
    ink, size = find_ink(image, NUMBER_SIZE)
    found = segment(strong_ink(ink))
    notes = (f"left out {found.specks} speck{'s' * (found.specks > 1)} far smaller than the "
             "digits",) if found.specks else ()
    if found.marks > MAX_DIGITS:
        return NumberReading(None, (), f"{found.marks} separate marks: more than a number "
                                       f"of {MAX_DIGITS} digits", notes)
    if not found.groups:
        raise ImageError("no ink found: the image is blank or has too little contrast")
    reader = _Reader(predictor, ink, size, found.slant, min_confidence,
                     np.logical_or.reduce([g.mask for g in found.groups]))
    tallest = max(g.box[3] for g in found.groups)
    digits: list[DigitReading] = []
    for group in found.groups:
        if group.box[3] < SMALL * tallest:
            digits.append(reader.refuse(group, "a mark far smaller than the digits beside "
                                               "it (a dot or a dash?)"))
        else:
            digits.extend(reader.read(group, SPLIT_DEPTH)[0])
    failed = [(i, d) for i, d in enumerate(digits) if d.refused]
    if failed:
        i, first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return NumberReading(None, tuple(digits), f"digit {i + 1} of {len(digits)}: "
                                                  f"{first.refused}{more}", notes)
    return NumberReading("".join(str(d.digit) for d in digits), tuple(digits), None, notes)


def scale_box(box: tuple[int, int, int, int], from_size: tuple[int, int],
              to_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """`box` (left, top, width, height) in an image of `from_size` (width, height), as the
    box of every pixel it touches in the same image at `to_size`, each axis scaled by its
    own factor and kept inside the image."""
    (left, top, w, h), (from_w, from_h), (to_w, to_h) = box, from_size, to_size
    x0, y0 = math.floor(left * to_w / from_w), math.floor(top * to_h / from_h)
    x1 = min(to_w, math.ceil((left + w) * to_w / from_w))
    y1 = min(to_h, math.ceil((top + h) * to_h / from_h))
    return x0, y0, x1 - x0, y1 - y0


class _Reader:
    """Reads groups of marks of one image as digits, cutting those that hold several."""

    def __init__(self, predictor: Predictor, ink: np.ndarray, size: tuple[int, int],
                 slant: float, min_confidence: float, all_ink: np.ndarray):
        self.predictor, self.ink, self.slant = predictor, ink, slant
        self.min_confidence, self.all_ink = min_confidence, all_ink
        self.size = size  # the image's (width, height)
        self.reads_left = MAX_READS

    def _box(self, group: Group) -> tuple[int, int, int, int]:
        """The group's box in the image's pixels."""
        rows, cols = self.ink.shape
        return scale_box(group.box, (cols, rows), self.size)

    def refuse(self, group: Group, reason: str) -> DigitReading:
        return DigitReading(None, None, self._box(group), self._pixels(group), reason)

    def _pixels(self, group: Group) -> np.ndarray:
        return digit_pixels(self.ink, group.mask, self.all_ink & ~group.mask)

    def one_digit(self, group: Group) -> DigitReading:
        """`group` read as a single digit, refused unless min_confidence sure."""
        pixels = self._pixels(group)
        self.reads_left -= 1
        [p] = self.predictor.predict(pixels[None])
        reason = p.refused
        if reason is None and p.confidence < self.min_confidence:
            reason = (f"unsure: the network is only {p.confidence:.0%} sure it is a "
                      f"{p.digit}, and a digit of a number needs {self.min_confidence:.0%}")
        return DigitReading(None if reason else p.digit, p, self._box(group), pixels, reason)

    def read(self, group: Group, depth: int) -> tuple[list[DigitReading], float]:
        """The digits in `group` and the least confidence among them (0 where one is not
        read): the group whole, or, where it is too wide for that, cut in two (each side
        read the same way, up to `depth` cuts deep)."""
        whole = self.one_digit(group)
        read = [whole], 0.0 if whole.refused else whole.confidence
        if group.aspect <= MAYBE_WIDE or depth == 0 or (
                group.aspect <= SURELY_WIDE and whole.refused is None):
            return read
        best: tuple[list[DigitReading], float] = ([], 0.0)
        for left, right in splits(group, self.slant):
            if self.reads_left <= 0:
                break
            (a, a_score), (b, b_score) = self.read(left, depth - 1), self.read(right, depth - 1)
            if min(a_score, b_score) > best[1]:
                best = (a + b, min(a_score, b_score))
        if best[1] >= SPLIT_CONFIDENCE:
            return best
        if group.aspect > SURELY_WIDE and not (group.aspect <= WIDE_DIGIT
                                               and read[1] >= WIDE_DIGIT_CONFIDENCE):
            return [self.refuse(group, "touching digits that could not be split (or marks "
                                       "that are not digits)")], 0.0
        return read
