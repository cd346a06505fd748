"""digitnet: train, inspect and use a handwritten-digit classifier.

The public API is re-exported here and imported on first use, so that `import digitnet`
stays cheap and code that only predicts never loads JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "TrainConfig": "config", "recipe": "config",
    "DigitnetError": "errors", "ConfigError": "errors", "DataError": "errors",
    "ImageError": "errors", "ModelFileError": "errors",
    "MnistData": "data", "load_mnist": "data", "load_mnist_test": "data",
    "download_mnist": "download",
    "parse_idx": "idx", "write_idx": "idx",
    "EpochRecord": "history",
    "train": "training", "TrainResult": "training", "limit_xla_to_one_core": "training",
    "enable_compilation_cache": "training", "training_speedups": "training",
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "resume_run": "runs",
    "evaluate": "metrics", "compute_metrics": "metrics", "Metrics": "metrics",
    "Predictor": "predict", "Prediction": "predict", "ProgressBar": "progress",
    "prepare_image": "preprocess", "open_image": "preprocess", "PreparedImage": "preprocess",
    "read_number": "numbers", "NumberReading": "numbers", "DigitReading": "numbers",
    "save_model": "modelfile", "load_model": "modelfile", "export_model": "interop",
    "train_run": "runs", "load_run": "runs", "plot_run": "runs", "Run": "runs",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'digitnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # let type checkers and IDEs see the real objects
    from .checkpoint import Checkpoint, load_checkpoint  # noqa: F401
    from .config import TrainConfig, recipe  # noqa: F401
    from .data import MnistData, load_mnist, load_mnist_test  # noqa: F401
    from .download import download_mnist  # noqa: F401
    from .idx import parse_idx, write_idx  # noqa: F401
    from .errors import (ConfigError, DataError, DigitnetError, ImageError,  # noqa: F401
                         ModelFileError)
    from .history import EpochRecord  # noqa: F401
    from .interop import export_model  # noqa: F401
    from .metrics import Metrics, compute_metrics, evaluate  # noqa: F401
    from .modelfile import load_model, save_model  # noqa: F401
    from .numbers import DigitReading, NumberReading, read_number  # noqa: F401
    from .predict import Prediction, Predictor  # noqa: F401
    from .preprocess import PreparedImage, open_image, prepare_image  # noqa: F401
    from .progress import ProgressBar  # noqa: F401
    from .runs import Run, load_run, plot_run, resume_run, train_run  # noqa: F401
    from .training import (TrainResult, enable_compilation_cache,  # noqa: F401
                           limit_xla_to_one_core, train, training_speedups)
