"""Plots of a training run. The draw_* functions take axes and data and return what they
drew; the functions named after a plot return it as a matplotlib Figure (shown inline in a
notebook); save_run_plots writes them as PNG files. Nothing here opens a window."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_write
from .extras import require
from .geometry import SIDE as DIGIT

require("plots", "drawing plots")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

WRONG = "#c62828"
RIGHT = "#2e7d32"
TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#ff7f0e"
TEST_COLOUR = "#555555"


def draw_history(ax_accuracy, ax_loss, history: Sequence, test: dict | None = None) -> list:
    """Accuracy (%) and loss per epoch, training and validation, test result as a line."""
    epochs = [r.epoch for r in history]
    artists = []
    for ax, key, label in ((ax_accuracy, "accuracy", "accuracy (%)"), (ax_loss, "loss", "loss")):
        scale = 100.0 if key == "accuracy" else 1.0
        train = [getattr(r, f"train_{key}") * scale for r in history]
        val = [getattr(r, f"val_{key}") * scale for r in history]
        artists += ax.plot(epochs, train, "o-", color=TRAIN_COLOUR, label="training")
        artists += ax.plot(epochs, val, "s-", color=VAL_COLOUR, label="validation")
        if test and test.get(key) is not None:
            value = test[key] * scale
            text = f"test {value:.2f}%" if key == "accuracy" else f"test {value:.3f}"
            artists.append(ax.axhline(value, color=TEST_COLOUR, linestyle="--", label=text))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_xticks(epochs if len(epochs) <= 12 else epochs[:: max(1, len(epochs) // 10)])
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if key == "accuracy" else "upper right")
    ax_accuracy.set_title("Accuracy per epoch")
    ax_loss.set_title("Loss per epoch")
    return artists


GAP = 6  # blank pixels between digits
LINE = 5  # height of one line of a caption, in image pixels at the sizes used here
GRID_COLUMNS = 8  # digits per row in every grid of digits


def draw_digits(ax, images: np.ndarray, titles: Sequence[str],
                wrong: Sequence[bool] | None = None, cols: int = GRID_COLUMNS) -> list:
    """Digits (uint8 28x28) as ink on paper in a grid on one axis, each with its caption
    above it; wrong ones framed and captioned in red.

    One axis for the whole grid rather than one per digit: creating and laying out dozens of
    matplotlib axes took most of a training run's plotting time."""
    rows = max(1, -(-len(images) // cols))
    header = LINE * max((t.count("\n") + 1 for t in titles), default=1) + 2
    cell_w, cell_h = DIGIT + GAP, DIGIT + header
    # 0 is paper under gray_r; 2 rows more keep the last row's frames inside the axis.
    mosaic = np.zeros((rows * cell_h + 2, cols * cell_w), np.uint8)
    marks = []
    for i, image in enumerate(images):
        top, left = (i // cols) * cell_h + header, (i % cols) * cell_w + GAP // 2
        mosaic[top: top + DIGIT, left: left + DIGIT] = image
        bad = bool(wrong[i]) if wrong is not None else False
        colour = WRONG if bad else ("black" if wrong is None else RIGHT)
        marks.append(ax.text(left + DIGIT / 2, top - 1.5, titles[i], ha="center", va="bottom",
                             fontsize=8, color=colour, fontweight="bold" if bad else None))
        if bad:
            marks.append(ax.add_patch(Rectangle((left - 1, top - 1), DIGIT + 1, DIGIT + 1,
                                                fill=False, edgecolor=WRONG, linewidth=2)))
    artists = [ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255), *marks]
    ax.set_axis_off()
    return artists


def draw_confusion(ax, confusion: Sequence[Sequence[int]]) -> list:
    """Counts with true digit on rows, predicted on columns; off-diagonal cells emphasised."""
    counts = np.asarray(confusion)
    # Log scale so the few mistakes are visible next to ~1000 correct answers a class.
    image = ax.imshow(np.log1p(counts), cmap="Blues")
    artists = [image]
    threshold = np.log1p(counts).max() / 2
    for t in range(counts.shape[0]):
        for p in range(counts.shape[1]):
            if counts[t, p] == 0:
                continue
            colour = "white" if np.log1p(counts[t, p]) > threshold else (
                WRONG if t != p else "black")
            artists.append(ax.text(p, t, str(counts[t, p]), ha="center", va="center",
                                   fontsize=8, color=colour))
    ax.set_xticks(range(counts.shape[1]))
    ax.set_yticks(range(counts.shape[0]))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"Confusion matrix ({counts.sum():,} test images, "
                 f"{np.trace(counts) / counts.sum():.2%} correct)")
    return artists


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, buffer.getvalue())
    return path


def _grid(title: str, n_images: int, cell: float = 1.25):
    """A figure and one axis sized for draw_digits' grid of `n_images` (`cell` inches each)."""
    rows, cols = max(1, -(-n_images // GRID_COLUMNS)), GRID_COLUMNS
    fig = Figure(figsize=(cols * cell, rows * cell + 0.6))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1 - 0.6 / (rows * cell + 0.6)))
    fig.suptitle(title, fontsize=12)
    return fig, ax


def training_curves(history: Sequence, test: dict | None = None) -> Figure:
    """Accuracy and loss per epoch (EpochRecords), with the test result (`accuracy`, `loss`)
    as a dashed line when given."""
    fig = Figure(figsize=(11, 4))
    ax_accuracy, ax_loss = fig.subplots(1, 2)
    draw_history(ax_accuracy, ax_loss, history, test)
    return fig


def labelled_digits(images: np.ndarray, labels: np.ndarray, n: int = 32,
                    title: str = "Training digits and their labels") -> Figure:
    """The first `n` uint8 28x28 images with their labels."""
    n = min(n, len(images))
    fig, ax = _grid(title, n)
    draw_digits(ax, images[:n], [f"label {d}" for d in labels[:n]])
    return fig


def predictions_grid(images: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                     n: int = 40) -> Figure:
    """The predicted digit for the first `n` images (the order is not chosen to flatter the
    model); mistakes in red with the true digit."""
    n = min(n, len(images))
    predicted = probs[:n].argmax(axis=1)
    wrong = predicted != labels[:n]
    fig, ax = _grid(f"Predicted digit for the first {n} test images "
                    f"({int(wrong.sum())} wrong, in red with the true digit)", n)
    titles = [f"{p}" if p == t else f"{p} (true {t})" for p, t in zip(predicted, labels[:n])]
    draw_digits(ax, images[:n], titles, wrong)
    return fig


def confusion_matrix(confusion: Sequence[Sequence[int]]) -> Figure:
    """The confusion matrix: true digit on rows, predicted on columns."""
    fig = Figure(figsize=(7, 6))
    draw_confusion(fig.subplots(), confusion)
    return fig


def confident_mistakes(images: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                       n: int = 24) -> Figure:
    """The `n` images the model got wrong with the most confidence."""
    predicted = probs.argmax(axis=1)
    mistakes = np.flatnonzero(predicted != labels)
    confidence = probs[mistakes, predicted[mistakes]]
    worst = mistakes[np.argsort(confidence)[::-1][:n]]
    fig, ax = _grid("Most confidently wrong test images: predicted (probability), "
                    "true digit, test index", len(worst), cell=1.5)
    titles = [f"{predicted[i]} ({probs[i, predicted[i]]:.0%})\ntrue {labels[i]}  #{i}"
              for i in worst]
    draw_digits(ax, images[worst], titles, [True] * len(worst))
    return fig


def reliability_diagram(probs: np.ndarray, labels: np.ndarray) -> Figure:
    """Accuracy against confidence in 15 bins (a calibrated model follows the diagonal),
    with how many images each bin holds; the title gives the ECE."""
    from .calibration import reliability

    bins = reliability(probs, labels)
    centres, width = (bins.edges[:-1] + bins.edges[1:]) / 2, np.diff(bins.edges)
    fig = Figure(figsize=(6, 6.5))
    ax, ax_count = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    filled = bins.count > 0
    ax.bar(centres[filled], bins.accuracy[filled], width[filled], color="tab:blue",
           edgecolor="white", label="accuracy of the bin")
    ax.bar(centres[filled], (bins.confidence - bins.accuracy)[filled], width[filled],
           bottom=bins.accuracy[filled], color="tab:red", alpha=0.35, label="gap to confidence")
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfectly calibrated")
    ax.set(ylim=(0, 1), ylabel="accuracy",
           title=f"Reliability on {int(bins.count.sum()):,} test images: "
                 f"ECE {bins.ece:.2%} (15 bins)")
    ax.legend(loc="upper left")
    ax_count.bar(centres, bins.count, width, color="tab:gray", edgecolor="white")
    ax_count.set(yscale="log", xlabel="confidence (top probability)", ylabel="images",
                 xlim=(0, 1))
    return fig


def risk_coverage(probs: np.ndarray, labels: np.ndarray,
                  refuse_below: float | None = None) -> Figure:
    """The error rate on the images kept when those least sure are refused, against the
    share kept; the model's own refusal threshold is marked."""
    confidence = probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    wrong = (probs.argmax(axis=1) != np.asarray(labels))[order]
    kept = np.arange(1, len(order) + 1)
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    ax.plot(kept / len(order), np.cumsum(wrong) / kept, color="tab:blue")
    if refuse_below is not None:
        accepted = confidence >= refuse_below
        coverage = accepted.mean()
        error = float(np.mean(probs.argmax(1)[accepted] != np.asarray(labels)[accepted])
                      if accepted.any() else 0.0)
        ax.plot([coverage], [error], "o", color="tab:red",
                label=f"refusing under {refuse_below:.0%}: {1 - coverage:.2%} refused, "
                      f"{error:.2%} wrong")
        ax.legend(loc="upper left")
    ax.set(xlabel="share of test images answered (the surest first)",
           ylabel="error rate of the answered", xlim=(0, 1),
           title="Risk and coverage: refusing the least sure answers")
    ax.grid(alpha=0.3)
    return fig


def save_run_plots(
    folder: str | Path,
    history: Sequence,
    test: dict,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    test_probs: np.ndarray,
    refuse_below: float | None = None,
) -> list[Path]:
    """Write the run's PNG plots into `folder`; return their paths.

    `test` holds 'accuracy', 'loss' and 'confusion_matrix' (see metrics.Metrics.to_dict)."""
    folder = Path(folder)
    figures = {} if not history else {"training_curves": training_curves(history, test)}
    figures["samples_train"] = labelled_digits(train_images, train_labels)
    figures["predictions_test"] = predictions_grid(test_images, test_labels, test_probs)
    figures["confusion_matrix"] = confusion_matrix(test["confusion_matrix"])
    figures["confident_mistakes"] = confident_mistakes(test_images, test_labels, test_probs)
    figures["reliability"] = reliability_diagram(test_probs, test_labels)
    figures["risk_coverage"] = risk_coverage(test_probs, test_labels, refuse_below)
    return [_save(fig, folder / f"{name}.png") for name, fig in figures.items()]


def network_view(original, pixels: np.ndarray, prediction) -> Figure:
    """A user's image (a PIL image) beside the 28x28 `pixels` the network saw and the
    `prediction`'s probabilities."""
    fig = Figure(figsize=(9, 3))
    ax_original, ax_seen, ax_probs = fig.subplots(1, 3, width_ratios=[1, 1, 1.4])
    ax_original.imshow(original, cmap="gray" if original.mode == "L" else None)
    ax_original.set_title(f"your image ({original.width}x{original.height})", fontsize=9)
    ax_original.set_axis_off()
    ax_seen.imshow(pixels, cmap="gray", vmin=0, vmax=255)
    ax_seen.set_title("what the network saw (28x28)", fontsize=9)
    ax_seen.set_axis_off()
    bars = ax_probs.bar(range(10), prediction.probabilities, color="#9e9e9e")
    bars[prediction.likeliest].set_color(RIGHT if prediction.digit is not None
                                         and not prediction.notes else WRONG)
    ax_probs.set_xticks(range(10))
    ax_probs.set_ylim(0, 1)
    answer = "not a digit" if prediction.digit is None else prediction.digit
    ax_probs.set_title(f"prediction: {answer} ({prediction.confidence:.0%})",
                       fontsize=10)
    if prediction.notes:
        fig.text(0.5, -0.02, "; ".join(prediction.notes), ha="center", fontsize=8, color=WRONG)
    return fig


def save_network_view(path: str | Path, original, pixels: np.ndarray, prediction) -> Path:
    """network_view() as a PNG file."""
    return _save(network_view(original, pixels, prediction), Path(path))
