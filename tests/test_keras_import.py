"""Keras model files in: built and trained with the real Keras (JAX backend), read by digitnet
with zipfile and h5py alone."""

import os
import zipfile

import numpy as np
import pytest

from digitnet.cli import main
from digitnet.errors import ModelFileError
from digitnet.predict import Predictor

from conftest import draw_digit

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported; no TensorFlow here


@pytest.fixture(scope="module")
def keras():
    import keras

    keras.utils.set_random_seed(0)
    return keras


def tutorial(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((28, 28)), L.Flatten(), L.Dense(128, activation="relu"),
                             L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])


def rescaling_functional(keras):
    L = keras.layers
    inputs = keras.Input((784,))
    x = L.Rescaling(1 / 255)(inputs)
    x = L.Dense(32, activation="relu")(L.Dropout(0.1)(x))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Dropout(0.2)(x)))


def small_cnn(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)), L.Rescaling(1 / 255),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.Conv2D(8, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dropout(0.3), L.Dense(32, activation="relu"), L.Dense(10)])


def keras_probabilities(model, images, raw):
    """What the Keras model answers for uint8 images, fed as it was trained."""
    x = images.astype(np.float32) / (1 if raw else 255)
    x = x.reshape((len(x), *model.input_shape[1:]))
    out = model.predict(x, verbose=0)
    if model.layers[-1].get_config().get("activation") != "softmax":
        out = np.exp(out - out.max(1, keepdims=True))
        out /= out.sum(1, keepdims=True)
    return out


def tanh_avg_pool_cnn(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28)), L.Reshape((28, 28, 1)),
        L.Conv2D(6, 3, padding="same", activation="tanh"), L.AveragePooling2D(2),
        L.Conv2D(12, 3, padding="same", activation="tanh"), L.AveragePooling2D(2),
        L.Flatten(), L.Dense(24, activation="tanh"), L.Dense(10, activation="softmax")])


def sigmoid_mlp(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(),
                             L.Dense(40, activation="sigmoid"), L.Dense(10, activation="softmax")])


def mnist_convnet(keras):
    """keras-io's `mnist_convnet` example, layer for layer as it is written there."""
    L = keras.layers
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        L.Conv2D(32, kernel_size=(3, 3), activation="relu"), L.MaxPooling2D(pool_size=(2, 2)),
        L.Conv2D(64, kernel_size=(3, 3), activation="relu"), L.MaxPooling2D(pool_size=(2, 2)),
        L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")])


def batchnorm_strided(keras):
    """Batch normalisation after linear layers (folded at import), strides, an even kernel,
    mixed activations and separate Activation and ReLU layers."""
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(8, 4, strides=2, padding="same"),
        L.BatchNormalization(), L.ReLU(), L.Conv2D(12, 3, strides=2), L.BatchNormalization(),
        L.Activation("tanh"), L.AveragePooling2D(2), L.Flatten(), L.Dense(24),
        L.BatchNormalization(center=False), L.Activation("sigmoid"), L.Dense(10),
        L.Activation("softmax")])


@pytest.mark.parametrize("build, raw", [(tutorial, False), (rescaling_functional, True),
                                        (small_cnn, True), (tanh_avg_pool_cnn, False),
                                        (sigmoid_mlp, False), (mnist_convnet, False),
                                        (batchnorm_strided, False)],
                         ids=["tutorial", "functional-rescaling-dropout", "cnn-logits",
                              "cnn-tanh-avgpool", "mlp-sigmoid", "keras-io-mnist-convnet",
                              "batchnorm-strided"])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_trained_keras_model_predicts_the_same_through_digitnet(keras, build, raw, suffix,
                                                                  tiny_mnist, tmp_path):
    model = build(keras)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=model.layers[-1].get_config().get("activation") != "softmax"))
    x = tiny_mnist.train_images.astype(np.float32) / (1 if raw else 255)
    model.fit(x.reshape((len(x), *model.input_shape[1:])), tiny_mnist.train_labels,
              epochs=1, batch_size=32, verbose=0)
    if any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers):
        x = x.reshape((len(x), *model.input_shape[1:]))
        model.fit(x, tiny_mnist.train_labels, epochs=1, verbose=0)  # moving statistics move
    model.save(tmp_path / f"model{suffix}")
    predictor = Predictor.load(tmp_path / f"model{suffix}")
    expected = keras_probabilities(model, tiny_mnist.test_images, raw)
    np.testing.assert_allclose(predictor.probabilities(tiny_mnist.test_images), expected,
                               atol=1e-5)
    assert predictor.results["model_input"] == ("0..255 pixels" if raw else "0..1 pixels")


def test_input_scale_255_reads_a_model_trained_on_raw_pixels(keras, tiny_mnist, tmp_path):
    from digitnet.interop import load_foreign_model

    model = tutorial(keras)
    first = model.layers[1]  # a network trained on 0..255 pixels has small first weights
    first.set_weights([w / 255 if w.ndim == 2 else w for w in first.get_weights()])
    model.save(tmp_path / "raw.keras")
    cfg, weights, results = load_foreign_model(tmp_path / "raw.keras", input_scale=255)
    expected = keras_probabilities(model, tiny_mnist.test_images, raw=True)
    got = Predictor(cfg, weights).probabilities(tiny_mnist.test_images)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert results["model_input"] == "0..255 pixels"


def test_import_makes_a_run_folder_with_metrics_and_plots(keras, tiny_mnist, tmp_path):
    from digitnet.runs import import_run, load_run

    tutorial(keras).save(tmp_path / "model.keras")
    run = import_run(tmp_path / "model.keras", tmp_path / "run", tiny_mnist)
    assert 0 <= run.metrics["test_accuracy"] <= 1 and run.metrics["count"] == 200
    assert sorted(p.name for p in (tmp_path / "run" / "plots").iterdir())
    again = load_run(tmp_path / "run")
    assert again.config == run.config and again.predictor.results["imported_from"] == "model.keras"
    np.testing.assert_array_equal(again.predictor.probabilities(tiny_mnist.test_images),
                                  Predictor.load(tmp_path / "model.keras")
                                  .probabilities(tiny_mnist.test_images))


def test_import_and_predict_commands_take_a_keras_file(keras, tmp_path, capsys):
    tutorial(keras).save(tmp_path / "model.h5")
    assert main(["import", str(tmp_path / "model.h5"), "--out", str(tmp_path / "run"),
                 "--data-dir", str(tmp_path / "no-mnist"), "--no-download"]) == 0
    captured = capsys.readouterr()
    assert ("imported" in captured.out and "flatten,dense128-relu,dense64-relu,dense10 "
            "(fed 0..1 pixels)" in captured.out)
    assert "MNIST not available, so no metrics or plots" in captured.err
    assert (tmp_path / "run" / "model.safetensors").exists()
    draw_digit(7, size=96, ink=0, paper=255).save(tmp_path / "seven.png")
    for model in (tmp_path / "model.h5", tmp_path / "run"):
        assert main(["predict", str(model), str(tmp_path / "seven.png"), "--json"]) == 0
        assert '"digit"' in capsys.readouterr().out


def _layers_model(keras, *layers, shape=(28, 28)):
    return keras.Sequential([keras.Input(shape), *layers])


def _bad_files(keras, folder):
    L = keras.layers
    files = {}

    def save(name, model):
        model.save(folder / name)
        files[name] = folder / name

    save("batchnorm-after-relu.keras", _layers_model(keras, L.Flatten(),
                                                     L.Dense(16, activation="relu"),
                                                     L.BatchNormalization(), L.Dense(10)))
    save("one-output.keras", _layers_model(keras, L.Flatten(), L.Dense(16, activation="relu"),
                                           L.Dense(1)))
    save("sigmoid-output.keras", _layers_model(keras, L.Flatten(),
                                               L.Dense(16, activation="relu"),
                                               L.Dense(10, activation="sigmoid")))
    save("26-outputs.h5", _layers_model(keras, L.Flatten(), L.Dense(16, activation="relu"),
                                        L.Dense(26, activation="softmax")))
    save("32x32.keras", _layers_model(keras, L.Flatten(), L.Dense(16, activation="relu"),
                                      L.Dense(10), shape=(32, 32)))
    save("lambda.keras", _layers_model(keras, L.Flatten(), L.Lambda(lambda t: t * 2),
                                       L.Dense(16, activation="relu"), L.Dense(10)))
    save("elu.keras", _layers_model(keras, L.Flatten(), L.Dense(16, activation="elu"),
                                    L.Dense(10)))
    save("dilated-conv.keras", _layers_model(keras, L.Conv2D(4, 3, dilation_rate=2),
                                             L.Flatten(), L.Dense(10), shape=(28, 28, 1)))
    save("hidden-softmax.keras", _layers_model(keras, L.Flatten(),
                                               L.Dense(16, activation="softmax"), L.Dense(10)))
    save("overlapping-pool.keras", _layers_model(keras, L.MaxPooling2D(3, strides=2),
                                                 L.Flatten(), L.Dense(10), shape=(28, 28, 1)))
    good = _layers_model(keras, L.Flatten(), L.Dense(16, activation="relu"), L.Dense(10))
    good.save(folder / "good.h5")
    files["truncated.h5"] = folder / "truncated.h5"
    files["truncated.h5"].write_bytes((folder / "good.h5").read_bytes()[:3000])
    good.save_weights(folder / "weights-only.weights.h5")
    files["weights-only.h5"] = folder / "weights-only.weights.h5"
    good.save(folder / "good.keras")
    files["truncated.keras"] = folder / "truncated.keras"
    files["truncated.keras"].write_bytes((folder / "good.keras").read_bytes()[:2000])
    with zipfile.ZipFile(folder / "not-keras.keras", "w") as archive:
        archive.writestr("readme.txt", "hello")
    files["not-keras.keras"] = folder / "not-keras.keras"
    return files


BAD = {
    "batchnorm-after-relu.keras": "(BatchNormalization) does not follow a Conv2D or Dense "
                                  "layer without an activation",
    "one-output.keras": "has 1 outputs; a digit classifier has 10",
    "sigmoid-output.keras": "uses activation 'sigmoid'; digitnet's output layer is softmax",
    "26-outputs.h5": "has 26 outputs; a digit classifier has 10",
    "32x32.keras": "inputs of shape [32, 32]",
    "lambda.keras": "(Lambda) is not supported",
    "elu.keras": "uses activation 'elu'; digitnet's hidden layers use relu, sigmoid, tanh",
    "dilated-conv.keras": "is not a convolution digitnet reads",
    "hidden-softmax.keras": "uses 'softmax' before the last layer",
    "overlapping-pool.keras": "is not a square pooling with stride = size",
    "truncated.h5": "damaged HDF5 file",
    "weights-only.h5": "not a whole Keras model",
    "truncated.keras": "damaged zip file",
    "not-keras.keras": "is a zip but not a Keras model file",
}


@pytest.fixture(scope="module")
def bad_files(keras, tmp_path_factory):
    return _bad_files(keras, tmp_path_factory.mktemp("bad-keras"))


@pytest.mark.parametrize("name", sorted(BAD))
def test_unsupported_or_damaged_keras_files_get_one_clear_line(name, bad_files, tmp_path,
                                                               capsys):
    with pytest.raises(ModelFileError, match=BAD[name].replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        Predictor.load(bad_files[name])
    draw_digit(3, size=64).save(tmp_path / "three.png")
    assert main(["predict", str(bad_files[name]), str(tmp_path / "three.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert BAD[name] in err and "\n" not in err and "Traceback" not in err
