"""The convolutional family: blocks of 3x3 convolutions ('same' padding, then the activation:
ReLU unless chosen otherwise) each ending in 2x2 max- or average-pooling, then dense layers
with the same activation and 10 outputs.

Images are NHWC (N, 28, 28, 1); kernels are HWIO (3, 3, in, out), as Keras stores them; the
last block's output is flattened in (row, column, channel) order, as Keras' Flatten does.
A convolution is computed as its 3x3 patches times the kernel (one matrix product): on a CPU
that runs far faster than a direct convolution at these sizes (docs/performance.md).
Where a block max-pools, the bias and the activation are applied after the pooling: a maximum
commutes with adding a constant and with a non-decreasing activation (all of digitnet's are),
so the values are the same and a quarter of them are computed.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..config import NUM_CLASSES, TrainConfig
from ..errors import ConfigError
from .base import Family, activate, check_widths
from .mlp import dense_forward, dense_shapes

KERNEL = 3
SIDE = 28


def conv_layout(cfg: TrainConfig) -> list[tuple[int, int, bool]]:
    """(in channels, out channels, pool after it) of every convolution, in order."""
    layout, channels = [], 1
    for out in cfg.conv:
        for k in range(cfg.convs_per_block):
            layout.append((channels, out, k == cfg.convs_per_block - 1))
            channels = out
    return layout


def flat_size(cfg: TrainConfig) -> int:
    """Values per image after the last block: side^2 x channels."""
    side = SIDE >> len(cfg.conv)
    return side * side * cfg.conv[-1]


def patches(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, H, W, 9C): each pixel's 3x3 neighbourhood (zero-padded), ordered
    (row offset, column offset, channel), matching kernel.reshape(9C, out)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = sliding_window_view(padded, (KERNEL, KERNEL), axis=(1, 2))  # (N, H, W, C, 3, 3)
    n, h, w, c = x.shape
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n, h, w, KERNEL * KERNEL * c)


def pool(x: np.ndarray, kind: str) -> np.ndarray:
    """2x2 'max' or 'avg' pooling of (N, H, W, C); an odd last row or column is dropped (Keras'
    'valid' padding)."""
    n, h, w, c = x.shape
    blocks = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    return blocks.max(axis=(2, 4)) if kind == "max" else blocks.mean(axis=(2, 4))


class CNN(Family):
    name = "cnn"
    fields = ("conv", "convs_per_block", "pool", "dense")
    inference_batch = 256  # the patches of a 256-image batch take ~60 MB at 32 channels

    def check(self, cfg: TrainConfig) -> None:
        check_widths("conv channels", cfg.conv)
        check_widths("dense widths", cfg.dense, allow_empty=True)
        if cfg.convs_per_block < 1:
            raise ConfigError(f"convs_per_block must be at least 1, got {cfg.convs_per_block}")
        if SIDE >> len(cfg.conv) < 1:
            raise ConfigError(f"at most 4 conv blocks fit a 28x28 image, got {len(cfg.conv)}")

    def dense_sizes(self, cfg: TrainConfig) -> tuple[int, ...]:
        return (flat_size(cfg), *cfg.dense, NUM_CLASSES)

    def tensor_shapes(self, cfg: TrainConfig) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for i, (n_in, n_out, _) in enumerate(conv_layout(cfg)):
            shapes[f"conv_{i}.kernel"] = (KERNEL, KERNEL, n_in, n_out)
            shapes[f"conv_{i}.bias"] = (n_out,)
        return {**shapes, **dense_shapes(self.dense_sizes(cfg))}

    def logits(self, cfg, weights, images):
        x = images.reshape(len(images), SIDE, SIDE, 1)
        for i, (n_in, n_out, pools) in enumerate(conv_layout(cfg)):
            kernel = weights[f"conv_{i}.kernel"].reshape(KERNEL * KERNEL * n_in, n_out)
            x = patches(x) @ kernel
            if pools and cfg.pool == "max":  # pooled first: the same values, a quarter the work
                x = activate(cfg.activation, pool(x, "max") + weights[f"conv_{i}.bias"])
            else:
                x = activate(cfg.activation, x + weights[f"conv_{i}.bias"])
                if pools:
                    x = pool(x, cfg.pool)
        return dense_forward(weights, x.reshape(len(x), -1), len(cfg.dense) + 1, cfg.activation)

    def describe(self, cfg: TrainConfig) -> str:
        per_block = f"{cfg.convs_per_block}x" if cfg.convs_per_block > 1 else ""
        blocks = " ".join(f"{per_block}conv{c}-{cfg.pool}pool" for c in cfg.conv)
        shown = "" if cfg.activation == "relu" else f" {cfg.activation}"
        return f"28x28 {blocks} dense {'-'.join(map(str, self.dense_sizes(cfg)))}{shown}"

    def flops(self, cfg: TrainConfig) -> int:
        total, side = 0, SIDE
        for n_in, n_out, pool in conv_layout(cfg):
            total += 2 * side * side * KERNEL * KERNEL * n_in * n_out
            side = side // 2 if pool else side
        sizes = self.dense_sizes(cfg)
        return total + sum(2 * a * b for a, b in zip(sizes, sizes[1:]))
