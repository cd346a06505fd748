"""The network of pytorch/examples' MNIST program, trained briefly and exported to ONNX, for
bench/pytorch_onnx.py. It runs in the benchmark's own virtual environment (torch CPU wheel),
without digitnet.

The network as that program has it: two 'valid' 3x3 convolutions of 32 and 64 channels with
ReLU, 2x2 max-pooling, dropout 0.25, flatten (channel, row, column), a ReLU dense layer of
128, dropout 0.5, 10 outputs and log-softmax; inputs are 0..1 pixels normalised with mean
0.1307 and std 0.3081 before the network; Adadelta at rate 1.0, batch 64. Trained here for
STEPS steps only: the check is that digitnet computes what the exported graph computes, not
how good the model is. Writes the ONNX file and prints one JSON line.

Usage: python torch_mnist_example.py MNIST_DIR STEPS OUT.onnx
"""

import json
import sys
import time

import numpy as np

from reference_idx import read_idx

MEAN, STD = 0.1307, 0.3081


def network(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(1), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10), nn.LogSoftmax(dim=1))


def main():
    import torch

    folder, steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(1)
    torch.set_num_threads(2)
    images = read_idx(f"{folder}/train-images-idx3-ubyte.gz")
    labels = read_idx(f"{folder}/train-labels-idx1-ubyte.gz")
    x = (torch.from_numpy(images.astype(np.float32) / 255) - MEAN) / STD
    x, y = x.unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
    model = network(torch)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    started = time.perf_counter()
    model.train()
    order = torch.randperm(len(x))
    for step in range(steps):
        batch = order[step * 64:(step + 1) * 64]
        optimizer.zero_grad()
        loss = torch.nn.functional.nll_loss(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
    model.eval()
    test = (torch.from_numpy(read_idx(f"{folder}/t10k-images-idx3-ubyte.gz").astype(
        np.float32) / 255) - MEAN) / STD
    test_labels = read_idx(f"{folder}/t10k-labels-idx1-ubyte.gz")
    with torch.no_grad():
        accuracy = float((model(test.unsqueeze(1)).argmax(1).numpy() == test_labels).mean())
    example = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(model, (example,), out, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                      dynamo=False)
    print(json.dumps({"torch": torch.__version__, "steps": steps, "loss": float(loss),
                      "test_accuracy": accuracy, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
