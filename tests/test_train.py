"""Sanity checks on the network and the compiled training loop (tiny synthetic data)."""

import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import digitnet.training.networks
from digitnet.config import TrainConfig
from digitnet.data import MnistData
from digitnet.metrics import loss_and_accuracy
from digitnet.predict import Predictor
from digitnet.training import limit_xla_to_one_core, split_for_training, train
from digitnet.training import loop
from digitnet.training.batches import epoch_order
from digitnet.training.networks import (build_model, export_weights, import_weights,
                                        inked_pixels)


def test_parameter_count_is_the_tutorial_networks():
    model = build_model(TrainConfig())
    params = nnx.state(model, nnx.Param)
    count = sum(int(np.prod(p.shape)) for p in __import__("jax").tree.leaves(params))
    assert count == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10 == 109_386


def test_initial_loss_is_about_ln_10(tiny_mnist):
    model = build_model(TrainConfig(seed=3))
    x = jnp.asarray(tiny_mnist.train_images.reshape(-1, 784), jnp.float32) / 255
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, jnp.asarray(tiny_mnist.train_labels, jnp.int32)).mean()
    assert abs(float(loss) - math.log(10)) < 0.35


def test_numpy_inference_matches_the_flax_model(tiny_mnist):
    model = build_model(TrainConfig(hidden=(32, 16), seed=1))
    images = tiny_mnist.test_images[:50]
    flax_logits = np.asarray(model(jnp.asarray(images.reshape(-1, 784), jnp.float32) / 255))
    numpy_logits = Predictor(TrainConfig(hidden=(32, 16)), export_weights(model)).logits(images)
    np.testing.assert_allclose(numpy_logits, flax_logits, rtol=1e-4, atol=1e-5)


def test_weights_export_import_round_trip():
    cfg = TrainConfig(hidden=(8,))
    source, target = build_model(cfg, seed=1), build_model(cfg, seed=2)
    import_weights(target, export_weights(source))
    for name, array in export_weights(target).items():
        np.testing.assert_array_equal(array, export_weights(source)[name])


def _subset(data: MnistData, n: int) -> MnistData:
    return MnistData(data.train_images[:n], data.train_labels[:n], data.test_images,
                     data.test_labels)


def test_can_overfit_64_images(tiny_mnist):
    cfg = TrainConfig(epochs=60, batch_size=16, lr=3e-3, validate_on="test")
    result = train(cfg, _subset(tiny_mnist, 64))
    assert result.history[-1].train_accuracy == 1.0
    assert result.history[-1].train_loss < 0.05


def test_learns_synthetic_digits_and_reports_history(tiny_mnist):
    seen = []
    cfg = TrainConfig(epochs=15, lr=3e-3, seed=0)
    result = train(cfg, tiny_mnist, on_epoch=seen.append)
    assert [r.epoch for r in result.history] == list(range(1, 16))
    assert seen[:-1] == result.history[:-1] and seen[-1].noted("kept") == result.history[-1]
    assert (result.kept_epoch, result.stop_reason) == (15, "trained all 15 epochs")
    assert result.history[-1].train_loss < result.history[0].train_loss / 3
    assert result.history[-1].val_accuracy > 0.85
    accuracy = (Predictor(result.config, result.weights).probabilities(tiny_mnist.test_images)
                .argmax(1) == tiny_mnist.test_labels).mean()
    assert accuracy > 0.9


def test_same_seed_same_numbers_other_seed_other_numbers(tiny_mnist):
    def first_epoch(seed):
        return train(TrainConfig(epochs=1, seed=seed), tiny_mnist).history[0]

    a, b, c = first_epoch(5), first_epoch(5), first_epoch(6)
    assert (a.train_loss, a.val_loss) == (b.train_loss, b.val_loss)
    assert a.train_loss != c.train_loss


@pytest.mark.parametrize("batch_size", [7, 540])
def test_every_image_is_used_once_per_epoch(tiny_mnist, batch_size):
    # With a negligible learning rate the epoch's reported accuracy is the initial model's
    # accuracy over exactly the training split: padding neither drops nor repeats images.
    cfg = TrainConfig(epochs=1, batch_size=batch_size, lr=1e-12, seed=4)
    split = split_for_training(cfg, tiny_mnist)
    initial = Predictor(cfg, export_weights(build_model(cfg)))
    expected = (initial.probabilities(split.train_images).argmax(1) == split.train_labels).mean()
    record = train(cfg, tiny_mnist).history[0]
    assert record.train_accuracy == pytest.approx(expected, abs=1e-6)


def test_validation_split_is_seeded_and_disjoint(tiny_mnist):
    cfg = TrainConfig(val_fraction=0.25, seed=9, validate_on="split")
    a, b = split_for_training(cfg, tiny_mnist), split_for_training(cfg, tiny_mnist)
    np.testing.assert_array_equal(a.val_images, b.val_images)
    assert len(a.val_images) == 150 and len(a.train_images) == 450
    # Together the two parts are exactly the training set: nothing lost, nothing shared.
    parts = sorted(r.tobytes() for r in np.concatenate([a.train_images, a.val_images]))
    assert parts == sorted(r.tobytes() for r in tiny_mnist.train_images.reshape(600, -1))
    on_test = split_for_training(cfg.replace(validate_on="test"), tiny_mnist)
    assert len(on_test.train_images) == 600 and len(on_test.val_images) == 200


def test_last_hold_out_is_the_end_of_the_training_set_as_in_keras(tiny_mnist):
    split = split_for_training(TrainConfig(val_fraction=0.25, seed=9), tiny_mnist)
    flat = tiny_mnist.train_images.reshape(600, -1)
    np.testing.assert_array_equal(split.train_images, flat[:450])
    np.testing.assert_array_equal(split.val_images, flat[450:])
    np.testing.assert_array_equal(split.val_labels, tiny_mnist.train_labels[450:])
    other_seed = split_for_training(TrainConfig(val_fraction=0.25, seed=1), tiny_mnist)
    np.testing.assert_array_equal(other_seed.val_images, split.val_images)


def test_onecycle_schedule_and_label_smoothing_train(tiny_mnist):
    cfg = TrainConfig(epochs=3, lr=3e-3, lr_schedule="onecycle", label_smoothing=0.1)
    history = train(cfg, tiny_mnist).history
    assert history[-1].lr < 3e-3 * 0.05  # the cycle ends near zero
    assert history[-1].val_accuracy > 0.5


def test_weight_decay_reaches_the_optimizer_and_shrinks_the_kernels(tiny_mnist):
    cfg = TrainConfig(epochs=2, hidden=(16,), lr=3e-3)
    plain, decayed = (train(cfg.replace(weight_decay=wd), tiny_mnist).weights for wd in (0, 1))
    # 2 epochs of 17 steps at lr 3e-3 with decay 1 keep (1 - 0.003)^34 = 0.90 of the kernels
    ratio = np.linalg.norm(decayed["dense_1.kernel"]) / np.linalg.norm(plain["dense_1.kernel"])
    assert 0.85 < ratio < 0.95


def test_inked_pixels_keeps_every_inked_pixel_and_tops_up_with_blank_ones():
    images = np.zeros((3, 784), np.uint8)
    images[0, [5, 100]] = 1
    images[2, [100, 783]] = 255
    pixels = inked_pixels(images)
    assert len(pixels) == 16 and list(pixels) == sorted(set(pixels))
    assert {5, 100, 783} <= set(pixels)
    assert len(inked_pixels(np.ones((2, 784), np.uint8))) == 784


def test_leaving_out_blank_pixels_trains_the_same_network(tiny_mnist, monkeypatch):
    cfg = TrainConfig(epochs=2, lr=3e-3, seed=2)
    train_images = split_for_training(cfg, tiny_mnist).train_images
    blank = np.flatnonzero(train_images.max(axis=0) == 0)
    assert len(blank) > 100  # the drawn digits leave a blank border, as MNIST's do
    trimmed = train(cfg, tiny_mnist)
    monkeypatch.setattr(digitnet.training.networks, "inked_pixels", lambda images: np.arange(784))
    every_pixel = train(cfg, tiny_mnist)
    for name, array in every_pixel.weights.items():
        np.testing.assert_allclose(trimmed.weights[name], array, rtol=1e-4, atol=1e-6)
    initial = export_weights(build_model(cfg))["dense_0.kernel"]
    untrained = np.setdiff1d(blank, inked_pixels(train_images))
    np.testing.assert_array_equal(trimmed.weights["dense_0.kernel"][untrained], initial[untrained])
    assert [r.val_loss for r in trimmed.history] == pytest.approx(
        [r.val_loss for r in every_pixel.history], rel=1e-4)


def test_each_epochs_validation_uses_that_epochs_weights(tiny_mnist):
    # Epoch 1 of a 2-epoch run is validated while epoch 2 trains; alone, it is validated at
    # the end. Both must report the same numbers: those of the weights after epoch 1.
    cfg = TrainConfig(epochs=2, lr=3e-3, seed=1)
    overlapped = train(cfg, tiny_mnist).history[0]
    alone = train(cfg.replace(epochs=1), tiny_mnist)
    assert (overlapped.val_loss, overlapped.val_accuracy) == (
        alone.history[0].val_loss, alone.history[0].val_accuracy)
    split = split_for_training(cfg, tiny_mnist)
    logits = Predictor(cfg, alone.weights).logits(split.val_images)
    assert alone.history[0].val_loss == pytest.approx(
        loss_and_accuracy(logits, split.val_labels)[0], rel=1e-6)


def test_epochs_stopped_early_leave_none_computing(tiny_mnist):
    # The caller stops with the next epoch in flight (a failed checkpoint write, early
    # stopping, Ctrl-C). Once it has stopped, that epoch must have finished, not be left
    # running on XLA's threads: a process exiting under it could crash as it shut down.
    @jax.jit
    def slow_epoch(state):  # a few tenths of a second of arithmetic
        return jax.lax.fori_loop(0, 100, lambda _, s: jnp.tanh(s @ s), state)

    dispatched = []

    def run_epoch(state, images, labels, epoch):
        dispatched.append(slow_epoch(state))
        return dispatched[-1], jnp.zeros(()), jnp.zeros(()), jnp.zeros(())

    state = jnp.full((512, 512), 1e-3)
    slow_epoch(state).block_until_ready()  # compiled before the epochs start
    images = tiny_mnist.train_images.reshape(len(tiny_mnist.train_images), -1)
    epochs = loop._epochs_in_flight(TrainConfig(epochs=3), run_epoch, state, images,
                                    tiny_mnist.train_labels, first=1, last=3)
    epoch, *_ = next(epochs)
    epochs.close()
    assert epoch == 1 and len(dispatched) == 2 and dispatched[1].is_ready()


def test_training_stopped_by_an_error_closes_its_epochs(tiny_mnist, monkeypatch):
    # ... so that the wait above happens before the error leaves train, not whenever the
    # generator is collected (the traceback keeps train's frame, and the generator, alive)
    started, epochs_in_flight = [], loop._epochs_in_flight

    def recorded(*args, **kwargs):
        started.append(epochs_in_flight(*args, **kwargs))
        return started[-1]

    def disk_full(checkpoint):
        raise OSError("No space left on device")

    monkeypatch.setattr(loop, "_epochs_in_flight", recorded)
    with pytest.raises(OSError):
        train(TrainConfig(epochs=3, hidden=(16,)), tiny_mnist, on_checkpoint=disk_full)
    assert started[0].gi_frame is None  # closed: its finally has run


def test_epoch_order_is_a_seeded_permutation_padded_to_whole_batches():
    cfg = TrainConfig(batch_size=32, seed=3)
    first = epoch_order(cfg, 1, 100)
    assert first.dtype == np.int32 and first.shape == (128,)
    assert sorted(first[:100]) == list(range(100)) and not first[100:].any()
    np.testing.assert_array_equal(first, epoch_order(cfg, 1, 100))
    assert not np.array_equal(first, epoch_order(cfg, 2, 100))
    assert not np.array_equal(first, epoch_order(cfg.replace(seed=4), 1, 100))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_one_core_limit_applies_only_before_jax_starts():
    jnp.zeros(1).block_until_ready()  # this test process has started JAX already
    assert limit_xla_to_one_core() is False

    probe = (
        "import os, jax; from digitnet.training import limit_xla_to_one_core\n"
        "before = os.sched_getaffinity(0); limited = limit_xla_to_one_core()\n"
        "assert os.sched_getaffinity(0) == before  # the caller keeps its cores\n"
        "assert float(jax.numpy.arange(4.0).sum()) == 6.0  # and JAX works\n"
        "pinned = [t for t in os.listdir('/proc/self/task')\n"
        "          if len(os.sched_getaffinity(int(t))) == 1]  # XLA's worker thread(s)\n"
        "print(limited, len(before), len(pinned))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    limited, cores, pinned = out[0] == "True", int(out[1]), int(out[2])
    assert limited == (cores > 1)
    if limited:
        assert pinned >= 1
