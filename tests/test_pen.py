import numpy as np
import pytest

from conftest import added_to_training
from digitnet.training.pen import SKELETONS, pen_digits


def test_pen_digits_are_prepared_like_user_images():
    images, labels = pen_digits(6, seed=0)
    assert images.shape == (60, 784) and images.dtype == np.uint8 and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 6))
    grids = images.reshape(-1, 28, 28).astype(np.float64)
    inked_rows, inked_cols = (grids > 0).any(2), (grids > 0).any(1)
    heights = 28 - inked_rows.argmax(1) - inked_rows[:, ::-1].argmax(1)
    widths = 28 - inked_cols.argmax(1) - inked_cols[:, ::-1].argmax(1)
    assert np.maximum(heights, widths).max() <= 21  # MNIST's 20x20 box, a pixel of smoothing
    assert np.maximum(heights, widths).min() >= 19  # and filling it
    mass = grids.sum((1, 2))
    centre_row = (grids.sum(2) * np.arange(28)).sum(1) / mass
    centre_col = (grids.sum(1) * np.arange(28)).sum(1) / mass
    assert np.all(np.abs(centre_row - 13.5) < 1.5) and np.all(np.abs(centre_col - 13.5) < 1.5)
    assert len({image.tobytes() for image in images}) == len(images)  # every drawing differs


def test_pen_digits_depend_on_the_seed_alone():
    first, _ = pen_digits(3, seed=4)
    pen_digits.cache_clear()
    np.testing.assert_array_equal(pen_digits(3, seed=4)[0], first)
    assert not np.array_equal(pen_digits(3, seed=5)[0], first)


@pytest.mark.parametrize("digit", range(10))
def test_skeletons_stay_in_their_box(digit):
    rng = np.random.default_rng(digit)
    for _ in range(200):
        strokes = SKELETONS[digit](rng)
        assert strokes and all(stroke.ndim == 2 and stroke.shape[1] == 2 and len(stroke) >= 2
                               for stroke in strokes)
        points = np.concatenate(strokes)
        assert np.all(np.isfinite(points))
        # a 1's longest flag may reach a little past the box's left side (its width is
        # squeezed with the box when the drawing is placed)
        assert points.min() >= -0.2 and points.max() <= 1.1
        assert np.ptp(points[:, 1]) >= 0.8  # the strokes span the digit's height


def test_pen_digits_join_the_training_split_only(tiny_mnist):
    images, labels = added_to_training(tiny_mnist, pen_digits=4)
    expected_images, expected_labels = pen_digits(4, seed=2)  # the run's seed draws them
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
