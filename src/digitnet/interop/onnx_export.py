"""Write a digitnet model as an ONNX graph, built node by node from its family.

The graph's input is `images`: float32, shape (batch, 28, 28), MNIST-like digits (light ink
on black, centred as digitnet.prepare_image leaves them) scaled to 0..1; the batch size is
dynamic. Its output is `probabilities`: float32 (batch, 10), digits 0..9.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..config import NUM_CLASSES, TrainConfig
from ..errors import DigitnetError
from ..extras import require
from ..models.cnn import SIDE, conv_layout

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


def _dense_layers(graph: _Graph, x: str, weights: dict[str, np.ndarray], count: int,
                  activation: str) -> str:
    for i in range(count):
        x = graph.node("MatMul", [x, graph.constant(f"dense_{i}.kernel",
                                                    weights[f"dense_{i}.kernel"])], f"matmul_{i}")
        x = graph.node("Add", [x, graph.constant(f"dense_{i}.bias", weights[f"dense_{i}.bias"])],
                       f"dense_{i}")
        if i < count - 1:
            x = graph.node(ACTIVATION_OPS[activation], [x], f"dense_{i}_{activation}")
    return x


def _mlp(graph: _Graph, cfg: TrainConfig, weights: dict[str, np.ndarray]) -> str:
    flat = graph.node("Reshape", [INPUT, graph.constant("flat_shape", np.array([-1, SIDE * SIDE]))],
                      "flat")
    return _dense_layers(graph, flat, weights, len(cfg.hidden) + 1, cfg.activation)


def _cnn(graph: _Graph, cfg: TrainConfig, weights: dict[str, np.ndarray]) -> str:
    # ONNX convolutions are NCHW with OIHW kernels; digitnet's are NHWC with HWIO kernels.
    x = graph.node("Unsqueeze", [INPUT, graph.constant("channel_axis", np.array([1]))], "nchw")
    for i, (_, _, pool) in enumerate(conv_layout(cfg)):
        kernel = np.ascontiguousarray(weights[f"conv_{i}.kernel"].transpose(3, 2, 0, 1))
        x = graph.node("Conv", [x, graph.constant(f"conv_{i}.kernel", kernel),
                                graph.constant(f"conv_{i}.bias", weights[f"conv_{i}.bias"])],
                       f"conv_{i}", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        x = graph.node(ACTIVATION_OPS[cfg.activation], [x], f"conv_{i}_{cfg.activation}")
        if pool:  # floor mode: an odd last row or column is dropped, as in digitnet
            x = graph.node(POOL_OPS[cfg.pool], [x], f"pool_{i}", kernel_shape=[2, 2],
                           strides=[2, 2])
    # digitnet flattens in (row, column, channel) order
    x = graph.node("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])
    side = SIDE >> len(cfg.conv)
    flat = graph.node("Reshape", [x, graph.constant(
        "flat_shape", np.array([-1, side * side * cfg.conv[-1]]))], "flat")
    return _dense_layers(graph, flat, weights, len(cfg.dense) + 1, cfg.activation)


BUILDERS = {"mlp": _mlp, "cnn": _cnn}


def onnx_model(cfg: TrainConfig, weights: dict[str, np.ndarray]):
    """The onnx.ModelProto of the network `cfg` describes, with `weights` in it."""
    require("onnx", "ONNX export")
    import onnx

    graph = _Graph(onnx)
    logits = BUILDERS[cfg.model](graph, cfg, {n: np.asarray(w, np.float32)
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
