"""The recipes on an NVIDIA GPU: epoch time and time to 98/99/99.5 % test accuracy.

    python bench/gpu.py [RECIPE ...] [--data-dir DIR] [--devices N|all] [--plot gpu.png]

For anyone with a GPU (this project's own machine has none). It installs this checkout with
its `cuda` extra (`pip install -e '.[cuda]'`: JAX's CUDA 13 wheels, which bring their own
CUDA libraries; only the NVIDIA driver must be there) into a virtual environment of its own
under ~/.cache/digitnet/bench, checks that JAX sees a GPU there, and runs
bench/time_to_accuracy.py with that environment's Python for the recipes (default: cnn and
quick), without the reference programs. Each recipe is a fresh `digitnet train` process
timed from its start, first run (empty cache). Prints time_to_accuracy's table (the
seconds until the test accuracy first reached each target), then each recipe's steady epoch:
the median time between two epochs' checkpoints (the first epoch, which compiles, is not
one of them).

With several GPUs, `--devices all` splits every batch over all of them (the batch size stays
the recipe's). MNIST comes from --data-dir or $DIGITNET_DATA_DIR, else it is downloaded once.
Record the figures in docs/performance.md beside this machine's (same recipes, CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import BENCH_VENVS, reference_venv

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="*", default=["cnn", "quick"],
                        help="recipes to time (default: cnn quick)")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"),
                        help="MNIST folder (default: $DIGITNET_DATA_DIR, else downloaded)")
    parser.add_argument("--devices", default=None, metavar="N|all",
                        help="passed to `digitnet train --devices` (default: one GPU)")
    parser.add_argument("--plot", type=Path, default=Path("gpu-time-to-accuracy.png"))
    args = parser.parse_args()

    venv = reference_venv(BENCH_VENVS / "cuda-venv", "-e", f"{ROOT}[cuda]")
    python = str(venv / "bin" / "python")
    found = subprocess.run([python, "-c", "import jax; print(jax.default_backend(), "
                                          "[d.device_kind for d in jax.devices()])"],
                           capture_output=True, text=True)
    print(f"JAX in {venv}: {found.stdout.strip() or found.stderr.strip()[-500:]}")
    if not found.stdout.startswith("gpu"):
        sys.exit("JAX sees no GPU in that environment: check `nvidia-smi` and the driver "
                 "(JAX's CUDA 13 wheels need a driver for CUDA 13)")
    data_dir = args.data_dir or _download(python)
    with tempfile.TemporaryDirectory(prefix="digitnet-gpu-") as tmp:
        curves = Path(tmp) / "curves.json"
        command = [python, str(ROOT / "bench" / "time_to_accuracy.py"), "--data-dir",
                   str(data_dir), "--recipes", ",".join(args.recipes), "--references", "",
                   "--plot", str(args.plot), "--json", str(curves)]
        command += ["--devices", args.devices] if args.devices else []
        subprocess.run(command, check=True)
        print("\nsteady epoch (median after the first), GPU")
        for curve in json.loads(curves.read_text()):
            epochs = [b - a for a, b in zip(curve["seconds"], curve["seconds"][1:])]
            steady = f"{statistics.median(epochs):.2f} s" if epochs else "-"
            print(f"{curve['label']:34}{steady:>10}")


def _download(python: str) -> Path:
    """MNIST downloaded (once, into the user cache) by the environment's digitnet."""
    found = subprocess.run([python, "-c", "from digitnet.data import load_mnist, "
                                          "resolve_data_dir; load_mnist(); "
                                          "print(resolve_data_dir(None)[0])"],
                           capture_output=True, text=True, check=True)
    return Path(found.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
