"""Training: one compiled program per epoch (`jax.lax.scan` over the batches).

Images stay uint8 on the device and become float32 in [0, 1] inside the step. Each epoch
visits every training image exactly once in a seeded order; the host gathers the images into
that order while the previous epoch trains, so each step reads one contiguous batch. The last,
short batch is padded and masked out of the loss, so nothing is dropped and no step is wasted.
Pixels that are blank in every training image are left out of the step (their weights could
not move; see `inked_pixels`), and each epoch is validated in NumPy on the host while the next
one trains.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from threadpoolctl import threadpool_limits

from .augment import augment_batch
from .config import IMAGE_PIXELS, NUM_CLASSES, TrainConfig
from .data import MnistData, default_cache_dir
from .evaluate import loss_and_accuracy
from .history import EpochRecord
from .model import build_model, export_weights, import_weights
from .optim import adam
from .predict import Predictor

# Up to this batch size a step is a chain of small operations that XLA would split over the
# cores; the synchronisation and cache traffic cost more than the split saves (measured: see
# the README's Speed section), so the CLI runs such training on one core.
ONE_CORE_MAX_BATCH = 64


@dataclass(frozen=True)
class TrainResult:
    model: nnx.Module
    weights: dict[str, np.ndarray]  # float32 arrays named as in modelfile.weight_shapes()
    history: list[EpochRecord]
    config: TrainConfig


@dataclass(frozen=True)
class Split:
    """Training and validation arrays; images uint8 (N, 784), labels int32 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray


def split_for_training(cfg: TrainConfig, data: MnistData) -> Split:
    """Carve the validation set: the end of the training set (as Keras' validation_split does),
    a seeded random hold-out of it, or the test set."""
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


def enable_compilation_cache() -> None:
    """Keep compiled programs on disk so a repeat run skips XLA compilation."""
    jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def limit_xla_to_one_core() -> bool:
    """Start JAX's CPU backend with one worker thread, pinned to one core.

    Must run before anything else in the process uses JAX: the thread pool is sized, and
    its threads take the calling thread's CPU affinity, when the backend starts. The
    calling thread gets all its cores back, so host work can go on beside the training.
    Returns False, changing nothing, where the backend has started already, the process
    may use only one core anyway, the platform cannot set affinity, or an accelerator plugin
    (a GPU) is installed: then the training is not the CPU's."""
    try:  # JAX has no public way to ask this; without it, change nothing
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:
        return False
    if (not hasattr(os, "sched_setaffinity") or backends_are_initialized()
            or entry_points(group="jax_plugins")):
        return False
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return False
    os.sched_setaffinity(0, {max(allowed)})
    try:
        jax.devices("cpu")
    finally:
        os.sched_setaffinity(0, allowed)
    return True


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


def inked_pixels(images: np.ndarray, multiple: int = 16) -> np.ndarray:
    """Sorted indices of the pixels that are not 0 in every one of uint8 (N, 784) `images`,
    topped up with blank ones to a multiple of `multiple` (a vector-friendly width).

    A pixel that is 0 in every training image gives its first-layer weights a gradient of
    exactly 0 at every step: Adam's moments stay 0 and so does its step, so the weights keep
    their initial values whether or not training computes them. Leaving them out of the
    step changes nothing but the time (MNIST: 67 blank border pixels, 8.5% of the largest
    layer's work)."""
    blank = images.max(axis=0) == 0
    inked = np.flatnonzero(~blank)
    top_up = np.flatnonzero(blank)[: -len(inked) % multiple]
    return np.sort(np.concatenate([inked, top_up]))


def learning_rate_schedule(cfg: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    if cfg.lr_schedule == "onecycle":
        return optax.cosine_onecycle_schedule(steps_per_epoch * cfg.epochs, cfg.lr)
    return optax.constant_schedule(cfg.lr)


def _loss_terms(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
    targets = jax.nn.one_hot(labels, NUM_CLASSES)
    if smoothing:
        targets = optax.smooth_labels(targets, smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def _to_unit_float(images_uint8: jax.Array) -> jax.Array:
    return images_uint8.astype(jnp.float32) * (1.0 / 255.0)


def make_epoch_fn(cfg: TrainConfig, graphdef: nnx.GraphDef, n_train: int,
                  schedule: optax.Schedule):
    """A jitted function (state, images, labels, epoch) -> (state, mean loss, accuracy,
    learning rate at the epoch's last step), taking one epoch's images and labels in their
    visiting order (see epoch_batches).

    The dataset is an argument, not a closed-over constant: a constant would be baked into
    the compiled program and make compilation several times slower."""
    batch = cfg.batch_size
    steps = -(-n_train // batch)

    @jax.jit
    def run_epoch(state, images, labels, epoch):
        def step(state, batch):
            images_uint8, y, weights, step_key = batch
            model, optimizer = nnx.merge(graphdef, state)
            x = _to_unit_float(images_uint8)
            if cfg.augment:
                x = augment_batch(step_key, x.reshape(-1, 28, 28)).reshape(x.shape)

            def loss_fn(model):
                logits = model(x)
                per_image = _loss_terms(logits, y, cfg.label_smoothing)
                return jnp.sum(per_image * weights) / jnp.sum(weights), logits

            (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
            optimizer.update(model, grads)
            correct = jnp.sum((jnp.argmax(logits, -1) == y) * weights)
            return nnx.state((model, optimizer)), (loss * jnp.sum(weights), correct)

        # the padding at the end fills the short last batch with weight-0 images
        weights = (jnp.arange(steps * batch) < n_train).astype(jnp.float32)
        xs = (images.reshape(steps, batch, -1), labels.reshape(steps, batch),
              weights.reshape(steps, batch),
              jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), epoch), steps))
        state, (loss_sums, correct) = jax.lax.scan(step, state, xs)
        return (state, jnp.sum(loss_sums) / n_train, jnp.sum(correct) / n_train,
                schedule(epoch * steps - 1))

    return run_epoch


def _epochs_in_flight(cfg: TrainConfig, run_epoch, state, images: np.ndarray,
                      labels: np.ndarray):
    """Run the epochs; yield (epoch, state, [train loss, train accuracy, lr]) for each one
    once the next one has started, so that what the caller does with it, and the gathering
    of the epoch after, overlap that training."""
    batches = epoch_batches(cfg, 1, images, labels)
    finished = None
    for epoch in range(1, cfg.epochs + 1):
        state, *metrics = run_epoch(state, *batches, epoch)  # returns at once
        if epoch < cfg.epochs:
            batches = epoch_batches(cfg, epoch + 1, images, labels)
        if finished is not None:
            yield finished
        finished = (epoch, state, [float(m) for m in metrics])  # waits for this epoch
    yield finished


def train(
    cfg: TrainConfig,
    data: MnistData,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train the network `cfg` describes on `data`; call `on_epoch` after every epoch.

    The test set is used only when cfg.validate_on == 'test'. Ctrl-C raises KeyboardInterrupt
    between or during epochs; nothing has been written by this function.
    """
    enable_compilation_cache()
    split = split_for_training(cfg, data)
    steps = -(-len(split.train_images) // cfg.batch_size)
    schedule = learning_rate_schedule(cfg, steps)
    model = build_model(cfg)
    initial_kernel = np.asarray(model.layers[0].kernel[...])
    # The first layer reads only the inked pixels while it trains. Augmentation moves ink
    # onto blank pixels, so then it reads them all.
    pixels = np.arange(IMAGE_PIXELS) if cfg.augment else inked_pixels(split.train_images)
    model.layers[0].kernel.set_value(jnp.asarray(initial_kernel[pixels]))
    optimizer = nnx.Optimizer(model, adam(schedule, cfg.adam_form), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    def full_weights(state) -> dict[str, np.ndarray]:
        """The whole network's weights: the trained ones, and the blank pixels' initial ones."""
        weights = export_weights(nnx.merge(graphdef, state)[0])
        kernel = initial_kernel.copy()
        kernel[pixels] = weights["dense_0.kernel"]
        return {**weights, "dense_0.kernel": kernel}

    run_epoch = make_epoch_fn(cfg, graphdef, len(split.train_images), schedule)
    epochs = _epochs_in_flight(cfg, run_epoch, state,
                               np.take(split.train_images, pixels, axis=1), split.train_labels)
    history = []
    clock = time.perf_counter()
    # Validation is a NumPy forward pass on the host, on one BLAS thread, beside the next
    # epoch's training on XLA's threads.
    with threadpool_limits(1, user_api="blas"):
        for epoch, state, (train_loss, train_acc, lr) in epochs:
            weights = full_weights(state)
            logits = Predictor(cfg, weights).logits(split.val_images)
            val_loss, val_acc = loss_and_accuracy(logits, split.val_labels)
            previous, clock = clock, time.perf_counter()
            history.append(EpochRecord(epoch, train_loss, train_acc, val_loss, val_acc, lr,
                                       seconds=clock - previous))
            if on_epoch is not None:
                on_epoch(history[-1])
    model.layers[0].kernel.set_value(jnp.asarray(initial_kernel))  # every pixel's row again
    import_weights(model, weights)
    return TrainResult(model=model, weights=weights, history=history, config=cfg)
