"""Write a digitnet model as an ONNX graph, a few nodes per record of its layer sequence.

The graph's input is `images`: float32, shape (batch, 28, 28), MNIST-like digits (light ink
on black, centred as digitnet.prepare_image leaves them) scaled to 0..1; the batch size is
dynamic. Its output is `probabilities`: float32 (batch, 10), digits 0..9.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..config import TrainConfig
from ..errors import DigitnetError
from ..extras import require
from ..geometry import NUM_CLASSES, SIDE
from ..network import (Activation, Conv, Dense, Dropout, Flatten, Network, Normalize, Pool,
                       conv_padding, input_shapes, weight_names)

OPSET = 17
INPUT, OUTPUT = "images", "probabilities"
ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
POOL_OPS = {"max": "MaxPool", "avg": "AveragePool"}


class _Graph:
    """Nodes and constant tensors, appended in order; each node names its one output."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.constants = onnx, [], []

    def constant(self, name: str, array: np.ndarray) -> str:
        self.constants.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output,
                                                     **attributes))
        return output


def _layers(graph: _Graph, network: Network, weights: dict[str, np.ndarray]) -> str:
    """The nodes of `network`, from INPUT to its logits (the name returned). ONNX
    convolutions are NCHW with OIHW kernels; digitnet's are NHWC with HWIO kernels, and it
    flattens in (row, column, channel) order, so images are transposed back to NHWC there."""
    x, nchw = INPUT, False
    names = weight_names(network)
    for i, (layer, shape) in enumerate(zip(network, input_shapes(network))):
        if not nchw and not isinstance(layer, (Normalize, Flatten)) and len(shape) == 3:
            x, nchw = graph.node("Unsqueeze", [x, graph.constant("channel_axis",
                                                                 np.array([1]))], "nchw"), True
        match layer:
            case Normalize(scale, mean, std):
                for op, value in (("Mul", scale), ("Sub", mean), ("Div", std)):
                    x = graph.node(op, [x, graph.constant(f"input_{op.lower()}",
                                                          np.array(value, np.float32))],
                                   f"input_{op.lower()}ed")
            case Conv(_, kernel, _, stride):
                oihw = np.ascontiguousarray(weights[f"{names[i]}.kernel"].transpose(3, 2, 0, 1))
                (top, bottom), (left, right) = (conv_padding(layer, shape[0]),
                                                conv_padding(layer, shape[1]))
                x = graph.node("Conv", [x, graph.constant(f"{names[i]}.kernel", oihw),
                                        graph.constant(f"{names[i]}.bias",
                                                       weights[f"{names[i]}.bias"])],
                               names[i], kernel_shape=[kernel, kernel], strides=[stride, stride],
                               pads=[top, left, bottom, right])
            case Pool(kind, size):  # floor mode: rows and columns that fill no window drop
                x = graph.node(POOL_OPS[kind], [x], f"pool_{i}", kernel_shape=[size, size],
                               strides=[size, size])
            case Flatten():
                if nchw:
                    x = graph.node("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])
                size = shape[0] * shape[1] * shape[2]
                x = graph.node("Reshape", [x, graph.constant("flat_shape",
                                                             np.array([-1, size]))], "flat")
            case Dense():
                x = graph.node("MatMul", [x, graph.constant(f"{names[i]}.kernel",
                                                            weights[f"{names[i]}.kernel"])],
                               f"{names[i]}_matmul")
                x = graph.node("Add", [x, graph.constant(f"{names[i]}.bias",
                                                         weights[f"{names[i]}.bias"])], names[i])
            case Dropout():
                pass  # nothing at inference
            case Activation(name):
                x = graph.node(ACTIVATION_OPS[name], [x], f"{name}_{i}")
    return x


def onnx_model(cfg: TrainConfig, weights: dict[str, np.ndarray]):
    """The onnx.ModelProto of the network `cfg` describes, with `weights` in it."""
    require("onnx", "ONNX export")
    import onnx

    graph = _Graph(onnx)
    logits = _layers(graph, cfg.network, {n: np.asarray(w, np.float32)
                                          for n, w in weights.items()})
    graph.node("Softmax", [logits], OUTPUT, axis=-1)
    float32 = onnx.TensorProto.FLOAT
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            graph.nodes, f"digitnet-{cfg.model}",
            [onnx.helper.make_tensor_value_info(INPUT, float32, ["batch", SIDE, SIDE])],
            [onnx.helper.make_tensor_value_info(OUTPUT, float32, ["batch", NUM_CLASSES])],
            initializer=graph.constants),
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="digitnet")
    model.doc_string = ("input 'images': float32 (batch, 28, 28), MNIST-like digits scaled to "
                        "0..1; output 'probabilities': float32 (batch, 10)")
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(cfg: TrainConfig, weights: dict[str, np.ndarray],
                path: str | os.PathLike) -> Path:
    """Write the model as an ONNX file at `path` (atomically); return the path."""
    path = Path(path)
    try:
        atomic_write(path, onnx_model(cfg, weights).SerializeToString())
    except OSError as exc:
        raise DigitnetError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
