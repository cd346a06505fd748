"""digitnet models in other formats: ONNX and Keras files out (and, later, Keras files in).

Each writer builds its file from the network family's description (digitnet.models) and the
model file's weights; none of them needs JAX, and each needs only its format's own package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DigitnetError

if TYPE_CHECKING:  # the command line reads EXPORT_FORMATS without loading NumPy
    import numpy as np

    from ..config import TrainConfig

EXPORT_FORMATS = ("keras", "onnx")


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
