"""Flax NNX networks, one per family in digitnet.models. They return logits; softmax is
applied by the loss and by `predict`.

Weights leave a network as a flat dict of NumPy arrays named as its family's
tensor_shapes(): the layout the model file stores and the NumPy inference reads.
A family's training-only tricks live here beside its network (see `TrainingNetwork`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..config import IMAGE_PIXELS, TrainConfig
from ..models import family
from ..models.cnn import KERNEL, SIDE, conv_layout

_glorot = nnx.initializers.glorot_uniform()  # Keras' default for Dense and Conv2D kernels
ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


class MLP(nnx.Module):
    """Fully connected network: (N, 784) float32 in [0, 1] -> (N, 10) logits.

    Kernels start Glorot-uniform and biases at zero, as Keras' Dense layers do, so the
    default configuration is the reference network and not merely the same shapes."""

    def __init__(self, cfg: TrainConfig, *, rngs: nnx.Rngs):
        sizes = family("mlp").sizes(cfg)
        self.activation = cfg.activation
        self.layers = nnx.List([nnx.Linear(n_in, n_out, kernel_init=_glorot, rngs=rngs)
                                for n_in, n_out in zip(sizes, sizes[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        return _dense_stack(self.layers, ACTIVATIONS[self.activation], x)

    def named_params(self) -> dict[str, nnx.Param]:
        return _dense_params(self.layers)


class Conv3x3(nnx.Module):
    """3x3 'same' convolution of NHWC images as patches times a (9 in, out) matrix, which
    XLA's CPU backend runs many times faster than its direct convolution at these sizes.
    `pooling` ('max', 'avg' or None) pools the product before the bias is added, which gives
    the same values (the bias is constant over each window) for a quarter of the additions."""

    def __init__(self, n_in: int, n_out: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_glorot(rngs.params(), (KERNEL, KERNEL, n_in, n_out)))
        self.bias = nnx.Param(jnp.zeros((n_out,)))

    def __call__(self, x: jax.Array, pooling: str | None = None) -> jax.Array:
        product = patch_product(x, self.kernel[...])
        return (pool(product, pooling) if pooling else product) + self.bias[...]


def _patches(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N x H x W, 9C): each pixel's zero-padded 3x3 neighbourhood, ordered
    (row offset, column offset, channel) as kernel.reshape(9C, out) is."""
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = [padded[:, i:i + h, j:j + w] for i in range(KERNEL) for j in range(KERNEL)]
    return jnp.concatenate(windows, axis=-1).reshape(n * h * w, KERNEL * KERNEL * c)


@jax.custom_vjp
def patch_product(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """(N, H, W, in) images convolved with a (3, 3, in, out) kernel ('same' padding, no bias).

    The gradients are written out (_patch_product_gradients) rather than left to autodiff,
    whose kernel gradient had XLA copy the whole output gradient into a transposed layout
    first (see docs/performance.md)."""
    return _patch_product_forward(x, kernel)[0]


def _patch_product_forward(x: jax.Array, kernel: jax.Array):
    patches = _patches(x)
    product = patches @ kernel.reshape(patches.shape[1], -1)
    return product.reshape(*x.shape[:3], kernel.shape[-1]), (patches, kernel)


def _patch_product_gradients(residuals, grad: jax.Array):
    patches, kernel = residuals
    n, h, w, n_out = grad.shape
    grad = grad.reshape(-1, n_out)
    grad_kernel = (patches.T @ grad).reshape(kernel.shape)
    # Each patch column came from one shifted window of the padded input: add them back.
    grad_patches = (grad @ kernel.reshape(-1, n_out).T).reshape(n, h, w, KERNEL * KERNEL, -1)
    grad_padded = sum(jnp.pad(grad_patches[:, :, :, KERNEL * i + j],
                              ((0, 0), (i, KERNEL - 1 - i), (j, KERNEL - 1 - j), (0, 0)))
                      for i in range(KERNEL) for j in range(KERNEL))
    return grad_padded[:, 1:h + 1, 1:w + 1], grad_kernel


patch_product.defvjp(_patch_product_forward, _patch_product_gradients)


def _even_crop(x: jax.Array) -> jax.Array:
    """(N, H, W, C) without an odd last row or column, as (N, H/2, 2, W/2, 2, C) windows."""
    n, h, w, c = x.shape
    return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)


def pool(x: jax.Array, kind: str) -> jax.Array:
    """2x2 'max' or 'avg' pooling of (N, H, W, C); an odd last row or column is dropped."""
    return max_pool(x) if kind == "max" else _even_crop(x).mean(axis=(2, 4))


@jax.custom_vjp
def max_pool(x: jax.Array) -> jax.Array:
    """2x2 max-pooling whose gradient goes to the first input (in row-major order) equal to
    its window's maximum, as PyTorch's does.

    Autodiff's version divides the gradient among tied maxima, which costs a count of the
    ties in every window (about a tenth of the `cnn` recipe's training step). Ties are
    common (an image's blank margins give equal outputs), but tied inputs there have equal
    patches too, so either choice gives the kernels the same gradient."""
    return _even_crop(x).max(axis=(2, 4))


def _max_pool_forward(x: jax.Array):
    pooled = max_pool(x)
    return pooled, (x, pooled)


def _max_pool_gradient(residuals, grad: jax.Array):
    x, pooled = residuals
    windows = _even_crop(x)
    taken = jnp.zeros(pooled.shape, bool)
    rows = []
    for i in range(2):
        row = []
        for j in range(2):
            first = (windows[:, :, i, :, j] == pooled) & ~taken
            taken = taken | first
            row.append(jnp.where(first, grad, 0.0).astype(x.dtype))
        rows.append(jnp.stack(row, axis=3))  # (N, H/2, W/2, 2, C): this row of each window
    n, h, w, c = x.shape
    grad_even = jnp.stack(rows, axis=2).reshape(n, h // 2 * 2, w // 2 * 2, c)
    return (jnp.pad(grad_even, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


max_pool.defvjp(_max_pool_forward, _max_pool_gradient)


class CNN(nnx.Module):
    """Convolutional network (see digitnet.models.cnn): (N, 784) float32 in [0, 1] -> (N, 10)."""

    def __init__(self, cfg: TrainConfig, *, rngs: nnx.Rngs):
        layout = conv_layout(cfg)
        self.activation, self.pool = cfg.activation, cfg.pool
        self.pools = tuple(pools for _, _, pools in layout)
        self.convs = nnx.List([Conv3x3(n_in, n_out, rngs=rngs) for n_in, n_out, _ in layout])
        sizes = family("cnn").dense_sizes(cfg)
        self.layers = nnx.List([nnx.Linear(n_in, n_out, kernel_init=_glorot, rngs=rngs)
                                for n_in, n_out in zip(sizes, sizes[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        activation = ACTIVATIONS[self.activation]
        x = x.reshape(-1, SIDE, SIDE, 1)
        for conv, pools in zip(self.convs, self.pools):
            if pools and self.pool == "max":  # as in digitnet.models.cnn: the same values
                x = activation(conv(x, pooling="max"))
            else:
                x = activation(conv(x))
                x = pool(x, self.pool) if pools else x
        return _dense_stack(self.layers, activation, x.reshape(x.shape[0], -1))

    def named_params(self) -> dict[str, nnx.Param]:
        convs = {}
        for i, conv in enumerate(self.convs):
            convs[f"conv_{i}.kernel"], convs[f"conv_{i}.bias"] = conv.kernel, conv.bias
        return {**convs, **_dense_params(self.layers)}


def _dense_stack(layers: nnx.List, activation, x: jax.Array) -> jax.Array:
    for layer in layers[:-1]:
        x = activation(layer(x))
    return layers[-1](x)


def _dense_params(layers: nnx.List) -> dict[str, nnx.Param]:
    params = {}
    for i, layer in enumerate(layers):
        params[f"dense_{i}.kernel"], params[f"dense_{i}.bias"] = layer.kernel, layer.bias
    return params


NETWORKS: dict[str, type[nnx.Module]] = {"mlp": MLP, "cnn": CNN}


def build_model(cfg: TrainConfig, seed: int | None = None) -> nnx.Module:
    """A freshly initialised network for `cfg` (seeded by cfg.seed unless `seed` is given).

    The initialisation runs as one compiled program: op by op it would be some thirty
    small ones, each compiled or loaded from the cache on its own (0.33 s against 0.12 s
    for the tutorial network with a warm cache; the weights are the same to the bit)."""
    return _initialise(cfg, jax.random.key(cfg.seed if seed is None else seed))


@functools.partial(nnx.jit, static_argnums=0)  # compiled once per config, for any seed
def _initialise(cfg: TrainConfig, key: jax.Array) -> nnx.Module:
    return NETWORKS[cfg.model](cfg, rngs=nnx.Rngs(key))


def export_weights(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's parameters as float32 NumPy arrays, named as its family's tensor_shapes()."""
    return {name: np.asarray(p[...], dtype=np.float32)
            for name, p in model.named_params().items()}


def import_weights(model: nnx.Module, weights: dict[str, np.ndarray]) -> nnx.Module:
    """Copy arrays named as in export_weights() into `model` (in place) and return it."""
    for name, param in model.named_params().items():
        param.set_value(jnp.asarray(weights[name]))
    return model


@dataclass
class TrainingNetwork:
    """A network as the training loop runs it: `model` reads the `pixels` (indices into the
    784) of each image, in that order, and `full_weights` turns its exported weights into
    the whole network's (for validation and the model file)."""

    model: nnx.Module
    pixels: np.ndarray
    full_weights: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def training_network(cfg: TrainConfig, train_images: np.ndarray) -> TrainingNetwork:
    """The network `cfg` describes, freshly initialised, as it trains on uint8 (N, 784)
    `train_images`."""
    model = build_model(cfg)
    every_pixel = np.arange(IMAGE_PIXELS)
    if cfg.model != "mlp" or cfg.augment:  # augmentation moves ink onto blank pixels
        return TrainingNetwork(model, every_pixel, lambda weights: weights)
    # The first layer reads only the inked pixels while it trains.
    pixels = inked_pixels(train_images)
    first = model.layers[0].kernel
    initial = np.asarray(first[...])
    first.set_value(jnp.asarray(initial[pixels]))

    def full_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The trained rows, and the blank pixels' initial ones."""
        kernel = initial.copy()
        kernel[pixels] = weights["dense_0.kernel"]
        return {**weights, "dense_0.kernel": kernel}

    return TrainingNetwork(model, pixels, full_weights)


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
