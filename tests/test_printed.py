import numpy as np

from conftest import added_to_training
from digitnet.training.printed import PER_COPY, printed_digits


def test_printed_digits_are_prepared_like_user_images():
    assert PER_COPY == 340  # as the --printed-digits help says
    images, labels = printed_digits(2)
    assert images.shape == (2 * PER_COPY, 784) and images.dtype == np.uint8
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels[:10], np.arange(10))
    np.testing.assert_array_equal(images[:PER_COPY], images[PER_COPY:])  # copies
    grids = images.reshape(-1, 28, 28).astype(np.float64)
    inked_rows = (grids > 0).any(2)
    heights = 28 - inked_rows.argmax(1) - inked_rows[:, ::-1].argmax(1)
    assert heights.max() <= 21  # fitted into MNIST's 20x20 box (a pixel of anti-aliasing)
    mass = grids.sum((1, 2))
    centre_row = (grids.sum(2) * np.arange(28)).sum(1) / mass
    centre_col = (grids.sum(1) * np.arange(28)).sum(1) / mass
    assert np.all(np.abs(centre_row - 13.5) < 1.5) and np.all(np.abs(centre_col - 13.5) < 1.5)
    # every rendering differs from the others: typefaces and weights really vary
    assert len({image.tobytes() for image in images[:PER_COPY]}) == PER_COPY


def test_printed_digits_join_the_training_split_only(tiny_mnist):
    images, labels = added_to_training(tiny_mnist, printed_digits=3)
    expected_images, expected_labels = printed_digits(3)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
