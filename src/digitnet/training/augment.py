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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

SIZE = 28
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


def _ink_extent(ink_any: jax.Array) -> jax.Array:
    """Per image, how many rows (or columns) from the first True one to the last: (batch,)."""
    first = jnp.argmax(ink_any, axis=1)
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


def augment_batch(key: jax.Array, images: jax.Array, strength: float = 1.0) -> jax.Array:
    """Randomly distorted copies of float32 images (batch, 28, 28) in [0, 1]."""
    batch = images.shape[0]
    k_affine, k_elastic, k_thick = jax.random.split(key, 3)
    rows, cols = _affine_sources(k_affine, images, strength)
    displacement = _elastic(k_elastic, batch, strength)
    rows, cols = rows + displacement[0], cols + displacement[1]
    warp = jax.vmap(lambda image, r, c: map_coordinates(image, [r, c], order=1, cval=0.0))
    return jnp.clip(_thickness(k_thick, warp(images, rows, cols), strength), 0.0, 1.0)
