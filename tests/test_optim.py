"""Adam in its two forms, checked against Keras' update written out in NumPy and against Optax."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from digitnet.training.optim import adam


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


def run_tree(tx, params, grads):
    """Apply `tx` to the parameter tree once per gradient tree; the final (params, state)."""
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def run(tx, start, grads):
    params, state = run_tree(tx, {"w": jnp.asarray(start, jnp.float32)},
                             [{"w": jnp.asarray(g, jnp.float32)} for g in grads])
    return np.asarray(params["w"]), state


def gradients(rng):
    # Tiny gradients too: there the place of epsilon (on sqrt(v) or on the corrected one) shows.
    return [rng.normal(size=(5, 3)) * scale for scale in (1.0, 1e-3, 1e-8, 0.5)]


@pytest.mark.parametrize("schedule", [1e-3, optax.linear_schedule(1e-2, 1e-3, 4)])
def test_keras_form_matches_keras_update(schedule):
    rng = np.random.default_rng(0)
    start, grads = rng.normal(size=(5, 3)), gradients(rng)
    lrs = [float(schedule(i)) if callable(schedule) else schedule for i in range(len(grads))]
    params, state = run(adam(schedule, "keras"), start, grads)
    np.testing.assert_allclose(params, keras_adam_steps(start, grads, lrs), rtol=1e-5, atol=1e-6)
    assert int(state.count) == len(grads)


def test_paper_form_matches_optax_adam():
    rng = np.random.default_rng(1)
    start, grads = rng.normal(size=(5, 3)), gradients(rng)
    schedule = optax.cosine_onecycle_schedule(4, 1e-2)
    ours, _ = run(adam(schedule, "paper"), start, grads)
    theirs, _ = run(optax.adam(schedule), start, grads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_weight_decay_matches_optax_adamw_on_kernels_and_leaves_biases_alone():
    rng = np.random.default_rng(2)
    params = {"kernel": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
              "bias": jnp.asarray(rng.normal(size=3), jnp.float32)}
    grads = [{"kernel": jnp.asarray(g, jnp.float32), "bias": jnp.asarray(g[0], jnp.float32)}
             for g in gradients(rng)]
    schedule = optax.cosine_onecycle_schedule(4, 1e-2)
    kernels_only = lambda tree: {"kernel": True, "bias": False}  # noqa: E731
    ours, theirs, undecayed = (
        {name: np.asarray(value) for name, value in run_tree(tx, params, grads)[0].items()}
        for tx in (adam(schedule, "paper", weight_decay=0.3),
                   optax.adamw(schedule, weight_decay=0.3, mask=kernels_only),
                   adam(schedule, "paper")))
    for name in params:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours["bias"], undecayed["bias"])
    assert np.abs(ours["kernel"] - undecayed["kernel"]).max() > 1e-4


def test_the_forms_differ_only_where_gradients_are_tiny():
    start, grads = np.zeros(2), [np.asarray([1.0, 1e-9])]
    keras, _ = run(adam(1.0, "keras"), start, grads)
    paper, _ = run(adam(1.0, "paper"), start, grads)
    assert keras[0] == pytest.approx(paper[0], rel=1e-5)
    assert abs(keras[1]) < abs(paper[1]) / 5


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="keras, paper"):
        adam(1e-3, "nadam")
