"""digitnet models in other formats: ONNX and Keras files out, Keras files in.

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


def looks_like_keras(path: Path) -> bool:
    """Whether `path` is a file starting like a zip or an HDF5 file (not a safetensors one):
    asked before the Keras reader is imported, so reading a digitnet model never loads it."""
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
