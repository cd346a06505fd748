"""Where the digits are in a picture of a number: its marks of ink, grouped into digits.

A mark is a connected piece of strong ink. People lift the pen inside a digit (a 5's bar, a
4 or 7 drawn in two strokes), so marks that lie over one another, seen along the writing's
slant, are one digit; marks far smaller than the writing are specks and are left out. What
stays are groups of marks from left to right, one digit each where the writer left a gap.
Digits that touch, or come so close that their columns overlap, make one group too wide for
a digit: `splits` proposes ways to part it, and the reader (digitnet.numbers) keeps one
only where both sides read as digits.

NumPy and OpenCV only; the thresholds were chosen on bench/multidigit.py's `--seed 0` numbers
(400, with the handwriting recipe's model): of those whose digits do not touch, SPECK 0.1,
0.15, 0.2 read 95.2 %, 95.5 %, 95.5 % whole; OVERLAP 0.2, 0.35, 0.5, 0.7 read 95.5 %, 95.5 %,
95.5 %, 95.8 % (digits it merges are parted again between their marks; 0.35 keeps more of a
broken digit together); CUT_MARGIN 0.1, 0.2, 0.3 read 21 %, 28 %, 18 % of those with
touching digits whole (95.2 %, 95.5 %, 94.9 % of the others).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPECK = 0.15  # a mark whose height and width are under this share of the tallest mark's height
OVERLAP = 0.35  # marks whose (sheared) columns overlap by this share of the narrower one: one digit
SLANTS = np.linspace(-0.6, 0.6, 25)  # shears tried (x shift per pixel up), upright in the middle
CUT_MARGIN = 0.2  # a cut leaves at least this share of the group's height on either side
MAX_CUTS = 4  # cuts tried per group, the emptiest columns first
MAX_GROUPS = 64  # more groups of marks than this are not digits side by side (noise, text)
# Single-digit reading refuses an image as several digits only where that is clear: groups
# at least this share of the tallest one's height, apart by this share of it. Chosen on
# --seed 0 numbers and MNIST's test digits: 98 % of the numbers whose digits do not touch
# are refused, and 12 of MNIST's 10,000 test digits (most with a scanner's bar beside them);
# at CLEAR_HEIGHT 0.5 broken 7s, 5s and 3s were refused too.
CLEAR_HEIGHT = 0.6
CLEAR_GAP = 0.05


@dataclass(frozen=True)
class Group:
    """One digit's marks: `mask`, bool (H, W) over the whole image, and its `box` (left, top,
    width, height) in the image's pixels; `span` is its (first, last) sheared column."""

    mask: np.ndarray
    box: tuple[int, int, int, int]
    span: tuple[float, float]

    @property
    def aspect(self) -> float:
        """Width over height, upright or along the writing's slant, whichever is narrower:
        above 1, seldom one digit."""
        return min(self.box[2], self.span[1] - self.span[0] + 1) / self.box[3]


@dataclass(frozen=True)
class Segmentation:
    """The groups of marks from left to right, the writing's `slant` (x shift per pixel up),
    how many specks were left out and how many groups there were (`marks`; no more than
    MAX_GROUPS are made)."""

    groups: tuple[Group, ...]
    slant: float
    specks: int
    marks: int = 0


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return (int(cols.min()), int(rows.min()), int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1)


def sheared_columns(mask: np.ndarray, slant: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, sheared columns) of the pixels set in `mask`: a column moved by `slant` per
    pixel up, so that strokes written at that slant stand upright."""
    rows, cols = np.nonzero(mask)
    return rows, cols + slant * (rows - mask.shape[0] / 2)


def writing_slant(mask: np.ndarray) -> float:
    """The shear under which the ink stands in the fewest columns (the smallest such shear
    where several tie): the slant the digits were written at, their strokes upright and the
    gaps between them widest."""
    rows, cols = np.nonzero(mask)
    best, fewest = 0.0, np.inf
    for slant in sorted(SLANTS, key=abs):
        x = np.round(cols + slant * (rows - mask.shape[0] / 2)).astype(np.int64)
        occupied = np.count_nonzero(np.bincount(x - x.min()))
        if occupied < fewest:
            best, fewest = float(slant), occupied
    return best


def segment(strong: np.ndarray) -> Segmentation:
    """The digits' groups of marks in `strong`, a bool (H, W) mask of strong ink. More than
    MAX_GROUPS groups (noise, a page of text) give no groups, only their count in `marks`."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(strong.astype(np.uint8),
                                                               connectivity=8)
    if count == 1:
        return Segmentation((), 0.0, 0)
    heights, widths = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH]
    tallest = heights.max()
    kept = np.flatnonzero((heights >= SPECK * tallest) | (widths >= SPECK * tallest)) + 1
    specks = int(count - 1 - len(kept))
    ink = np.isin(labels, kept)
    slant = writing_slant(ink)
    # each kept mark's first and last sheared column, all marks at once
    rows, x = sheared_columns(ink, slant)
    marks = labels[ink]
    order = np.argsort(marks, kind="stable")
    starts = np.searchsorted(marks[order], kept)
    spans = [[float(a), float(b), [int(label)]] for a, b, label in zip(
        np.minimum.reduceat(x[order], starts), np.maximum.reduceat(x[order], starts), kept)]
    merged = _merge_overlapping(spans)
    if len(merged) > MAX_GROUPS:
        return Segmentation((), slant, specks, len(merged))
    groups = []
    for first, last, members in merged:
        mask = np.isin(labels, members)
        groups.append(Group(mask, _box(mask), (first, last)))
    return Segmentation(tuple(groups), slant, specks, len(merged))


def _merge_overlapping(spans: list[list]) -> list[list]:
    """Spans [first, last, labels], merged wherever two overlap by OVERLAP of the narrower
    one, from left to right (by centre)."""
    merged: list[list] = []
    for span in sorted(spans, key=lambda s: s[0] + s[1]):
        merged.append(span)
        while len(merged) > 1:
            a, b = merged[-2], merged[-1]
            overlap = min(a[1], b[1]) - max(a[0], b[0]) + 1
            narrower = min(a[1] - a[0], b[1] - b[0]) + 1
            if overlap < OVERLAP * narrower:
                break
            merged[-2:] = [[min(a[0], b[0]), max(a[1], b[1]), a[2] + b[2]]]
    return merged


def _part(mask: np.ndarray, slant: float) -> Group:
    _, x = sheared_columns(mask, slant)
    return Group(mask, _box(mask), (float(x.min()), float(x.max())))


def splits(group: Group, slant: float) -> list[tuple[Group, Group]]:
    """Ways to part `group` into two digits, left and right: first between its marks (digits
    close enough for their columns to overlap, each whole), then at cuts()."""
    import cv2

    count, labels = cv2.connectedComponents(group.mask.astype(np.uint8), connectivity=8)
    rows, x = sheared_columns(group.mask, slant)
    parts = []
    if count > 2:  # several marks: in order of their sheared centres, each prefix and the rest
        marks = labels[rows, np.nonzero(group.mask)[1]]
        centres = (np.bincount(marks, x, minlength=count)[1:]
                   / np.bincount(marks, minlength=count)[1:])
        order = np.argsort(centres) + 1
        for i in range(1, count - 1):
            left = np.isin(labels, order[:i])
            parts.append((_part(left, slant), _part(group.mask & ~left, slant)))
    cols = np.nonzero(group.mask)[1]
    for cut in cuts(group, slant):
        left = x < cut
        if left.all() or not left.any():
            continue
        halves = []
        for side in (left, ~left):
            mask = np.zeros_like(group.mask)
            mask[rows[side], cols[side]] = True
            halves.append(_part(mask, slant))
        parts.append((halves[0], halves[1]))
    return parts


def cuts(group: Group, slant: float) -> list[float]:
    """Sheared columns where `group` may be cut into two digits: the columns with the least
    ink (local minima of the column sums), at least CUT_MARGIN of its height from either
    end, emptiest first; at most MAX_CUTS."""
    _, x = sheared_columns(group.mask, slant)
    first = int(np.floor(x.min()))
    ink = np.bincount(np.round(x).astype(np.int64) - first).astype(np.float64)
    margin = max(1, int(CUT_MARGIN * group.box[3]))
    if len(ink) <= 2 * margin + 2:
        return []
    inside = np.arange(margin, len(ink) - margin)
    padded = np.pad(ink, 1, constant_values=np.inf)
    minima = [i for i in inside if padded[i + 1] <= padded[i] and padded[i + 1] <= padded[i + 2]]
    minima.sort(key=lambda i: ink[i])
    chosen: list[int] = []
    for i in minima:  # one cut per valley: minima closer than the margin are the same valley
        if all(abs(i - j) >= margin for j in chosen):
            chosen.append(i)
        if len(chosen) == MAX_CUTS:
            break
    return [first + i + 0.5 for i in chosen]


def several_digits(strong: np.ndarray) -> int:
    """How many digits `strong` (bool (H, W), strong ink) clearly holds side by side: groups
    of marks at least CLEAR_HEIGHT as tall as the tallest, with a gap of CLEAR_GAP of its
    height between them. 1 where that is not clear (a digit in broken strokes stays one)."""
    groups = segment(strong).groups
    if len(groups) < 2:
        return len(groups)
    tallest = max(g.box[3] for g in groups)
    tall = [g for g in groups if g.box[3] >= CLEAR_HEIGHT * tallest]
    gaps = [b.span[0] - a.span[1] for a, b in zip(tall, tall[1:])]
    return 1 + sum(gap >= CLEAR_GAP * tallest for gap in gaps)
