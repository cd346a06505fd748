"""Write a digitnet model as a Keras 3 `.keras` file, without Keras: a zip of `config.json`
(the Sequential model), `metadata.json` and `model.weights.h5` (written with h5py).

The model takes (batch, 28, 28) float32 images scaled to 0..1, like the tutorial's, and ends
in a softmax, so `keras.saving.load_model(path).predict(images)` gives digitnet's
probabilities. Keras stores each layer's weights under `layers/<snake_case class name>` with
a counter per class (`dense`, `dense_1`, ...) in the order of the config's layers, as
`vars/0` (kernel) and `vars/1` (bias); digitnet's kernels already have Keras' layouts
(Dense (in, out), Conv2D HWIO), so they are written as they are.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..config import TrainConfig
from ..errors import DigitnetError
from ..extras import require
from ..models.cnn import SIDE, conv_layout

KERAS_VERSION = "3.15.1"  # the version the files were checked with (tests/test_interop.py)


def _layer(class_name: str, config: dict, input_shape: list | None = None) -> dict:
    layer = {"module": "keras.layers", "class_name": class_name, "config": config,
             "registered_name": None}
    if input_shape is not None:
        layer["build_config"] = {"input_shape": input_shape}
    return layer


def _dense(units: int, activation: str, n_in: int) -> tuple[dict, bool]:
    return _layer("Dense", {"units": units, "activation": activation}, [None, n_in]), True


def _layers(cfg: TrainConfig) -> list[tuple[dict, bool]]:
    """(Keras layer config, has weights) in order, after the InputLayer."""
    layers = []
    if cfg.model == "mlp":
        layers.append((_layer("Flatten", {}, [None, SIDE, SIDE]), False))
        sizes = (SIDE * SIDE, *cfg.hidden, 10)
    else:
        layers.append((_layer("Reshape", {"target_shape": [SIDE, SIDE, 1]},
                              [None, SIDE, SIDE]), False))
        side = SIDE
        for n_in, n_out, pool in conv_layout(cfg):
            layers.append((_layer("Conv2D", {"filters": n_out, "kernel_size": [3, 3],
                                             "padding": "same",
                                             "activation": cfg.activation},
                                  [None, side, side, n_in]), True))
            if pool:
                pooling = "MaxPooling2D" if cfg.pool == "max" else "AveragePooling2D"
                layers.append((_layer(pooling, {"pool_size": [2, 2]},
                                      [None, side, side, n_out]), False))
                side //= 2
        layers.append((_layer("Flatten", {}, [None, side, side, cfg.conv[-1]]), False))
        sizes = (side * side * cfg.conv[-1], *cfg.dense, 10)
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(_dense(n_out, "softmax" if i == len(sizes) - 2 else cfg.activation, n_in))
    return layers


def keras_layer_names(class_names: list[str]) -> list[str]:
    """The names Keras gives layers of these classes, in order, and under which a `.keras`
    file stores their weights: the class in snake case, then _1, _2, ... per class
    (Dense -> dense, dense_1; Conv2D -> conv2d; MaxPooling2D -> max_pooling2d)."""
    seen: dict[str, int] = {}
    names = []
    for class_name in class_names:
        base = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
        base = re.sub(r"([a-z])([A-Z])", r"\1_\2", base).lower()
        count = seen.get(base, 0)
        seen[base] = count + 1
        names.append(base if count == 0 else f"{base}_{count}")
    return names


def _named(layers: list[tuple[dict, bool]]) -> list[tuple[str, dict, bool]]:
    names = keras_layer_names([layer["class_name"] for layer, _ in layers])
    for name, (layer, _) in zip(names, layers):
        layer["config"]["name"] = name
    return [(name, layer, has_weights) for name, (layer, has_weights) in zip(names, layers)]


def _weights_file(named: list[tuple[str, dict, bool]], cfg: TrainConfig,
                  weights: dict[str, np.ndarray]) -> bytes:
    import h5py

    ours = [f"conv_{i}" for i in range(len(conv_layout(cfg)))] if cfg.model == "cnn" else []
    ours += [f"dense_{i}" for i in range(sum(1 for n, _, w in named if n.startswith("dense")))]
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_group("vars")
        tensors = iter(ours)
        for name, _, has_weights in named:
            group = h5.create_group(f"layers/{name}/vars")
            if has_weights:
                source = next(tensors)
                group["0"] = np.asarray(weights[f"{source}.kernel"], np.float32)
                group["1"] = np.asarray(weights[f"{source}.bias"], np.float32)
    return buffer.getvalue()


def keras_file(cfg: TrainConfig, weights: dict[str, np.ndarray]) -> bytes:
    """The bytes of a `.keras` file holding the network `cfg` describes with `weights`."""
    require("keras", "Keras export")
    named = _named(_layers(cfg))
    config = {
        "module": "keras", "class_name": "Sequential", "registered_name": None,
        "config": {"name": "sequential", "layers": [
            {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
             "config": {"batch_shape": [None, SIDE, SIDE], "dtype": "float32",
                        "name": "input_layer"}},
            *(layer for _, layer, _ in named)],
            "build_input_shape": [None, SIDE, SIDE]},
        "build_config": {"input_shape": [None, SIDE, SIDE]},
    }
    metadata = {"keras_version": KERAS_VERSION, "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S")}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps(metadata))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", _weights_file(named, cfg, weights))
    return buffer.getvalue()


def export_keras(cfg: TrainConfig, weights: dict[str, np.ndarray],
                 path: str | os.PathLike) -> Path:
    """Write the model as a `.keras` file at `path` (atomically); return the path."""
    path = Path(path)
    try:
        atomic_write(path, keras_file(cfg, weights))
    except OSError as exc:
        raise DigitnetError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
