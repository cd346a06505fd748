"""ONNX models in: graphs built here with the `onnx` package in the shapes other programs
export, read by digitnet and checked against onnxruntime running the same file.
(bench/pytorch_onnx.py does the same with a network trained and exported by PyTorch.)"""

import numpy as np
import pytest

from digitnet.cli import main
from digitnet.errors import ModelFileError
from digitnet.interop import load_foreign_model
from digitnet.predict import Predictor

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

MEAN, STD = 0.1307, 0.3081  # pytorch/examples normalises MNIST with these before its network


def _graph(nodes, constants, input_shape=("batch", 1, 28, 28), name="input"):
    graph = helper.make_graph(
        nodes, "test", [helper.make_tensor_value_info(name, TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32) if np.asarray(v).dtype
                                             .kind == "f" else np.asarray(v), k)
                     for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _node(op, inputs, output, **attributes):
    return helper.make_node(op, inputs, [output], name=output, **attributes)


def pytorch_examples_model(rng):
    """pytorch/examples' MNIST network as torch.onnx.export writes it: 'valid' 3x3
    convolutions of 32 and 64 channels, max-pooling, Flatten (channel-first order), Gemm with
    transB, log-softmax (Dropout is gone in an exported eval-mode model)."""
    c = {"w1": rng.normal(0, 0.3, (32, 1, 3, 3)), "b1": rng.normal(0, 0.1, 32),
         "w2": rng.normal(0, 0.06, (64, 32, 3, 3)), "b2": rng.normal(0, 0.1, 64),
         "w3": rng.normal(0, 0.01, (128, 9216)), "b3": rng.normal(0, 0.1, 128),
         "w4": rng.normal(0, 0.1, (10, 128)), "b4": rng.normal(0, 0.1, 10)}
    nodes = [_node("Conv", ["input", "w1", "b1"], "c1", kernel_shape=[3, 3]),
             _node("Relu", ["c1"], "r1"),
             _node("Conv", ["r1", "w2", "b2"], "c2", kernel_shape=[3, 3], strides=[1, 1],
                   pads=[0, 0, 0, 0]),
             _node("Relu", ["c2"], "r2"),
             _node("MaxPool", ["r2"], "p", kernel_shape=[2, 2], strides=[2, 2]),
             _node("Flatten", ["p"], "f", axis=1),
             _node("Gemm", ["f", "w3", "b3"], "g1", transB=1),
             _node("Relu", ["g1"], "r3"),
             _node("Gemm", ["r3", "w4", "b4"], "g2", transB=1),
             _node("LogSoftmax", ["g2"], "output", axis=1)]
    return _graph(nodes, c)


def normalising_batchnorm_model(rng):
    """Normalisation inside the graph (Sub, Div), 'same' padding with strides, batch
    normalisation after a convolution, average pooling, Reshape to flatten, MatMul and Add,
    Dropout, Identity, and a (batch, 28, 28) input given its channel by Unsqueeze."""
    c = {"mean": [MEAN], "std": [STD], "axes": np.array([1]),
         "w1": rng.normal(0, 0.3, (6, 1, 4, 4)), "b1": rng.normal(0, 0.1, 6),
         "g": rng.uniform(0.5, 1.5, 6), "beta": rng.normal(0, 0.1, 6),
         "mu": rng.normal(0, 0.1, 6), "var": rng.uniform(0.5, 2, 6),
         "shape": np.array([-1, 6 * 7 * 7]), "w2": rng.normal(0, 0.05, (294, 16)),
         "b2": rng.normal(0, 0.1, 16), "w3": rng.normal(0, 0.3, (16, 10)),
         "b3": rng.normal(0, 0.1, 10)}
    nodes = [_node("Sub", ["input", "mean"], "s"), _node("Div", ["s", "std"], "d"),
             _node("Unsqueeze", ["d", "axes"], "u"),
             _node("Conv", ["u", "w1", "b1"], "c1", kernel_shape=[4, 4], strides=[2, 2],
                   pads=[1, 1, 1, 1]),
             _node("BatchNormalization", ["c1", "g", "beta", "mu", "var"], "bn", epsilon=1e-3),
             _node("Tanh", ["bn"], "t"),
             _node("AveragePool", ["t"], "a", kernel_shape=[2, 2], strides=[2, 2]),
             _node("Reshape", ["a", "shape"], "flat"), _node("Dropout", ["flat"], "drop"),
             _node("MatMul", ["drop", "w2"], "m"), _node("Add", ["m", "b2"], "dense"),
             _node("Sigmoid", ["dense"], "sg"), _node("Identity", ["sg"], "id"),
             _node("Gemm", ["id", "w3", "b3"], "logits"),
             _node("Softmax", ["logits"], "output", axis=1)]
    return _graph(nodes, c, input_shape=("batch", 28, 28))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).integers(0, 256, (32, 28, 28)).astype(np.uint8)


def _onnxruntime(path, x, input_name="input"):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: x})[0]


def test_pytorch_examples_network_predicts_what_onnxruntime_does(images, tmp_path, capsys):
    path = tmp_path / "pytorch-examples.onnx"
    onnx.save(pytorch_examples_model(np.random.default_rng(0)), path)
    assert main(["import", str(path), "--input-mean", str(MEAN), "--input-std", str(STD),
                 "--out", str(tmp_path / "run"), "--data-dir", str(tmp_path / "none"),
                 "--no-download"]) == 0
    assert "imported" in capsys.readouterr().out
    predictor = Predictor.load(tmp_path / "run")
    assert predictor.config.layers == (f"norm:mean={MEAN}:std={STD},conv32k3v-relu,"
                                       "conv64k3v-relu,maxpool2,flatten,dense128-relu,dense10")
    x = ((images.astype(np.float32) / 255 - MEAN) / STD)[:, None]
    expected = np.exp(_onnxruntime(path, x))
    np.testing.assert_allclose(predictor.probabilities(images), expected, atol=1e-5)


def test_normalisation_batchnorm_and_matmul_graphs_predict_what_onnxruntime_does(images,
                                                                                  tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(normalising_batchnorm_model(np.random.default_rng(1)), path)
    predictor = Predictor.load(path)
    assert predictor.config.layers.startswith(f"norm:mean={MEAN}:std={STD},conv6k4s/2-tanh,")
    expected = _onnxruntime(path, images.astype(np.float32) / 255)
    np.testing.assert_allclose(predictor.probabilities(images), expected, atol=1e-5)


def _refused(model_or_bytes, tmp_path, message):
    path = tmp_path / "bad.onnx"
    if isinstance(model_or_bytes, bytes):
        path.write_bytes(model_or_bytes)
    else:
        onnx.save(model_or_bytes, path)
    with pytest.raises(ModelFileError, match=message):
        load_foreign_model(path)


def _small(rng, *, op="Relu", extra=None, constants=None, input_shape=("batch", 1, 28, 28)):
    c = {"w": rng.normal(0, 0.1, (10, 784)), "b": np.zeros(10), **(constants or {})}
    nodes = [_node(op, ["input"], "x", **(extra or {})), _node("Flatten", ["x"], "f"),
             _node("Gemm", ["f", "w", "b"], "output", transB=1)]
    return _graph(nodes, c, input_shape=input_shape)


@pytest.mark.parametrize("build, message", [
    (lambda rng: _small(rng, op="Elu"), r"node 'x' \(Elu\) is not an operator digitnet reads"),
    (lambda rng: _small(rng, input_shape=("batch", 3, 32, 32)), "inputs of shape"),
    (lambda rng: _graph([_node("Relu", ["input"], "a"), _node("Add", ["input", "a"], "output")],
                        {}), "is not on the one line of operators"),
    (lambda rng: _graph([_node("Flatten", ["input"], "f"),
                         _node("Gemm", ["f", "w", "b"], "output", transB=1)],
                        {"w": rng.normal(size=(26, 784)), "b": np.zeros(26)}),
     "has 26 outputs; a digit classifier has 10"),
    (lambda rng: _graph([_node("Flatten", ["input"], "f"),
                         _node("Gemm", ["f", "w", "b"], "output", transB=1)],
                        {"w": rng.normal(size=(10, 700)), "b": np.zeros(10)}),
     r"has a constant of shape \(10, 700\) where \(10, 784\) is expected"),
    (lambda rng: _graph([_node("Conv", ["input", "w"], "c", kernel_shape=[3, 3],
                               dilations=[2, 2]), _node("Flatten", ["c"], "f"),
                         _node("Gemm", ["f", "v"], "output")],
                        {"w": rng.normal(size=(2, 1, 3, 3)), "v": rng.normal(size=(968, 10))}),
     "is not a convolution digitnet reads"),
])
def test_unreadable_graphs_are_refused_by_operator(build, message, tmp_path):
    _refused(build(np.random.default_rng(0)), tmp_path, message)


def test_weights_in_an_external_file_are_never_read(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(7840, dtype=np.float32).tobytes())
    model = _small(np.random.default_rng(0))
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", str(secret)), ("offset", "0"), ("length", "31360")):
        weight.external_data.add(key=key, value=value)
    _refused(model, tmp_path, "keeps its weights in an external file")


def test_a_constant_declaring_a_huge_shape_is_refused_before_it_is_read(tmp_path):
    model = _small(np.random.default_rng(0))
    weight = model.graph.initializer[0]
    del weight.dims[:]
    weight.dims.extend([200_000, 200_000])
    _refused(model, tmp_path, r"has a constant of shape \(200000, 200000\) where")


def test_damaged_onnx_files_get_one_clear_line(tmp_path, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07\x12\xff\xff\xff\xff garbage")
    assert main(["predict", str(tmp_path / "bad.onnx"), "--test-index", "0",
                 "--data-dir", str(tmp_path), "--no-download"]) == 1
    err = capsys.readouterr().err.strip()
    assert "is not a readable ONNX file" in err and "\n" not in err and "Traceback" not in err


def test_digitnets_own_onnx_export_reads_back_with_every_layer(tmp_path, images):
    from digitnet.config import TrainConfig
    from digitnet.interop import export_model
    from digitnet.network import tensor_shapes

    cfg = TrainConfig(model="layers", layers="norm:scale=255:mean=20:std=80,conv4k3s/2-relu,"
                                             "maxpool2,conv6k3v-tanh,flatten,dense12-relu,dense10")
    rng = np.random.default_rng(2)
    weights = {n: rng.normal(0, 0.2, s).astype(np.float32)
               for n, s in tensor_shapes(cfg.network).items()}
    path = export_model(cfg, weights, "onnx", tmp_path / "m.onnx")
    back = Predictor.load(path)
    assert back.config.layers == cfg.layers
    np.testing.assert_allclose(back.probabilities(images),
                               Predictor(cfg, weights).probabilities(images), atol=1e-5)


def test_two_dense_layers_in_a_row_keep_their_biases(images, tmp_path):
    rng = np.random.default_rng(4)
    c = {"w1": rng.normal(0, 0.05, (784, 12)), "w2": rng.normal(0, 0.3, (12, 10)),
         "b2": rng.normal(0, 0.1, 10)}
    nodes = [_node("Flatten", ["input"], "f"), _node("MatMul", ["f", "w1"], "m1"),
             _node("MatMul", ["m1", "w2"], "m2"), _node("Add", ["m2", "b2"], "output")]
    path = tmp_path / "m.onnx"
    onnx.save(_graph(nodes, c), path)
    expected = _onnxruntime(path, images.astype(np.float32)[:, None] / 255)
    logits = Predictor.load(path).logits(images)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("build, message", [
    (lambda rng: _graph([_node("Conv", ["input"], "c"), _node("Flatten", ["c"], "output")], {}),
     "has 1 inputs where it needs 2"),
    (lambda rng: _graph([_node("Relu", ["input"], "r"), _node("Sub", ["r", "m"], "s"),
                         _node("Flatten", ["s"], "f"), _node("Gemm", ["f", "w"], "output")],
                        {"m": [0.5], "w": rng.normal(size=(784, 10))}),
     "comes after an operator that changes the values"),
])
def test_malformed_or_misplaced_nodes_are_refused(build, message, tmp_path):
    _refused(build(np.random.default_rng(0)), tmp_path, message)
