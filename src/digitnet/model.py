"""Flax NNX networks. They return logits; softmax is applied by the loss and by `predict`.

Weights leave the model as a flat dict of NumPy arrays named as in
modelfile.weight_shapes(): the layout the model file stores and the NumPy inference reads.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from .config import TrainConfig


class MLP(nnx.Module):
    """Fully connected ReLU network: (N, 784) float32 in [0, 1] -> (N, 10) logits.

    Kernels start Glorot-uniform and biases at zero, as Keras' Dense layers do, so the
    default configuration is the reference network and not merely the same shapes."""

    def __init__(self, sizes: tuple[int, ...], *, rngs: nnx.Rngs):
        init = nnx.initializers.glorot_uniform()
        self.layers = nnx.List(
            [nnx.Linear(n_in, n_out, kernel_init=init, rngs=rngs)
             for n_in, n_out in zip(sizes, sizes[1:])]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


def build_model(cfg: TrainConfig, seed: int | None = None) -> MLP:
    """A freshly initialised network for `cfg` (seeded by cfg.seed unless `seed` is given)."""
    return MLP(cfg.layer_sizes, rngs=nnx.Rngs(cfg.seed if seed is None else seed))


def export_weights(model: MLP) -> dict[str, np.ndarray]:
    """The model's parameters as float32 NumPy arrays, named as in modelfile.weight_shapes()."""
    weights = {}
    for i, layer in enumerate(model.layers):
        weights[f"dense_{i}.kernel"] = np.asarray(layer.kernel[...], dtype=np.float32)
        weights[f"dense_{i}.bias"] = np.asarray(layer.bias[...], dtype=np.float32)
    return weights


def import_weights(model: MLP, weights: dict[str, np.ndarray]) -> MLP:
    """Copy arrays named as in export_weights() into `model` (in place) and return it."""
    for i, layer in enumerate(model.layers):
        layer.kernel[...] = weights[f"dense_{i}.kernel"]
        layer.bias[...] = weights[f"dense_{i}.bias"]
    return model
