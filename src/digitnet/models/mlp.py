"""The fully connected family: 784 inputs, ReLU hidden layers, 10 outputs (the tutorial's)."""

from __future__ import annotations

import numpy as np

from ..config import IMAGE_PIXELS, NUM_CLASSES, TrainConfig
from .base import Family, check_widths


def dense_shapes(sizes: tuple[int, ...], first: int = 0) -> dict[str, tuple[int, ...]]:
    """`dense_{i}.kernel` (in, out) and `dense_{i}.bias` (out,) for widths `sizes`, from i=first."""
    shapes = {}
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=first):
        shapes[f"dense_{i}.kernel"] = (n_in, n_out)
        shapes[f"dense_{i}.bias"] = (n_out,)
    return shapes


def dense_forward(weights: dict[str, np.ndarray], h: np.ndarray, layers: int,
                  first: int = 0) -> np.ndarray:
    """ReLU between `layers` dense layers, none after the last; h float32 (N, in)."""
    for i in range(first, first + layers):
        h = h @ weights[f"dense_{i}.kernel"] + weights[f"dense_{i}.bias"]
        if i < first + layers - 1:
            np.maximum(h, 0.0, out=h)
    return h


class MLP(Family):
    name = "mlp"
    fields = ("hidden",)
    inference_batch = 4096

    def check(self, cfg: TrainConfig) -> None:
        check_widths("hidden widths", cfg.hidden)

    def sizes(self, cfg: TrainConfig) -> tuple[int, ...]:
        return (IMAGE_PIXELS, *cfg.hidden, NUM_CLASSES)

    def tensor_shapes(self, cfg: TrainConfig) -> dict[str, tuple[int, ...]]:
        return dense_shapes(self.sizes(cfg))

    def logits(self, cfg, weights, images):
        return dense_forward(weights, images, len(cfg.hidden) + 1)

    def describe(self, cfg: TrainConfig) -> str:
        return "-".join(map(str, self.sizes(cfg)))

    def flops(self, cfg: TrainConfig) -> int:
        sizes = self.sizes(cfg)
        return sum(2 * a * b for a, b in zip(sizes, sizes[1:]))
