"""Read an ONNX model as a digitnet layer sequence, with the `onnx` package: its graph is
read as data, never run, and no external data file is opened.

The graph must be one straight line from its one input, (batch, 1, 28, 28), (batch, 28, 28)
or (batch, 784) floats, to its one output, through these operators, each read as records of
digitnet.network:

    Conv (square kernel and strides, 'same' or no padding, no dilation or groups), MaxPool
    and AveragePool (square, stride = size, no padding), Relu, Sigmoid, Tanh, Gemm, MatMul
    with an Add, Flatten, Reshape (to flatten, or to give the input its channel), Unsqueeze
    and Transpose (as digitnet's own export uses them), Dropout, Identity,
    BatchNormalization after a Conv or Gemm (folded into its weights), Softmax and
    LogSoftmax at the end, and Sub, Div, Mul and Add of one number before the first
    weighted layer: the input's normalisation.

Anything else is refused with the operator's name. ONNX images are NCHW with OIHW kernels
and flatten in (channel, row, column) order; digitnet's are NHWC with HWIO kernels and
flatten in (row, column, channel) order: kernels are transposed, and the rows of the dense
layer after a flattened image are put in digitnet's order, which computes the same.

Pixel scale and normalisation: digitnet feeds 0..1 pixels. Where the normalisation was done
outside the model (pytorch/examples normalises with mean 0.1307 and std 0.3081 before the
network), pass `input_mean` and `input_std`; `input_scale` 255 says the model was fed
0..255 pixels.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..errors import ModelFileError
from ..extras import require
from ..files import MAX_MODEL_BYTES, read_model_file
from ..geometry import IMAGE_PIXELS, SIDE
from ..network import Activation, Conv, Dense, Dropout, Flatten, Pool, conv_padding
from .sequence import SequenceBuilder

ACTIVATION_OPS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
# the operators read (each has a _Name method), and how many inputs each needs at least
READ_OPS = {"Identity": 1, "Dropout": 1, "Sub": 2, "Div": 2, "Mul": 2, "Add": 2,
            "Unsqueeze": 1, "Transpose": 1, "Reshape": 2, "Flatten": 1, "Conv": 2,
            "MaxPool": 1, "AveragePool": 1, "Relu": 1, "Sigmoid": 1, "Tanh": 1, "Softmax": 1,
            "LogSoftmax": 1, "Gemm": 2, "MatMul": 2, "BatchNormalization": 5}


class _Reader(SequenceBuilder):
    """Walks the graph's nodes in order, following the one tensor that carries the images."""

    def __init__(self, source: str, graph):
        super().__init__(source)
        self.graph = graph
        self.constants = {t.name: t for t in graph.initializer}
        self.layout = ""  # 'raw' (N, 28, 28), 'nchw', 'nhwc' (transposed to flatten) or 'flat'
        self.channels_first_flat: tuple[int, int, int] | None = None  # (C, H, W) order
        self.pending_bias = ""  # a MatMul's dense layer, whose Add may follow with its bias
        self.finished = False  # a Softmax or LogSoftmax was read: nothing may follow
        self.node = None

    def refuse(self, why: str):
        name = (self.node.name or self.node.output[0]) if self.node is not None else "?"
        raise ModelFileError(f"{self.source}: node {name!r} ({self.node.op_type}) {why}")

    # ---- constants ----

    def constant(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """A float32 initializer or Constant, its declared shape checked before it is read."""
        from onnx import TensorProto, numpy_helper

        tensor = self.constants.get(name)
        if tensor is None:
            self.refuse(f"takes {name!r}, which is not a constant of the graph")
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            self.refuse("keeps its weights in an external file; digitnet reads the file alone")
        dims = tuple(int(d) for d in tensor.dims)
        if shape is not None and dims != shape:
            self.refuse(f"has a constant of shape {dims} where {shape} is expected")
        if math.prod(dims) > MAX_MODEL_BYTES // 4:
            self.refuse(f"declares a constant of shape {dims}, more than the file can hold")
        try:
            array = numpy_helper.to_array(tensor)
        except (ValueError, TypeError) as exc:
            self.refuse(f"has a damaged constant {name!r} ({exc})")
        if array.dtype.kind not in "fiu":
            self.refuse(f"has a constant of type {array.dtype}")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            self.refuse("holds NaN or infinite weights")
        return array

    def number(self, name: str) -> float:
        value = self.constant(name)
        if value.size != 1:
            self.refuse("normalises with more than one number; only one for all pixels is read")
        # the shortest decimal that is the same float32, for a readable text form
        return float(str(np.float32(value.reshape(-1)[0])))

    def attributes(self) -> dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in self.node.attribute}

    # ---- the walk ----

    def read(self, input_scale: float, input_mean: float, input_std: float
             ) -> tuple[TrainConfig, dict[str, np.ndarray]]:
        graph = self.graph
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ModelFileError(f"{self.source}: the graph has {len(inputs)} inputs and "
                                 f"{len(graph.output)} outputs; digitnet reads one of each")
        current = inputs[0].name
        self.layout = self.input_layout(inputs[0])
        self.scale, self.mean, self.std = input_scale, input_mean, input_std
        for self.node in graph.node:
            if self.node.op_type == "Constant":
                self.read_constant_node()
                continue
            data = [name for name in self.node.input if name and name not in self.constants]
            if data != [current] or len(self.node.output) != 1:
                self.refuse("is not on the one line of operators from the input to the output")
            if self.finished:
                self.refuse("comes after the softmax, which must be the last operator")
            if self.node.op_type not in READ_OPS:
                self.refuse("is not an operator digitnet reads")
            needed = READ_OPS[self.node.op_type]
            if len(self.node.input) < needed or not all(self.node.input[:needed]):
                self.refuse(f"has {len(self.node.input)} inputs where it needs {needed}")
            getattr(self, f"_{self.node.op_type}")()
            current = self.node.output[0]
        self.node = None
        if current != graph.output[0].name:
            raise ModelFileError(f"{self.source}: the graph's output is not the end of its line "
                                 "of operators")
        return self.finish("a Gemm or MatMul")

    def input_layout(self, value_info) -> str:
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in value_info.type.tensor_type.shape.dim]
        layouts = {(1, SIDE, SIDE): "nchw", (SIDE, SIDE): "raw", (IMAGE_PIXELS,): "flat"}
        layout = layouts.get(tuple(dims[1:]))
        if layout is None:
            raise ModelFileError(f"{self.source}: the graph takes inputs of shape {dims}; "
                                 "digitnet reads (batch, 1, 28, 28), (batch, 28, 28) or "
                                 "(batch, 784)")
        if layout == "flat":
            self.add(Flatten())  # digitnet's image, flattened: the same 784 values in order
        return layout

    def read_constant_node(self) -> None:
        from onnx import helper

        attributes = {a.name: a for a in self.node.attribute}
        if "value" not in attributes:
            self.refuse("is a constant of a kind digitnet does not read")
        tensor = helper.get_attribute_value(attributes["value"])
        tensor.name = self.node.output[0]
        self.constants[tensor.name] = tensor

    def image(self) -> None:
        """Give a raw (N, 28, 28) input its channel axis, before an image operator."""
        if self.layout == "raw":
            self.refuse("takes the 28x28 input without a channel axis")
        if self.layout != "nchw":
            self.refuse("needs an image, but its input is flat")

    # ---- one method per operator ----

    def _Identity(self) -> None:
        pass

    def _Dropout(self) -> None:
        ratio = self.attributes().get("ratio", 0.5)
        if len(self.node.input) > 1 and self.node.input[1]:
            ratio = self.number(self.node.input[1])
        self.pending_bias = ""
        self.add(Dropout(float(ratio)))

    def _Sub(self) -> None:
        self.add_number(-self.normalising_number())

    def _Div(self) -> None:
        self.divide(self.normalising_number())

    def _Mul(self) -> None:
        self.multiply(self.normalising_number())

    def _Add(self) -> None:
        if self.pending_bias:  # the bias of a MatMul's dense layer
            name, self.pending_bias = self.pending_bias, ""
            width = self.weights[f"{name}.kernel"].shape[1]
            self.weights[f"{name}.bias"] = self.constant(self.constant_input(), (width,)).astype(
                np.float32)
            return
        self.add_number(self.normalising_number())

    def constant_input(self) -> str:
        [name] = [n for n in self.node.input if n in self.constants] or [""]
        return name

    def normalising_number(self) -> float:
        """The one number this Sub, Div, Mul or Add of the input's normalisation applies."""
        if not self.normalising():
            self.refuse("comes after an operator that changes the values; only the input is "
                        "normalised")
        if self.node.op_type in ("Sub", "Div") and self.node.input[0] in self.constants:
            self.refuse("takes the image as its second operand")
        return self.number(self.constant_input())

    def _Unsqueeze(self) -> None:
        axes = self.attributes().get("axes")
        if axes is None and len(self.node.input) > 1:
            axes = self.constant(self.node.input[1]).tolist()
        if self.layout != "raw" or list(axes or []) != [1]:
            self.refuse("adds an axis other than the input image's channel")
        self.layout = "nchw"

    def _Transpose(self) -> None:
        if self.layout != "nchw" or list(self.attributes().get("perm", [])) != [0, 2, 3, 1]:
            self.refuse("transposes other than images to channels last before flattening")
        self.layout = "nhwc"

    def _Reshape(self) -> None:
        target = [int(v) for v in self.constant(self.node.input[1]).reshape(-1)]
        if self.layout == "flat" and not self.records[1:] and target[1:] == [1, SIDE, SIDE]:
            self.records.clear()  # the flat input reshaped into an image: no Flatten after all
            self.shape, self.layout = (SIDE, SIDE, 1), "nchw"
            return
        size = math.prod(self.shape)
        if len(target) != 2 or target[1] not in (-1, size) or target[0] not in (-1, 0):
            self.refuse(f"reshapes to {target}; digitnet reads a reshape that flattens, or "
                        "that gives a flat input its channel")
        self.flatten()

    def _Flatten(self) -> None:
        if self.attributes().get("axis", 1) != 1:
            self.refuse("flattens from another axis than 1")
        self.flatten()

    def flatten(self) -> None:
        if self.layout == "flat":
            return
        if self.layout == "nchw" and self.shape[2] > 1:
            self.channels_first_flat = (self.shape[2], self.shape[0], self.shape[1])
        self.add(Flatten())
        self.layout = "flat"

    def _Conv(self) -> None:
        self.image()
        a = self.attributes()
        weight = self.constants.get(self.node.input[1])
        if weight is None or len(weight.dims) != 4:
            self.refuse("has no 4-D constant kernel")
        out, n_in, kh, kw = (int(d) for d in weight.dims)
        strides = list(a.get("strides", [1, 1]))
        if (kh != kw or n_in != self.shape[2] or len(set(strides)) != 1
                or any(d != 1 for d in a.get("dilations", [1, 1])) or a.get("group", 1) != 1):
            self.refuse("is not a convolution digitnet reads: square kernel and strides taking "
                        f"{self.shape[2]} channels, no dilation or groups")
        layer = Conv(out, kh, "valid", strides[0])
        pads = list(a.get("pads", [0, 0, 0, 0]))
        auto_pad = a.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        same = Conv(out, kh, "same", strides[0])
        (top, bottom), (left, right) = conv_padding(same, self.shape[0]), conv_padding(
            same, self.shape[1])
        if auto_pad == "SAME_UPPER" or (auto_pad == "NOTSET" and pads == [top, left, bottom,
                                                                         right] and any(pads)):
            layer = same
        elif not (auto_pad == "VALID" or (auto_pad == "NOTSET" and not any(pads))):
            self.refuse(f"pads {pads or auto_pad}: neither 'same' nor none")
        kernel = self.constant(self.node.input[1], (out, n_in, kh, kw)).transpose(2, 3, 1, 0)
        bias = (self.constant(self.node.input[2], (out,)) if len(self.node.input) > 2
                and self.node.input[2] else np.zeros(out, np.float32))
        self.weighted(layer, kernel, bias)

    def pooling(self, kind: str) -> None:
        self.image()
        a = self.attributes()
        size = list(a.get("kernel_shape", []))
        if (len(size) != 2 or size[0] != size[1] or list(a.get("strides", [1, 1])) != size
                or any(a.get("pads", [0])) or a.get("ceil_mode", 0)
                or any(d != 1 for d in a.get("dilations", [1, 1]))
                or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID")):
            self.refuse("is not a square pooling with stride = size and no padding")
        self.add(Pool(kind, size[0]))

    def _MaxPool(self) -> None:
        if len(self.node.output) > 1:
            self.refuse("also returns indices")
        self.pooling("max")

    def _AveragePool(self) -> None:
        self.pooling("avg")

    def activation(self, name: str) -> None:
        self.pending_bias = ""
        self.add(Activation(name))

    def _Relu(self) -> None:
        self.activation("relu")

    def _Sigmoid(self) -> None:
        self.activation("sigmoid")

    def _Tanh(self) -> None:
        self.activation("tanh")

    def _Softmax(self) -> None:
        self.pending_bias = ""
        if self.attributes().get("axis", -1) not in (-1, 1):
            self.refuse("is not over the ten digits")
        self.finished = True

    def _LogSoftmax(self) -> None:
        self._Softmax()

    def dense_kernel(self, kernel: np.ndarray) -> np.ndarray:
        """(in, out) rows in digitnet's flattening order."""
        if self.channels_first_flat is not None:
            c, h, w = self.channels_first_flat
            kernel = kernel.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
            self.channels_first_flat = None
        return kernel

    def _Gemm(self) -> None:
        self.pending_bias = ""
        a = self.attributes()
        if self.layout != "flat" or a.get("transA", 0):
            self.refuse("is not applied to a flat input")
        weight = self.constants.get(self.node.input[1])
        if weight is None or len(weight.dims) != 2:
            self.refuse("has no 2-D constant weight")
        dims = tuple(int(d) for d in weight.dims)
        width = dims[0] if a.get("transB", 0) else dims[1]
        n_in = self.shape[0]
        kernel = self.constant(self.node.input[1], (width, n_in) if a.get("transB", 0)
                               else (n_in, width))
        kernel = (kernel.T if a.get("transB", 0) else kernel) * np.float32(a.get("alpha", 1.0))
        bias = np.zeros(width, np.float32)
        if len(self.node.input) > 2 and self.node.input[2]:
            given = self.constant(self.node.input[2])
            if given.size not in (1, width):
                self.refuse(f"has a bias of shape {given.shape}")
            bias = bias + given.reshape(-1) * np.float32(a.get("beta", 1.0))
        self.weighted(Dense(width), self.dense_kernel(kernel), bias)

    def _MatMul(self) -> None:
        self.pending_bias = ""
        if self.layout != "flat":
            self.refuse("is not applied to a flat input")
        weight = self.constants.get(self.node.input[1])
        if weight is None or len(weight.dims) != 2:
            self.refuse("has no 2-D constant weight as its second operand")
        width = int(weight.dims[1])
        kernel = self.constant(self.node.input[1], (self.shape[0], width))
        self.pending_bias = self.weighted(Dense(width), self.dense_kernel(kernel),
                                          np.zeros(width, np.float32))

    def _BatchNormalization(self) -> None:
        """y = scale (x - mean) / sqrt(var + epsilon) + B, folded into the layer before."""
        self.pending_bias = ""
        name = self.last_weighted
        if name is None:
            self.refuse("does not follow a Conv, Gemm or MatMul, so it cannot be folded")
        n = self.weights[f"{name}.bias"].shape[0]
        gamma, beta, mean, var = (self.constant(i, (n,)) for i in self.node.input[1:5])
        self.fold_batch_norm(gamma, beta, mean, var, self.attributes().get("epsilon", 1e-5))


def load_onnx_model(path: str | os.PathLike, input_scale: float | None = None,
                    input_mean: float = 0.0, input_std: float = 1.0
                    ) -> tuple[TrainConfig, dict[str, np.ndarray], bool]:
    """(config, weights, whether the model was fed 0..255 pixels) of an ONNX model file."""
    require("onnx", "reading ONNX files")
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    content = read_model_file(path)
    try:
        model = onnx.load_model(io.BytesIO(content), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, RecursionError) as exc:
        raise ModelFileError(f"{path} is not a readable ONNX file ({exc})") from None
    scale = 1.0 if input_scale is None else float(input_scale)
    try:
        cfg, weights = _Reader(str(path), model.graph).read(scale, input_mean, input_std)
    except (IndexError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path} holds a damaged graph ({type(exc).__name__}: {exc})"
                             ) from None
    return cfg, weights, scale == 255
