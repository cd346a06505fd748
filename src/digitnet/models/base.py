"""What every network family provides (see the package docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import TrainConfig


class Family:
    """One kind of network. Subclasses fill in the class attributes and the methods."""

    name: str = ""
    fields: tuple[str, ...] = ()  # TrainConfig fields that only this family uses
    inference_batch: int = 1024  # images per forward pass in NumPy (bounds the memory)

    def check(self, cfg: TrainConfig) -> None:
        """Raise ConfigError if this family's fields of `cfg` make no network."""

    def tensor_shapes(self, cfg: TrainConfig) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every float32 weight array of the network `cfg` describes."""
        raise NotImplementedError

    def logits(self, cfg: TrainConfig, weights: dict[str, np.ndarray],
               images: np.ndarray) -> np.ndarray:
        """float32 (N, 10) logits of float32 (N, 784) images in [0, 1]."""
        raise NotImplementedError

    def describe(self, cfg: TrainConfig) -> str:
        """A short human description of the network, e.g. '784-128-64-10'."""
        raise NotImplementedError

    def flops(self, cfg: TrainConfig) -> int:
        """Multiply-adds x 2 of one image's forward pass (for the benchmarks)."""
        raise NotImplementedError


def check_widths(field: str, widths: tuple[int, ...], *, allow_empty: bool = False) -> None:
    if (not widths and not allow_empty) or any(w < 1 for w in widths):
        raise ConfigError(f"{field} must be positive integers, got {widths!r}")


def activate(name: str, x: np.ndarray) -> np.ndarray:
    """A hidden layer's activation, in place where it can be: 'relu', 'sigmoid' or 'tanh'."""
    if name == "relu":
        return np.maximum(x, 0.0, out=x)
    if name == "tanh":
        return np.tanh(x, out=x)
    # sigmoid written through tanh, which cannot overflow: 1 / (1 + e^-x) = (1 + tanh(x/2)) / 2
    np.tanh(x * 0.5, out=x)
    x += 1.0
    x *= 0.5
    return x
