"""Models in and out of other formats: `digitnet export` and `digitnet import`."""

from __future__ import annotations

import argparse
import sys

from ..network import to_text
from . import common
from .common import percent


def cmd_export(args: argparse.Namespace) -> int:
    from ..calibration import with_temperature
    from ..interop import export_model
    from ..files import check_model_file
    from ..predict import Predictor, model_path

    check_model_file(model_path(args.run_dir))
    predictor = Predictor.load(args.run_dir)
    # the exported file answers the calibrated probabilities: the temperature is folded in
    weights = with_temperature(predictor.network, predictor.weights, predictor.temperature)
    path = export_model(predictor.config, weights, args.format, args.out)
    print(f"wrote {path} ({args.format}, {to_text(predictor.network)})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..run_folder import check_new_run_folder, locked_run_folder
    from ..runs import import_run

    with locked_run_folder(args.out):  # refused before MNIST is loaded, as train does
        check_new_run_folder(args.out, args.overwrite)
        try:
            data = common.load_data(args)
        except DataError as exc:  # the model is still worth importing without its metrics
            print(f"digitnet: MNIST not available, so no metrics or plots ({exc})",
                  file=sys.stderr)
            data = None
        run = import_run(args.model_file, args.out, data, input_scale=args.input_scale,
                         input_mean=args.input_mean, input_std=args.input_std,
                         overwrite=args.overwrite)
    cfg = run.config
    print(f"imported {args.model_file} as {to_text(cfg.network)} "
          f"(fed {run.predictor.results['model_input']}) into {run.folder}")
    if run.metrics:
        print(f"test accuracy {percent(run.metrics['test_accuracy'])}, test loss "
              f"{run.metrics['test_loss']:.4f} ({run.metrics['count']:,} images)")
    return 0
