"""Model files: weights in safetensors (no pickle, so loading cannot run code) with the
network's layer sequence, the resolved TrainConfig and a few results as JSON metadata.
Loading checks that every tensor is exactly what the layer sequence says the network has.

Format versions (docs/formats.md): 3 stores the layer sequence in its text form
(digitnet.network); 2 records the family (`mlp`, `cnn`) and 1, written before families
existed, is an `mlp`: their configs rebuild the same sequence, and their tensors have the
same names, so they load and predict as they always did.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .config import TrainConfig
from .errors import ConfigError, ModelFileError
from .files import MAX_MODEL_BYTES, read_file
from .network import tensor_shapes, to_text

FORMAT = "digitnet-model"
FORMAT_VERSION = "3"
READS_VERSIONS = ("1", "2", "3")
FAMILIES_OF_VERSION_2 = ("mlp", "cnn")


def weight_shapes(cfg: TrainConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every weight array of the network `cfg` describes."""
    return tensor_shapes(cfg.network)


def save_model(
    path: str | os.PathLike,
    weights: dict[str, np.ndarray],
    cfg: TrainConfig,
    results: dict[str, Any] | None = None,
) -> None:
    """Write weights + config (+ results such as test accuracy) atomically to `path`."""
    from safetensors.numpy import save

    check_weights(weights, cfg, source="weights to save")
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": cfg.model,
        "network": to_text(cfg.network),
        "config": cfg.to_json(),
        "results": json.dumps(results or {}),
    }
    arrays = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in weights.items()}
    atomic_write(Path(path), save(arrays, metadata=metadata))


def load_model(path: str | os.PathLike) -> tuple[TrainConfig, dict[str, np.ndarray], dict]:
    """Read a model file: (config, float32 weights, results). Raises ModelFileError."""
    path = Path(path)
    weights, metadata = read_safetensors(path, "model file",
                                         missing="train one with `digitnet train`")
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not a digitnet model")
    version = metadata.get("format_version")
    if version not in READS_VERSIONS:
        raise ModelFileError(
            f"{path} has model format version {version!r}; this digitnet reads versions "
            f"{', '.join(READS_VERSIONS)} (a newer digitnet may read it)"
        )
    name = metadata.get("family", "mlp") if version != "1" else "mlp"
    if version == "2" and name not in FAMILIES_OF_VERSION_2:
        raise ModelFileError(
            f"{path} holds a {name!r} network, a family this digitnet does not know (it knows "
            f"{', '.join(FAMILIES_OF_VERSION_2)}): a newer digitnet may read it"
        )
    try:
        cfg = TrainConfig.from_json(metadata.get("config", ""))
        results = json.loads(metadata.get("results", "{}"))
    except (ConfigError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path} has damaged metadata: {exc}") from None
    if not isinstance(results, dict) or not _valid_fits(results):
        raise ModelFileError(f"{path} has damaged metadata: its results are not an object "
                             "with a positive calibration temperature and a refusal "
                             "threshold in (0, 1)")
    if cfg.model != name:
        raise ModelFileError(f"{path} has damaged metadata: family {name!r} but a "
                             f"{cfg.model!r} config")
    if version == "3" and metadata.get("network") != to_text(cfg.network):
        raise ModelFileError(f"{path} has damaged metadata: its layers "
                             f"{metadata.get('network')!r} are not what its config describes "
                             f"({to_text(cfg.network)})")
    check_weights(weights, cfg, source=str(path))
    return cfg, weights, results


def _valid_fits(results: dict) -> bool:
    """Whether what was fitted after training, where it is there, makes sense."""
    def number(entry, key: str, low: float, high: float) -> bool:
        if entry is None:
            return True
        value = isinstance(entry, dict) and entry.get(key)
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and low < value < high)

    return (number(results.get("calibration"), "temperature", 0, math.inf)
            and number(results.get("refusal"), "threshold", 0, 1))


def read_safetensors(path: Path, noun: str, *, missing: str) -> tuple[dict[str, np.ndarray],
                                                                      dict[str, str]]:
    """The arrays and string metadata of the safetensors `noun` ("model file") at `path`;
    ModelFileError if it is unreadable or no safetensors file, or, when there is no file,
    saying what to do (`missing`)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        content = read_file(path, MAX_MODEL_BYTES)
    except FileNotFoundError:
        raise ModelFileError(f"no {noun} at {path}: {missing}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return load(content), _read_metadata(content)
    except (SafetensorError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a safetensors {noun} ({exc})") from None


def _read_metadata(content: bytes) -> dict[str, str]:
    # A safetensors file starts with an 8-byte little-endian header length and a JSON header
    # whose "__metadata__" entry holds string pairs; safetensors.numpy.load() has validated it.
    header_len = int.from_bytes(content[:8], "little")
    header = json.loads(content[8:8 + header_len])
    return header.get("__metadata__") or {}


def check_weights(weights: dict[str, np.ndarray], cfg: TrainConfig, *, source: str) -> None:
    expected = weight_shapes(cfg)
    if set(weights) != set(expected):
        missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        raise ModelFileError(
            f"{source} does not match its config ({to_text(cfg.network)}): "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    for name, shape in expected.items():
        array = weights[name]
        if tuple(array.shape) != shape:
            raise ModelFileError(
                f"{source}: {name} has shape {tuple(array.shape)} but the config says {shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ModelFileError(f"{source}: {name} holds NaN or infinite values")
