"""Network families: one description each, the same network in Flax and in NumPy, and model
files of every format version this digitnet reads."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from digitnet.config import MODELS, TrainConfig
from digitnet.errors import ConfigError, ModelFileError
from digitnet.modelfile import load_model, save_model
from digitnet.models import FAMILIES, family
from digitnet.predict import Predictor
from digitnet.training.networks import NETWORKS, build_model, export_weights, import_weights

CNN_CONFIGS = [
    TrainConfig(model="cnn", conv=(8, 16), dense=(32,), seed=1),
    # odd sides (7 -> 3) when pooling, two convolutions a block, no dense layer
    TrainConfig(model="cnn", conv=(4, 8, 8), convs_per_block=2, dense=(), seed=2),
    TrainConfig(model="cnn", conv=(6, 12), dense=(16,), activation="tanh", pool="avg", seed=3),
]


def test_every_family_has_a_config_name_and_a_flax_network():
    assert set(FAMILIES) == set(MODELS) == set(NETWORKS)


@pytest.mark.parametrize("cfg", [TrainConfig(hidden=(32, 16), seed=1),
                                 TrainConfig(hidden=(24,), activation="sigmoid", seed=4),
                                 *CNN_CONFIGS],
                         ids=["mlp", "mlp-sigmoid", "cnn", "cnn-deep", "cnn-tanh-avg"])
def test_numpy_inference_matches_the_flax_network(cfg, tiny_mnist):
    model = build_model(cfg)
    images = tiny_mnist.test_images[:40]
    flax_logits = np.asarray(model(jnp.asarray(images.reshape(-1, 784), jnp.float32) / 255))
    numpy_logits = Predictor(cfg, export_weights(model)).logits(images)
    np.testing.assert_allclose(numpy_logits, flax_logits, rtol=1e-5, atol=1e-6)


def _direct_cnn_logits(cfg, weights, images):
    """The CNN written with XLA's own convolution and pooling windows, differentiated by
    autodiff: an independent reference for the written-out gradients of the training network."""
    from jax import lax

    from digitnet.models.cnn import conv_layout
    from digitnet.training.networks import ACTIVATIONS

    activation = ACTIVATIONS[cfg.activation]
    x = images.reshape(-1, 28, 28, 1)
    for i, (_, _, pools) in enumerate(conv_layout(cfg)):
        x = lax.conv_general_dilated(x, weights[f"conv_{i}.kernel"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = activation(x + weights[f"conv_{i}.bias"])
        if pools and cfg.pool == "max":
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        elif pools:
            x = lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4
    x = x.reshape(len(x), -1)
    n_dense = len(cfg.dense) + 1
    for i in range(n_dense):
        x = x @ weights[f"dense_{i}.kernel"] + weights[f"dense_{i}.bias"]
        x = activation(x) if i < n_dense - 1 else x
    return x


@pytest.mark.parametrize("cfg", CNN_CONFIGS, ids=["cnn", "cnn-deep", "cnn-tanh-avg"])
def test_cnn_gradients_match_a_direct_convolution(cfg, tiny_mnist):
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
    expected = jax.grad(lambda w: jnp.sum(_direct_cnn_logits(cfg, w, images) * cotangent))(weights)
    for name, grad in expected.items():
        scale = float(jnp.abs(grad).max())
        assert scale > 0, name
        np.testing.assert_allclose(grads[name], grad, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("cfg", CNN_CONFIGS, ids=["cnn", "cnn-deep", "cnn-tanh-avg"])
def test_cnn_tensors_are_what_the_family_says(cfg):
    model = build_model(cfg)
    weights = export_weights(model)
    assert {n: w.shape for n, w in weights.items()} == family(cfg).tensor_shapes(cfg)
    count = sum(int(np.prod(p.shape)) for p in
                jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count == sum(int(np.prod(s)) for s in family(cfg).tensor_shapes(cfg).values())
    other = import_weights(build_model(cfg, seed=99), weights)
    for name, array in export_weights(other).items():
        np.testing.assert_array_equal(array, weights[name])


def test_keras_layout_of_the_cnn_tensors():
    shapes = family("cnn").tensor_shapes(TrainConfig(model="cnn", conv=(32, 64), dense=(128,)))
    assert shapes["conv_0.kernel"] == (3, 3, 1, 32)  # HWIO, as Keras' Conv2D stores it
    assert shapes["conv_1.kernel"] == (3, 3, 32, 64)
    assert shapes["dense_0.kernel"] == (7 * 7 * 64, 128)  # flattened (row, column, channel)
    assert shapes["dense_1.kernel"] == (128, 10)


def test_a_cnn_model_file_round_trips(tmp_path, tiny_mnist):
    cfg = CNN_CONFIGS[1]
    weights = export_weights(build_model(cfg))
    save_model(tmp_path / "cnn.safetensors", weights, cfg)
    loaded_cfg, loaded, _ = load_model(tmp_path / "cnn.safetensors")
    assert loaded_cfg == cfg
    np.testing.assert_array_equal(
        Predictor(cfg, weights).probabilities(tiny_mnist.test_images),
        Predictor.load(tmp_path / "cnn.safetensors").probabilities(tiny_mnist.test_images))


# The metadata digitnet 0.1.0 (commit 3466e11, before model families) wrote, byte for byte:
# format version 1, no family, and the config's keys of that release.
FORMAT_1_METADATA = {
    "format": "digitnet-model", "format_version": "1", "results": '{"test_accuracy": 0.1}',
    "config": '{\n  "adam_form": "keras",\n  "augment": false,\n  "batch_size": 32,\n  '
              '"epochs": 1,\n  "hidden": [\n    3\n  ],\n  "label_smoothing": 0.0,\n  '
              '"lr": 0.001,\n  "lr_schedule": "constant",\n  "model": "mlp",\n  "seed": 0,\n'
              '  "val_fraction": 0.1,\n  "validate_on": "last"\n}',
}


def test_format_1_model_files_still_load_and_predict_the_same(tmp_path):
    from safetensors.numpy import save

    rng = np.random.default_rng(12)
    weights = {"dense_0.kernel": rng.normal(0, 0.05, (784, 3)).astype(np.float32),
               "dense_0.bias": rng.normal(0, 0.1, 3).astype(np.float32),
               "dense_1.kernel": rng.normal(0, 0.5, (3, 10)).astype(np.float32),
               "dense_1.bias": rng.normal(0, 0.1, 10).astype(np.float32)}
    (tmp_path / "old.safetensors").write_bytes(save(weights, metadata=FORMAT_1_METADATA))
    cfg, loaded, results = load_model(tmp_path / "old.safetensors")
    assert (cfg.model, cfg.hidden, results) == ("mlp", (3,), {"test_accuracy": 0.1})
    # what version 1 computed: 784 -> relu(3) -> 10 -> softmax, written out here in NumPy
    images = rng.integers(0, 256, (4, 784), dtype=np.uint8)
    hidden = np.maximum(images / 255 @ weights["dense_0.kernel"] + weights["dense_0.bias"], 0)
    logits = hidden @ weights["dense_1.kernel"] + weights["dense_1.bias"]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    probs = Predictor.load(tmp_path / "old.safetensors").probabilities(images)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def _write(path, weights, metadata):
    from safetensors.numpy import save

    path.write_bytes(save(weights, metadata=metadata))


@pytest.mark.parametrize("family_name, config, message", [
    ("rnn", TrainConfig().to_json(), "holds a 'rnn' network, a family this digitnet does not know"),
    ("cnn", TrainConfig().to_json(), "family 'cnn' but a 'mlp' config"),
])
def test_unknown_or_contradicting_family_is_refused(tmp_path, family_name, config, message):
    cfg = TrainConfig()
    weights = {n: np.zeros(s, np.float32) for n, s in family(cfg).tensor_shapes(cfg).items()}
    _write(tmp_path / "m.safetensors", weights,
           {"format": "digitnet-model", "format_version": "2", "family": family_name,
            "config": config, "results": "{}"})
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / "m.safetensors")


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
])
def test_family_fields_are_checked(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


def test_a_config_lists_only_its_own_familys_fields():
    mlp, cnn = TrainConfig(), TrainConfig(model="cnn", conv=(8,), dense=())
    assert "hidden" in mlp.to_dict() and "conv" not in mlp.to_dict()
    assert {"conv", "convs_per_block", "dense"} <= set(cnn.to_dict())
    assert "hidden" not in cnn.to_dict()
    assert TrainConfig.from_json(cnn.to_json()) == cnn


def _model_files(tmp_path):
    files = []
    for cfg in (TrainConfig(hidden=(8,)), CNN_CONFIGS[0]):
        path = tmp_path / f"{cfg.model}.safetensors"
        save_model(path, export_weights(build_model(cfg)), cfg)
        files.append(path)
    return files


def test_predicting_with_either_family_never_imports_jax(tmp_path):
    probe = (
        "import sys, numpy as np\n"
        "from digitnet.predict import Predictor\n"
        "for path in sys.argv[1:]:\n"
        "    probs = Predictor.load(path).probabilities(np.zeros((2, 28, 28), np.uint8))\n"
        "    assert probs.shape == (2, 10)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax')))"
    )
    out = subprocess.run([sys.executable, "-c", probe, *map(str, _model_files(tmp_path))],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
