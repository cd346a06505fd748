import jax
import jax.numpy as jnp
import numpy as np

from digitnet.training.augment import (BOX_FILL, FLAG_ANGLE, FLAG_LENGTH, FLAG_SHARE,
                                       LOOP_SHARE, MAX_BOX_WIDEN, _add_flags, _box_widening,
                                       _grow_loops, augment_batch)


def test_augmentation_keeps_shape_range_and_most_ink(tiny_mnist):
    images = jnp.asarray(tiny_mnist.train_images[:64], jnp.float32) / 255
    out = np.asarray(augment_batch(jax.random.key(0), images))
    assert out.shape == (64, 28, 28) and out.min() >= 0 and out.max() <= 1
    ratio = out.sum(axis=(1, 2)) / np.asarray(images).sum(axis=(1, 2))
    assert 0.5 < np.median(ratio) < 2.0  # distorted, not erased or smeared everywhere
    assert np.abs(out - np.asarray(images)).mean() > 0.01  # but really changed


def test_augmentation_is_seeded(tiny_mnist):
    images = jnp.asarray(tiny_mnist.train_images[:8], jnp.float32) / 255
    a = augment_batch(jax.random.key(1), images)
    b = augment_batch(jax.random.key(1), images)
    c = augment_batch(jax.random.key(2), images)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_box_widening_stretches_a_share_of_narrow_digits_at_most_to_a_square():
    narrow = np.zeros((400, 28, 28), np.float32)
    narrow[:, 4:24, 12:16] = 1.0  # a 1 drawn as a bar: 20 rows tall, 4 columns wide
    widths = np.asarray(_box_widening(jax.random.key(0), jnp.asarray(narrow), 1.0))
    widened = widths > 1.0
    assert abs(widened.mean() - BOX_FILL) < 0.08
    assert widths.min() >= 1.0 and widths.max() <= MAX_BOX_WIDEN  # 20/4 = 5 is capped
    assert np.ptp(widths[widened]) > 0.5  # partly or all of the way, not one fixed stretch

    square = np.zeros((400, 28, 28), np.float32)
    square[:, 4:24, 4:24] = 1.0
    np.testing.assert_array_equal(_box_widening(jax.random.key(0), jnp.asarray(square), 1.0), 1.0)


def test_augmented_training_still_learns(tiny_mnist):
    from digitnet.config import TrainConfig
    from digitnet.training import train

    cfg = TrainConfig(epochs=12, lr=3e-3, augment=True, writing_variants=True)
    history = train(cfg, tiny_mnist).history
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].val_accuracy > 0.6


def test_strength_scales_how_far_digits_move(tiny_mnist):
    images = jnp.asarray(tiny_mnist.train_images[:64], jnp.float32) / 255
    change = {s: float(np.abs(augment_batch(jax.random.key(3), images, s) - images).mean())
              for s in (0.25, 0.5, 1.0)}
    assert 0 < change[0.25] < change[0.5] < change[1.0]


def _bars(n: int, lean: float = 0.0) -> np.ndarray:
    """n images of a 1 drawn as a 3-pixel stem from row 4 to row 23, its top `lean` pixels
    per row to the left of its foot (negative: to the right)."""
    images = np.zeros((n, 28, 28), np.float32)
    for row in range(4, 24):
        col = int(round(13 + lean * (row - 23)))
        images[:, row, col - 1:col + 2] = 1.0
    return images


def test_flags_go_on_a_share_of_upright_ones_only():
    stems = jnp.asarray(_bars(400))
    ones = np.asarray(_add_flags(jax.random.key(0), stems, jnp.ones(400, jnp.int32)))
    flagged = (ones - np.asarray(stems)).sum(axis=(1, 2)) > 1.0
    assert abs(flagged.mean() - FLAG_SHARE) < 0.08
    added = ones[flagged] - np.asarray(stems)[flagged]
    rows, cols = np.nonzero(added.sum(0))
    drop = FLAG_LENGTH[1] * 20 * np.sin(FLAG_ANGLE[1])  # the longest, steepest flag's
    # rows below the stem's top (row 4; 20 rows tall), and the stroke's half width and edge
    assert cols.mean() < 13 and rows.max() <= 4 + drop + 2  # down to the left from the top
    assert np.all(ones <= 1.0) and np.all(ones >= np.asarray(stems))  # ink is only added

    sevens = np.asarray(_add_flags(jax.random.key(0), stems, jnp.full(400, 7, jnp.int32)))
    np.testing.assert_array_equal(sevens, stems)
    leaning_left = jnp.asarray(_bars(400, lean=0.4))  # top to the left: with a flag, a 7
    np.testing.assert_array_equal(
        _add_flags(jax.random.key(0), leaning_left, jnp.ones(400, jnp.int32)), leaning_left)


def test_loops_grow_in_a_share_of_sixes_only():
    images = jnp.asarray(_bars(200))  # ink from row 4 to row 23
    rows = jnp.broadcast_to(jnp.arange(28, dtype=jnp.float32)[None, :, None], (200, 28, 28))

    def sources(label):
        labels = jnp.full(200, label, jnp.int32)
        return np.asarray(_grow_loops(jax.random.key(0), images, labels, rows))[:, :, 0]

    unchanged = np.arange(28, dtype=np.float32)
    for other in (0, 9):
        np.testing.assert_array_equal(sources(other), np.broadcast_to(unchanged, (200, 28)))
    source = sources(6)
    np.testing.assert_array_equal(source[:, :5], np.broadcast_to(unchanged[:5], (200, 5)))
    np.testing.assert_array_equal(source[:, 24:], np.broadcast_to(unchanged[24:], (200, 4)))
    assert np.all(np.diff(source, axis=1) > 0)  # still in order: nothing folds over
    moved = np.abs(source - unchanged).max(axis=1) > 0.5
    assert abs(moved.mean() - LOOP_SHARE) < 0.1
    # rows read from further down: the lower part, the loop, takes more of the height
    assert np.all(source[moved, 5:24] - unchanged[5:24] >= -1e-4)


def test_the_variants_change_ones_and_sixes_only(tiny_mnist):
    images = jnp.asarray(tiny_mnist.train_images[:256], jnp.float32) / 255
    labels = tiny_mnist.train_labels[:256]
    plain = np.asarray(augment_batch(jax.random.key(4), images, 0.5))
    with_variants = np.asarray(augment_batch(jax.random.key(4), images, 0.5,
                                             jnp.asarray(labels.astype(np.int32))))
    # the variants draw from their own key: every other digit is distorted exactly as before
    others = (labels != 1) & (labels != 6)
    np.testing.assert_array_equal(with_variants[others], plain[others])
    changed = np.abs(with_variants - plain).max(axis=(1, 2)) > 0.1
    ones, sixes = (labels == 1).sum(), (labels == 6).sum()
    expected = (FLAG_SHARE * ones + LOOP_SHARE * sixes) / (ones + sixes)
    assert changed[~others].mean() > 0.5 * expected  # (a 1 leaning left gets no flag)
