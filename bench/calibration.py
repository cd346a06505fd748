"""How well each recipe's confidence matches its accuracy on MNIST's test set, before and
after the temperature fitted on the validation split (digitnet.calibration).

Trains each recipe once as a whole `digitnet train` command (harness.trained_run keeps the
run folders for the other benchmarks), or reads run folders given with --runs, then prints per recipe: the temperature and the split it was fitted on, and the
test set's expected calibration error (15 equal-width bins) and cross-entropy with the
network's own softmax (T = 1) and with the fitted temperature. The test set only measures
here: the temperature is chosen on the validation split. The issue's target is an ECE of
at most 1 % for every recipe.

Usage: DIGITNET_DATA_DIR=../shared/mnist python bench/calibration.py [--recipes tutorial,cnn]
       [--seed 0] [--runs RUN_DIR ...]
"""

import argparse
import os
import sys
from pathlib import Path

from harness import trained_run

TARGET = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"))
    parser.add_argument("--recipes", default="tutorial,fast,robust,cnn,handwriting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, nargs="*", default=[],
                        help="finished run folders to measure instead of training")
    args = parser.parse_args()
    if args.data_dir is None:
        sys.exit("give --data-dir or set DIGITNET_DATA_DIR")
    from digitnet.calibration import expected_calibration_error, nll, softmax
    from digitnet.data import load_mnist_test
    from digitnet.predict import Predictor

    images, labels = load_mnist_test(args.data_dir, download=False)
    runs = args.runs or [trained_run(name, args.seed, args.data_dir)
                         for name in args.recipes.split(",")]
    print(f"{'run':14}{'T':>7}{'test ECE, T=1':>15}{'fitted T':>10}{'NLL, T=1':>10}"
          f"{'fitted T':>10}{'accuracy':>10}  fitted on")
    for run in runs:
        predictor = Predictor.load(run)
        logits = predictor.logits(images)
        calibration = predictor.results.get("calibration") or {}
        temperature = predictor.temperature
        before = expected_calibration_error(softmax(logits), labels)
        after = expected_calibration_error(predictor.probabilities(images), labels)
        accuracy = float((logits.argmax(1) == labels).mean())
        print(f"{run.name:14}{temperature:>7.3f}{before:>15.2%}{after:>10.2%}"
              f"{nll(logits, labels):>10.4f}{nll(logits, labels, temperature):>10.4f}"
              f"{accuracy:>10.2%}  {calibration.get('fitted_on', 'not calibrated')}"
              + ("" if after <= TARGET else f"  (over the {TARGET:.0%} target)"))


if __name__ == "__main__":
    main()
