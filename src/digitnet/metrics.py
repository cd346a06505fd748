"""Test-set metrics from predicted probabilities: accuracy, loss, confusion, per-class scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .calibration import expected_calibration_error
from .geometry import NUM_CLASSES


@dataclass(frozen=True)
class ClassMetrics:
    digit: int
    precision: float
    recall: float
    f1: float
    support: int  # test images of this digit


@dataclass(frozen=True)
class Metrics:
    """accuracy: fraction correct; loss: mean cross-entropy (nats); ece: the expected
    calibration error (a fraction, see calibration.py); refused: the share of images refused
    as not digits, and accepted_accuracy the accuracy on the others; confusion[true][pred]:
    counts; most_confused: (true, predicted, count) for the largest off-diagonal cells."""

    accuracy: float
    loss: float
    ece: float
    refused: float
    accepted_accuracy: float
    confusion: list[list[int]]
    per_class: list[ClassMetrics]
    most_confused: list[tuple[int, int, int]]
    count: int

    def __repr__(self) -> str:
        confused = ", ".join(f"{t} as {p} ({n}x)" for t, p, n in self.most_confused[:3])
        return (f"Metrics(accuracy {self.accuracy:.2%}, loss {self.loss:.4f}, ECE "
                f"{self.ece:.2%}, refused {self.refused:.2%} over {self.count:,} images; most "
                f"confused: {confused or 'none'})")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["confusion_matrix"] = out.pop("confusion")
        out["most_confused"] = [
            {"true": t, "predicted": p, "count": c} for t, p, c in self.most_confused
        ]
        return out


def compute_metrics(probs: np.ndarray, labels: np.ndarray, top_pairs: int = 5,
                    refuse_below: float | None = None) -> Metrics:
    """Metrics for float (N, 10) probabilities against int (N,) labels in 0..9; with
    `refuse_below`, images whose top probability is under it count as refused."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.argmax(probs, axis=1)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    true_probs = probs[np.arange(len(labels)), labels]
    accepted = probs.max(axis=1) >= (refuse_below or 0.0)
    loss = float(-np.mean(np.log(np.clip(true_probs, 1e-12, 1.0))))
    per_class = []
    for d in range(NUM_CLASSES):
        hits = confusion[d, d]
        predicted_d, actual_d = confusion[:, d].sum(), confusion[d].sum()
        precision = hits / predicted_d if predicted_d else 0.0
        recall = hits / actual_d if actual_d else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(ClassMetrics(d, float(precision), float(recall), float(f1), int(actual_d)))
    off_diagonal = confusion * (1 - np.eye(NUM_CLASSES, dtype=np.int64))
    order = np.argsort(off_diagonal, axis=None)[::-1][:top_pairs]
    pairs = [(int(t), int(p), int(off_diagonal[t, p]))
             for t, p in zip(*np.unravel_index(order, confusion.shape)) if off_diagonal[t, p]]
    return Metrics(
        accuracy=float(np.mean(predicted == labels)),
        loss=loss,
        ece=expected_calibration_error(probs, labels),
        refused=float(1 - accepted.mean()) if len(labels) else 0.0,
        accepted_accuracy=float(np.mean(predicted[accepted] == labels[accepted]))
        if accepted.any() else 0.0,
        confusion=confusion.tolist(),
        per_class=per_class,
        most_confused=pairs,
        count=int(len(labels)),
    )


def loss_and_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy (nats) and fraction correct of float (N, 10) logits against int
    (N,) labels; the log-softmax is taken from the logits, so no probability underflows."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    labels = np.asarray(labels, dtype=np.int64)
    loss = -np.mean(log_probs[np.arange(len(labels)), labels])
    return float(loss), float(np.mean(logits.argmax(axis=1) == labels))


def evaluate(predictor, images: np.ndarray, labels: np.ndarray) -> Metrics:
    """Metrics of `predictor` (a predict.Predictor) on uint8 images (N, 28, 28) and labels."""
    return compute_metrics(predictor.probabilities(images), labels,
                           refuse_below=predictor.refuse_below)
