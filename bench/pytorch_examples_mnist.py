"""pytorch/examples' MNIST program (mnist/main.py) re-implemented for
bench/time_to_accuracy.py, run on the CPU in the benchmark's own virtual environment (torch CPU
wheel), without torchvision or digitnet.

Kept as that program has it when no accelerator is present: its network (torch_mnist_example.py
holds the same layers in the same order, so the seed draws the same weights); seed 1;
the pixels turned into 0..1 floats and normalised with mean 0.1307 and std 0.3081 one image at
a time, inside the Dataset, batched by a DataLoader of 64 in the files' order (the original
shuffles only when it finds an accelerator) and of 1,000 for the test set; NLL loss on
log-softmax; Adadelta at rate 1.0; StepLR (every epoch, gamma 0.7); 14 epochs; a test pass
after every epoch, and its loss line printed every 10 batches. Torch's thread count is left
at its default, as there.

Where it differs:
- MNIST is read from the local IDX files by reference_idx.py (no torchvision, no download),
  and an image becomes a tensor straight from its uint8 array: torchvision's MNIST first makes
  a PIL image of each one, a per-image cost this version does not pay.
- After each test pass it prints one line `TEST {json}` with the epoch, the test accuracy and
  the wall-clock time (time.time()), from which the benchmark measures the time since the
  process started.
- TRAIN_IMAGES > 0 trains on that many images only, for checking the script quickly (0: all
  60,000); EPOCHS replaces the 14 for the same purpose.

Usage: python pytorch_examples_mnist.py MNIST_DIR [EPOCHS [TRAIN_IMAGES]]
"""

import json
import sys
import time

from reference_idx import read_idx
from torch_mnist_example import MEAN, STD, network

LOG_INTERVAL = 10  # batches between the printed loss lines


def main():
    folder = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 14
    train_images = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    import torch
    import torch.nn.functional as F

    class IdxMnist(torch.utils.data.Dataset):
        """MNIST from IDX arrays; each image transformed as it is fetched, as torchvision's
        ToTensor and Normalize do: (1, 28, 28) float32, normalised; the label an int."""

        def __init__(self, images, labels):
            self.images, self.labels = images, labels

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, index):
            pixels = torch.from_numpy(self.images[index].copy()).unsqueeze(0)
            return (pixels.float().div(255) - MEAN) / STD, int(self.labels[index])

    torch.manual_seed(1)
    train_x = read_idx(f"{folder}/train-images-idx3-ubyte.gz")
    train_y = read_idx(f"{folder}/train-labels-idx1-ubyte.gz")
    if train_images:
        train_x, train_y = train_x[:train_images], train_y[:train_images]
    train_set = IdxMnist(train_x, train_y)
    test_set = IdxMnist(read_idx(f"{folder}/t10k-images-idx3-ubyte.gz"),
                        read_idx(f"{folder}/t10k-labels-idx1-ubyte.gz"))
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=64)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000)

    model = network(torch)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(1, epochs + 1):
        model.train()
        for batch, (images, labels) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = F.nll_loss(model(images), labels)
            loss.backward()
            optimizer.step()
            if batch % LOG_INTERVAL == 0:
                print(f"Train Epoch: {epoch} [{batch * len(images)}/{len(train_set)}]\t"
                      f"Loss: {loss.item():.6f}")

        model.eval()
        total_loss, correct = 0.0, 0
        with torch.no_grad():
            for images, labels in test_loader:
                log_probs = model(images)
                total_loss += F.nll_loss(log_probs, labels, reduction="sum").item()
                correct += int((log_probs.argmax(1) == labels).sum())
        accuracy = correct / len(test_set)
        print(f"\nTest set: Average loss: {total_loss / len(test_set):.4f}, Accuracy: "
              f"{correct}/{len(test_set)} ({accuracy:.0%})\n")
        print("TEST " + json.dumps({"epoch": epoch, "test_accuracy": accuracy,
                                    "time": time.time(), "torch": torch.__version__}),
              flush=True)
        scheduler.step()


if __name__ == "__main__":
    main()
