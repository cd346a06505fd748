"""Write a digitnet model as a Keras 3 `.keras` file, without Keras: a zip of `config.json`
(the Sequential model, one Keras layer per record of the layer sequence), `metadata.json`
and `model.weights.h5` (written with h5py).

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
from ..geometry import SIDE
from ..network import (Activation, Conv, Dense, Dropout, Flatten, Network, Normalize, Pool,
                       input_shapes, weight_names)

KERAS_VERSION = "3.15.1"  # the version the files were checked with (tests/test_interop.py)


def _layer(class_name: str, config: dict, input_shape: tuple) -> dict:
    return {"module": "keras.layers", "class_name": class_name, "config": config,
            "registered_name": None, "build_config": {"input_shape": [None, *input_shape]}}


def _keras_layers(network: Network) -> list[tuple[dict, str | None]]:
    """(Keras layer config, the digitnet weights' name prefix or None) in order, after the
    InputLayer, which takes (batch, 28, 28) images. An activation right after a convolution
    or dense layer becomes that layer's `activation`; the last dense layer's is softmax."""
    layers: list[tuple[dict, str | None]] = []
    shapes = input_shapes(network)
    names = weight_names(network)
    first = network[1] if isinstance(network[0], Normalize) else network[0]
    reshaped = not isinstance(first, Flatten)  # images get their channel axis
    if reshaped:
        layers.append((_layer("Reshape", {"target_shape": [SIDE, SIDE, 1]}, (SIDE, SIDE)), None))
    for i, (layer, shape) in enumerate(zip(network, shapes)):
        if not reshaped and shape == (SIDE, SIDE, 1):
            shape = (SIDE, SIDE)  # as the InputLayer hands it on
        following = network[i + 1] if i + 1 < len(network) else None
        activation = following.name if isinstance(following, Activation) else "linear"
        match layer:
            case Normalize(scale, mean, std):  # Keras' Rescaling: x * scale + offset
                layers.append((_layer("Rescaling", {"scale": scale / std, "offset": -mean / std},
                                      shape), None))
            case Conv(channels, kernel, padding, stride):
                layers.append((_layer("Conv2D", {
                    "filters": channels, "kernel_size": [kernel, kernel],
                    "strides": [stride, stride], "padding": padding, "activation": activation},
                    shape), names[i]))
            case Pool(kind, size):
                pooling = "MaxPooling2D" if kind == "max" else "AveragePooling2D"
                layers.append((_layer(pooling, {"pool_size": [size, size],
                                                "strides": [size, size]}, shape), None))
            case Flatten():
                layers.append((_layer("Flatten", {}, shape), None))
            case Dense(width):
                last = i == len(network) - 1
                layers.append((_layer("Dense", {"units": width, "activation":
                                                "softmax" if last else activation}, shape),
                               names[i]))
            case Dropout(rate):
                layers.append((_layer("Dropout", {"rate": rate}, shape), None))
            case Activation(name):
                previous = network[i - 1] if i else None
                if not isinstance(previous, (Conv, Dense)):  # else it went into that layer
                    layers.append((_layer("Activation", {"activation": name}, shape), None))
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


def _named(layers: list[tuple[dict, str | None]]) -> list[tuple[str, dict, str | None]]:
    names = keras_layer_names([layer["class_name"] for layer, _ in layers])
    for name, (layer, _) in zip(names, layers):
        layer["config"]["name"] = name
    return [(name, layer, weights) for name, (layer, weights) in zip(names, layers)]


def _weights_file(named: list[tuple[str, dict, str | None]],
                  weights: dict[str, np.ndarray]) -> bytes:
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_group("vars")
        for name, _, source in named:
            group = h5.create_group(f"layers/{name}/vars")
            if source is not None:
                group["0"] = np.asarray(weights[f"{source}.kernel"], np.float32)
                group["1"] = np.asarray(weights[f"{source}.bias"], np.float32)
    return buffer.getvalue()


def keras_file(cfg: TrainConfig, weights: dict[str, np.ndarray]) -> bytes:
    """The bytes of a `.keras` file holding the network `cfg` describes with `weights`."""
    require("keras", "Keras export")
    named = _named(_keras_layers(cfg.network))
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
        archive.writestr("model.weights.h5", _weights_file(named, weights))
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
