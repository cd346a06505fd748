"""A user's image -> a 28x28 uint8 image prepared the way MNIST's digits were.

MNIST digits are light ink on black, size-normalised to fit a 20x20 box (aspect ratio kept)
and centred by centre of mass in a 28x28 field. User images are usually the opposite: dark
ink on paper, large, off-centre, unevenly lit. `prepare_image` undoes those differences step
by step; each step is a small function so it can be tested and reasoned about alone.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .files import MAX_IMAGE_BYTES, read_file
from .geometry import SIDE
from .segment import several_digits

MAX_PIXELS = 40_000_000  # refuse larger images (decompression bombs) before decoding them
WORK_SIZE = 256  # longest side the image is reduced to before analysis, in pixels
REDUCED_SIDE = 2 * WORK_SIZE  # open_image(reduce=True) keeps at least this longest side
_STRIP_PIXELS = 1 << 20  # open_image(reduce=True) reduces this many pixels at a time
# The formats digitnet reads (IMAGE_SUFFIXES names their files). Pillow tries no other
# plugin on a file or an upload: its EPS plugin, for one, would run Ghostscript.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
# The colour modes prepare_image can turn into grey. Pillow decodes a few it cannot convert
# (LAB and HSV TIFFs): those are refused as soon as the header is read.
# Pillow decodes a WebP image through three copies of it (libwebp's canvas, the bytes it
# hands over, the image): it may have a third of the pixels allowed to other formats.
_DECODED_COPIES = {"WEBP": 3}
_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "I;16",
          "I;16B", "I;16L", "I;16N", "F"}
FIT_BOX = 20  # MNIST's digit box inside the 28x28 field
FIELD = SIDE
_MIN_CONTRAST = 0.08  # ink must differ from paper by this fraction of full scale
_MIN_INK_PIXELS = 30  # fewer pixels of ink than this are no digit (the image is blank)


@dataclass(frozen=True)
class PreparedImage:
    """`pixels`: uint8 (28, 28), 0 = background, 255 = ink. `notes`: why the result may not
    be a clean single digit (empty when it looks like one). `refused`: why the image is not
    read as one digit at all (several digits side by side), else None."""

    pixels: np.ndarray
    notes: tuple[str, ...] = ()
    refused: str | None = None


def open_image(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS, *,
               reduce: bool = False) -> Image.Image:
    """Decode an image file or bytes with Pillow; ImageError if it is not a usable image.
    The messages do not repeat the file name: the caller knows which file it passed.

    Only the FORMATS digitnet reads are tried. `max_pixels` is checked from the header, before
    decoding. With `reduce`, the image is decoded at a smaller size whose longest side is
    still at least REDUCED_SIDE (twice what prepare_image works at, so its result hardly
    changes): a JPEG by its own DCT scaling (Pillow's draft, 1/2 to 1/8 per side, which
    saves the decoding time too), any other format by Pillow's reduce right after decoding.
    Then neither the image nor prepare_image's copies of it are ever large (the web app)."""
    try:
        # only a regular file, read whole and bounded: a FIFO or /dev/zero is refused
        fh = io.BytesIO(source if isinstance(source, bytes)
                        else read_file(source, MAX_IMAGE_BYTES))
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("a folder, not an image") from None
    except OSError as exc:
        raise ImageError(f"cannot read the file: {exc.strerror}") from None
    with fh, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(fh, formats=FORMATS)
            copies = _DECODED_COPIES.get(image.format, 1)
            if image.width * image.height * copies > max_pixels:
                raise ImageError(f"the image is {image.width}x{image.height} pixels, more "
                                 f"than the {max_pixels // copies:,} allowed"
                                 + (f" for {image.format}" if copies > 1 else ""))
            if image.mode not in _MODES:
                raise ImageError(f"an image in {image.mode} colour, which digitnet cannot "
                                 "read: save it as RGB or greyscale")
            factor = max(image.size) // REDUCED_SIDE if reduce else 1
            if factor > 1:  # a no-op for formats other than JPEG
                image.draft(image.mode, (math.ceil(image.width / factor),
                                         math.ceil(image.height / factor)))
            image.load()
            if reduce:
                image = _reduced(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError("the image is too large to decode safely") from None
        except UnidentifiedImageError:
            raise ImageError("not an image Pillow can read as PNG, JPEG, GIF, BMP, TIFF or "
                             "WebP") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"a damaged or truncated image ({exc})") from None
    return image


def _reduced(image: Image.Image) -> Image.Image:
    """`image` box-averaged by a whole factor to a longest side of at least REDUCED_SIDE, in
    strips: Pillow's reduce of a whole RGBA image would first make a premultiplied copy of
    it, as large as the image. Palette and 1-bit images are averaged as colours and grey,
    never as palette indices. The EXIF orientation goes along (prepare_image applies it)."""
    factor = max(image.size) // REDUCED_SIDE
    if factor < 2:
        return image
    mode = {"P": "RGBA", "PA": "RGBA", "1": "L"}.get(image.mode, image.mode)
    mode = "I" if mode.startswith("I;16") else mode  # Pillow cannot reduce 16-bit modes
    reduced = Image.new(mode, (math.ceil(image.width / factor), math.ceil(image.height / factor)))
    rows = factor * max(1, _STRIP_PIXELS // (image.width * factor))  # whole blocks a strip
    for top in range(0, image.height, rows):
        strip = image.crop((0, top, image.width, min(top + rows, image.height)))
        strip = strip.convert(mode) if strip.mode != mode else strip
        reduced.paste(strip.reduce(factor), (0, top // factor))
    reduced.info = {**image.info, "exif": image.getexif().tobytes()}
    return reduced


def prepare_image(image: Image.Image | np.ndarray) -> PreparedImage:
    """The MNIST-like 28x28 version of `image` (any mode and size, either polarity).

    Raises ImageError when no ink can be told apart from the background."""
    ink, _ = find_ink(image)
    mask, notes, refused = _digit_mask(ink)
    return PreparedImage(digit_pixels(ink, mask), notes, refused)


def find_ink(image: Image.Image | np.ndarray, max_size: tuple[int, int] = (WORK_SIZE, WORK_SIZE)
             ) -> tuple[np.ndarray, tuple[int, int]]:
    """(ink, size): the ink strength of `image`, float32 (H, W) in [0, 1] (0 = background),
    reduced to fit `max_size` (width, height), and the (width, height) of the image it was
    reduced from (as shown, after its EXIF orientation). Raises ImageError when there is no
    ink."""
    grey, size = _to_grey(image, max_size)
    return _ink_map(grey), size


def strong_ink(ink: np.ndarray) -> np.ndarray:
    """bool (H, W): the pixels of `ink` that are surely ink (Otsu's threshold, at least 0.25)."""
    return ink > max(_otsu_threshold(ink), 0.25)


def digit_pixels(ink: np.ndarray, mask: np.ndarray, others: np.ndarray | None = None
                 ) -> np.ndarray:
    """uint8 (28, 28): the digit whose strong ink is `mask` (bool, the shape of `ink`),
    cropped, scaled and centred like MNIST. Its faint anti-aliased edges come along (two
    steps of growing into the 4 neighbours), except where they are in `others`' mask."""
    import cv2

    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    grown = cv2.dilate(mask.astype(np.uint8), cross, iterations=2,
                       borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool) & (ink > 0.05)
    if others is not None:
        grown &= ~others
    rows, cols = np.nonzero(grown)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    return _fit_and_centre(ink[box] * grown[box])


def naive_resize(image: Image.Image) -> np.ndarray:
    """What a quick script does: grey, squash to 28x28, invert if the paper is light.
    Kept as the baseline the preprocessing is measured against."""
    grey = np.asarray(ImageOps.grayscale(_flatten_alpha(image)).resize((FIELD, FIELD)),
                      dtype=np.float32) / 255.0
    if np.median(grey) > 0.5:
        grey = 1.0 - grey
    return np.round(grey * 255).astype(np.uint8)


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparent images onto a background that contrasts with their ink."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "PA"):
        return image
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    luminance = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
    opaque = alpha > 0.5
    ink_is_dark = opaque.any() and luminance[opaque].mean() < 0.5
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if ink_is_dark
                           else (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_grey(image: Image.Image | np.ndarray, max_size: tuple[int, int]
             ) -> tuple[np.ndarray, tuple[int, int]]:
    """float32 (H, W) in [0, 1], reduced to fit `max_size`, and the (width, height) it had
    before."""
    if isinstance(image, np.ndarray):
        array = np.asarray(image, dtype=np.float32)
        if array.ndim != 2 or min(array.shape) < 1:
            raise ImageError(f"expected a 2-D grey image array, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ImageError("the image array holds NaN or infinite values")
        if array.max(initial=0) > 1.0:
            array = array / 255.0
        image = Image.fromarray(np.clip(array * 255, 0, 255).astype(np.uint8), "L")
    image = ImageOps.grayscale(_flatten_alpha(image))
    size = image.size
    if image.width > max_size[0] or image.height > max_size[1]:
        image.thumbnail(max_size, Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.float32) / 255.0, size


def _ink_map(grey: np.ndarray) -> np.ndarray:
    """Ink strength in [0, 1] (0 = background), whatever the polarity, with uneven light
    removed. On paper, light multiplies: ink = 1 - pixel / local paper brightness, where the
    paper is estimated by a rank filter wider than any stroke (it erases the ink) and a blur.
    Light ink on a dark ground (screens, MNIST itself) is the difference from the ground."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    on_paper = np.median(border) > 0.5
    if min(grey.shape) >= 32:
        ground = _lighting_field(grey, on_paper)
    else:
        ground = np.float32(np.median(border))
    if on_paper:
        ink = 1.0 - grey / np.maximum(ground, 1e-3)
    else:
        ink = grey - ground
    ink = np.clip(ink, 0.0, 1.0)
    peak = np.percentile(ink, 99.5)
    if peak < _MIN_CONTRAST:
        # Under 0.5 % of the pixels are ink: a thin stroke on a large pad (a 1 on the page's
        # wide pad) rather than a blank image, where enough of them stand out.
        marked = ink[ink >= _MIN_CONTRAST]
        if marked.size < _MIN_INK_PIXELS:
            raise ImageError("no ink found: the image is blank or has too little contrast")
        peak = np.percentile(marked, 90)
    return np.clip(ink / peak, 0.0, 1.0)


def _lighting_field(grey: np.ndarray, on_paper: bool) -> np.ndarray:
    """The background's brightness at every pixel. A rank filter wider than any stroke
    erases the ink; a blur smooths what is left. Light varies slowly, so this is done at a
    quarter of the resolution and scaled back up (4x less work, same field)."""
    import cv2

    height, width = grey.shape
    factor = max(1, min(height, width) // 64)
    small = Image.fromarray(grey, "F").reduce(factor) if factor > 1 else Image.fromarray(grey)
    size = max(3, min(small.size) // 8)
    rank = cv2.dilate if on_paper else cv2.erode  # the brightest / darkest in a size x size
    field = rank(np.asarray(small), np.ones((size, size), np.uint8),
                 borderType=cv2.BORDER_REPLICATE)
    sigma = size / 2
    radius = int(4 * sigma + 0.5)  # the Gaussian cut off at 4 sigma
    field = cv2.GaussianBlur(field, (2 * radius + 1, 2 * radius + 1), sigma,
                             borderType=cv2.BORDER_REPLICATE)
    full = Image.fromarray(field.astype(np.float32), "F").resize((width, height),
                                                                  Image.Resampling.BILINEAR)
    return np.asarray(full)


def _otsu_threshold(values: np.ndarray) -> float:
    """The threshold in [0, 1] that best separates two classes of values (Otsu's method)."""
    hist, edges = np.histogram(values, bins=64, range=(0.0, 1.0))
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * edges[:-1])
    total_weight, total_mean = weight[-1], mean[-1]
    between = np.zeros_like(edges[:-1])
    valid = (weight > 0) & (weight < total_weight)
    w0, m0 = weight[valid], mean[valid] / weight[valid]
    m1 = (total_mean - mean[valid]) / (total_weight - w0)
    between[valid] = w0 * (total_weight - w0) * (m0 - m1) ** 2
    return float(edges[1:][np.argmax(between)])


def _digit_mask(ink: np.ndarray) -> tuple[np.ndarray, tuple[str, ...], str | None]:
    """The strong ink that belongs to the digit (specks far smaller than it left out), notes
    on why it may not be one digit, and why it is refused as one (several digits)."""
    import cv2

    strong = strong_ink(ink)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(strong.astype(np.uint8),
                                                               connectivity=8)
    if count == 1:  # the background alone
        raise ImageError("no ink found: the image is blank or has too little contrast")
    sizes = stats[1:, cv2.CC_STAT_AREA]
    keep = sizes >= 0.08 * sizes.max()  # specks: under 8% of the largest stroke
    notes = []
    if keep.sum() > 3:
        notes.append(f"{int(keep.sum())} separate marks: this may not be a single digit")
    mask = np.isin(labels, np.flatnonzero(keep) + 1)
    rows, cols = np.nonzero(mask)
    aspect = (np.ptp(rows) + 1) / (np.ptp(cols) + 1)
    if aspect < 0.25:
        notes.append("the ink is much wider than tall: this may not be a single digit")
    digits = several_digits(strong) if count > 2 else 1  # one mark is one digit at most
    refused = (f"{digits} digits side by side: read them as a number (--number, /api/number)"
               if digits > 1 else None)
    return mask, tuple(notes), refused


def _fit_and_centre(crop: np.ndarray) -> np.ndarray:
    """Scale the cropped ink to fit FIT_BOX (aspect kept), centre its mass in the field."""
    height, width = crop.shape
    scale = FIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    patch_image = Image.fromarray(np.round(crop * 255).astype(np.uint8), "L")
    patch = np.asarray(patch_image.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    top, left = (FIELD - size[1]) // 2, (FIELD - size[0]) // 2
    field[top: top + size[1], left: left + size[0]] = patch
    total = field.sum()
    cy = (field.sum(axis=1) @ np.arange(FIELD)) / total  # the centre of mass
    cx = (field.sum(axis=0) @ np.arange(FIELD)) / total
    # Move the centre of mass to the field centre, as MNIST did, without pushing ink out.
    rows, cols = np.nonzero(field > 0)
    dy = int(np.clip(round(FIELD / 2 - cy), -rows.min(), FIELD - 1 - rows.max()))
    dx = int(np.clip(round(FIELD / 2 - cx), -cols.min(), FIELD - 1 - cols.max()))
    field = np.roll(field, (dy, dx), axis=(0, 1))
    return np.clip(np.round(field), 0, 255).astype(np.uint8)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
