"""Random distortions of training digits, inside the compiled training step.

Each image gets its own affine map (rotation, scale, aspect ratio, shear, shift), a smooth
elastic displacement and a change of stroke thickness. A share of the narrow digits is also
widened towards a square: datasets and apps that scale every digit to fill its box (Semeion,
USPS, many drawing canvases) turn a 1 or a 7 into a much wider shape than MNIST ever shows.
All of it is a few hundred operations on a (batch, 28, 28) array, so it costs little next to
the step itself and keeps the epoch one compiled program.

`strength` scales every range below (and the share of widened digits): 1 is the setting chosen
for other people's handwriting (the `robust` recipe), less keeps digits closer to MNIST's own
(the `cnn` recipe).

Given the labels, two common ways of writing that MNIST seldom shows are drawn into the batch
as well: a flag at the top of some 1s (the continental 1, which MNIST's models read as 7), and
6s whose loop takes most of their height (read as 0). These ranges do not follow `strength`:
they describe how people write, not how far to stray from MNIST. (Growing the loop of 9s the
same way cost a point on Semeion's 9s; see docs/experiments.md.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from ..geometry import SIDE as SIZE

CENTRE = (SIZE - 1) / 2
MAX_ROTATION = 0.26  # radians (~15 degrees)
SCALE = (0.85, 1.15)
ASPECT = (0.75, 1.25)  # width / height multiplier: people's digits are narrower or wider
MAX_SHEAR = 0.25
MAX_SHIFT = 2.5  # pixels
ELASTIC_PIXELS = 1.0  # standard deviation of the coarse displacement field
ELASTIC_GRID = 4  # the displacement is drawn on a 4x4 grid and smoothly interpolated
MAX_THICKEN = 0.7  # blend towards a 3x3 dilation (thicker) or erosion (thinner)
BOX_FILL = 0.3  # share of digits widened part or all of the way towards a square box
MAX_BOX_WIDEN = 2.5  # the most such a digit is widened
FLAG_SHARE = 0.35  # share of upright 1s given a flag (chosen on Semeion: experiments.md)
FLAG_LENGTH = (0.2, 0.55)  # of the digit's height (chosen on the drawings: experiments.md)
FLAG_ANGLE = (0.45, 1.1)  # radians below the horizontal, pointing left (flatter is a 7's bar)
MAX_FLAG_LEAN = 0.1  # 1s whose top lies further left of their foot (over their height) than
# this get no flag: a stem leaning that way with a flag is a 7
LOOP_SHARE = 0.7  # share of 6s whose loop is given more of their height
LOOP_SPLIT = (0.4, 0.6)  # where loop and stem meet, as a fraction of the digit's height
LOOP_MOVE = (0.1, 0.3)  # how far that line moves up, as a fraction of the height


def _first_ink(ink_any: jax.Array) -> jax.Array:
    """Per image, the first row (or column) with ink: (batch,) int."""
    return jnp.argmax(ink_any, axis=1)


def _ink_extent(ink_any: jax.Array) -> jax.Array:
    """Per image, how many rows (or columns) from the first True one to the last: (batch,)."""
    first = _first_ink(ink_any)
    last = SIZE - 1 - jnp.argmax(ink_any[:, ::-1], axis=1)
    return jnp.maximum(last - first + 1, 1).astype(jnp.float32)


def _box_widening(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
    """Width factors (batch,): 1 for most digits; for a BOX_FILL share, a random amount of
    the stretch that would make the digit's ink as wide as it is tall."""
    k_pick, k_amount = jax.random.split(key)
    ink = images > 0.3
    to_square = jnp.clip(_ink_extent(ink.any(2)) / _ink_extent(ink.any(1)), 1.0, MAX_BOX_WIDEN)
    amount = jax.random.uniform(k_amount, to_square.shape)
    picked = jax.random.bernoulli(k_pick, BOX_FILL * strength, to_square.shape)
    return jnp.where(picked, 1.0 + amount * (to_square - 1.0), 1.0)


def _around_one(key: jax.Array, shape: tuple[int, ...], bounds: tuple[float, float],
                strength: float) -> jax.Array:
    low, high = 1 + (bounds[0] - 1) * strength, 1 + (bounds[1] - 1) * strength
    return jax.random.uniform(key, shape, minval=low, maxval=high)


def _symmetric(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def _affine_sources(key: jax.Array, images: jax.Array,
                    strength: float) -> tuple[jax.Array, jax.Array]:
    """For every output pixel, where to read in the source image: (batch, 28, 28) rows, cols."""
    batch = images.shape[0]
    k_rot, k_scale, k_aspect, k_shear, k_shift, k_box = jax.random.split(key, 6)
    angle = _symmetric(k_rot, (batch,), MAX_ROTATION * strength)
    scale = _around_one(k_scale, (batch,), SCALE, strength)
    aspect = _around_one(k_aspect, (batch,), ASPECT, strength)
    aspect = aspect * _box_widening(k_box, images, strength)
    shear = _symmetric(k_shear, (batch,), MAX_SHEAR * strength)
    shift = _symmetric(k_shift, (batch, 2), MAX_SHIFT * strength)
    rows, cols = jnp.meshgrid(jnp.arange(SIZE) - CENTRE, jnp.arange(SIZE) - CENTRE,
                              indexing="ij")
    # Inverse map: undo shift, rotation, shear and (row, col) scaling, in that order.
    r = rows[None] - shift[:, 0, None, None]
    c = cols[None] - shift[:, 1, None, None]
    cos, sin = jnp.cos(angle)[:, None, None], jnp.sin(angle)[:, None, None]
    r, c = cos * r + sin * c, -sin * r + cos * c
    c = c - shear[:, None, None] * r
    r = r / scale[:, None, None]
    c = c / (scale * aspect)[:, None, None]
    return r + CENTRE, c + CENTRE


def _elastic(key: jax.Array, batch: int, strength: float) -> jax.Array:
    """A smooth random displacement, (2, batch, 28, 28) pixels."""
    coarse = ELASTIC_PIXELS * strength * jax.random.normal(key, (2, batch, ELASTIC_GRID, ELASTIC_GRID))
    return jax.image.resize(coarse, (2, batch, SIZE, SIZE), method="cubic")


def _thickness(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
    """Blend each image towards its 3x3 grey dilation or erosion by a random amount."""
    padded_max = jax.lax.reduce_window(images, -jnp.inf, jax.lax.max, (1, 3, 3), (1, 1, 1),
                                       "SAME")
    padded_min = jax.lax.reduce_window(images, jnp.inf, jax.lax.min, (1, 3, 3), (1, 1, 1),
                                       "SAME")
    amount = _symmetric(key, (images.shape[0], 1, 1), MAX_THICKEN * strength)
    target = jnp.where(amount > 0, padded_max, padded_min)
    # Thinning is applied at half strength: MNIST strokes are only 2-3 pixels wide.
    strength = jnp.where(amount > 0, amount, -0.5 * amount)
    return images + strength * (target - images)


def _segment_ink(start: jax.Array, end: jax.Array, width: jax.Array) -> jax.Array:
    """Anti-aliased straight strokes from `start` to `end` ((batch, 2) row, col) of `width`
    pixels (batch,), drawn as a distance field: (batch, 28, 28) in [0, 1]."""
    grid = jnp.stack(jnp.meshgrid(jnp.arange(SIZE), jnp.arange(SIZE), indexing="ij"), -1)
    a, b = start[:, None, None, :], end[:, None, None, :]
    along = jnp.sum((grid - a) * (b - a), -1) / jnp.maximum(jnp.sum((b - a) ** 2, -1), 1e-6)
    nearest = a + jnp.clip(along, 0.0, 1.0)[..., None] * (b - a)
    distance = jnp.sqrt(jnp.sum((grid - nearest) ** 2, -1))
    return jnp.clip(width[:, None, None] / 2 + 0.5 - distance, 0.0, 1.0)


def _ink_column(images: jax.Array, row: jax.Array) -> jax.Array:
    """Per image, the ink-weighted mean column of the given row: (batch,)."""
    ink = jnp.take_along_axis(images, row[:, None, None], axis=1)[:, 0]
    return jnp.sum(ink * jnp.arange(SIZE), -1) / jnp.maximum(jnp.sum(ink, -1), 1e-6)


def _add_flags(key: jax.Array, images: jax.Array, labels: jax.Array) -> jax.Array:
    """A FLAG_SHARE of the upright or right-leaning 1s gets a stroke from the top of its stem
    down to the left, as thick as the stem (its ink over its height)."""
    k_pick, k_length, k_angle = jax.random.split(key, 3)
    batch = images.shape[0]
    ink_rows = (images > 0.5).any(2)
    top = _first_ink(ink_rows)
    height = _ink_extent(ink_rows)
    top_col = _ink_column(images, top)
    foot_col = _ink_column(images, top + height.astype(top.dtype) - 1)
    length = height * jax.random.uniform(k_length, (batch,), minval=FLAG_LENGTH[0],
                                         maxval=FLAG_LENGTH[1])
    angle = jax.random.uniform(k_angle, (batch,), minval=FLAG_ANGLE[0], maxval=FLAG_ANGLE[1])
    start = jnp.stack([top.astype(jnp.float32), top_col], -1)
    end = start + length[:, None] * jnp.stack([jnp.sin(angle), -jnp.cos(angle)], -1)
    width = jnp.clip(jnp.sum(images, (1, 2)) / height, 1.5, 4.0)
    upright = (foot_col - top_col) / height <= MAX_FLAG_LEAN
    picked = (labels == 1) & upright & jax.random.bernoulli(k_pick, FLAG_SHARE, (batch,))
    flagged = jnp.maximum(images, _segment_ink(start, end, width))
    return jnp.where(picked[:, None, None], flagged, images)


def _grow_loops(key: jax.Array, images: jax.Array, labels: jax.Array,
                rows: jax.Array) -> jax.Array:
    """Source rows that, for a LOOP_SHARE of the 6s, give the loop more of the digit's height:
    the line where loop and stem meet moves up, each part is stretched or squeezed linearly,
    the digit's top and bottom stay put."""
    k_pick, k_split, k_move = jax.random.split(key, 3)
    batch = images.shape[0]
    ink_rows = (images > 0.3).any(2)
    top = _first_ink(ink_rows).astype(jnp.float32)[:, None, None]
    height = _ink_extent(ink_rows)[:, None, None]
    split = jax.random.uniform(k_split, (batch, 1, 1), minval=LOOP_SPLIT[0],
                               maxval=LOOP_SPLIT[1])
    move = jax.random.uniform(k_move, (batch, 1, 1), minval=LOOP_MOVE[0], maxval=LOOP_MOVE[1])
    picked = (labels == 6) & jax.random.bernoulli(k_pick, LOOP_SHARE, (batch,))
    moved = split - move
    u = (rows - top) / height  # 0 at the digit's top, 1 at its bottom, in the output
    source = jnp.where(u < moved, u * split / moved,
                       split + (u - moved) * (1 - split) / (1 - moved))
    return jnp.where(picked[:, None, None] & (u > 0) & (u < 1), top + height * source, rows)


def augment_batch(key: jax.Array, images: jax.Array, strength: float = 1.0,
                  labels: jax.Array | None = None) -> jax.Array:
    """Randomly distorted copies of float32 images (batch, 28, 28) in [0, 1]; given the
    labels, with the writing variants too (see the module's docstring)."""
    batch = images.shape[0]
    k_affine, k_elastic, k_thick = jax.random.split(key, 3)
    if labels is not None:
        k_flag, k_loop = jax.random.split(jax.random.fold_in(key, 1))
        images = _add_flags(k_flag, images, labels)
    rows, cols = _affine_sources(k_affine, images, strength)
    if labels is not None:
        rows = _grow_loops(k_loop, images, labels, rows)
    displacement = _elastic(k_elastic, batch, strength)
    rows, cols = rows + displacement[0], cols + displacement[1]
    warp = jax.vmap(lambda image, r, c: map_coordinates(image, [r, c], order=1, cval=0.0))
    return jnp.clip(_thickness(k_thick, warp(images, rows, cols), strength), 0.0, 1.0)
