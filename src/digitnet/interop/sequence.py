"""What the Keras and the ONNX reader share: building a layer sequence (digitnet.network)
as they walk a foreign model, with its weights named as network.weight_names names them, the
input's normalisation, batch normalisation folded into the layer before it, and a bound on
the weights read.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import TrainConfig
from ..errors import ConfigError, ModelFileError
from ..geometry import NUM_CLASSES
from ..network import (INPUT_SHAPE, MAX_PARAMETERS, Conv, Dense, Dropout, Flatten, Normalize,
                       output_shape, to_text, weight_names)


class SequenceBuilder:
    """The records read so far and the shape the next one takes. A reader subclasses it and
    says, in `refuse`, which of its layers a message is about."""

    def __init__(self, source: str):
        self.source = source
        self.records: list = []
        self.weights: dict[str, np.ndarray] = {}
        self.shape = INPUT_SHAPE
        # what the network sees of a 0..1 pixel p: (p * scale - mean) / std (network.Normalize)
        self.scale, self.mean, self.std = 1.0, 0.0, 1.0
        self.parameters = 0  # weights counted so far

    def refuse(self, why: str):
        raise ModelFileError(f"{self.source}: {why}")

    def add(self, record) -> None:
        try:
            self.shape = output_shape(record, self.shape)
        except ConfigError as exc:  # "layer N (text) why": the reader names its own layer
            self.refuse(str(exc).split(") ", 1)[-1])
        self.records.append(record)

    def budget(self, kernel_shape: tuple[int, ...]) -> None:
        """Count a weighted layer's weights before they are read, within MAX_PARAMETERS (a
        file may declare far more than it holds)."""
        self.parameters += math.prod(kernel_shape) + kernel_shape[-1]
        if self.parameters > MAX_PARAMETERS:
            self.refuse(f"brings the model to {self.parameters:,} weights, more than the "
                        f"{MAX_PARAMETERS:,} digitnet holds")

    def weighted(self, record: Conv | Dense, kernel: np.ndarray, bias: np.ndarray) -> str:
        """Add a convolution or dense layer with its weights; return their name prefix."""
        self.add(record)
        name = weight_names(tuple(self.records))[-1]
        self.weights[f"{name}.kernel"] = np.ascontiguousarray(kernel, np.float32)
        self.weights[f"{name}.bias"] = np.ascontiguousarray(bias, np.float32)
        return name

    @property
    def last_weighted(self) -> str | None:
        """The name prefix of the last record, if it is a convolution or dense layer."""
        if not self.records or not isinstance(self.records[-1], (Conv, Dense)):
            return None
        return weight_names(tuple(self.records))[-1]

    def fold_batch_norm(self, gamma, beta, mean, variance, epsilon: float) -> None:
        """y = gamma (x - mean) / sqrt(variance + epsilon) + beta, folded into the layer just
        read (its output channels): the same numbers at inference."""
        name = self.last_weighted
        if name is None:
            self.refuse("does not follow a convolution or dense layer without an activation, "
                        "so it cannot be folded into one")
        factor = gamma / np.sqrt(variance + np.float32(epsilon))
        kernel, bias = self.weights[f"{name}.kernel"], self.weights[f"{name}.bias"]
        self.weights[f"{name}.kernel"] = (kernel * factor).astype(np.float32)
        self.weights[f"{name}.bias"] = ((bias - mean) * factor + beta).astype(np.float32)

    # The input's normalisation, one step at a time: each keeps the form (p * s - m) / d.

    def normalising(self) -> bool:
        """Whether nothing that changes the values came before (so a scale or a shift here
        is the input's normalisation)."""
        return all(isinstance(r, (Flatten, Dropout)) for r in self.records)

    def multiply(self, c: float) -> None:
        if c == 0:
            self.refuse("multiplies the input by 0")
        self.scale, self.mean = self.scale * c, self.mean * c

    def add_number(self, c: float) -> None:
        self.mean -= c * self.std

    def divide(self, c: float) -> None:
        if c <= 0:
            self.refuse("divides the input by a number that is not positive")
        self.std *= c

    def finish(self, ending: str) -> tuple[TrainConfig, dict[str, np.ndarray]]:
        """The config and weights of what was read; `ending` names what the model must end
        in ("a Dense layer")."""
        if not self.records or not isinstance(self.records[-1], Dense):
            raise ModelFileError(f"{self.source}: the model does not end in {ending}")
        if self.records[-1].width != NUM_CLASSES:
            raise ModelFileError(f"{self.source}: the model has {self.records[-1].width} "
                                 f"outputs; a digit classifier has {NUM_CLASSES}")
        normalize = Normalize(self.scale, self.mean, self.std)
        records = [normalize, *self.records] if normalize != Normalize() else self.records
        try:
            return TrainConfig(model="layers", layers=to_text(tuple(records))), self.weights
        except ConfigError as exc:
            raise ModelFileError(f"{self.source}: {exc}") from None
