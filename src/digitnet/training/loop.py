"""Training: one compiled program per epoch (`jax.lax.scan` over the batches).

Images stay uint8 on the device and become float32 in [0, 1] inside the step. Each epoch
visits every training image exactly once in a seeded order; the host gathers the images into
that order while the previous epoch trains, so each step reads one contiguous batch. The last,
short batch is padded and masked out of the loss, so nothing is dropped and no step is wasted.
Each epoch is validated in NumPy on the host while the next one trains, then checkpointed.
The network is its config's layer sequence (networks.py), which also says which pixels it
reads.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ..calibration import calibrate, refusal_threshold, softmax
from ..checkpoint import Checkpoint
from ..config import TrainConfig
from ..geometry import NUM_CLASSES, SIDE
from ..data import MnistData
from ..errors import ConfigError
from ..history import EpochRecord
from ..metrics import loss_and_accuracy
from ..network import Dropout
from ..predict import Predictor
from .augment import augment_batch
from .batches import NOT_A_DIGIT, Split, epoch_batches, split_for_training
from .devices import data_parallel
from .distributed import agree_across_processes
from .networks import (TrainingNetwork, build_model, export_weights, import_weights,
                       training_network)
from .optim import adam
from .state import restore_state, state_arrays
from .stopping import EpochChooser


@dataclass(frozen=True)
class TrainResult:
    weights: dict[str, np.ndarray]  # float32 arrays named as in modelfile.weight_shapes()
    history: list[EpochRecord]
    config: TrainConfig
    kept_epoch: int  # the epoch whose weights these are
    stop_reason: str  # why training ended, in words
    calibration: dict | None = None  # see calibration.calibrate; None: not calibrated
    refusal: dict | None = None  # see calibration.refusal_threshold; None: refuses nothing

    @property
    def fitted(self) -> dict:
        """What was fitted on the validation split after training, as a model file's
        results hold it: {'calibration': ..., 'refusal': ...} (empty where nothing was)."""
        return {key: value for key, value in (("calibration", self.calibration),
                                              ("refusal", self.refusal)) if value}

    @property
    def predictor(self) -> Predictor:
        """The trained network as a calibrated NumPy Predictor that refuses non-digits."""
        return Predictor(self.config, self.weights, self.fitted)

    def __repr__(self) -> str:
        from ..network import to_text

        kept = self.history[self.kept_epoch - 1]
        return (f"TrainResult({self.config.model} {to_text(self.config.network)}, "
                f"{len(self.history)} epochs ({self.stop_reason}); kept epoch "
                f"{self.kept_epoch}: val_accuracy {kept.val_accuracy:.2%}, val_loss "
                f"{kept.val_loss:.4f})")

    @functools.cached_property
    def model(self) -> nnx.Module:
        """The trained network as a Flax NNX module (built when first asked for: building
        one takes a few tenths of a second, which a run that only saves does not need)."""
        return import_weights(build_model(self.config), self.weights)


def learning_rate_schedule(cfg: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    if cfg.lr_schedule == "onecycle":
        return optax.cosine_onecycle_schedule(steps_per_epoch * cfg.epochs, cfg.lr)
    return optax.constant_schedule(cfg.lr)


def _loss_terms(logits: jax.Array, labels: jax.Array, smoothing: float,
                not_digits: bool = False) -> jax.Array:
    """Cross-entropy against each digit's (smoothed) one-hot target and, where `not_digits`
    may be among the labels (NOT_A_DIGIT: see not_digits.py), against the uniform target for
    those. (Without them the program is the one it always was, to the bit.)"""
    targets = jax.nn.one_hot(labels, NUM_CLASSES)
    if smoothing:
        targets = optax.smooth_labels(targets, smoothing)
    if not_digits:
        targets = jnp.where((labels == NOT_A_DIGIT)[:, None], 1.0 / NUM_CLASSES, targets)
    return optax.softmax_cross_entropy(logits, targets)


def _to_unit_float(images_uint8: jax.Array) -> jax.Array:
    return images_uint8.astype(jnp.float32) * (1.0 / 255.0)


def make_epoch_fn(cfg: TrainConfig, graphdef: nnx.GraphDef, n_train: int,
                  schedule: optax.Schedule):
    """A jitted function (state, images, labels, epoch) -> (state, mean loss, accuracy on the
    digits, learning rate at the epoch's last step), taking one epoch's images and labels in
    their visiting order (see epoch_batches).

    The dataset is an argument, not a closed-over constant: a constant would be baked into
    the compiled program and make compilation several times slower."""
    batch = cfg.batch_size
    steps = -(-n_train // batch)
    drops = any(isinstance(layer, Dropout) and layer.rate > 0 for layer in cfg.network)
    n_digits = n_train - cfg.not_digits  # the non-digits come last in the split (batches.py)

    @jax.jit
    def run_epoch(state, images, labels, epoch):
        def step(state, batch):
            images_uint8, y, weights, step_key = batch
            model, optimizer = nnx.merge(graphdef, state)
            x = _to_unit_float(images_uint8)
            if cfg.augment:
                x = augment_batch(step_key, x.reshape(-1, SIDE, SIDE), cfg.augment_strength,
                                  y if cfg.writing_variants else None).reshape(x.shape)

            def loss_fn(model):
                # the dropout masks are drawn from the step's key, apart from the augmentation's
                logits = model(x, jax.random.fold_in(step_key, 1)) if drops else model(x)
                per_image = _loss_terms(logits, y, cfg.label_smoothing, cfg.not_digits > 0)
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
        return (state, jnp.sum(loss_sums) / n_train, jnp.sum(correct) / n_digits,
                schedule(epoch * steps - 1))

    return run_epoch


def _epochs_in_flight(cfg: TrainConfig, run_epoch, state, images: np.ndarray,
                      labels: np.ndarray, first: int, last: int, gather=epoch_batches):
    """Run the epochs `first` to `last`; yield (epoch, state, [train loss, train accuracy,
    lr]) for each one once the next one has started, so that what the caller does with it,
    and the gathering of the epoch after (by `gather`, epoch_batches' signature), overlap
    that training.

    Closed before the end (early stopping, an error, Ctrl-C), it waits for the epoch in
    flight: nothing may be left computing on XLA's threads once training has returned or
    raised. A process that exits under such a computation can crash as it shuts down
    (SIGSEGV in 3 of 12 exits after a failed checkpoint write, two runs side by side)."""
    batches = gather(cfg, first, images, labels) if first <= last else None
    finished = None
    try:
        for epoch in range(first, last + 1):
            state, *metrics = run_epoch(state, *batches, epoch)  # returns at once
            if epoch < last:
                batches = gather(cfg, epoch + 1, images, labels)
            if finished is not None:
                yield finished
            finished = (epoch, state, [float(m) for m in metrics])  # waits for this epoch
        if finished is not None:
            yield finished
    finally:
        jax.block_until_ready(state)


@dataclass(frozen=True)
class _Training:
    """What every epoch of one config on one split shares: the network as it trains, its
    initial (network, optimizer) state, the compiled epoch, and the training images with
    the pixels the network reads."""

    network: TrainingNetwork
    graphdef: nnx.GraphDef
    initial_state: nnx.State
    run_epoch: Callable
    images: np.ndarray

    def weights(self, state: nnx.State) -> dict[str, np.ndarray]:
        """The whole network's weights in `state`, named as in the model file."""
        return self.network.full_weights(export_weights(nnx.merge(self.graphdef, state)[0]))


def _prepare(cfg: TrainConfig, split: Split) -> _Training:
    steps = -(-len(split.train_images) // cfg.batch_size)
    schedule = learning_rate_schedule(cfg, steps)
    network = training_network(cfg, split.train_images)
    tx = adam(schedule, cfg.adam_form, weight_decay=cfg.weight_decay)
    optimizer = nnx.Optimizer(network.model, tx, wrt=nnx.Param)
    graphdef, state = nnx.split((network.model, optimizer))
    return _Training(network, graphdef, state,
                     make_epoch_fn(cfg, graphdef, len(split.train_images), schedule),
                     np.take(split.train_images, network.pixels, axis=1))


def checkpoint_weights(checkpoints: Iterable[Checkpoint], data: MnistData
                       ) -> Iterator[tuple[Checkpoint, dict[str, np.ndarray]]]:
    """Each of `checkpoints` (all of one run, so of one config) in turn, with the whole
    network's weights it holds, named as in the model file: its training state restored into
    the state tree its config builds on `data`, as a resumed run restores it."""
    training = None
    for checkpoint in checkpoints:
        if training is None:
            training = _prepare(checkpoint.config,
                                split_for_training(checkpoint.config, data))
        state = restore_state(training.initial_state, checkpoint.state,
                              f"the checkpoint of epoch {checkpoint.epoch}")
        yield checkpoint, training.weights(state)


def train(
    cfg: TrainConfig,
    data: MnistData,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    *,
    resume: Checkpoint | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    devices: int | str | None = None,
) -> TrainResult:
    """Train the network `cfg` describes on `data`; call `on_epoch` after every epoch.

    `on_checkpoint` gets a Checkpoint after every epoch (before `on_epoch`); a run given
    one as `resume` goes on from it and ends with the weights the uninterrupted run would
    have (bit for bit on the device count it started on; to float rounding on another).
    cfg.early_stopping and cfg.keep decide how many epochs train and which becomes the
    model. The test set is used only when cfg.validate_on == 'test'.

    `devices` splits every batch over that many of this process's devices ('all': every
    one; see devices.py); None or 1 trains on JAX's default device. In a run of several
    processes (distributed.start_processes) every process calls train with the same
    arguments and trains its share of each batch; all of them get the same result.

    Nothing process-wide is changed (see training_speedups for what the CLI changes), and
    nothing is written. Ctrl-C raises KeyboardInterrupt between or during epochs. Whatever
    ends the training (Ctrl-C, an error raised by a callback, early stopping) waits for the
    epoch training at that moment: nothing is left computing once train returns or raises.
    """
    if resume is not None and resume.config != cfg:
        raise ConfigError("the checkpoint was made with another config: resume with its own "
                          "(checkpoint.config)")
    agree_across_processes(cfg, devices, resume.epoch if resume else 0)
    parallel = data_parallel(cfg, devices)
    split = split_for_training(cfg, data)
    training = _prepare(cfg, split)
    history = list(resume.history) if resume else []
    chooser = EpochChooser(cfg, history)
    state, best_weights = training.initial_state, None
    if resume is not None:
        state = restore_state(state, resume.state, "the checkpoint")
        best_weights = resume.best_weights
    count = parallel.count if parallel else 1
    if parallel is not None:
        state = parallel.replicate(state)
    weights = training.weights(state) if chooser.done else None  # else the loop sets them
    epochs = _epochs_in_flight(cfg, training.run_epoch, state, training.images,
                               split.train_labels, first=len(history) + 1,
                               last=len(history) if chooser.done else cfg.epochs,
                               gather=parallel.epoch_batches if parallel else epoch_batches)
    clock = time.perf_counter()
    with contextlib.closing(epochs):
        for epoch, state, (train_loss, train_acc, lr) in epochs:
            # validated in NumPy on the host, beside the next epoch's training on XLA's threads
            weights = training.weights(state)
            logits = Predictor(cfg, weights).logits(split.val_images)
            val_loss, val_acc = loss_and_accuracy(logits, split.val_labels)
            previous, clock = clock, time.perf_counter()
            record = EpochRecord(epoch, train_loss, train_acc, val_loss, val_acc, lr,
                                 seconds=clock - previous)
            if resume is not None and epoch == resume.epoch + 1:
                record = record.noted("resumed" if resume.devices == count else
                                      f"resumed on {count} device{'s' * (count > 1)} "
                                      f"(before: {resume.devices})")
            history.append(record)
            if chooser.record(record) and cfg.keep == "best":
                best_weights = weights
            if on_checkpoint is not None:
                on_checkpoint(Checkpoint(cfg, tuple(history), state_arrays(state),
                                         best_weights if cfg.keep == "best" else None,
                                         devices=count))
            if on_epoch is not None:
                on_epoch(record)
            if chooser.done:
                break  # early stopping; the epoch in flight is waited for, then dropped
    kept = chooser.kept_epoch
    history[kept - 1] = history[kept - 1].noted("kept")
    if chooser.stopped_early:
        history[-1] = history[-1].noted("stopped early")
    final = best_weights if cfg.keep == "best" else weights
    return TrainResult(weights=final, history=history, config=cfg, kept_epoch=kept,
                       stop_reason=chooser.stop_reason(),
                       **_calibration(cfg, final, split))


def _calibration(cfg: TrainConfig, weights: dict[str, np.ndarray], split) -> dict:
    """The temperature and the refusal threshold, both fitted on the validation split (see
    calibration.py); none where the test set is the validation set, which must not fit
    what it then reports on."""
    if cfg.validate_on == "test":
        return {}
    fitted_on = f"the validation split ({len(split.val_labels):,} images)"
    logits = Predictor(cfg, weights).logits(split.val_images)
    calibration = calibrate(logits, split.val_labels, fitted_on)
    probs = softmax(logits / calibration["temperature"])
    return {"calibration": calibration,
            "refusal": refusal_threshold(probs, split.val_labels, fitted_on)}
