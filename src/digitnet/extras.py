"""The optional parts of digitnet and what each needs installed.

`pip install digitnet` is enough to predict and evaluate with a trained model. Training,
plotting, the web app and the Keras and ONNX formats each need an extra; `require` checks
for it without importing anything and says which extra to install.
"""

from __future__ import annotations

from importlib.util import find_spec

from .errors import DigitnetError

EXTRAS: dict[str, tuple[str, ...]] = {  # extra -> the modules it provides
    "train": ("jax", "flax", "optax", "threadpoolctl", "matplotlib"),
    "plots": ("matplotlib",),
    "web": ("fastapi", "uvicorn", "python_multipart"),
    "keras": ("h5py",),
    "onnx": ("onnx",),
}


class MissingExtraError(DigitnetError, ImportError):
    """A part of digitnet was used whose extra is not installed."""


def require(extra: str, what: str) -> None:
    """Raise MissingExtraError, naming the pip command, unless `extra` is installed.
    `what` says what needs it ("`digitnet train`", "training", ...)."""
    missing = [module for module in EXTRAS[extra] if find_spec(module) is None]
    if missing:
        raise MissingExtraError(f"{what} needs digitnet's {extra!r} extra (missing: "
                                f"{', '.join(missing)}): pip install 'digitnet[{extra}]'")
