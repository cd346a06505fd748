"""The fully connected family: 784 inputs, hidden layers (ReLU, sigmoid or tanh), 10 outputs
(the tutorial's, with ReLU)."""

from __future__ import annotations

import numpy as np

from ..config import IMAGE_PIXELS, NUM_CLASSES, TrainConfig
from .base import Family, activate, check_widths


def dense_shapes(sizes: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """`dense_{i}.kernel` (in, out) and `dense_{i}.bias` (out,) for layer widths `sizes`."""
    shapes = {}
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        shapes[f"dense_{i}.kernel"] = (n_in, n_out)
        shapes[f"dense_{i}.bias"] = (n_out,)
    return shapes


def dense_forward(weights: dict[str, np.ndarray], h: np.ndarray, layers: int,
                  activation: str) -> np.ndarray:
    """`layers` dense layers with `activation` between them, none after the last; h float32
    (N, in)."""
    for i in range(layers):
        h = h @ weights[f"dense_{i}.kernel"] + weights[f"dense_{i}.bias"]
        if i < layers - 1:
            h = activate(activation, h)
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
        return dense_forward(weights, images, len(cfg.hidden) + 1, cfg.activation)

    def describe(self, cfg: TrainConfig) -> str:
        shown = "" if cfg.activation == "relu" else f" {cfg.activation}"
        return "-".join(map(str, self.sizes(cfg))) + shown

    def flops(self, cfg: TrainConfig) -> int:
        sizes = self.sizes(cfg)
        return sum(2 * a * b for a, b in zip(sizes, sizes[1:]))
