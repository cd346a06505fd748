"""digitnet's CNN written in eager PyTorch, for bench/cnn_speed.py to compare with.

Same network as `digitnet train --model cnn` (3x3 'same' convolutions with ReLU, each block
ending in 2x2 max-pooling, ReLU dense layers, 10 logits; Glorot-uniform kernels, zero biases),
same batch size, Adam with a one-cycle cosine schedule and the same decoupled decay of the
kernels (AdamW, biases not decayed), on the same local IDX files: the last 6,000 training
images are not used, as digitnet's 10% hold-out leaves them out. Two threads, denormals
flushed to zero, fused AdamW. No augmentation (PyTorch has none built in without
torchvision). Prints one JSON line: seconds and test accuracy after every epoch.

Usage: python torch_cnn_reference.py MNIST_DIR EPOCHS BATCH LR CONV DENSE CONVS_PER_BLOCK
WEIGHT_DECAY (CONV and DENSE comma separated, e.g. 32,64 and 128)
"""

import json
import sys
import time

import numpy as np

from reference_idx import read_idx


def network(torch, conv, dense, per_block):
    nn = torch.nn
    layers, channels, side = [], 1, 28
    for out in conv:
        for _ in range(per_block):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
            channels = out
        layers.append(nn.MaxPool2d(2))
        side //= 2
    layers.append(nn.Flatten())
    widths = [side * side * channels, *dense, 10]
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def main():
    folder, epochs, batch, lr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    conv = [int(c) for c in sys.argv[5].split(",")]
    dense = [int(d) for d in sys.argv[6].split(",") if d]
    per_block, weight_decay = int(sys.argv[7]), float(sys.argv[8])
    import torch

    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32) / 255.0)  # noqa
    train_x = to_tensor(read_idx(f"{folder}/train-images-idx3-ubyte.gz")[:54000, None])
    train_y = torch.from_numpy(read_idx(f"{folder}/train-labels-idx1-ubyte.gz")[:54000].astype(np.int64))
    test_x = to_tensor(read_idx(f"{folder}/t10k-images-idx3-ubyte.gz")[:, None])
    test_y = torch.from_numpy(read_idx(f"{folder}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    model = network(torch, conv, dense, per_block)
    kernels = [p for p in model.parameters() if p.ndim > 1]
    biases = [p for p in model.parameters() if p.ndim == 1]
    optimizer = torch.optim.AdamW([{"params": kernels, "weight_decay": weight_decay},
                                   {"params": biases, "weight_decay": 0.0}], lr=lr, fused=True)
    steps = -(-len(train_x) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps * epochs,
                                                   anneal_strategy="cos")
    loss_fn = torch.nn.CrossEntropyLoss()
    seconds, accuracy = [], []
    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_x))
        for i in range(steps):
            index = order[i * batch:(i + 1) * batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(train_x[index]), train_y[index]).backward()
            optimizer.step()
            schedule.step()
        seconds.append(time.perf_counter() - started)
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(test_x[i:i + 1000]).argmax(1)
                                   for i in range(0, len(test_x), 1000)])
        accuracy.append(float((predicted == test_y).float().mean()))
    print(json.dumps({"epoch_seconds": seconds, "test_accuracy": accuracy,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
