"""The IDX reader of the reference programs (keras_reference.py, torch_cnn_reference.py).

They run in their own virtual environments, without digitnet, so they read MNIST's gzipped
IDX files with NumPy alone."""

import gzip

import numpy as np


def read_idx(path):
    with gzip.open(path) as fh:
        content = fh.read()
    ndim = content[3]
    shape = [int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(content, np.uint8, offset=4 + 4 * ndim).reshape(shape)
