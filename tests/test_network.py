"""A network is a layer sequence: its text form, its checks, the families that make one, every
backend computing the same network, and model files of every format version."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from digitnet import network
from digitnet.config import MODELS, TrainConfig
from digitnet.errors import ConfigError, ModelFileError
from digitnet.families import FAMILIES
from digitnet.interop import export_model
from digitnet.modelfile import load_model, save_model
from digitnet.network import (Activation, Conv, Dense, Dropout, Flatten, Normalize, Pool,
                              parse, tensor_shapes, to_text)
from digitnet.predict import Predictor
from digitnet.training.networks import build_model, export_weights, import_weights

from conftest import random_weights

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported; no TensorFlow here

# One network per layer kind, each using that kind in the ways it can be set.
BY_KIND = {
    Normalize: "norm:scale=255:mean=33.3:std=78.6,conv4k3s-relu,maxpool2,flatten,dense10",
    Conv: "conv4k5v/2-relu,conv6k3s/2-tanh,conv5k2s,conv3k4v,flatten,dense10",
    Pool: "conv4k3s-relu,maxpool3,conv4k3v-sigmoid,avgpool2,conv4k1v,maxpool2,flatten,dense10",
    Flatten: "flatten,dense10",
    Dense: "flatten,dense12-sigmoid,dense7,dense10",
    Dropout: "conv3k3v-relu,dropout0.25,maxpool2,flatten,dropout,dense8-relu,dense10",
    Activation: "conv3k3v-relu,tanh,avgpool2,sigmoid,flatten,dense9-tanh,relu,dense10",
}
FAMILY_CONFIGS = [
    TrainConfig(hidden=(32, 16), seed=1),
    TrainConfig(hidden=(24,), activation="sigmoid", seed=4),
    TrainConfig(model="cnn", conv=(8, 16), dense=(32,), seed=1),
    # odd sides (7 -> 3) when pooling, two convolutions a block, no dense layer
    TrainConfig(model="cnn", conv=(4, 8, 8), convs_per_block=2, dense=(), seed=2),
    TrainConfig(model="cnn", conv=(6, 12), dense=(16,), activation="tanh", pool="avg", seed=3),
]
FAMILY_IDS = ["mlp", "mlp-sigmoid", "cnn", "cnn-deep", "cnn-tanh-avg"]


def layers_config(text: str, seed: int = 0) -> TrainConfig:
    return TrainConfig(model="layers", layers=text, seed=seed)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (24, 28, 28)).astype(np.uint8)


# ---- the text form and the checks --------------------------------------------------------

def test_every_kind_has_a_network_here_and_every_family_a_config_name():
    assert set(BY_KIND) == set(network.LAYER_KINDS)
    assert set(FAMILIES) == set(MODELS)


@pytest.mark.parametrize("text", [*BY_KIND.values(),
                                  "norm:scale=-1:mean=-0.5:std=1e-05,flatten,dense10",
                                  "conv32k3v-relu,maxpool2,conv64k3v-relu,maxpool2,flatten,"
                                  "dropout,dense10"])
def test_the_text_form_reads_back_as_written(text):
    layers = parse(text)
    assert to_text(layers) == text
    assert parse(to_text(layers)) == layers


def test_the_issue_example_is_the_records_it_names():
    assert parse("conv32k3v-relu,maxpool2,flatten,dropout,dense10") == (
        Conv(32, 3, "valid"), Activation("relu"), Pool("max", 2), Flatten(), Dropout(0.5),
        Dense(10))


@pytest.mark.parametrize("text, message", [
    ("conv32k3x,flatten,dense10", "cannot read layer 'conv32k3x'"),
    ("flatten-relu,dense10", "only an activation may be joined"),
    ("dense10", "layer 1 (dense10) needs a flat input: put flatten before it"),
    ("flatten,conv4k3s,dense10", "layer 2 (conv4k3s) needs an image"),
    ("flatten,dense16", "the last layer must be dense10"),
    ("flatten,dense10,relu", "the last layer must be dense10"),
    ("conv4k3s,norm,flatten,dense10", "layer 2 (norm) must come first"),
    ("norm:std=0,flatten,dense10", "positive std"),
    ("conv4k29v,flatten,dense10", "does not fit its 28x28 input"),
    ("maxpool29,flatten,dense10", "does not fit its 28x28 input"),
    ("flatten,flatten,dense10", "its input is flat already"),
    ("flatten,dense0,dense10", "layer 2 (dense0) needs a positive width"),
    ("dropout1.5,flatten,dense10", "needs a rate in [0, 1)"),
    ("", "cannot read layer ''"),
    ("flatten,dense9999999999,dense10", "cannot read layer 'dense9999999999'"),
    ("flatten,dense200000,dense10", "more than the 67,108,864 a model file may hold"),
])
def test_a_sequence_that_makes_no_network_is_refused_by_layer(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        parse(text)


def test_the_families_make_todays_networks():
    assert to_text(TrainConfig().network) == "flatten,dense128-relu,dense64-relu,dense10"
    cnn = TrainConfig(model="cnn", conv=(24, 48), convs_per_block=2, pool="avg", dense=(128,))
    assert to_text(cnn.network) == ("conv24k3s-relu,conv24k3s-relu,avgpool2,conv48k3s-relu,"
                                    "conv48k3s-relu,avgpool2,flatten,dense128-relu,dense10")
    assert tensor_shapes(cnn.network)["dense_0.kernel"] == (7 * 7 * 48, 128)  # (row, col, ch)
    assert tensor_shapes(cnn.network)["conv_1.kernel"] == (3, 3, 24, 24)  # HWIO, as Keras


@pytest.mark.parametrize("changes, message", [
    ({"model": "cnn", "hidden": (256,)}, "hidden does not apply to model 'cnn'"),
    ({"conv": (8,)}, "conv does not apply to model 'mlp'"),
    ({"model": "cnn", "conv": ()}, "conv channels must be positive"),
    ({"model": "cnn", "conv": (8, 8, 8, 8, 8)}, "at most 4 conv blocks"),
    ({"model": "cnn", "convs_per_block": 0}, "convs_per_block must be at least 1"),
    ({"model": "cnn", "dense": (0,)}, "dense widths must be positive"),
    ({"hidden": ()}, "hidden widths must be positive"),
    ({"activation": "elu"}, "activation must be one of relu, sigmoid, tanh"),
    ({"pool": "avg"}, "pool does not apply to model 'mlp'"),
    ({"model": "layers"}, "model 'layers' needs the network written out"),
    ({"model": "layers", "layers": "flatten,dense10", "activation": "tanh"},
     "activation does not apply to model 'layers'"),
    ({"layers": "flatten,dense10"}, "layers does not apply to model 'mlp'"),
])
def test_family_fields_are_checked(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


def test_a_config_lists_only_its_own_familys_fields():
    mlp, cnn = TrainConfig(), TrainConfig(model="cnn", conv=(8,), dense=())
    layers = layers_config(BY_KIND[Dropout])
    assert "hidden" in mlp.to_dict() and "conv" not in mlp.to_dict()
    assert {"conv", "convs_per_block", "dense"} <= set(cnn.to_dict())
    assert "hidden" not in cnn.to_dict() and "layers" not in cnn.to_dict()
    assert "layers" in layers.to_dict() and "activation" not in layers.to_dict()
    for cfg in (mlp, cnn, layers):
        assert TrainConfig.from_json(cfg.to_json()) == cfg


# ---- every backend computes the same network ----------------------------------------------

def _flax_logits(cfg, weights, images):
    model = import_weights(build_model(cfg), weights)
    return np.asarray(model(jnp.asarray(images.reshape(-1, 784), jnp.float32) / 255))


def _softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("kind", list(BY_KIND), ids=lambda k: k.__name__)
def test_every_backend_computes_the_same_network(kind, images, tmp_path):
    """NumPy, Flax, the Keras and ONNX writers (run by the real Keras and onnxruntime), and
    digitnet's readers of both formats, within 1e-5."""
    import keras
    import onnxruntime

    cfg = layers_config(BY_KIND[kind], seed=3)
    weights = random_weights(cfg, seed=5)
    numpy_logits = Predictor(cfg, weights).logits(images)
    np.testing.assert_allclose(_flax_logits(cfg, weights, images), numpy_logits,
                               rtol=1e-5, atol=1e-5)
    expected = _softmax(numpy_logits)
    x = images.astype(np.float32) / 255
    keras_path = export_model(cfg, weights, "keras", tmp_path / "m.keras")
    np.testing.assert_allclose(keras.saving.load_model(keras_path).predict(x, verbose=0),
                               expected, atol=1e-5)
    onnx_path = export_model(cfg, weights, "onnx", tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["probabilities"], {"images": x})[0], expected,
                               atol=1e-5)
    for path in (keras_path, onnx_path):  # ONNX files keep no dropout
        back = Predictor.load(path)
        assert _same_math(back.network) == _same_math(
            r for r in cfg.network if path.suffix == ".keras" or not isinstance(r, Dropout))
        np.testing.assert_allclose(back.probabilities(images), expected, atol=1e-5)


def _same_math(layers):
    """The records, with a normalisation as the p * k - c it computes to float32's precision
    (Keras writes it as one scale and offset, ONNX as float32 numbers)."""
    return tuple((f"{r.scale / r.std:.6g}", f"{r.mean / r.std:.6g}")
                 if isinstance(r, Normalize) else r for r in layers)


@pytest.mark.parametrize("cfg", FAMILY_CONFIGS, ids=FAMILY_IDS)
def test_numpy_inference_matches_the_flax_network_of_each_family(cfg, tiny_mnist):
    images = tiny_mnist.test_images[:40]
    weights = export_weights(build_model(cfg))
    np.testing.assert_allclose(Predictor(cfg, weights).logits(images),
                               _flax_logits(cfg, weights, images), rtol=1e-5, atol=1e-6)


def _direct_logits(layers, weights, images):
    """The network written with XLA's own convolution and pooling windows, differentiated by
    autodiff: an independent reference for the training network's written-out gradients."""
    from jax import lax

    from digitnet.network import conv_padding, weight_names
    from digitnet.training.networks import ACTIVATIONS

    x, names = images.reshape(-1, 28, 28, 1), weight_names(layers)
    for i, layer in enumerate(layers):
        match layer:
            case Conv(_, _, _, stride):
                pads = [conv_padding(layer, x.shape[1]), conv_padding(layer, x.shape[2])]
                x = lax.conv_general_dilated(x, weights[f"{names[i]}.kernel"], (stride, stride),
                                             pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
                x = x + weights[f"{names[i]}.bias"]
            case Pool("max", k):
                x = lax.reduce_window(x, -jnp.inf, lax.max, (1, k, k, 1), (1, k, k, 1), "VALID")
            case Pool("avg", k):
                x = lax.reduce_window(x, 0.0, lax.add, (1, k, k, 1), (1, k, k, 1), "VALID") / k**2
            case Flatten():
                x = x.reshape(len(x), -1)
            case Dense():
                x = x @ weights[f"{names[i]}.kernel"] + weights[f"{names[i]}.bias"]
            case Activation(name):
                x = ACTIVATIONS[name](x)
            case Normalize(scale, mean, std):
                x = (x * scale - mean) / std
    return x


@pytest.mark.parametrize("cfg", [*FAMILY_CONFIGS[2:], layers_config(BY_KIND[Conv], seed=4),
                                 layers_config(BY_KIND[Pool], seed=6)],
                         ids=[*FAMILY_IDS[2:], "strides-valid-even", "pool-sizes"])
def test_convolution_gradients_match_a_direct_convolution(cfg, tiny_mnist):
    # Blank margins and nonzero biases make many equal maxima in the pooling windows: the
    # gradient must reach one input of each window, as XLA's own pooling gradient does.
    rng = np.random.default_rng(cfg.seed)
    weights = {name: w if name.endswith("kernel") else
               rng.normal(0, 0.2, w.shape).astype(np.float32)
               for name, w in export_weights(build_model(cfg)).items()}
    images = jnp.asarray(tiny_mnist.train_images[:16].reshape(-1, 784), jnp.float32) / 255
    cotangent = jnp.asarray(rng.normal(size=(16, 10)), jnp.float32)
    model = import_weights(build_model(cfg), weights)
    grads = nnx.grad(lambda model: jnp.sum(model(images) * cotangent))(model)
    graph, _, rest = nnx.split(model, nnx.Param, ...)
    grads = export_weights(nnx.merge(graph, grads, rest))  # named as the weights are
    expected = jax.grad(lambda w: jnp.sum(_direct_logits(cfg.network, w, images)
                                          * cotangent))(weights)
    for name, grad in expected.items():
        scale = float(jnp.abs(grad).max())
        assert scale > 0, name
        np.testing.assert_allclose(grads[name], grad, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_dropout_drops_while_training_and_not_when_predicting(images):
    cfg = layers_config("flatten,dropout0.5,dense10")
    model = build_model(cfg)
    x = jnp.asarray(images.reshape(-1, 784), jnp.float32) / 255
    plain = np.asarray(model(x))
    np.testing.assert_array_equal(plain, np.asarray(model(x)))
    dropped = np.asarray(model(x, jax.random.key(0)))
    assert not np.allclose(dropped, plain)
    np.testing.assert_allclose(Predictor(cfg, export_weights(model)).logits(images), plain,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg", [*FAMILY_CONFIGS, layers_config(BY_KIND[Pool])],
                         ids=[*FAMILY_IDS, "layers"])
def test_tensors_are_what_the_sequence_says(cfg):
    model = build_model(cfg)
    weights = export_weights(model)
    assert {n: w.shape for n, w in weights.items()} == tensor_shapes(cfg.network)
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count == sum(int(np.prod(s)) for s in tensor_shapes(cfg.network).values())
    other = import_weights(build_model(cfg, seed=99), weights)
    for name, array in export_weights(other).items():
        np.testing.assert_array_equal(array, weights[name])


# ---- model files -----------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [FAMILY_CONFIGS[3], layers_config(BY_KIND[Normalize])],
                         ids=["cnn", "layers"])
def test_a_model_file_round_trips_with_its_layer_sequence(cfg, tmp_path, tiny_mnist):
    from safetensors import safe_open

    weights = random_weights(cfg)
    save_model(tmp_path / "m.safetensors", weights, cfg)
    with safe_open(tmp_path / "m.safetensors", "numpy") as f:
        metadata = f.metadata()
    assert (metadata["format_version"], metadata["network"]) == ("3", to_text(cfg.network))
    loaded_cfg, _, _ = load_model(tmp_path / "m.safetensors")
    assert loaded_cfg == cfg
    np.testing.assert_array_equal(
        Predictor(cfg, weights).probabilities(tiny_mnist.test_images),
        Predictor.load(tmp_path / "m.safetensors").probabilities(tiny_mnist.test_images))


# The config fields digitnet wrote into format 2 model files (commit cfe2481), the same for
# every family; each family's own fields are added below.
FORMAT_2_COMMON = {
    "adam_form": "keras", "augment": False, "augment_strength": 1.0, "batch_size": 32,
    "early_stopping": 0, "epochs": 10, "keep": "last", "label_smoothing": 0.0, "lr": 0.001,
    "lr_schedule": "constant", "monitor": "val_loss", "pen_digits": 0, "printed_digits": 0,
    "seed": 0, "val_fraction": 0.1, "validate_on": "last", "weight_decay": 0.0,
    "writing_variants": False}
FORMAT_2_FILES = {
    "mlp-tanh": {"model": "mlp", "hidden": [16, 8], "activation": "tanh"},
    "cnn": {"model": "cnn", "conv": [4, 6], "convs_per_block": 1, "dense": [12], "pool": "max",
            "activation": "relu"},
    "cnn-avg-sigmoid": {"model": "cnn", "conv": [3, 4, 5], "convs_per_block": 2, "dense": [],
                        "pool": "avg", "activation": "sigmoid"},
}


def _format_2_network(fields, rng):
    """The tensors a format 2 file of these config fields holds, named and shaped as that
    release's families made them, and its forward pass written out with XLA's own
    convolution and pooling (independent of digitnet.network and digitnet.forward)."""
    from jax import lax

    from digitnet.training.networks import ACTIVATIONS

    activation = ACTIVATIONS[fields["activation"]]
    shapes, channels, side, convs = {}, 1, 28, []
    for out in fields.get("conv", []):
        for k in range(fields["convs_per_block"]):
            shapes[f"conv_{len(convs)}.kernel"] = (3, 3, channels, out)
            shapes[f"conv_{len(convs)}.bias"] = (out,)
            convs.append(k == fields["convs_per_block"] - 1)  # pools after it
            channels = out
        side //= 2
    widths = [side * side * channels if convs else 784,
              *fields.get("dense", fields.get("hidden", [])), 10]
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        shapes[f"dense_{i}.kernel"], shapes[f"dense_{i}.bias"] = (n_in, n_out), (n_out,)
    weights = {n: rng.normal(0, 0.3, s).astype(np.float32) for n, s in shapes.items()}

    def logits(images):
        x = jnp.asarray(images, jnp.float32).reshape(-1, 28, 28, 1) / 255
        window = (1, 2, 2, 1)
        for i, pools in enumerate(convs):
            x = lax.conv_general_dilated(x, weights[f"conv_{i}.kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
            x = activation(x + weights[f"conv_{i}.bias"])
            if pools and fields["pool"] == "max":
                x = lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")
            elif pools:
                x = lax.reduce_window(x, 0.0, lax.add, window, window, "VALID") / 4
        x = x.reshape(len(x), -1)
        for i in range(len(widths) - 1):
            x = x @ weights[f"dense_{i}.kernel"] + weights[f"dense_{i}.bias"]
            x = activation(x) if i < len(widths) - 2 else x
        return np.asarray(x)

    return weights, logits


@pytest.mark.parametrize("name", list(FORMAT_2_FILES))
def test_model_files_written_before_layer_sequences_predict_as_they_did(name, tmp_path):
    """A format 2 file, its metadata as cfe2481 wrote it (family, config JSON, results),
    loads and predicts what its network computes (checked by hand against cfe2481's own
    code on 2026-12-03: files it wrote give the same probabilities, to the bit)."""
    fields = {**FORMAT_2_COMMON, **FORMAT_2_FILES[name]}
    weights, logits = _format_2_network(fields, np.random.default_rng(2026))
    _write(tmp_path / "old.safetensors", weights, {
        "format": "digitnet-model", "format_version": "2", "family": fields["model"],
        "config": json.dumps(fields, indent=2, sort_keys=True),
        "results": '{"test_accuracy": 0.5}'})
    images = np.random.default_rng(1).integers(0, 256, (8, 28, 28)).astype(np.uint8)
    predictor = Predictor.load(tmp_path / "old.safetensors")
    assert predictor.temperature == 1.0 and predictor.refuse_below is None
    np.testing.assert_allclose(predictor.probabilities(images), _softmax(logits(images)),
                               rtol=1e-5, atol=1e-6)
    assert [p.digit for p in predictor.predict(images)] == list(logits(images).argmax(1))


# The metadata digitnet 0.1.0 (commit 3466e11, before model families) wrote, byte for byte:
# format version 1, no family, and the config's keys of that release.
FORMAT_1_METADATA = {
    "format": "digitnet-model", "format_version": "1", "results": '{"test_accuracy": 0.1}',
    "config": '{\n  "adam_form": "keras",\n  "augment": false,\n  "batch_size": 32,\n  '
              '"epochs": 1,\n  "hidden": [\n    3\n  ],\n  "label_smoothing": 0.0,\n  '
              '"lr": 0.001,\n  "lr_schedule": "constant",\n  "model": "mlp",\n  "seed": 0,\n'
              '  "val_fraction": 0.1,\n  "validate_on": "last"\n}',
}


def _write(path, weights, metadata):
    from safetensors.numpy import save

    path.write_bytes(save(weights, metadata=metadata))


def test_format_1_model_files_still_load_and_predict_the_same(tmp_path):
    rng = np.random.default_rng(12)
    weights = {"dense_0.kernel": rng.normal(0, 0.05, (784, 3)).astype(np.float32),
               "dense_0.bias": rng.normal(0, 0.1, 3).astype(np.float32),
               "dense_1.kernel": rng.normal(0, 0.5, (3, 10)).astype(np.float32),
               "dense_1.bias": rng.normal(0, 0.1, 10).astype(np.float32)}
    _write(tmp_path / "old.safetensors", weights, FORMAT_1_METADATA)
    cfg, loaded, results = load_model(tmp_path / "old.safetensors")
    assert (cfg.model, cfg.hidden, results) == ("mlp", (3,), {"test_accuracy": 0.1})
    # what version 1 computed: 784 -> relu(3) -> 10 -> softmax, written out here in NumPy
    images = rng.integers(0, 256, (4, 784), dtype=np.uint8)
    hidden = np.maximum(images / 255 @ weights["dense_0.kernel"] + weights["dense_0.bias"], 0)
    probs = Predictor.load(tmp_path / "old.safetensors").probabilities(images)
    np.testing.assert_allclose(
        probs, _softmax(hidden @ weights["dense_1.kernel"] + weights["dense_1.bias"]),
        rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("version, family_name, config, network_text, message", [
    ("2", "rnn", TrainConfig().to_json(), None,
     "holds a 'rnn' network, a family this digitnet does not know"),
    ("2", "cnn", TrainConfig().to_json(), None, "family 'cnn' but a 'mlp' config"),
    ("3", "mlp", TrainConfig().to_json(), "flatten,dense10",
     "its layers 'flatten,dense10' are not what its config describes"),
    ("3", "mlp", '[' * 100_000, "flatten,dense10", "has damaged metadata"),
    ("4", "mlp", TrainConfig().to_json(), None, "a newer digitnet may read it"),
])
def test_unknown_or_contradicting_metadata_is_refused(tmp_path, version, family_name, config,
                                                      network_text, message):
    weights = random_weights(TrainConfig())
    metadata = {"format": "digitnet-model", "format_version": version, "family": family_name,
                "config": config, "results": "{}"}
    if network_text:
        metadata["network"] = network_text
    _write(tmp_path / "m.safetensors", weights, metadata)
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / "m.safetensors")


def test_predicting_with_any_network_never_imports_jax(tmp_path):
    files = []
    for cfg in (TrainConfig(hidden=(8,)), FAMILY_CONFIGS[2], layers_config(BY_KIND[Pool])):
        files.append(tmp_path / f"{len(files)}.safetensors")
        save_model(files[-1], random_weights(cfg), cfg)
    probe = (
        "import sys, numpy as np\n"
        "from digitnet.predict import Predictor\n"
        "for path in sys.argv[1:]:\n"
        "    probs = Predictor.load(path).probabilities(np.zeros((2, 28, 28), np.uint8))\n"
        "    assert probs.shape == (2, 10)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax')))"
    )
    out = subprocess.run([sys.executable, "-c", probe, *map(str, files)],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_weight_decay_reaches_the_rows_of_blank_pixels(tiny_mnist):
    """Without decay, a blank pixel's first-layer weights never move, so training may leave
    them out; with decay they shrink every step, so it must not."""
    from digitnet.training import train

    cfg = TrainConfig(hidden=(8,), epochs=1, lr=0.01, weight_decay=0.5)
    blank = tiny_mnist.train_images.reshape(len(tiny_mnist.train_images), -1).max(axis=0) == 0
    assert blank.any()
    initial = export_weights(build_model(cfg))["dense_0.kernel"][blank]
    trained = train(cfg, tiny_mnist).weights["dense_0.kernel"][blank]
    assert np.all(np.abs(trained) < np.abs(initial))
    undecayed = train(cfg.replace(weight_decay=0.0), tiny_mnist).weights["dense_0.kernel"]
    np.testing.assert_array_equal(undecayed[blank], initial)
