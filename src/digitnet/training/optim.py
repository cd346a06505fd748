"""Adam as an Optax gradient transformation, with epsilon where Keras or the paper puts it.

Both forms fold the bias corrections into the step size, so that each weight costs one square
root and one division (the textbook form costs three divisions and a square root, which
matters on a CPU: the update of the 100k first-layer weights is about a third of a
batch-32 step):

    alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    m += (g - m) * (1 - beta1);  v += (g^2 - v) * (1 - beta2)
    param -= alpha * m / (sqrt(v) + eps_t)

"keras" (the tutorial's optimizer): eps_t = 1e-7, added to sqrt(v) itself.
"paper" (Kingma & Ba's Algorithm 1, and `optax.adam`): epsilon 1e-8 is added to the
bias-corrected sqrt(v), which is the same as eps_t = 1e-8 * sqrt(1 - beta2^t) here.
The two differ only where sqrt(v) is near epsilon.

`weight_decay` > 0 makes it AdamW (Loshchilov & Hutter's decoupled decay, as `optax.adamw`
has it): each step also takes lr * weight_decay * param off the kernels (the parameters of
two or more dimensions), never off the biases.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..config import ADAM_FORMS

EPSILON = {"keras": 1e-7, "paper": 1e-8}


class AdamState(NamedTuple):
    count: jax.Array  # int32, updates applied so far
    mu: optax.Updates  # first moment, shaped like the parameters
    nu: optax.Updates  # second moment


def adam(
    learning_rate: optax.ScalarOrSchedule,
    form: str = "keras",
    b1: float = 0.9,
    b2: float = 0.999,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Adam in `form` ("keras" or "paper"), with decoupled `weight_decay` of the kernels;
    `learning_rate` may be an Optax schedule."""
    if form not in ADAM_FORMS:
        raise ValueError(f"Adam form must be one of {', '.join(ADAM_FORMS)}, not {form!r}")
    eps = EPSILON[form]

    def init(params: optax.Params) -> AdamState:
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return AdamState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def update(grads: optax.Updates, state: AdamState, params: optax.Params | None = None):
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        t = (state.count + 1).astype(jnp.float32)
        alpha = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        eps_t = eps if form == "keras" else eps * jnp.sqrt(1 - b2**t)
        mu = jax.tree.map(lambda m, g: m + (g - m) * (1 - b1), state.mu, grads)
        nu = jax.tree.map(lambda v, g: v + (g * g - v) * (1 - b2), state.nu, grads)
        steps = jax.tree.map(lambda m, v: -(m * alpha) / (jnp.sqrt(v) + eps_t), mu, nu)
        if weight_decay:
            steps = jax.tree.map(lambda s, p: s - (lr * weight_decay) * p if p.ndim > 1 else s,
                                 steps, params)
        return steps, AdamState(state.count + 1, mu, nu)

    return optax.GradientTransformation(init, update)
