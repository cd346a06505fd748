"""keras-io's "Simple MNIST convnet" (examples/vision/mnist_convnet.py) re-implemented for
bench/time_to_accuracy.py, in Keras on TensorFlow (tensorflow-cpu) in the benchmark's own
virtual environment, without digitnet.

Kept as that program has it: pixels as float32 scaled to 0..1 with a channel axis added,
one-hot labels; Conv2D(32, 3x3, relu), MaxPooling2D(2x2), Conv2D(64, 3x3, relu),
MaxPooling2D(2x2), Flatten, Dropout(0.5), Dense(10, softmax); the model summary; Adam with
Keras' defaults, categorical cross-entropy, accuracy; batch 128, 15 epochs,
validation_split 0.1 (the last 6,000 training images validate every epoch and are not trained
on), the progress output fit prints by default; no seed (every run draws its own); the final
test-set evaluation.

Where it differs:
- MNIST is read from the local IDX files by reference_idx.py instead of
  keras.datasets.mnist.load_data() (same arrays, no download).
- A callback tests the model after every epoch (predictions in batches of 1,000, as
  pytorch/examples' test pass takes them; the original evaluates once, at the end, at Keras'
  default batch) and prints one line `TEST {json}` with the epoch, the test accuracy and the
  wall-clock time (time.time()), from which the benchmark measures the time since the process
  started. Its cost is part of the measured time, as the validation's is.
- TRAIN_IMAGES > 0 keeps that many training images only (before validation_split takes its
  10%), for checking the script quickly (0: all 60,000); EPOCHS replaces the 15 for the same
  purpose.

Usage: python keras_io_convnet.py MNIST_DIR [EPOCHS [TRAIN_IMAGES]]
"""

import json
import sys
import time

import numpy as np

from reference_idx import read_idx

NUM_CLASSES = 10
INPUT_SHAPE = (28, 28, 1)


def main():
    folder = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    train_images = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    from tensorflow import keras
    from tensorflow.keras import layers

    x_train = read_idx(f"{folder}/train-images-idx3-ubyte.gz")
    y_train = read_idx(f"{folder}/train-labels-idx1-ubyte.gz")
    if train_images:
        x_train, y_train = x_train[:train_images], y_train[:train_images]
    x_test = read_idx(f"{folder}/t10k-images-idx3-ubyte.gz")
    y_test = test_labels = read_idx(f"{folder}/t10k-labels-idx1-ubyte.gz")
    x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
    print("x_train shape:", x_train.shape)
    y_train = keras.utils.to_categorical(y_train, NUM_CLASSES)
    y_test = keras.utils.to_categorical(y_test, NUM_CLASSES)

    model = keras.Sequential([
        keras.Input(shape=INPUT_SHAPE),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(NUM_CLASSES, activation="softmax"),
    ])
    model.summary()

    class TestEachEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            # counted exactly (evaluate's float32 mean can fall short of 0.99 at 9,900/10,000)
            probs = self.model.predict(x_test, batch_size=1000, verbose=0)
            accuracy = float(np.mean(probs.argmax(1) == test_labels))
            print("TEST " + json.dumps({"epoch": epoch + 1, "test_accuracy": accuracy,
                                        "time": time.time(), "keras": keras.__version__}),
                  flush=True)

    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_split=0.1,
              callbacks=[TestEachEpoch()])
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print("Test loss:", loss)
    print("Test accuracy:", accuracy)


if __name__ == "__main__":
    main()
