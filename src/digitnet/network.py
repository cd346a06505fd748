"""A network as data: a sequence of small frozen layer records, and its text form.

Every backend reads the same sequence, each with one case per record kind: the NumPy forward
pass (`digitnet.forward`), the Flax network that trains (`digitnet.training.networks`), and
the Keras and ONNX readers and writers (`digitnet.interop`). The families (`mlp`, `cnn`)
are functions that return such a sequence (`digitnet.families`).

A network takes one 28x28 image with one channel, its pixels in 0..1, and ends in a Dense
layer of 10 outputs, the logits (the softmax is applied by whoever predicts). Convolution
and pooling work on (height, width, channel) images; Flatten turns one into a vector in
(row, column, channel) order, as Keras' Flatten does.

The text form is the records in order, separated by commas; an activation right after a
convolution or dense layer may be joined to it with '-':

    norm:scale=255:mean=33.3:std=78.6   input normalisation (first only): (pixel*scale-mean)/std
    conv32k3s  conv32k5v/2              32 channels, 3x3 'same' / 5x5 'valid' with stride 2
    maxpool2  avgpool3                  pooling over 2x2 / 3x3 windows with that stride
    flatten  dense128  dropout  dropout0.25  relu  sigmoid  tanh

for example `conv32k3v-relu,maxpool2,conv64k3v-relu,maxpool2,flatten,dropout,dense10`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Union

from .errors import ConfigError
from .files import MAX_MODEL_BYTES
from .geometry import NUM_CLASSES, SIDE

ACTIVATIONS = ("relu", "sigmoid", "tanh")  # all non-decreasing (see max_pool_after)
PADDINGS = ("same", "valid")
POOLS = ("max", "avg")
# float32 weights, half of what a model file may hold: every network digitnet accepts can be
# saved and loaded again (a digit classifier needs far fewer: the cnn recipe has 0.3 M)
MAX_PARAMETERS = MAX_MODEL_BYTES // 4 // 2


@dataclass(frozen=True)
class Normalize:
    """What the network sees of a 0..1 pixel p: (p * scale - mean) / std."""

    scale: float = 1.0
    mean: float = 0.0
    std: float = 1.0


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution with a bias: `channels` outputs, a kernel x kernel window (weights
    HWIO, as Keras stores them), 'same' or 'valid' padding, and a stride."""

    channels: int
    kernel: int = 3
    padding: str = "same"
    stride: int = 1


@dataclass(frozen=True)
class Pool:
    """'max' or 'avg' pooling over size x size windows with stride `size`; a last row or
    column that fills no whole window is dropped (Keras' and PyTorch's default)."""

    kind: str = "max"
    size: int = 2


@dataclass(frozen=True)
class Flatten:
    """(height, width, channel) -> one vector, in that order."""


@dataclass(frozen=True)
class Dense:
    """A fully connected layer with a bias: `width` outputs (weights (in, out))."""

    width: int


@dataclass(frozen=True)
class Dropout:
    """Zeroes a `rate` share of its inputs while training (scaling the rest up); nothing at
    inference."""

    rate: float = 0.5


@dataclass(frozen=True)
class Activation:
    """relu, sigmoid or tanh, value by value."""

    name: str = "relu"


Layer = Union[Normalize, Conv, Pool, Flatten, Dense, Dropout, Activation]
LAYER_KINDS = (Normalize, Conv, Pool, Flatten, Dense, Dropout, Activation)
Network = tuple  # of Layer records, in order
Shape = tuple  # (height, width, channels) of an image, or (values,) of a vector
INPUT_SHAPE: Shape = (SIDE, SIDE, 1)


# ---- text form ----------------------------------------------------------------------------

def _number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def layer_text(layer: Layer) -> str:
    match layer:
        case Normalize():
            return "norm" + "".join(f":{f.name}={_number(getattr(layer, f.name))}"
                                    for f in fields(layer) if getattr(layer, f.name) != f.default)
        case Conv(channels, kernel, padding, stride):
            return f"conv{channels}k{kernel}{padding[0]}" + (f"/{stride}" if stride != 1 else "")
        case Pool(kind, size):
            return f"{kind}pool{size}"
        case Flatten():
            return "flatten"
        case Dense(width):
            return f"dense{width}"
        case Dropout(rate):
            return "dropout" if rate == 0.5 else f"dropout{_number(rate)}"
        case Activation(name):
            return name
    raise TypeError(f"not a layer record: {layer!r}")


def to_text(layers: Network) -> str:
    """The text form of a sequence (see the module docstring); parse() reads it back."""
    items: list[str] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, Activation) and i and isinstance(layers[i - 1], (Conv, Dense)):
            items[-1] += "-" + layer.name
        else:
            items.append(layer_text(layer))
    return ",".join(items)


_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_SIZE = r"(\d{1,9})"  # a count, short enough to be read as an int
_PATTERNS = [
    (re.compile(rf"conv{_SIZE}k{_SIZE}([sv])(?:/{_SIZE})?"),
     lambda m: Conv(int(m[1]), int(m[2]), "same" if m[3] == "s" else "valid",
                    int(m[4] or 1))),
    (re.compile(rf"(max|avg)pool{_SIZE}"), lambda m: Pool(m[1], int(m[2]))),
    (re.compile(r"flatten"), lambda m: Flatten()),
    (re.compile(rf"dense{_SIZE}"), lambda m: Dense(int(m[1]))),
    (re.compile(rf"dropout{_NUMBER}?"), lambda m: Dropout(float(m[1] or 0.5))),
    (re.compile("|".join(ACTIVATIONS)), lambda m: Activation(m[0])),
    (re.compile(rf"norm((?::(?:scale|mean|std)=-?{_NUMBER[1:-1]})*)"),
     lambda m: _normalize(m[1])),
]


def _normalize(text: str) -> Normalize:
    values = dict(part.split("=") for part in text.split(":")[1:])
    return Normalize(**{name: float(value) for name, value in values.items()})


def _parse_item(item: str) -> Layer:
    for pattern, build in _PATTERNS:
        match = pattern.fullmatch(item)
        if match:
            return build(match)
    raise ConfigError(f"cannot read layer {item!r}: expected one of conv32k3s, conv64k5v/2, "
                      "maxpool2, avgpool2, flatten, dense128, dropout, dropout0.25, relu, "
                      "sigmoid, tanh, norm:mean=0.1307:std=0.3081")


def parse(text: str) -> Network:
    """The checked sequence a text form describes; ConfigError says what is wrong."""
    layers = []
    for item in text.replace(" ", "").split(","):
        # '-' joins an activation; in a number (norm:mean=-0.5, 1e-05) it is a sign
        first, *activations = re.split(r"-(?=[a-z])", item)
        layers.append(_parse_item(first))
        for name in activations:
            layer = _parse_item(name)
            if not isinstance(layer, Activation) or not isinstance(layers[-1], (Conv, Dense)):
                raise ConfigError(f"cannot read layer {item!r}: only an activation may be "
                                  "joined with '-', and only to a conv or dense layer")
            layers.append(layer)
    network = tuple(layers)
    check(network)
    return network


# ---- shapes and checks --------------------------------------------------------------------

def conv_padding(layer: Conv, side: int) -> tuple[int, int]:
    """Zeros added (before, after) along an axis of `side` pixels: none for 'valid'; for
    'same', what makes ceil(side / stride) outputs, the odd one after (as Keras and
    PyTorch pad)."""
    if layer.padding == "valid":
        return 0, 0
    out = -(-side // layer.stride)
    total = max((out - 1) * layer.stride + layer.kernel - side, 0)
    return total // 2, total - total // 2


def _conv_side(layer: Conv, side: int) -> int:
    before, after = conv_padding(layer, side)
    return (side + before + after - layer.kernel) // layer.stride + 1


def output_shape(layer: Layer, shape: Shape, index: int = 0) -> Shape:
    """The shape `layer` makes of `shape`; ConfigError if it cannot take it (naming it as
    the sequence's layer number index + 1)."""
    def refuse(why: str):
        raise ConfigError(f"layer {index + 1} ({layer_text(layer)}) {why}")

    image = len(shape) == 3
    match layer:
        case Normalize(scale, mean, std):
            if index:
                refuse("must come first: it normalises the input pixels")
            if not all(map(math.isfinite, (scale, mean, std))) or std <= 0 or scale == 0:
                refuse("needs finite numbers, a scale other than 0 and a positive std")
            return shape
        case Conv(channels, kernel, padding, stride):
            if not image:
                refuse("needs an image, but its input is already flat")
            if min(channels, kernel, stride) < 1 or padding not in PADDINGS:
                refuse(f"needs positive sizes and padding {' or '.join(PADDINGS)}")
            side = _conv_side(layer, shape[0])
            if side < 1:
                refuse(f"does not fit its {shape[0]}x{shape[1]} input")
            return side, side, channels
        case Pool(kind, size):
            if not image:
                refuse("needs an image, but its input is already flat")
            if kind not in POOLS or size < 1:
                refuse(f"needs kind {' or '.join(POOLS)} and a positive size")
            if size > shape[0]:
                refuse(f"does not fit its {shape[0]}x{shape[1]} input")
            return shape[0] // size, shape[1] // size, shape[2]
        case Flatten():
            if not image:
                refuse("has nothing to flatten: its input is flat already")
            return (shape[0] * shape[1] * shape[2],)
        case Dense(width):
            if image:
                refuse("needs a flat input: put flatten before it")
            if width < 1:
                refuse("needs a positive width")
            return (width,)
        case Dropout(rate):
            if not 0 <= rate < 1:
                refuse("needs a rate in [0, 1)")
            return shape
        case Activation(name):
            if name not in ACTIVATIONS:
                refuse(f"is not one of {', '.join(ACTIVATIONS)}")
            return shape
    raise ConfigError(f"layer {index + 1} is not a layer record: {layer!r}")


def input_shapes(layers: Network) -> list[Shape]:
    """The shape each layer takes, in order (checked as it goes)."""
    shapes, shape = [], INPUT_SHAPE
    for index, layer in enumerate(layers):
        shapes.append(shape)
        shape = output_shape(layer, shape, index)
    return shapes


def check(layers: Network) -> None:
    """ConfigError unless `layers` is a network digitnet can run: each layer fits its input,
    and the last is the dense layer of 10 logits."""
    if not isinstance(layers, tuple):
        raise ConfigError(f"a network is a tuple of layer records, not {type(layers).__name__}")
    if not layers:
        raise ConfigError("a network needs at least one layer")
    parameters = sum(math.prod(shape) for shape in tensor_shapes(layers).values())
    if parameters > MAX_PARAMETERS:
        raise ConfigError(f"the network has {parameters:,} weights, more than the "
                          f"{MAX_PARAMETERS:,} a model file may hold")
    if layers[-1] != Dense(NUM_CLASSES):
        raise ConfigError(f"the last layer must be dense{NUM_CLASSES}, the ten digits' logits "
                          f"(the softmax is applied when predicting), not {layer_text(layers[-1])}")


# ---- weights ------------------------------------------------------------------------------

def weight_names(layers: Network) -> list[str | None]:
    """Each layer's weight name prefix, or None: conv_0, conv_1, ... and dense_0, ... counted
    per kind, the names model files have always used."""
    counts = {Conv: 0, Dense: 0}
    names: list[str | None] = []
    for layer in layers:
        kind = type(layer)
        if kind in counts:
            names.append(f"{kind.__name__.lower()}_{counts[kind]}")
            counts[kind] += 1
        else:
            names.append(None)
    return names


def tensor_shapes(layers: Network) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every float32 weight array: `<prefix>.kernel` and `<prefix>.bias`."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer, shape, name in zip(layers, input_shapes(layers), weight_names(layers)):
        if isinstance(layer, Conv):
            shapes[f"{name}.kernel"] = (layer.kernel, layer.kernel, shape[2], layer.channels)
            shapes[f"{name}.bias"] = (layer.channels,)
        elif isinstance(layer, Dense):
            shapes[f"{name}.kernel"] = (shape[0], layer.width)
            shapes[f"{name}.bias"] = (layer.width,)
    return shapes


def flops(layers: Network) -> int:
    """Multiply-adds x 2 of one image's forward pass through the weighted layers."""
    total, shape = 0, INPUT_SHAPE
    for index, layer in enumerate(layers):
        out = output_shape(layer, shape, index)
        if isinstance(layer, Conv):
            total += 2 * out[0] * out[1] * layer.kernel ** 2 * shape[2] * layer.channels
        elif isinstance(layer, Dense):
            total += 2 * shape[0] * layer.width
        shape = out
    return total


def largest_layer(layers: Network) -> int:
    """Values one image needs at once in the widest layer (a convolution's patches count
    kernel^2 per output), to size the batches of a forward pass."""
    largest, shape = math.prod(INPUT_SHAPE), INPUT_SHAPE
    for index, layer in enumerate(layers):
        out = output_shape(layer, shape, index)
        per_output = layer.kernel ** 2 * shape[2] if isinstance(layer, Conv) else 1
        largest = max(largest, math.prod(out) * per_output, math.prod(out))
        shape = out
    return largest


# ---- what backends may compute differently ------------------------------------------------

def max_pool_after(layers: Network, index: int) -> int | None:
    """For the convolution at `index`: the position of a max-pooling that follows it, at
    most one activation apart, else None.

    Such a pooling may run on the convolution's product before its bias and activation:
    a maximum commutes with adding the same number to every value of its window and with a
    non-decreasing function (all of ACTIVATIONS are), so the values are the same and a
    size^2-th of the additions and activations are computed."""
    after = index + 1
    if after < len(layers) and isinstance(layers[after], Activation):
        after += 1
    if after < len(layers) and isinstance(layers[after], Pool) and layers[after].kind == "max":
        return after
    return None


def reads_flat_pixels(layers: Network) -> bool:
    """Whether the first weighted layer is a dense layer on the raw, flattened pixels, with
    a blank (0) pixel still 0 when it gets there (no normalisation shifts it)."""
    rest = layers[1:] if layers and isinstance(layers[0], Normalize) else layers
    if rest is not layers and layers[0].mean != 0:
        return False
    return len(rest) >= 2 and isinstance(rest[0], Flatten) and isinstance(rest[1], Dense)


def has_convolutions(layers: Network) -> bool:
    return any(isinstance(layer, Conv) for layer in layers)
