"""Inference with NumPy only: a model file's weights and its network's forward pass.

Predicting does not import JAX (about 1.5 s of start-up on this machine): a network is a
few matrix products (see digitnet.forward), which NumPy runs as fast as XLA does at these
sizes. tests/ checks that this forward pass agrees with the Flax model it was trained as.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import forward
from .calibration import softmax
from .config import TrainConfig
from .errors import ImageError
from .geometry import IMAGE_PIXELS, NUM_CLASSES, SIDE
from .modelfile import load_model
from .network import tensor_shapes, to_text

MODEL_FILENAME = "model.safetensors"
UNSURE_BELOW = 0.5  # a top probability under this is reported as unsure


@dataclass(frozen=True)
class Prediction:
    """The network's answer for one image: `digit`, or None where the image is refused as
    not a digit (`refused` says why), and the 10 `probabilities` (sum 1) either way."""

    digit: int | None
    probabilities: tuple[float, ...]
    notes: tuple[str, ...] = ()  # why the answer may be unreliable
    refused: str | None = None  # why this is not read as a digit (then digit is None)

    @property
    def likeliest(self) -> int:
        """The most probable digit, refused or not."""
        return int(np.argmax(self.probabilities))

    @property
    def confidence(self) -> float:
        """The top probability."""
        return self.probabilities[self.likeliest]

    def __repr__(self) -> str:
        top = ", ".join(f"{d}: {p:.1%}" for d, p in self.top(3))
        notes = f"; notes: {'; '.join(self.notes)}" if self.notes else ""
        answer = f"digit {self.digit}" if self.refused is None else f"refused ({self.refused})"
        return f"Prediction({answer}, top {top}{notes})"

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        """The k most probable digits, most probable first, as (digit, probability)."""
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(int(d), self.probabilities[d]) for d in order]


def model_path(path: str | os.PathLike) -> Path:
    """A model file, or the model file inside a run folder."""
    path = Path(path)
    return path / MODEL_FILENAME if path.is_dir() else path


def as_unit_batch(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) or (N, 784) images -> float32 (N, 784) in [0, 1].

    uint8 is read as 0..255; floats must already be in [0, 1]. Raises ImageError otherwise."""
    images = np.asarray(images)
    if images.ndim == 2 and images.shape == (SIDE, SIDE):
        images = images[None]
    if images.ndim < 2 or images[0].size != IMAGE_PIXELS:
        raise ImageError(f"expected images of 28x28 = 784 pixels, got shape {images.shape}")
    batch = images.reshape(len(images), IMAGE_PIXELS)
    if batch.dtype == np.uint8:
        return batch.astype(np.float32) / 255.0
    if not np.issubdtype(batch.dtype, np.number) or np.issubdtype(batch.dtype, np.complexfloating):
        raise ImageError(f"pixels must be numbers, got {batch.dtype}")
    batch = batch.astype(np.float32)
    if not np.all(np.isfinite(batch)) or batch.min(initial=0) < 0 or batch.max(initial=0) > 1:
        raise ImageError("float pixels must be finite and in [0, 1] (uint8 pixels in 0..255)")
    return batch


class Predictor:
    """A trained network ready to classify images. Load with Predictor.load(path)."""

    def __init__(self, config: TrainConfig, weights: dict[str, np.ndarray],
                 results: dict | None = None):
        self.config = config
        self.results = results or {}
        self.network = config.network
        # fitted on the validation split after training (calibration.py); 1 for a model
        # file written before calibration, or one trained with the test set as validation
        self.temperature = float((self.results.get("calibration") or {}).get("temperature", 1.0))
        # a top probability under this is refused as not a digit (chosen on the validation
        # split after training); None, for files without one: nothing is refused
        self.refuse_below = (self.results.get("refusal") or {}).get("threshold")
        self.weights = {name: np.asarray(weights[name], np.float32)
                        for name in tensor_shapes(self.network)}

    def __repr__(self) -> str:
        accuracy = self.results.get("test_accuracy")
        tested = f", test accuracy {accuracy:.2%}" if isinstance(accuracy, float) else ""
        return f"Predictor({self.config.model} {to_text(self.network)}{tested})"

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictor:
        """From a model file, a run folder holding model.safetensors, or a Keras (.keras,
        .h5) or ONNX (.onnx) model file (see digitnet.interop)."""
        from .interop import load_foreign_model, looks_foreign

        path = model_path(path)
        return cls(*(load_foreign_model(path) if looks_foreign(path) else load_model(path)))

    def logits(self, images: np.ndarray) -> np.ndarray:
        """float32 (N, 10) logits for (N, 28, 28) or (N, 784) images (see as_unit_batch), as
        the network computes them (before the calibration's temperature)."""
        x = as_unit_batch(images)  # a new array, which the forward pass may overwrite
        out = np.empty((len(x), NUM_CLASSES), np.float32)
        step = forward.batch_size(self.network)
        for start in range(0, len(x), step):
            out[start: start + step] = forward.logits(self.network, self.weights,
                                                      x[start: start + step])
        return out

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """float32 (N, 10) class probabilities, calibrated: softmax(logits / temperature)."""
        return softmax(self.logits(images) / np.float32(self.temperature))

    def predict(self, images: np.ndarray, notes: list[tuple[str, ...]] | None = None,
                refused: list[str | None] | None = None) -> list[Prediction]:
        """One Prediction per image: refused where `refused` gives a reason for it (such as
        PreparedImage.refused) or the top probability is under the model's refuse_below,
        else a digit, with an 'unsure' note where it is under UNSURE_BELOW."""
        probs = self.probabilities(images)
        predictions = []
        for i, row in enumerate(probs):
            digit = int(np.argmax(row))
            why = list(notes[i]) if notes else []
            reason = refused[i] if refused else None
            if reason is None and self.refuse_below is not None and row[digit] < self.refuse_below:
                reason = (f"that doesn't look like a digit: the network is only "
                          f"{row[digit]:.0%} sure, and a digit gets {self.refuse_below:.0%}")
            elif reason is None and row[digit] < UNSURE_BELOW:
                why.append(f"unsure: the top probability is only {row[digit]:.0%}")
            predictions.append(Prediction(None if reason else digit,
                                          tuple(float(p) for p in row), tuple(why), reason))
        return predictions
