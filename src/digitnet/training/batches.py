"""What each epoch trains and validates on: the hold-out, the seeded visiting order of every
epoch, and the host-side gather of each epoch's images into that order."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from ..config import TrainConfig
from ..geometry import IMAGE_PIXELS, NUM_CLASSES
from ..data import MnistData


NOT_A_DIGIT = NUM_CLASSES  # the training label of a generated non-digit (not_digits.py)


@dataclass(frozen=True)
class Split:
    """Training and validation arrays; images uint8 (N, 784), labels int32 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray


def split_for_training(cfg: TrainConfig, data: MnistData) -> Split:
    """Carve the validation set: the end of the training set (as Keras' validation_split does),
    a seeded random hold-out of it, or the test set. Printed and pen digits and non-digits
    (label NOT_A_DIGIT), when asked for, join the training part only."""
    split = _mnist_split(cfg, data)
    extra = []
    if cfg.printed_digits:
        from .printed import printed_digits

        extra.append(printed_digits(cfg.printed_digits))
    if cfg.pen_digits:
        from .pen import pen_digits

        extra.append(pen_digits(cfg.pen_digits, cfg.seed))
    if cfg.not_digits:
        from .not_digits import not_digits

        extra.append((not_digits(cfg.not_digits, cfg.seed),
                      np.full(cfg.not_digits, NOT_A_DIGIT, np.int32)))
    if not extra:
        return split
    return Split(np.concatenate([split.train_images, *(images for images, _ in extra)]),
                 np.concatenate([split.train_labels, *(labels for _, labels in extra)]),
                 split.val_images, split.val_labels)


def _mnist_split(cfg: TrainConfig, data: MnistData) -> Split:
    images = data.train_images.reshape(len(data.train_images), IMAGE_PIXELS)
    labels = data.train_labels.astype(np.int32)
    if cfg.validate_on == "test":
        return Split(images, labels, data.test_images.reshape(-1, IMAGE_PIXELS),
                     data.test_labels.astype(np.int32))
    n_val = validation_size(cfg, len(images))
    if cfg.validate_on == "last":
        return Split(images[:-n_val], labels[:-n_val], images[-n_val:], labels[-n_val:])
    order = np.random.default_rng(cfg.seed).permutation(len(images))
    val, keep = order[:n_val], np.sort(order[n_val:])
    return Split(images[keep], labels[keep], images[val], labels[val])


def validation_size(cfg: TrainConfig, n_train: int) -> int:
    """How many training images the hold-out takes (0 when validating on the test set)."""
    return 0 if cfg.validate_on == "test" else max(1, round(n_train * cfg.val_fraction))


def epoch_order(cfg: TrainConfig, epoch: int, n_train: int) -> np.ndarray:
    """The seeded visiting order of one epoch, int32, padded with index 0 to whole batches."""
    order = np.random.default_rng((cfg.seed, epoch)).permutation(n_train)
    return np.pad(order, (0, -n_train % cfg.batch_size)).astype(np.int32)


def epoch_batches(cfg: TrainConfig, epoch: int, images: np.ndarray,
                  labels: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """One epoch's images (uint8, (steps * batch, pixels)) and labels in its visiting order.

    Gathered by NumPy, on the host's thread, into memory that JAX's CPU backend takes over
    without a copy, so that the gather can run beside the previous epoch's training."""
    order = epoch_order(cfg, epoch, len(images))
    ordered = _aligned_empty((len(order), images.shape[1]), images.dtype)
    np.take(images, order, axis=0, out=ordered)
    return jax.device_put(ordered), jax.device_put(labels[order])


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype, alignment: int = 64) -> np.ndarray:
    """An uninitialised array starting on an `alignment`-byte boundary (XLA's CPU buffers
    must be 64-byte aligned; NumPy's own allocations are 16-byte aligned)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes].view(dtype).reshape(shape)
