"""The commands that report what is there: MNIST's files (`data`), a run's scores on the
test set (`evaluate`) and its plots (`plot`)."""

from __future__ import annotations

import argparse
import json

from . import common
from .common import percent


def cmd_data(args: argparse.Namespace) -> int:
    from ..data import resolve_data_dir

    folder, how = resolve_data_dir(args.data_dir)
    data = common.load_data(args)
    print(f"MNIST folder: {folder} (chosen by {how})")
    print(f"read from:    {data.source}")
    print("verified:     SHA-256 of content, IDX headers, shapes, labels 0..9")
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        counts = " ".join(str((labels == d).sum()) for d in range(10))
        print(f"{split + ':':13} {len(images):,} images {images.shape[1]}x{images.shape[2]}, "
              f"per digit 0-9: {counts}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..metrics import evaluate
    from ..runs import load_run

    run = load_run(args.run_dir)
    test_images, test_labels = common.load_test_set(args)
    metrics = evaluate(run.predictor, test_images, test_labels)
    if args.json:
        print(json.dumps(metrics.to_dict()))
        return 0
    print(f"test accuracy {percent(metrics.accuracy)}  loss {metrics.loss:.4f}  "
          f"expected calibration error {percent(metrics.ece)}  ({metrics.count:,} images)")
    calibration = run.predictor.results.get("calibration")
    print(f"calibrated: logits divided by {calibration['temperature']:.3f}, fitted on "
          f"{calibration['fitted_on']}" if calibration else "not calibrated")
    refuse_below = run.predictor.refuse_below
    print(f"refused as not digits: {percent(metrics.refused)} (top probability under "
          f"{percent(refuse_below)}); accuracy on the rest {percent(metrics.accepted_accuracy)}"
          f"\n" if refuse_below is not None else "refuses nothing (no threshold in the model)\n")
    print("digit  precision  recall     f1  support")
    for c in metrics.per_class:
        print(f"{c.digit:>5}  {percent(c.precision):>9}  {percent(c.recall):>6}  "
              f"{c.f1:.3f}  {c.support:>7}")
    print("\nconfusion matrix (rows: true digit, columns: predicted)")
    print("     " + "".join(f"{d:>6}" for d in range(10)))
    for d, row in enumerate(metrics.confusion):
        print(f"{d:>5}" + "".join(f"{n:>6}" for n in row))
    print("\nmost confused: " + ", ".join(
        f"{t} taken for {p} ({n}x)" for t, p, n in metrics.most_confused))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ..runs import plot_run

    data = common.load_data(args)
    for path in plot_run(args.run_dir, data):
        print(path)
    return 0
