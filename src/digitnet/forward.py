"""The NumPy backend: a layer sequence's forward pass (digitnet.network), one case per kind.

This is what `predict`, `evaluate` and `serve` run, without JAX. Images are NHWC and
kernels HWIO, as Keras has them. A convolution is computed as its patches times the kernel
(one matrix product), which runs far faster on a CPU than a direct convolution at these
sizes (docs/performance.md); a max-pooling right after it runs before the bias and the
activation (network.max_pool_after says why that gives the same values).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .geometry import SIDE
from .network import (Activation, Conv, Dense, Dropout, Flatten, Network, Normalize, Pool,
                      conv_padding, largest_layer, max_pool_after, weight_names)

BATCH_VALUES = 1 << 24  # values of the widest layer in one forward batch (64 MB of float32)


def batch_size(layers: Network) -> int:
    """Images per forward pass, bounding its memory (1..4096)."""
    return int(np.clip(BATCH_VALUES // largest_layer(layers), 1, 4096))


def activate(name: str, x: np.ndarray) -> np.ndarray:
    """relu, sigmoid or tanh of float32 `x`, in place where it can be."""
    if name == "relu":
        return np.maximum(x, 0.0, out=x)
    if name == "tanh":
        return np.tanh(x, out=x)
    # sigmoid written through tanh, which cannot overflow: 1 / (1 + e^-x) = (1 + tanh(x/2)) / 2
    np.tanh(x * 0.5, out=x)
    x += 1.0
    x *= 0.5
    return x


def patches(x: np.ndarray, layer: Conv) -> np.ndarray:
    """(N, H, W, C) -> (N, H', W', k*k*C): each output position's window of the (zero-padded)
    input, ordered (row offset, column offset, channel) as kernel.reshape(k*k*C, out) is."""
    n, h, w, c = x.shape
    (top, bottom), (left, right) = conv_padding(layer, h), conv_padding(layer, w)
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    k, s = layer.kernel, layer.stride
    windows = sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::s, ::s]  # (N,H',W',C,k,k)
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(*windows.shape[:3], k * k * c)


def pool(x: np.ndarray, layer: Pool) -> np.ndarray:
    """Pooling of (N, H, W, C) over size x size windows with that stride (floor)."""
    n, h, w, c = x.shape
    k = layer.size
    blocks = x[:, : h // k * k, : w // k * k].reshape(n, h // k, k, w // k, k, c)
    return blocks.max(axis=(2, 4)) if layer.kind == "max" else blocks.mean(axis=(2, 4))


def logits(layers: Network, weights: dict[str, np.ndarray], images: np.ndarray) -> np.ndarray:
    """float32 (N, 10) logits of float32 (N, 784) images in [0, 1], which the layers may
    overwrite (an activation works in place): pass a copy of what must be kept."""
    x = images.reshape(len(images), SIDE, SIDE, 1)
    names = weight_names(layers)
    pooled_early: set[int] = set()
    for i, layer in enumerate(layers):
        match layer:
            case Normalize(scale, mean, std):
                x = (x * np.float32(scale) - np.float32(mean)) / np.float32(std)
            case Conv():
                kernel = weights[f"{names[i]}.kernel"]
                x = patches(x, layer) @ kernel.reshape(-1, layer.channels)
                at = max_pool_after(layers, i)
                if at is not None:
                    x = pool(x, layers[at])
                    pooled_early.add(at)
                x += weights[f"{names[i]}.bias"]
            case Pool():
                if i not in pooled_early:
                    x = pool(x, layer)
            case Flatten():
                x = x.reshape(len(x), -1)
            case Dense():
                x = x @ weights[f"{names[i]}.kernel"] + weights[f"{names[i]}.bias"]
            case Dropout():
                pass  # only while training
            case Activation(name):
                x = activate(name, x)
    return x
