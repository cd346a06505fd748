import jax.numpy as jnp
import numpy as np
import pytest

from conftest import added_to_training
from digitnet.config import TrainConfig
from digitnet.errors import ConfigError
from digitnet.training import train
from digitnet.training.batches import NOT_A_DIGIT
from digitnet.training.loop import _loss_terms
from digitnet.training.not_digits import KINDS, LETTERS, PRINTED, not_digits

DIGIT_LIKE = set("OoQDIlijJSsZzBbGgqTy")


def test_not_digits_are_prepared_like_user_images_and_depend_on_the_seed_alone():
    images = not_digits(60, seed=3)
    assert images.shape == (60, 784) and images.dtype == np.uint8
    grids = images.reshape(-1, 28, 28)
    inked_rows, inked_cols = (grids > 0).any(2), (grids > 0).any(1)
    heights = 28 - inked_rows.argmax(1) - inked_rows[:, ::-1].argmax(1)
    widths = 28 - inked_cols.argmax(1) - inked_cols[:, ::-1].argmax(1)
    assert np.maximum(heights, widths).max() <= 21  # MNIST's 20x20 box, a pixel of smoothing
    assert np.all(grids.reshape(60, -1).max(1) > 0)  # every one has ink
    assert len({image.tobytes() for image in images}) == 60
    not_digits.cache_clear()
    np.testing.assert_array_equal(not_digits(60, seed=3), images)
    assert not np.array_equal(not_digits(60, seed=4), images)


def test_no_letter_people_write_like_a_digit_is_drawn_or_printed():
    assert not DIGIT_LIKE & set(LETTERS) and not DIGIT_LIKE & set(PRINTED)
    assert sum(share for _, share in KINDS.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("letter", sorted(LETTERS))
def test_letter_skeletons_are_strokes_in_their_box(letter):
    rng = np.random.default_rng(0)
    for _ in range(20):
        strokes = LETTERS[letter](rng)
        points = np.concatenate(strokes)
        assert all(stroke.ndim == 2 and stroke.shape[1] == 2 and len(stroke) >= 2
                   for stroke in strokes)
        assert points.min() >= -0.15 and points.max() <= 1.35 and np.ptp(points[:, 1]) >= 0.6


def test_not_digits_join_the_training_split_only_with_their_own_label(tiny_mnist):
    images, labels = added_to_training(tiny_mnist, not_digits=30)
    np.testing.assert_array_equal(images, not_digits(30, seed=2))
    assert len(labels) == 30 and np.all(labels == NOT_A_DIGIT)


def test_a_non_digit_is_taught_the_uniform_target():
    logits = jnp.array([[2.0, 0, 0, 0, 0, 0, 0, 0, 0, -1.0], [0.0] * 10])
    labels = jnp.array([NOT_A_DIGIT, NOT_A_DIGIT])
    loss = _loss_terms(logits, labels, 0.1, not_digits=True)
    uniform = np.log(10.0)  # the cross-entropy of the uniform target on even logits
    assert float(loss[1]) == pytest.approx(uniform, rel=1e-6)
    assert float(loss[0]) > uniform  # any preference for a digit costs more
    digit = _loss_terms(logits, jnp.array([0, 0]), 0.0, not_digits=True)
    assert float(digit[0]) < float(digit[1])  # digits keep their one-hot target


def test_training_with_not_digits_makes_the_network_unsure_of_them(tiny_mnist):
    cfg = TrainConfig(hidden=(64,), epochs=4, batch_size=32, validate_on="split",
                      not_digits=300)
    unseen = not_digits(200, seed=99)
    plain = train(cfg.replace(not_digits=0), tiny_mnist).predictor.probabilities(unseen)
    taught = train(cfg, tiny_mnist)
    assert taught.history[-1].train_accuracy > 0.5  # measured on the digits alone
    sure = taught.predictor.probabilities(unseen).max(1)
    assert np.median(sure) < 0.8 * np.median(plain.max(1))  # 0.33 against 0.48 when written


def test_not_digits_are_bounded():
    with pytest.raises(ConfigError, match="not_digits must be in"):
        TrainConfig(not_digits=-1)
