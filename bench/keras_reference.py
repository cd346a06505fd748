"""The reference tutorial program, in Keras on TensorFlow, for bench/speed.py to compare with.

It reads the same local IDX files as digitnet (no download) and follows the tutorial: scale
to [0, 1], flatten, Dense(128, relu) -> Dense(64, relu) -> Dense(10, softmax), Adam 1e-3,
sparse categorical cross-entropy, batch 32, validation on 10% of the training set. Runs in
its own virtual environment (see speed.py); prints one JSON line of results at the end.
Usage: python keras_reference.py MNIST_DIR EPOCHS
"""

import json
import sys
import time

from reference_idx import read_idx


def main():
    folder, epochs = sys.argv[1], int(sys.argv[2])
    import keras  # imported after the arguments are read: its start-up is part of the timing

    x_train = read_idx(f"{folder}/train-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0
    y_train = read_idx(f"{folder}/train-labels-idx1-ubyte.gz")
    x_test = read_idx(f"{folder}/t10k-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0
    y_test = read_idx(f"{folder}/t10k-labels-idx1-ubyte.gz")

    model = keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    epoch_seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.started)

    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1,
              callbacks=[Timer()], verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(json.dumps({"epoch_seconds": epoch_seconds, "test_accuracy": float(accuracy),
                      "test_loss": float(loss), "keras": keras.__version__}))


if __name__ == "__main__":
    main()
