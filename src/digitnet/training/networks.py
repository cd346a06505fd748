"""The Flax backend: the network a layer sequence describes (digitnet.network), as an NNX
module that trains, one case per layer kind. It returns logits; softmax is applied by the
loss and by `predict`.

Weights leave a network as a flat dict of NumPy arrays named as network.tensor_shapes()
says: the layout the model file stores and the NumPy forward pass reads. The training-only
speed-ups live here: convolutions as patch products with written-out gradients, max-pooling
before the bias and activation, and a first dense layer that reads only inked pixels
(`TrainingNetwork`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..config import TrainConfig
from ..geometry import IMAGE_PIXELS, SIDE
from ..network import (Activation, Conv, Dense, Dropout, Flatten, Network, Normalize, Pool,
                       conv_padding, input_shapes, max_pool_after, reads_flat_pixels,
                       weight_names)

_glorot = nnx.initializers.glorot_uniform()  # Keras' default for Dense and Conv2D kernels
ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


class ConvLayer(nnx.Module):
    """A convolution of NHWC images as patches times a (k*k*in, out) matrix, which XLA's CPU
    backend runs many times faster than its direct convolution at these sizes. `pooling`
    pools the product before the bias is added (network.max_pool_after says why)."""

    def __init__(self, layer: Conv, n_in: int, *, rngs: nnx.Rngs):
        self.layer = layer
        self.kernel = nnx.Param(_glorot(rngs.params(), (layer.kernel, layer.kernel, n_in,
                                                        layer.channels)))
        self.bias = nnx.Param(jnp.zeros((layer.channels,)))

    def __call__(self, x: jax.Array, pooling: Pool | None = None) -> jax.Array:
        product = patch_product(x, self.kernel[...], self.layer)
        return (pool(product, pooling) if pooling else product) + self.bias[...]


def _padded(x: jax.Array, layer: Conv) -> jax.Array:
    n, h, w, c = x.shape
    return jnp.pad(x, ((0, 0), conv_padding(layer, h), conv_padding(layer, w), (0, 0)))


def _patches(x: jax.Array, layer: Conv) -> tuple[jax.Array, tuple[int, int]]:
    """(N, H, W, C) -> ((N x H' x W', k*k*C), (H', W')): each output position's window of
    the padded input, ordered (row offset, column offset, channel) as
    kernel.reshape(k*k*C, out) is."""
    padded = _padded(x, layer)
    k, s = layer.kernel, layer.stride
    h_out = (padded.shape[1] - k) // s + 1
    w_out = (padded.shape[2] - k) // s + 1
    windows = [padded[:, i:i + s * (h_out - 1) + 1:s, j:j + s * (w_out - 1) + 1:s]
               for i in range(k) for j in range(k)]
    patches = jnp.concatenate(windows, axis=-1)
    return patches.reshape(-1, k * k * x.shape[3]), (h_out, w_out)


def patch_product(x: jax.Array, kernel: jax.Array, layer: Conv) -> jax.Array:
    """(N, H, W, in) images convolved with a (k, k, in, out) kernel as `layer` pads and
    strides them (no bias).

    The gradients are written out (_patch_product_gradients) rather than left to autodiff,
    whose kernel gradient had XLA copy the whole output gradient into a transposed layout
    first (see docs/performance.md)."""
    return _patch_product(x, kernel, (layer, x.shape))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _patch_product(x: jax.Array, kernel: jax.Array, geometry: tuple) -> jax.Array:
    return _patch_product_forward(x, kernel, geometry)[0]


def _patch_product_forward(x: jax.Array, kernel: jax.Array, geometry: tuple):
    patches, (h_out, w_out) = _patches(x, geometry[0])
    product = patches @ kernel.reshape(patches.shape[1], -1)
    return product.reshape(x.shape[0], h_out, w_out, kernel.shape[-1]), (patches, kernel)


def _patch_product_gradients(geometry: tuple, residuals, grad: jax.Array):
    layer, x_shape = geometry
    patches, kernel = residuals
    n, h_out, w_out, n_out = grad.shape
    k, s = layer.kernel, layer.stride
    grad = grad.reshape(-1, n_out)
    grad_kernel = (patches.T @ grad).reshape(kernel.shape)
    # Each patch column came from one strided window of the padded input: add them back.
    grad_patches = (grad @ kernel.reshape(-1, n_out).T).reshape(n, h_out, w_out, k * k, -1)
    (top, bottom), (left, right) = conv_padding(layer, x_shape[1]), conv_padding(layer, x_shape[2])
    h_pad, w_pad = x_shape[1] + top + bottom, x_shape[2] + left + right
    zero = jnp.zeros((), grad_patches.dtype)
    grad_padded = sum(
        jax.lax.pad(grad_patches[:, :, :, k * i + j], zero,
                    ((0, 0, 0),
                     (i, h_pad - i - s * (h_out - 1) - 1, s - 1),
                     (j, w_pad - j - s * (w_out - 1) - 1, s - 1),
                     (0, 0, 0)))
        for i in range(k) for j in range(k))
    return grad_padded[:, top:top + x_shape[1], left:left + x_shape[2]], grad_kernel


_patch_product.defvjp(_patch_product_forward, _patch_product_gradients)


def _windows(x: jax.Array, size: int) -> jax.Array:
    """(N, H, W, C) as (N, H/size, size, W/size, size, C) windows; the rows and columns that
    fill no whole window are dropped."""
    n, h, w, c = x.shape
    return x[:, : h // size * size, : w // size * size].reshape(
        n, h // size, size, w // size, size, c)


def pool(x: jax.Array, layer: Pool) -> jax.Array:
    """`layer`'s pooling of (N, H, W, C) (network.Pool)."""
    if layer.kind == "max":
        return max_pool(x, layer.size)
    return _windows(x, layer.size).mean(axis=(2, 4))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x: jax.Array, size: int) -> jax.Array:
    """size x size max-pooling whose gradient goes to the first input (in row-major order)
    equal to its window's maximum, as PyTorch's does.

    Autodiff's version divides the gradient among tied maxima, which costs a count of the
    ties in every window (about a tenth of the `cnn` recipe's training step). Ties are
    common (an image's blank margins give equal outputs), but tied inputs there have equal
    patches too, so either choice gives the kernels the same gradient."""
    return _windows(x, size).max(axis=(2, 4))


def _max_pool_forward(x: jax.Array, size: int):
    pooled = max_pool(x, size)
    return pooled, (x, pooled)


def _max_pool_gradient(size: int, residuals, grad: jax.Array):
    x, pooled = residuals
    windows = _windows(x, size)
    taken = jnp.zeros(pooled.shape, bool)
    rows = []
    for i in range(size):
        row = []
        for j in range(size):
            first = (windows[:, :, i, :, j] == pooled) & ~taken
            taken = taken | first
            row.append(jnp.where(first, grad, 0.0).astype(x.dtype))
        rows.append(jnp.stack(row, axis=3))  # (N, H/size, W/size, size, C): this row
    n, h, w, c = x.shape
    grad_whole = jnp.stack(rows, axis=2).reshape(n, h // size * size, w // size * size, c)
    return (jnp.pad(grad_whole, ((0, 0), (0, h % size), (0, w % size), (0, 0))),)


max_pool.defvjp(_max_pool_forward, _max_pool_gradient)


class SequenceNetwork(nnx.Module):
    """The network a layer sequence describes: (N, P) float32 pixels in [0, 1] -> (N, 10)
    logits, where P is 784, or fewer where the first dense layer reads only some pixels
    (see training_network).

    Kernels start Glorot-uniform and biases at zero, as Keras' layers do, and the layers
    are made in order, so a family's network starts from the same numbers it always has.
    The weighted layers sit in `convs` and `layers` (the dense ones), the names the
    checkpoints' paths have always had."""

    def __init__(self, network: Network, *, rngs: nnx.Rngs):
        self.network = network
        self.names = tuple(weight_names(network))
        convs, dense = [], []
        for layer, shape in zip(network, input_shapes(network)):
            if isinstance(layer, Conv):
                convs.append(ConvLayer(layer, shape[2], rngs=rngs))
            elif isinstance(layer, Dense):
                dense.append(nnx.Linear(shape[0], layer.width, kernel_init=_glorot, rngs=rngs))
        self.convs, self.layers = nnx.List(convs), nnx.List(dense)

    def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        """Logits of `x`; `dropout_key` turns the dropout layers on (training)."""
        if x.shape[-1] == IMAGE_PIXELS:
            x = x.reshape(-1, SIDE, SIDE, 1)
        convs, dense = iter(self.convs), iter(self.layers)
        pooled_early: set[int] = set()
        for i, layer in enumerate(self.network):
            match layer:
                case Normalize(scale, mean, std):
                    x = (x * scale - mean) / std
                case Conv():
                    at = max_pool_after(self.network, i)
                    x = next(convs)(x, pooling=None if at is None else self.network[at])
                    if at is not None:
                        pooled_early.add(at)
                case Pool():
                    if i not in pooled_early:
                        x = pool(x, layer)
                case Flatten():
                    x = x.reshape(x.shape[0], -1)
                case Dense():
                    x = next(dense)(x)
                case Dropout(rate):
                    if dropout_key is not None and rate > 0:
                        keep = jax.random.bernoulli(jax.random.fold_in(dropout_key, i),
                                                    1.0 - rate, x.shape)
                        x = jnp.where(keep, x / (1.0 - rate), 0.0)
                case Activation(name):
                    x = ACTIVATIONS[name](x)
        return x

    def named_params(self) -> dict[str, nnx.Param]:
        params = {}
        # every convolution comes before the first dense layer: once flat, an input stays so
        for name, module in zip([n for n in self.names if n], [*self.convs, *self.layers]):
            params[f"{name}.kernel"], params[f"{name}.bias"] = module.kernel, module.bias
        return params


def build_model(cfg: TrainConfig, seed: int | None = None) -> nnx.Module:
    """A freshly initialised network for `cfg` (seeded by cfg.seed unless `seed` is given).

    The initialisation runs as one compiled program: op by op it would be some thirty
    small ones, each compiled or loaded from the cache on its own (0.33 s against 0.12 s
    for the tutorial network with a warm cache; the weights are the same to the bit)."""
    return _initialise(cfg.network, jax.random.key(cfg.seed if seed is None else seed))


@functools.partial(nnx.jit, static_argnums=0)  # compiled once per network, for any seed
def _initialise(network: Network, key: jax.Array) -> nnx.Module:
    return SequenceNetwork(network, rngs=nnx.Rngs(key))


def export_weights(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's parameters as float32 NumPy arrays, named as network.tensor_shapes()."""
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
    # augmentation inks blank pixels, and weight decay moves weights whose gradient is 0
    if not reads_flat_pixels(cfg.network) or cfg.augment or cfg.weight_decay:
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
