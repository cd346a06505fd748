"""pytorch/examples' MNIST network into digitnet through ONNX, checked against onnxruntime.

bench/torch_mnist_example.py trains that network briefly in the benchmark's own virtual
environment (the torch CPU wheel; torch is never a dependency of digitnet) and exports it
with torch.onnx.export. Then `digitnet import` reads the ONNX file, told that the pixels
were normalised outside the model (--input-mean 0.1307 --input-std 0.3081), and digitnet's
NumPy forward pass is compared with onnxruntime's run of the same file over MNIST's 10,000
test images. Prints the largest difference of the probabilities (the target is 1e-5) and
exits 1 past it.

Usage: DIGITNET_DATA_DIR=../shared/mnist python bench/pytorch_onnx.py [--steps 200]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from harness import BENCH_VENVS, reference_venv

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"))
    parser.add_argument("--steps", type=int, default=200, help="training steps of batch 64")
    parser.add_argument("--torch-venv", type=Path, default=BENCH_VENVS / "torch-onnx-venv")
    args = parser.parse_args()
    if args.data_dir is None:
        sys.exit("give --data-dir or set DIGITNET_DATA_DIR")
    import onnxruntime

    from digitnet.data import load_mnist
    from digitnet.predict import Predictor

    # torch.onnx.export writes the graph with the onnx package
    python = reference_venv(args.torch_venv, "torch==2.13.0", "numpy", "onnx") / "bin" / "python"
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file, run = Path(tmp) / "pytorch-examples.onnx", Path(tmp) / "run"
        out = subprocess.run([str(python), str(HERE / "torch_mnist_example.py"),
                              str(args.data_dir), str(args.steps), str(onnx_file)],
                             check=True, capture_output=True, text=True, cwd=HERE).stdout
        trained = json.loads(out.strip().splitlines()[-1])
        subprocess.run([sys.executable, "-m", "digitnet", "import", str(onnx_file),
                        "--input-mean", "0.1307", "--input-std", "0.3081", "--out", str(run),
                        "--data-dir", str(args.data_dir), "--no-download"], check=True)
        data = load_mnist(args.data_dir, download=False)
        predictor = Predictor.load(run)
        ours = predictor.probabilities(data.test_images)
        session = onnxruntime.InferenceSession(str(onnx_file),
                                               providers=["CPUExecutionProvider"])
        x = ((data.test_images.astype(np.float32) / 255 - 0.1307) / 0.3081)[:, None]
        theirs = np.exp(session.run(None, {"input": x})[0])  # the graph ends in log-softmax
    difference = float(np.abs(ours - theirs).max())
    same_digit = float((ours.argmax(1) == theirs.argmax(1)).mean())
    print(f"torch {trained['torch']}, {trained['steps']} steps of batch 64: test accuracy "
          f"{trained['test_accuracy']:.2%} in torch")
    print(f"digitnet's layers: {predictor.config.layers}")
    print(f"10,000 test images: largest probability difference digitnet - onnxruntime "
          f"{difference:.2e} (target {TOLERANCE:.0e}); same digit for {same_digit:.2%}")
    if difference > TOLERANCE:
        sys.exit(1)


if __name__ == "__main__":
    main()
