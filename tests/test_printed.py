import numpy as np

from digitnet.config import TrainConfig
from digitnet.training import split_for_training
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
    plain = split_for_training(TrainConfig(validate_on="split"), tiny_mnist)
    mixed = split_for_training(TrainConfig(validate_on="split", printed_digits=3), tiny_mnist)
    np.testing.assert_array_equal(mixed.val_images, plain.val_images)
    np.testing.assert_array_equal(mixed.val_labels, plain.val_labels)
    assert len(mixed.train_images) == len(plain.train_images) + 3 * PER_COPY
    np.testing.assert_array_equal(mixed.train_images[:len(plain.train_images)],
                                  plain.train_images)
    np.testing.assert_array_equal(mixed.train_images[len(plain.train_images):],
                                  printed_digits(3)[0])
