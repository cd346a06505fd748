"""Handwriting that is not MNIST, to check how a model does on other people's digits.

Semeion (UCI): 1,593 digits by about 80 people, 16x16 binary, one digit per line as 256
pixels then a one-hot label. `render_page` turns such a digit into what a user would upload:
dark ink on a larger, light, slightly uneven page, off-centre, so it goes through exactly the
same `predict` path as a user's file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .errors import DataError
from .files import read_file

SEMEION_SIZE = 16


def load_semeion(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (N, 16, 16) with 1 = ink, labels uint8 (N,)) from semeion.data."""
    path = Path(path)
    try:  # (the real file is 440 kB)
        rows = np.loadtxt(io.BytesIO(read_file(path, 64 * 2**20)), dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as Semeion data: {exc}") from None
    if rows.shape[1] != SEMEION_SIZE**2 + 10:
        raise DataError(f"{path}: expected 266 numbers per line, found {rows.shape[1]}")
    one_hot = rows[:, SEMEION_SIZE**2:]
    if not np.all(one_hot.sum(axis=1) == 1):
        raise DataError(f"{path}: every label must be one-hot")
    images = rows[:, : SEMEION_SIZE**2].reshape(-1, SEMEION_SIZE, SEMEION_SIZE)
    return images, one_hot.argmax(axis=1).astype(np.uint8)


def render_page(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A 16x16 ink mask as a user's picture: smooth dark strokes 6-10x larger, on a light
    page 1.6-2.4x the digit's size, off-centre, with a lighting gradient and paper grain."""
    scale = int(rng.integers(6, 11))
    size = SEMEION_SIZE * scale
    mask = Image.fromarray((digit * 255).astype(np.uint8), "L")
    # Bilinear upscaling then a blur turns the 16x16 blocks into rounded pen strokes.
    mask = mask.resize((size, size), Image.Resampling.BILINEAR).filter(
        ImageFilter.GaussianBlur(scale / 3))
    ink = np.asarray(mask, dtype=np.float32) / 255.0
    page_h, page_w = (np.array([size, size]) * rng.uniform(1.6, 2.4, 2)).astype(int)
    top = int(rng.integers(0, page_h - size + 1))
    left = int(rng.integers(0, page_w - size + 1))
    paper = float(rng.uniform(200, 245))
    light = np.linspace(1.0, rng.uniform(0.8, 1.0), page_w)[None, :]  # a soft shadow
    page = np.full((page_h, page_w), paper, np.float32) * light
    page += rng.normal(0, 3, page.shape)  # paper grain and sensor noise
    pen = float(rng.uniform(10, 60))
    region = page[top: top + size, left: left + size]
    page[top: top + size, left: left + size] = region + (pen - region) * np.clip(ink * 1.5, 0, 1)
    return Image.fromarray(np.clip(page, 0, 255).astype(np.uint8), "L")


def write_pages(images: np.ndarray, labels: np.ndarray, folder: str | os.PathLike,
                seed: int = 0) -> list[Path]:
    """Render every digit to `folder`/NNNN-label-D.png; return the paths in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (digit, label) in enumerate(zip(images, labels)):
        path = folder / f"{i:04d}-label-{label}.png"
        render_page(digit, rng).save(path)
        paths.append(path)
    return paths


def prepare_pages(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Each page as uint8 (N, 28, 28) twice: squashed by naive_resize (the baseline) and
    through prepare_image (what `digitnet predict` does). A page with no ink found becomes
    an empty image, which the network then gets wrong, as it would count for a user."""
    from .errors import ImageError
    from .preprocess import naive_resize, open_image, prepare_image

    naive, prepared = [], []
    for path in paths:
        image = open_image(path)
        naive.append(naive_resize(image))
        try:
            prepared.append(prepare_image(image).pixels)
        except ImageError:
            prepared.append(np.zeros((28, 28), np.uint8))
    return np.stack(naive), np.stack(prepared)
