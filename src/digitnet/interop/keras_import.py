"""Read a Keras model file as a digitnet layer sequence, with zipfile and h5py only: no
TensorFlow, no Keras, and nothing in the file is ever run.

Read: Keras 3 `.keras` files (a zip of config.json, metadata.json and model.weights.h5) and
full-model `.h5` files of Keras 2 and 3 (a `model_config` attribute and a `model_weights`
group). The model must be Sequential, or Functional in a straight line, taking 28x28,
28x28x1 or 784 values, and made of these layers, each read as its record of
digitnet.network:

    Conv2D (square kernel and strides, 'same' or 'valid', no dilation), MaxPooling2D and
    AveragePooling2D (square, stride = size), Flatten, Dense, Dropout, Activation and ReLU,
    the activations relu, sigmoid and tanh (softmax or log_softmax only at the end),
    Reshape and Rescaling at the input, and BatchNormalization right after a Conv2D or
    Dense layer without an activation, folded into that layer's weights (exact at
    inference).

Anything else is refused with the layer's name and the reason. The last layer must be a
Dense layer of 10 outputs.

Pixel scale: digitnet feeds networks 0..1 pixels. A Keras model is taken to expect 0..1
too, as the tutorial divides by 255 before `fit`, unless it has a Rescaling layer that
divides by 255: such a model is fed 0..255 pixels that it scales inside. Pass `input_scale`
(1 or 255) to say otherwise, and `input_mean` and `input_std` for a normalisation done
before the model. What is done to the pixels becomes the sequence's Normalize record.

The file is not trusted: the zip's members may inflate to a bounded size, HDF5 links,
external storage and virtual datasets are refused (they would read other files), and each
weight array's declared shape is checked against its layer before it is read.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..config import TrainConfig
from ..errors import ModelFileError
from ..extras import require
from ..files import read_model_file
from ..geometry import IMAGE_PIXELS, SIDE
from ..network import ACTIVATIONS, Activation, Conv, Dense, Dropout, Flatten, Pool
from .sequence import SequenceBuilder

INPUT_SHAPES = ((SIDE, SIDE), (SIDE, SIDE, 1), (IMAGE_PIXELS,))
MAX_CONFIG_BYTES = 16 << 20  # config.json, inflated
MAX_WEIGHTS_BYTES = 512 << 20  # model.weights.h5, inflated
OUTPUT_ACTIVATIONS = ("softmax", "log_softmax", "linear")  # the same digit and probabilities
WEIGHTED = ("Dense", "Conv2D", "BatchNormalization")
READ_CLASSES = frozenset({*WEIGHTED, "Reshape", "Rescaling", "Dropout", "Flatten", "Activation",
                          "ReLU", "MaxPooling2D", "AveragePooling2D"})  # each has a _Name


@dataclass
class KerasModel:
    """A model file's layers in order, (class name, config), and each weighted layer's
    HDF5 datasets by its position in `layers`: read only once their shapes are checked, so
    the file stays open while a KerasModel is used (see open_keras_file)."""

    layers: list[tuple[str, dict[str, Any]]]
    datasets: dict[int, list[Any]] = field(default_factory=dict)
    input_shape: tuple | None = None


def _h5py():
    require("keras", "reading Keras files")
    import h5py

    return h5py


@contextmanager
def open_keras_file(path: str | os.PathLike) -> Iterator[KerasModel]:
    """The layers and weights of a `.keras` or `.h5` file, open while the block runs.
    Raises ModelFileError."""
    path = Path(path)
    content = read_model_file(path)
    if content.startswith(b"PK"):
        config, weights = _read_keras_zip(path, content)
        model = _layers_of(path, config)
        with _open_h5(path, weights, "model.weights.h5") as h5:
            _find_keras_weights(path, model, h5)
            yield model
    elif content.startswith(b"\x89HDF"):
        with _open_h5(path, content, "HDF5 file") as h5:
            yield _read_legacy_h5(path, h5)
    else:
        raise ModelFileError(f"{path} is neither a Keras .keras (zip) nor a .h5 (HDF5) file")


def _member(path: Path, archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A zip member's bytes, refused past `limit` whatever its header claims."""
    with archive.open(name) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise ModelFileError(f"{path}: its {name} inflates to over {limit >> 20} MB")
    return data


def _read_keras_zip(path: Path, content: bytes) -> tuple[Any, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = set(archive.namelist())
            if not {"config.json", "model.weights.h5"} <= names:
                raise ModelFileError(f"{path} is a zip but not a Keras model file (it has no "
                                     "config.json and model.weights.h5)")
            config = json.loads(_member(path, archive, "config.json", MAX_CONFIG_BYTES))
            weights = _member(path, archive, "model.weights.h5", MAX_WEIGHTS_BYTES)
    except RecursionError:
        raise ModelFileError(f"{path}: its config.json is nested too deeply to be a model "
                             "description") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"{path} is a damaged zip file ({exc})") from None
    return config, weights


@contextmanager
def _open_h5(path: Path, content: bytes, noun: str):
    h5py = _h5py()
    try:
        h5 = h5py.File(io.BytesIO(content), "r")
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is a damaged {noun} ({exc})") from None
    with h5:
        try:
            yield h5
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{path} is a damaged {noun} ({exc})") from None


def _hard_get(source: Path, group, path: str):
    """The object at `path` under `group`, following hard links only: a soft or external
    link could lead anywhere, another file included. None where nothing is there."""
    import h5py

    for part in path.strip("/").split("/"):
        if not isinstance(group, h5py.Group) or part not in group:
            return None
        link = group.get(part, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise ModelFileError(f"{source}: its HDF5 entry {path!r} is a link to elsewhere; "
                                 "digitnet reads weights from the file alone")
        group = group[part]
    return group


def _find_keras_weights(path: Path, model: KerasModel, h5) -> None:
    """Keras 3 names the weight groups by class, in the config's order (dense, dense_1,
    ...), not by layer name."""
    from .keras_export import keras_layer_names

    names = keras_layer_names([class_name for class_name, _ in model.layers])
    for index, ((class_name, _), name) in enumerate(zip(model.layers, names)):
        if class_name in WEIGHTED:
            group = _hard_get(path, h5, f"layers/{name}/vars")
            if group is None:
                raise ModelFileError(f"{path}: no weights for layer {name!r}")
            model.datasets[index] = [_hard_get(path, group, str(i)) for i in range(len(group))]


def _read_legacy_h5(path: Path, h5) -> KerasModel:
    if "model_config" not in h5.attrs or "model_weights" not in h5:
        raise ModelFileError(f"{path} is an HDF5 file but not a whole Keras model "
                             "(a weights-only file has no model_config)")
    raw = h5.attrs["model_config"]
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except RecursionError:
        raise ModelFileError(f"{path}: its model config is nested too deeply") from None
    model = _layers_of(path, config)
    group = _hard_get(path, h5, "model_weights")

    def text(value) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    by_name = {}
    for name in map(text, group.attrs["layer_names"]):
        layer = _hard_get(path, group, name)
        if layer is None:
            raise ModelFileError(f"{path}: no weights for layer {name!r}")
        by_name[name] = [_hard_get(path, layer, text(w)) for w in layer.attrs["weight_names"]]
    for index, (_, layer_config) in enumerate(model.layers):
        if by_name.get(layer_config.get("name")):
            model.datasets[index] = by_name[layer_config["name"]]
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


class _Reader(SequenceBuilder):
    """Walks the Keras layers once, turning each into records of a layer sequence."""

    def __init__(self, source: str, model: KerasModel):
        super().__init__(source)
        self.model = model
        self.flat_input = model.input_shape in (None, (IMAGE_PIXELS,))
        self.config: dict = {}  # of the layer being read
        self.class_name = ""

    def refuse(self, why: str):
        raise ModelFileError(f"{self.source}: layer {self.config.get('name', '?')!r} "
                             f"({self.class_name}) {why}")

    def read(self, input_scale: float | None, input_mean: float, input_std: float
             ) -> tuple[TrainConfig, dict[str, np.ndarray]]:
        if input_scale is None:  # a model that rescales inside is fed 0..255 pixels
            input_scale = 255.0 if _fed_0_to_255(self.model) else 1.0
        self.scale, self.mean, self.std = float(input_scale), input_mean, input_std
        entries = [(i, c, cfg) for i, (c, cfg) in enumerate(self.model.layers)
                   if c != "InputLayer"]
        for position, (index, self.class_name, self.config) in enumerate(entries):
            if self.class_name not in READ_CLASSES:
                self.refuse("is not supported")
            read = getattr(self, f"_{self.class_name}")
            read(index, last=position == len(entries) - 1)
        return self.finish("a Dense layer")

    # ---- one method per Keras layer class ----

    def _Reshape(self, index: int, last: bool) -> None:
        target = list(self.config.get("target_shape", []))
        if self.records or target not in ([SIDE, SIDE, 1], [IMAGE_PIXELS]):
            self.refuse(f"reshapes to {self.config.get('target_shape')}; only the input is "
                        "reshaped, to 28x28x1 or 784")
        if target == [IMAGE_PIXELS]:
            self.add(Flatten())

    def _Rescaling(self, index: int, last: bool) -> None:
        scale, offset = self.config.get("scale", 1.0), self.config.get("offset", 0.0)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
               for v in (scale, offset)):
            self.refuse("has a per-channel scale or offset; only plain numbers are read")
        if not self.normalising():
            self.refuse("comes after a layer that changes the values; only the input is "
                        "rescaled")
        self.multiply(scale)
        self.add_number(offset)

    def _Dropout(self, index: int, last: bool) -> None:
        rate = self.config.get("rate", 0.5)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            self.refuse(f"has a dropout rate of {rate!r}")
        self.add(Dropout(float(rate)))

    def _Flatten(self, index: int, last: bool) -> None:
        if len(self.shape) == 3:
            self.add(Flatten())

    def _Activation(self, index: int, last: bool) -> None:
        self.activation(self.config.get("activation", "linear"), last)

    def _ReLU(self, index: int, last: bool) -> None:
        if any(self.config.get(key) not in (None, 0, 0.0)
               for key in ("max_value", "negative_slope", "threshold")):
            self.refuse("is a capped, leaky or shifted ReLU; only the plain one is read")
        self.activation("relu", last)

    def _Dense(self, index: int, last: bool) -> None:
        units = self.config.get("units")
        if len(self.shape) == 3:
            if self.flat_input and not any(isinstance(r, (Conv, Pool)) for r in self.records):
                self.add(Flatten())  # the model takes 784 values: digitnet's image, flattened
            else:
                self.refuse("is applied to the 28x28 image without a Flatten before it")
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            self.refuse(f"has {units!r} units")
        self.read_weighted(Dense(units), index, (self.shape[0], units))
        self.activation(self.config.get("activation", "linear"), last)

    def _Conv2D(self, index: int, last: bool) -> None:
        c = self.config
        kernel, strides = list(c.get("kernel_size", [])), list(c.get("strides", [1, 1]))
        if (len(kernel) != 2 or kernel[0] != kernel[1] or len(strides) != 2
                or strides[0] != strides[1] or list(c.get("dilation_rate", [1, 1])) != [1, 1]
                or c.get("groups", 1) != 1 or c.get("padding") not in ("same", "valid")
                or c.get("data_format", "channels_last") != "channels_last"):
            self.refuse("is not a convolution digitnet reads: square kernel and strides, "
                        "'same' or 'valid' padding, no dilation or groups, channels last")
        if len(self.shape) != 3:
            self.refuse("comes after the image was flattened")
        filters = c.get("filters")
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            self.refuse(f"has {filters!r} filters")
        layer = Conv(filters, kernel[0], c["padding"], strides[0])
        self.read_weighted(layer, index, (kernel[0], kernel[0], self.shape[2], layer.channels))
        self.activation(c.get("activation", "linear"), last)

    def _pooling(self, kind: str) -> None:
        size = list(self.config.get("pool_size", []))
        strides = self.config.get("strides") or size
        if (len(size) != 2 or size[0] != size[1] or list(strides) != size
                or self.config.get("padding", "valid") != "valid"
                or self.config.get("data_format", "channels_last") != "channels_last"):
            self.refuse("is not a square pooling with stride = size and 'valid' padding")
        self.add(Pool(kind, size[0]))

    def _MaxPooling2D(self, index: int, last: bool) -> None:
        self._pooling("max")

    def _AveragePooling2D(self, index: int, last: bool) -> None:
        self._pooling("avg")

    def _BatchNormalization(self, index: int, last: bool) -> None:
        name = self.last_weighted
        if name is None:
            self.refuse("does not follow a Conv2D or Dense layer without an activation, so "
                        "it cannot be folded into one")
        axis = self.config.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis  # Keras 2: [3]
        if axis not in (-1, len(self.shape)):
            self.refuse("normalises another axis than the channels")
        n = self.weights[f"{name}.bias"].shape[0]
        parts = (["gamma"] if self.config.get("scale", True) else []) + \
                (["beta"] if self.config.get("center", True) else []) + ["mean", "variance"]
        values = dict(zip(parts, self.arrays(index, [(n,)] * len(parts))))
        self.fold_batch_norm(values.get("gamma", 1.0), values.get("beta", 0.0), values["mean"],
                             values["variance"], self.config.get("epsilon", 1e-3))

    # ---- shared steps ----

    def read_weighted(self, record, index: int, kernel_shape: tuple[int, ...]) -> None:
        """Add a Conv2D or Dense layer's record with its arrays (a zero bias where it has
        none), counted before they are read: an unwritten HDF5 dataset takes no room in
        the file, but reading it would take all of its declared size."""
        self.budget(kernel_shape)
        if not self.config.get("use_bias", True):
            kernel, = self.arrays(index, [kernel_shape])
            bias = np.zeros(kernel_shape[-1], np.float32)
        else:
            kernel, bias = self.arrays(index, [kernel_shape, (kernel_shape[-1],)])
        self.weighted(record, kernel, bias)

    def arrays(self, index: int, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        """The layer's float32 arrays, each checked against its expected shape and for
        foreign storage before a byte of it is read."""
        datasets = self.model.datasets.get(index, [])
        if len(datasets) != len(shapes):
            self.refuse(f"holds {len(datasets)} weight arrays where {len(shapes)} are expected")
        arrays = []
        for dataset, shape in zip(datasets, shapes):
            if not hasattr(dataset, "shape") or not hasattr(dataset, "is_virtual"):
                self.refuse("has a weight entry that is not an array")
            if dataset.is_virtual or dataset.external:
                self.refuse("keeps its weights in other files (HDF5 external storage or a "
                            "virtual dataset); digitnet reads weights from the file alone")
            if tuple(dataset.shape) != shape or dataset.dtype.kind != "f":
                self.refuse(f"holds a {dataset.dtype} array of shape {tuple(dataset.shape)} "
                            f"where its configuration needs float {shape}")
            array = np.asarray(dataset[()], np.float32)
            if not np.all(np.isfinite(array)):
                self.refuse("holds NaN or infinite weights")
            arrays.append(array)
        return arrays

    def activation(self, name: Any, last: bool) -> None:
        if name in (None, "linear"):
            return
        if name in ACTIVATIONS and not last:
            self.add(Activation(name))
        elif name in OUTPUT_ACTIVATIONS and last:
            return  # the network's output is its logits; digitnet applies the softmax
        elif last:
            self.refuse(f"uses activation {name!r}; digitnet's output layer is softmax or "
                        "linear (logits)")
        elif name in OUTPUT_ACTIVATIONS:
            self.refuse(f"uses {name!r} before the last layer")
        else:
            self.refuse(f"uses activation {name!r}; digitnet's hidden layers use "
                        f"{', '.join(ACTIVATIONS)}")


def _fed_0_to_255(model: KerasModel) -> bool:
    """Whether a Rescaling layer divides by 255: the usual sign of a model fed 0..255."""
    return any(class_name == "Rescaling" and isinstance(config.get("scale"), (int, float))
               and math.isclose(config["scale"], 1 / 255, rel_tol=1e-6)
               for class_name, config in model.layers)


def keras_to_digitnet(model: KerasModel, source: str, input_scale: float | None = None,
                      input_mean: float = 0.0, input_std: float = 1.0
                      ) -> tuple[TrainConfig, dict[str, np.ndarray]]:
    """(config, weights) of the digitnet network that computes what `model` computes.
    `input_scale`: what the model's inputs span, 1 (0..1 pixels) or 255 (0..255); by default
    255 for a model with a Rescaling layer and 1 without. `input_mean` and `input_std`: a
    normalisation done to those inputs outside the model, before it."""
    if model.input_shape is not None and tuple(model.input_shape) not in INPUT_SHAPES:
        raise ModelFileError(f"{source}: the model takes inputs of shape "
                             f"{list(model.input_shape)}; digitnet reads 28x28, 28x28x1 or 784")
    return _Reader(source, model).read(input_scale, input_mean, input_std)


def load_keras_model(path: str | os.PathLike, input_scale: float | None = None,
                     input_mean: float = 0.0, input_std: float = 1.0
                     ) -> tuple[TrainConfig, dict[str, np.ndarray], bool]:
    """(config, weights, whether the model was fed 0..255 pixels) of a Keras model file."""
    with open_keras_file(path) as model:
        cfg, weights = keras_to_digitnet(model, str(path), input_scale, input_mean, input_std)
        raw = input_scale == 255 if input_scale is not None else _fed_0_to_255(model)
    return cfg, weights, raw
