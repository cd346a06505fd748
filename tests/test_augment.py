import jax
import jax.numpy as jnp
import numpy as np

from digitnet.training.augment import BOX_FILL, MAX_BOX_WIDEN, _box_widening, augment_batch


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

    history = train(TrainConfig(epochs=12, lr=3e-3, augment=True), tiny_mnist).history
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].val_accuracy > 0.6


def test_strength_scales_how_far_digits_move(tiny_mnist):
    images = jnp.asarray(tiny_mnist.train_images[:64], jnp.float32) / 255
    change = {s: float(np.abs(augment_batch(jax.random.key(3), images, s) - images).mean())
              for s in (0.25, 0.5, 1.0)}
    assert 0 < change[0.25] < change[0.5] < change[1.0]
