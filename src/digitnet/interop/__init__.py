"""digitnet models in other formats: Keras and ONNX files out and in.

Each writer builds its file from the network's layer sequence (digitnet.network) and the
model file's weights, and each reader makes a layer sequence and weights of a file; none of
them needs JAX, and each needs only its format's own package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import math

from ..errors import DigitnetError, ModelFileError

if TYPE_CHECKING:  # the command line reads EXPORT_FORMATS without loading NumPy
    import numpy as np

    from ..config import TrainConfig

EXPORT_FORMATS = ("keras", "onnx")


def looks_foreign(path: Path) -> bool:
    """Whether `path` is a Keras or an ONNX file rather than a digitnet model file."""
    return looks_like_keras(path) or path.suffix.lower() == ".onnx"


def load_foreign_model(path: str | os.PathLike, input_scale: float | None = None,
                       input_mean: float = 0.0, input_std: float = 1.0
                       ) -> tuple[TrainConfig, dict[str, np.ndarray], dict]:
    """(config, weights, results) of a Keras (.keras, .h5) or ONNX (.onnx) model file.
    `input_scale`: 1 if the model was fed 0..1 pixels, 255 if 0..255 (by default: see each
    reader); `input_mean` and `input_std`: a normalisation of those inputs done before the
    model, outside it."""
    path = Path(path)
    if not (math.isfinite(input_mean) and math.isfinite(input_std) and input_std > 0):
        raise ModelFileError(f"the input's mean must be a number and its std a positive "
                             f"number, not {input_mean} and {input_std}")
    if looks_like_keras(path):
        from .keras_import import load_keras_model as load
    else:
        from .onnx_import import load_onnx_model as load
    cfg, weights, fed_0_to_255 = load(path, input_scale, input_mean, input_std)
    from ..modelfile import check_weights

    check_weights(weights, cfg, source=str(path))  # what the reader made is what it says
    fed = "0..255 pixels" if fed_0_to_255 else "0..1 pixels"
    if (input_mean, input_std) != (0.0, 1.0):
        fed += f", normalised with mean {input_mean:g} and std {input_std:g} before the model"
    return cfg, weights, {"imported_from": path.name, "model_input": fed}


def looks_like_keras(path: Path) -> bool:
    """Whether `path` is a file starting like a zip or an HDF5 file (not a safetensors one):
    asked before the Keras reader is imported, so reading a digitnet model never loads it."""
    if not Path(path).is_file():  # a FIFO would block the read below
        return False
    try:
        with open(path, "rb") as fh:
            start = fh.read(8)
    except OSError:
        return False
    return start.startswith(b"PK\x03\x04") or start == b"\x89HDF\r\n\x1a\n"


def export_model(cfg: TrainConfig, weights: dict[str, np.ndarray], fmt: str,
                 path: str | os.PathLike) -> Path:
    """Write the network `cfg` describes, with `weights`, as a `fmt` file ('keras' or 'onnx')."""
    if fmt == "keras":
        from .keras_export import export_keras

        return export_keras(cfg, weights, path)
    if fmt == "onnx":
        from .onnx_export import export_onnx

        return export_onnx(cfg, weights, path)
    raise DigitnetError(f"unknown export format {fmt!r}: choose from {', '.join(EXPORT_FORMATS)}")
