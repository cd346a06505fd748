"""Adam in Keras' form, checked against the update written out in NumPy."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from digitnet.optim import adam


def keras_adam_steps(param, grads, lrs, b1=0.9, b2=0.999, eps=1e-7):
    """Keras' Adam update (keras/optimizers/adam.py), one gradient at a time, in float64."""
    m = np.zeros_like(param)
    v = np.zeros_like(param)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        param = param - m * alpha / (np.sqrt(v) + eps)
    return param


@pytest.mark.parametrize("schedule", [1e-3, optax.linear_schedule(1e-2, 1e-3, 4)])
def test_matches_keras_update(schedule):
    rng = np.random.default_rng(0)
    start = rng.normal(size=(5, 3))
    # Tiny gradients too: there epsilon's place (on sqrt(v), not on the corrected one) shows.
    grads = [rng.normal(size=(5, 3)) * scale for scale in (1.0, 1e-3, 1e-8, 0.5)]
    lrs = [schedule(i) if callable(schedule) else schedule for i in range(len(grads))]

    tx = adam(schedule)
    params = {"w": jnp.asarray(start, jnp.float32)}
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        params = optax.apply_updates(params, updates)

    expected = keras_adam_steps(start, grads, [float(lr) for lr in lrs])
    np.testing.assert_allclose(np.asarray(params["w"]), expected, rtol=1e-5, atol=1e-6)
    assert int(state.count) == len(grads)


def test_differs_from_optax_adam_only_where_gradients_are_tiny():
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.asarray([1.0, 1e-9])}  # a normal gradient and one below epsilon
    ours, _ = adam(1.0).update(grads, adam(1.0).init(params))
    theirs, _ = optax.adam(1.0, eps=1e-7).update(grads, optax.adam(1.0, eps=1e-7).init(params))
    assert float(ours["w"][0]) == pytest.approx(float(theirs["w"][0]), rel=1e-5)
    assert abs(float(ours["w"][1])) < abs(float(theirs["w"][1])) / 5
