"""How MNIST-trained models do on handwriting from other people (Semeion), end to end.

    .venv/bin/python bench/handwriting.py [--semeion PATH] [--data-dir MNIST_DIR]

Renders each of Semeion's 1,593 digits as a user's picture (dark ink on a larger, unevenly lit
page, off-centre; see digitnet.external.render_page), then classifies the files:
(a) naively resized to 28x28 with the tutorial model, (b) through digitnet's preprocessing with
the tutorial model, (c) through the preprocessing with the tutorial recipe plus --augment,
(d) the same with `--recipe robust` (a wider network, trained longer, with --augment),
(e) with `--recipe cnn` (the convolutional family, augmented at half strength), (f) that recipe
with the full augmentation strength of (c) and (d), and (g) `--recipe handwriting` (the CNN
recipe with the writing variants and printed digits).
The models are trained here on MNIST only, with several seeds (model-to-model spread on
Semeion is a point or more); Semeion is never training data. Choices between recipes were made
on the first half of the file (rows 0-796, the "dev" writers); the second half is reported
apart as the held-out check.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEV_ROWS = 797  # rows 0-796 chose the recipes; the rest of the file checks that choice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    external = os.environ.get("DIGITNET_EXTERNAL_DIR")
    parser.add_argument("--semeion", type=Path,
                        default=Path(external) / "semeion.data" if external else None,
                        required=external is None)
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", metavar="LETTER", default=list("abcdefg"),
                        help="rows to measure, e.g. --only e f (each row trains its model)")
    args = parser.parse_args()

    from digitnet.config import recipe
    from digitnet.data import load_mnist
    from digitnet.metrics import compute_metrics
    from digitnet.external import load_semeion, prepare_pages, write_pages
    from digitnet.predict import Predictor
    from digitnet.training import train

    digits, labels = load_semeion(args.semeion)
    mnist = load_mnist(args.data_dir)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        paths = write_pages(digits, labels, folder, seed=0)
        naive, prepared = prepare_pages(paths)
        print(f"rendered and prepared {len(paths)} pages in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)

    configs = {"tutorial": recipe("tutorial"),
               "tutorial --augment": recipe("tutorial").replace(augment=True),
               "--recipe robust": recipe("robust"),
               "--recipe cnn": recipe("cnn"),
               "cnn, strength 1": recipe("cnn").replace(augment_strength=1.0),
               "--recipe handwriting": recipe("handwriting")}
    rows = [("(a) naive resize", "tutorial", naive),
            ("(b) digitnet preprocessing", "tutorial", prepared),
            ("(c) digitnet preprocessing", "tutorial --augment", prepared),
            ("(d) digitnet preprocessing", "--recipe robust", prepared),
            ("(e) digitnet preprocessing", "--recipe cnn", prepared),
            ("(f) digitnet preprocessing", "cnn, strength 1", prepared),
            ("(g) digitnet preprocessing", "--recipe handwriting", prepared)]
    rows = [row for row in rows if row[0][1] in args.only]
    configs = {name: cfg for name, cfg in configs.items() if any(r[1] == name for r in rows)}
    held_out = np.arange(len(labels)) >= DEV_ROWS
    scores: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _, _ in rows}
    recalls = []
    for seed in args.seeds:
        for name, cfg in configs.items():
            started = time.perf_counter()
            predictor = Predictor(cfg, train(cfg.replace(seed=seed), mnist).weights)
            seconds = time.perf_counter() - started
            mnist_acc = float((predictor.probabilities(mnist.test_images).argmax(1)
                               == mnist.test_labels).mean())
            print(f"trained {name} (seed {seed}) in {seconds:.1f} s: MNIST test "
                  f"{mnist_acc:.2%}", file=sys.stderr)
            for label, model_name, images in rows:
                if model_name == name:
                    probabilities = predictor.probabilities(images)
                    metrics = compute_metrics(probabilities, labels)
                    held_out_acc = float(np.mean(
                        probabilities[held_out].argmax(1) == labels[held_out]))
                    scores[label].append((metrics.accuracy, held_out_acc, mnist_acc))
                    if label.startswith("(d)"):
                        recalls.append([c.recall for c in metrics.per_class])

    print(f"\nSemeion: {len(labels)} digits rendered as user pictures. Models trained on "
          f"MNIST with seeds {args.seeds}: mean (min-max)")
    print(f"{'input':30}{'model':21}{'Semeion':>22}{'held-out half':>15}{'MNIST test':>12}")
    for label, model_name, _ in rows:
        semeion, second_half, mnist_acc = np.array(scores[label]).T
        spread = f"{semeion.mean():.2%} ({semeion.min():.1%}-{semeion.max():.1%})"
        print(f"{label:30}{model_name:21}{spread:>22}{second_half.mean():>15.2%}"
              f"{mnist_acc.mean():>12.2%}")
    if recalls:
        print("\nrecall per digit, (d), mean over seeds: " + " ".join(
            f"{d}:{r:.0%}" for d, r in enumerate(np.mean(recalls, axis=0))))


if __name__ == "__main__":
    main()
