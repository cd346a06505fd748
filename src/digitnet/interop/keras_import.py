"""Read a Keras model file as a digitnet network, with zipfile and h5py only: no TensorFlow,
no Keras, and nothing in the file is ever run.

Read: Keras 3 `.keras` files (a zip of config.json, metadata.json and model.weights.h5) and
full-model `.h5` files of Keras 2 and 3 (a `model_config` attribute and a `model_weights`
group). The model must be Sequential, or Functional in a straight line, and one of digitnet's
families, layer for layer:

    mlp: [Rescaling] [Flatten] Dense(a) ... Dense(softmax or linear)
    cnn: [Reshape to 28x28x1] [Rescaling] (Conv2D(3x3, 'same', a)... MaxPooling2D(2) or
         AveragePooling2D(2))... Flatten Dense(a) ... Dense(softmax or linear)

where a, the activation, is relu, sigmoid or tanh, the same in every hidden layer,

Dropout anywhere (it does nothing at inference) and an input of 28x28, 28x28x1 or 784
values. Anything else is refused with the layer's name and the reason.

Pixel scale: digitnet feeds networks 0..1 pixels. A Keras model without a Rescaling layer is
taken to expect 0..1 too, as the tutorial divides by 255 before `fit`; a model with a
Rescaling(s) layer (offset 0) is taken to be fed 0..255 pixels that it scales inside. Pass
`input_scale` (1 or 255) to say otherwise. Either way the factor is folded into the first
layer's kernel, so the digitnet network computes what the Keras model computes.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ACTIVATIONS, TrainConfig
from ..errors import ConfigError, ModelFileError
from ..extras import require
from ..models.cnn import SIDE

IGNORED = {"InputLayer", "Dropout"}  # no work at inference
INPUT_SHAPES = ((SIDE, SIDE), (SIDE, SIDE, 1), (SIDE * SIDE,))


@dataclass
class KerasModel:
    """A model file's layers in order: (class name, config), and each weighted layer's
    arrays by its position in `layers`."""

    layers: list[tuple[str, dict[str, Any]]]
    arrays: dict[int, list[np.ndarray]] = field(default_factory=dict)
    input_shape: tuple | None = None


def read_keras_file(path: str | os.PathLike) -> KerasModel:
    """The layers and weights of a `.keras` or `.h5` file. Raises ModelFileError."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if content.startswith(b"PK"):
        return _read_keras_zip(path, content)
    if content.startswith(b"\x89HDF"):
        return _read_legacy_h5(path, content)
    raise ModelFileError(f"{path} is neither a Keras .keras (zip) nor a .h5 (HDF5) file")


def _h5py():
    require("keras", "reading Keras files")
    import h5py

    return h5py


def _read_keras_zip(path: Path, content: bytes) -> KerasModel:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = set(archive.namelist())
            if not {"config.json", "model.weights.h5"} <= names:
                raise ModelFileError(f"{path} is a zip but not a Keras model file (it has no "
                                     "config.json and model.weights.h5)")
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"{path} is a damaged zip file ({exc})") from None
    model = _layers_of(path, config)
    h5py = _h5py()
    try:
        with h5py.File(io.BytesIO(weights), "r") as h5:
            for index, path_in_file in _weight_paths(model):
                group = h5.get(f"layers/{path_in_file}/vars")
                if group is None:
                    raise ModelFileError(f"{path}: no weights for layer {path_in_file!r}")
                model.arrays[index] = [np.asarray(group[str(i)]) for i in range(len(group))]
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: damaged model.weights.h5 ({exc})") from None
    return model


def _read_legacy_h5(path: Path, content: bytes) -> KerasModel:
    h5py = _h5py()
    try:
        with h5py.File(io.BytesIO(content), "r") as h5:
            if "model_config" not in h5.attrs or "model_weights" not in h5:
                raise ModelFileError(f"{path} is an HDF5 file but not a whole Keras model "
                                     "(a weights-only file has no model_config)")
            raw = h5.attrs["model_config"]
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            model = _layers_of(path, config)
            group = h5["model_weights"]
            by_name = {}
            for name in group.attrs["layer_names"]:
                name = name.decode() if isinstance(name, bytes) else str(name)
                layer = group[name]
                by_name[name] = [np.asarray(layer[w.decode() if isinstance(w, bytes) else w])
                                 for w in layer.attrs["weight_names"]]
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path} is a damaged HDF5 file ({exc})") from None
    for index, (_, layer_config) in enumerate(model.layers):
        arrays = by_name.get(layer_config.get("name"), [])
        if arrays:
            model.arrays[index] = arrays
    return model


def _layers_of(path: Path, config: Any) -> KerasModel:
    """The straight line of layers of a Sequential or Functional model config."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ModelFileError(f"{path}: the model config is not a Keras model description")
    kind = config.get("class_name")
    layers = config["config"].get("layers")
    if kind not in ("Sequential", "Functional", "Model") or not isinstance(layers, list):
        raise ModelFileError(f"{path}: a {kind!r} model is not supported (Sequential, or "
                             "Functional in a straight line)")
    parsed = []
    for layer in layers:
        if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
            raise ModelFileError(f"{path}: a layer entry of the config is damaged")
        parsed.append((str(layer.get("class_name")), layer["config"]))
    if kind != "Sequential":
        _check_straight_line(path, layers)
    model = KerasModel(parsed)
    build = config.get("build_config") or {}
    first = parsed[0][1] if parsed else {}
    shape = (first.get("batch_shape") or first.get("batch_input_shape")
             or build.get("input_shape") or config["config"].get("build_input_shape"))
    if isinstance(shape, list) and shape:
        model.input_shape = tuple(shape[1:])
    return model


def _check_straight_line(path: Path, layers: list[dict]) -> None:
    previous = None
    for layer in layers:
        name = layer["config"].get("name")
        sources = re.findall(r'"keras_history": \["([^"]+)"|\[\["([^"]+)",',
                             json.dumps(layer.get("inbound_nodes", [])))
        inbound = {a or b for a, b in sources}
        if previous is not None and inbound != {previous}:
            raise ModelFileError(f"{path}: layer {name!r} does not simply follow {previous!r}; "
                                 "only models that are one straight line of layers are read")
        previous = name


def _weight_paths(model: KerasModel):
    """(layer index, path in model.weights.h5) of the layers that hold weights: Keras names
    the paths by class, in the config's order (dense, dense_1, ...), not by layer name."""
    from .keras_export import keras_layer_names

    names = keras_layer_names([class_name for class_name, _ in model.layers])
    for index, ((class_name, _), name) in enumerate(zip(model.layers, names)):
        if class_name in ("Dense", "Conv2D"):
            yield index, name


def keras_to_digitnet(model: KerasModel, source: str, input_scale: float | None = None
                      ) -> tuple[TrainConfig, dict[str, np.ndarray]]:
    """(config, weights) of the digitnet network that computes what `model` computes.
    `input_scale`: what the model's inputs span, 1 (0..1 pixels) or 255 (0..255); by default
    255 for a model with a Rescaling layer and 1 without."""
    if model.input_shape is not None and tuple(model.input_shape) not in INPUT_SHAPES:
        raise ModelFileError(f"{source}: the model takes inputs of shape "
                             f"{list(model.input_shape)}; digitnet reads 28x28, 28x28x1 or 784")
    reader = _Reader(source, model)
    factor = reader.prologue(input_scale)
    cfg, weights = reader.cnn() if reader.peek() == "Conv2D" else reader.mlp()
    first = "conv_0.kernel" if cfg.model == "cnn" else "dense_0.kernel"
    # exact for both: a Dense layer is linear in its input, and a 'same' convolution pads
    # with zeros, which scaling leaves zero
    weights[first] = weights[first] * np.float32(factor)
    return cfg, weights


class _Reader:
    """Walks the layers once, checking each against the family's shape."""

    def __init__(self, source: str, model: KerasModel):
        self.source, self.model = source, model
        self.items = [(i, c, cfg) for i, (c, cfg) in enumerate(model.layers) if c not in IGNORED]
        self.at = 0
        self.flat = model.input_shape in (None, (SIDE * SIDE,))  # images as 784 values
        self.activation: str | None = None  # of the hidden layers, once one is read
        self.pooling: str | None = None

    def peek(self) -> str | None:
        return self.items[self.at][1] if self.at < len(self.items) else None

    def take(self) -> tuple[int, str, dict]:
        item = self.items[self.at]
        self.at += 1
        return item

    def refuse(self, config: dict, class_name: str, why: str):
        raise ModelFileError(f"{self.source}: layer {config.get('name', '?')!r} "
                             f"({class_name}) {why}")

    def prologue(self, input_scale: float | None) -> float:
        """Skip the layers that only reshape or rescale the input; return the factor between
        digitnet's 0..1 pixels and what the first weighted layer sees."""
        rescaling = 1.0
        seen_rescaling = False
        while self.peek() in ("Reshape", "Rescaling"):
            index, class_name, config = self.take()
            if class_name == "Reshape":
                target = list(config.get("target_shape", []))
                if target not in ([SIDE, SIDE, 1], [SIDE * SIDE]):
                    self.refuse(config, class_name, f"reshapes to {config.get('target_shape')}")
                self.flat = target == [SIDE * SIDE]
                continue
            offset, factor = config.get("offset", 0.0), config.get("scale", 1.0)
            if offset not in (0, 0.0) or isinstance(factor, bool) \
                    or not isinstance(factor, (int, float)):
                self.refuse(config, class_name, "has an offset or a per-channel scale; only "
                            "a plain scale (such as 1/255) is read")
            rescaling *= factor
            seen_rescaling = True
        if input_scale is None:  # a model that rescales inside is fed 0..255 pixels
            input_scale = 255.0 if seen_rescaling else 1.0
        return input_scale * rescaling

    def dense_stack(self, first_in: int) -> tuple[tuple[int, ...], dict[str, np.ndarray]]:
        widths, weights, n_in = [], {}, first_in
        while self.peek() is not None:
            index, class_name, config = self.take()
            if class_name != "Dense":
                self.refuse(config, class_name, "is not supported here (after the convolutions "
                            "and Flatten come Dense layers)" if widths else "is not supported")
            if self.peek() is None:
                activation = config.get("activation", "linear")
                if activation not in ("softmax", "linear"):
                    self.refuse(config, class_name, f"uses activation {activation!r}; digitnet's "
                                "output layer is softmax or linear (logits)")
            else:
                self.hidden_activation(config, class_name)
            kernel, bias = self.kernel_and_bias(index, config, class_name, 2)
            if kernel.shape[0] != n_in:
                self.refuse(config, class_name, f"takes {kernel.shape[0]} inputs, not {n_in}")
            i = len(widths)
            weights[f"dense_{i}.kernel"], weights[f"dense_{i}.bias"] = kernel, bias
            widths.append(kernel.shape[1])
            n_in = kernel.shape[1]
        if not widths:
            raise ModelFileError(f"{self.source}: the model has no Dense output layer")
        if widths[-1] != 10:
            raise ModelFileError(f"{self.source}: the model has {widths[-1]} outputs; a digit "
                                 "classifier has 10")
        return tuple(widths[:-1]), weights

    def hidden_activation(self, config: dict, class_name: str) -> None:
        activation = config.get("activation", "linear")
        if activation not in ACTIVATIONS:
            self.refuse(config, class_name, f"uses activation {activation!r}; digitnet's hidden "
                        f"layers use {', '.join(ACTIVATIONS)}")
        if self.activation not in (None, activation):
            self.refuse(config, class_name, f"uses {activation!r} after {self.activation!r}; "
                        "digitnet's hidden layers all use one activation")
        self.activation = activation

    def kernel_and_bias(self, index: int, config: dict, class_name: str, ndim: int):
        arrays = self.model.arrays.get(index, [])
        if not config.get("use_bias", True):
            self.refuse(config, class_name, "has no bias; digitnet's layers all have one")
        if len(arrays) != 2 or arrays[0].ndim != ndim or arrays[1].ndim != 1:
            self.refuse(config, class_name, "does not hold a kernel and a bias")
        kernel, bias = (np.asarray(a, np.float32) for a in arrays)
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
            self.refuse(config, class_name, "holds NaN or infinite weights")
        return kernel, bias

    def mlp(self) -> tuple[TrainConfig, dict[str, np.ndarray]]:
        if self.peek() == "Flatten":
            self.take()
        elif not self.flat and self.peek() == "Dense":
            index, class_name, config = self.items[self.at]
            self.refuse(config, class_name, "is applied to the 28x28 image without a Flatten "
                        "before it")
        hidden, weights = self.dense_stack(SIDE * SIDE)
        if not hidden:
            raise ModelFileError(f"{self.source}: a model with no hidden layer is not one of "
                                 "digitnet's families")
        return self._config(model="mlp", hidden=hidden, activation=self.activation), weights

    def cnn(self) -> tuple[TrainConfig, dict[str, np.ndarray]]:
        blocks, per_block, weights, convs, channels = [], None, {}, 0, 1
        while self.peek() == "Conv2D":
            in_block = 0
            while self.peek() == "Conv2D":
                index, class_name, config = self.take()
                if (list(config.get("kernel_size", [3, 3])) != [3, 3]
                        or config.get("padding", "valid") != "same"
                        or list(config.get("strides", [1, 1])) != [1, 1]
                        or list(config.get("dilation_rate", [1, 1])) != [1, 1]
                        or config.get("data_format", "channels_last") != "channels_last"):
                    self.refuse(config, class_name, "is not a 3x3 'same' convolution with "
                                "stride 1, the only kind digitnet's cnn family has")
                self.hidden_activation(config, class_name)
                kernel, bias = self.kernel_and_bias(index, config, class_name, 4)
                if kernel.shape[:3] != (3, 3, channels):
                    self.refuse(config, class_name, f"has a kernel of shape {kernel.shape}")
                weights[f"conv_{convs}.kernel"], weights[f"conv_{convs}.bias"] = kernel, bias
                channels, convs, in_block = kernel.shape[3], convs + 1, in_block + 1
            index, class_name, config = self.take() if self.peek() else (None, "end", {})
            pooling = {"MaxPooling2D": "max", "AveragePooling2D": "avg"}.get(class_name)
            if pooling is None or list(config.get("pool_size", [2, 2])) != [2, 2] \
                    or list(config.get("strides") or [2, 2]) != [2, 2] \
                    or config.get("padding", "valid") != "valid":
                self.refuse(config, class_name, "must be MaxPooling2D(2) or AveragePooling2D(2) "
                            "after each block of convolutions in digitnet's cnn family")
            if self.pooling not in (None, pooling):
                self.refuse(config, class_name, "pools differently from the blocks before it")
            self.pooling = pooling
            if per_block not in (None, in_block):
                self.refuse(config, class_name, "ends a block with a different number of "
                            "convolutions than the first block")
            per_block = in_block
            blocks.append(int(channels))
        index, class_name, config = self.take() if self.peek() else (None, "end", {})
        if class_name != "Flatten":
            self.refuse(config, class_name, "must be Flatten after the convolutions")
        side = SIDE >> len(blocks)
        dense, dense_weights = self.dense_stack(side * side * channels)
        return (self._config(model="cnn", conv=tuple(blocks), convs_per_block=per_block,
                             pool=self.pooling, dense=dense, activation=self.activation),
                {**weights, **dense_weights})

    def _config(self, **fields) -> TrainConfig:
        try:
            return TrainConfig(**fields)
        except ConfigError as exc:
            raise ModelFileError(f"{self.source}: {exc}") from None


def load_keras_model(path: str | os.PathLike, input_scale: float | None = None
                     ) -> tuple[TrainConfig, dict[str, np.ndarray], dict[str, Any]]:
    """(config, weights, results) of a Keras model file, as load_model gives for a digitnet
    model file; `results` says where the model came from and the pixel scale assumed."""
    model = read_keras_file(path)
    cfg, weights = keras_to_digitnet(model, str(path), input_scale)
    return cfg, weights, {"imported_from": Path(path).name,
                          "keras_input": "0..255 pixels" if _fed_raw(model, input_scale)
                          else "0..1 pixels"}


def _fed_raw(model: KerasModel, input_scale: float | None) -> bool:
    if input_scale is not None:
        return input_scale == 255
    return any(class_name == "Rescaling" for class_name, _ in model.layers)
