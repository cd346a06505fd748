"""Confidence that means what it says: temperature scaling and the expected calibration error.

A network's softmax tends to be surer than it is right. Temperature scaling divides the
logits by one number T, fitted on the validation split after training so that the
probabilities' cross-entropy there is least (Guo et al., 2017): the most probable digit
never changes, only how sure the answer says it is. The expected calibration error (ECE)
measures what is left: the images are put in 15 equal-width bins of confidence (the top
probability), and the gaps between each bin's mean confidence and its accuracy are averaged,
weighted by the bins' sizes. NumPy only: predicting never imports JAX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .network import Dense, Network, weight_names

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)  # searched on a log scale; far wider than networks need


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy (nats) of softmax(logits / temperature) against int labels."""
    log_probs = _log_softmax(np.asarray(logits, np.float64) / temperature)
    return float(-np.mean(log_probs[np.arange(len(labels)), np.asarray(labels, np.int64)]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 60) -> float:
    """The T in TEMPERATURE_RANGE that minimises nll(logits, labels, T): a golden-section
    search on log T (the loss has one minimum along it)."""
    if len(labels) == 0:
        return 1.0
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    golden = (math.sqrt(5) - 1) / 2
    a, b = high - golden * (high - low), low + golden * (high - low)
    loss_a, loss_b = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(iterations):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - golden * (high - low)
            loss_a = nll(logits, labels, math.exp(a))
        else:
            low, a, loss_a = a, b, loss_b
            b = low + golden * (high - low)
            loss_b = nll(logits, labels, math.exp(b))
    return math.exp((low + high) / 2)


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin (equal widths over 0..1): mean confidence, accuracy and count."""

    edges: np.ndarray  # (bins + 1,)
    confidence: np.ndarray  # (bins,), NaN where empty
    accuracy: np.ndarray  # (bins,), NaN where empty
    count: np.ndarray  # (bins,) int

    @property
    def ece(self) -> float:
        """The expected calibration error: sum over bins of count/N * |accuracy - confidence|."""
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(gaps * self.count[filled]) / max(1, self.count.sum()))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """How confidence matches accuracy for float (N, 10) probabilities and int (N,) labels."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, correct.astype(float), bins) / count
    return Reliability(edges, mean_confidence, accuracy, count)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """The ECE (a fraction) of float (N, 10) probabilities against int (N,) labels."""
    return reliability(probs, labels, bins).ece


def calibrate(logits: np.ndarray, labels: np.ndarray, fitted_on: str) -> dict:
    """The calibration a model file stores: the temperature fitted on `logits` and `labels`
    (a validation split, named by `fitted_on`) and the ECE there before and after it."""
    temperature = fit_temperature(logits, labels)
    return {"temperature": temperature, "fitted_on": fitted_on,
            "val_ece_before": expected_calibration_error(softmax(logits), labels),
            "val_ece_after": expected_calibration_error(softmax(logits / temperature), labels)}


# The share of validation digits the refusal threshold may refuse: half of the 1 %
# budget on the test set, chosen on the validation split, so that test digits, which the
# threshold never saw, stay within it.
REFUSED_VALIDATION_SHARE = 0.005


def refusal_threshold(probs: np.ndarray, labels: np.ndarray, fitted_on: str) -> dict:
    """The refusal a model file stores: the top probability under which an image is refused
    as not a digit, chosen on calibrated validation `probs` (digits all) so that
    REFUSED_VALIDATION_SHARE of them fall under it."""
    confidence = np.sort(probs.max(axis=1))
    threshold = float(confidence[int(REFUSED_VALIDATION_SHARE * len(confidence))])
    accepted = probs.max(axis=1) >= threshold
    return {"threshold": threshold, "chosen_on": fitted_on,
            "val_refused": float(1 - accepted.mean()),
            "val_accepted_accuracy": float((probs.argmax(1) == labels)[accepted].mean())}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def with_temperature(layers: Network, weights: dict[str, np.ndarray],
                     temperature: float) -> dict[str, np.ndarray]:
    """`weights` with the last dense layer divided by `temperature`: its logits become the
    calibrated ones, exactly (softmax((Wx + b) / T) = softmax((W / T) x + b / T)), so that
    a file exported from them answers the calibrated probabilities without knowing of T."""
    if temperature == 1.0:
        return weights
    last = [name for layer, name in zip(layers, weight_names(layers))
            if isinstance(layer, Dense)][-1]
    scale = np.float32(1.0 / temperature)
    return {**weights, f"{last}.kernel": weights[f"{last}.kernel"] * scale,
            f"{last}.bias": weights[f"{last}.bias"] * scale}
