"""The `cnn` recipe's steady epoch with its convolutions computed by oneDNN, against the
committed `patch_product`, in one run (docs/performance.md, "How the convolutions are
computed", records what it measured).

    .venv/bin/python bench/onednn_conv.py [--data-dir DIR] [--rounds 2] [--epochs 3]

Each round trains `digitnet train --recipe cnn --no-augment` three ways, one process each:
as committed; with `patch_product` and its gradients replaced by XLA FFI calls into oneDNN
(bench/onednn_conv/conv.cc) in float32; and the same with oneDNN allowed bfloat16 math in
the forward product and input gradient of a convolution with more than one input channel
(the kernel gradients and the first convolution stay float32). It prints how far each way's
outputs and gradients are from `patch_product`'s on random inputs, each way's steady epochs
and validation accuracy, and the ratio to the committed epoch.

oneDNN comes from PyPI (`onednn-devel-cpu-gomp`, oneDNN 3.2 built for the CPU with GNU
OpenMP, a 39 MB download) into its own virtual environment (`--venv`), once; the handlers
are compiled with g++ against JAX's FFI headers. Neither is a dependency of digitnet.
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

from speed import BENCH_VENVS, ratio, reference_venv

SOURCE = Path(__file__).resolve().parent / "onednn_conv" / "conv.cc"
ONEDNN = "onednn-devel-cpu-gomp==2023.2.0"
WAYS = {"committed": None, "oneDNN float32": 0, "oneDNN bfloat16": 1}


def build(prefix: Path, out: Path) -> Path:
    import jax

    library = out / "libdigitnet_onednn_conv.so"
    subprocess.run(["g++", "-O2", "-shared", "-fPIC", "-std=c++17", "-w",
                    f"-I{prefix / 'include'}", f"-I{jax.ffi.include_dir()}", str(SOURCE),
                    f"-L{prefix / 'lib'}", "-ldnnl", f"-Wl,-rpath,{prefix / 'lib'}",
                    "-o", str(library)], check=True)
    return library


def register_handlers(library: Path) -> None:
    """Load the compiled handlers and make them XLA custom calls named digitnet_*."""
    import ctypes

    import jax

    handlers = ctypes.cdll.LoadLibrary(str(library))
    for name in ("ConvForward", "ConvInputGradient", "ConvKernelGradient"):
        jax.ffi.register_ffi_target(f"digitnet_{name}", jax.ffi.pycapsule(getattr(handlers, name)),
                                    platform="cpu")


def use_onednn(bf16: int) -> None:
    """Replace digitnet's `patch_product` (looked up at each call) with oneDNN's; `bf16`
    lets a convolution with more than one input channel use bfloat16 math in its forward
    product and input gradient."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from digitnet.training import networks

    def call(name, shape, *args, bfloat16=False):
        return jax.ffi.ffi_call(f"digitnet_{name}", jax.ShapeDtypeStruct(shape, jnp.float32))(
            *args, bf16=np.int64(bfloat16))

    @jax.custom_vjp
    def patch_product(x, kernel):
        return forward(x, kernel)[0]

    def forward(x, kernel):
        y = call("ConvForward", x.shape[:3] + kernel.shape[3:], x, kernel,
                 bfloat16=bf16 and x.shape[3] > 1)
        return y, (x, kernel)

    def gradients(residuals, grad):
        x, kernel = residuals
        grad_kernel = call("ConvKernelGradient", kernel.shape, x, grad)
        if x.shape[3] == 1:  # the images: nothing asks for their gradient
            return jnp.zeros_like(x), grad_kernel
        return call("ConvInputGradient", x.shape, grad, kernel, bfloat16=bf16), grad_kernel

    patch_product.defvjp(forward, gradients)
    networks.patch_product = patch_product


def check_agreement(library: Path) -> None:
    """Print the largest relative difference from `patch_product` of each oneDNN way's
    output, input gradient and kernel gradient, for the recipe's two convolutions."""
    import jax
    import numpy as np

    from digitnet.training import networks

    committed = networks.patch_product
    register_handlers(library)
    rng = np.random.default_rng(0)
    for way, bf16 in WAYS.items():
        if bf16 is None:
            continue
        use_onednn(bf16)
        for side, n_in, n_out in ((28, 1, 24), (14, 24, 48)):
            x = rng.standard_normal((32, side, side, n_in), np.float32)
            kernel = rng.standard_normal((3, 3, n_in, n_out), np.float32) / 3
            grad = rng.standard_normal((32, side, side, n_out), np.float32)
            results = []
            for product in (committed, networks.patch_product):
                y, vjp = jax.vjp(jax.jit(product), x, kernel)
                results.append((y, *vjp(grad)))
            worst = [float(np.abs(ours - theirs).max() / np.abs(theirs).max())
                     for theirs, ours in zip(*results)]
            input_gradient = f"{worst[1]:.1e}" if n_in > 1 else "not computed (the images')"
            print(f"{way}, {n_in} -> {n_out} channels: relative difference output "
                  f"{worst[0]:.1e}, kernel gradient {worst[2]:.1e}, input gradient "
                  f"{input_gradient}")
        networks.patch_product = committed


def train_one(way: str, library: Path, out: Path, data_dir: Path, epochs: int) -> None:
    if WAYS[way] is not None:
        register_handlers(library)
        use_onednn(WAYS[way])
    from digitnet.cli import main

    sys.exit(main(["train", "--recipe", "cnn", "--no-augment", "--epochs", str(epochs),
                   "--no-plots", "--out", str(out), "--data-dir", str(data_dir),
                   "--no-download"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"),
                        help="MNIST folder (default: $DIGITNET_DATA_DIR)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--venv", type=Path,
                        default=BENCH_VENVS / "onednn-cpu-venv")
    parser.add_argument("--train", nargs=3, metavar=("WAY", "LIBRARY", "OUT"),
                        help=argparse.SUPPRESS)  # one training, in the child process
    parser.add_argument("--check", type=Path, metavar="LIBRARY",
                        help=argparse.SUPPRESS)  # check_agreement, in a child process
    args = parser.parse_args()
    if args.check:
        return check_agreement(args.check)
    if args.data_dir is None:
        sys.exit("give --data-dir or set DIGITNET_DATA_DIR")
    if args.train:
        way, library, out = args.train
        train_one(way, Path(library), Path(out), args.data_dir, args.epochs)
    prefix = reference_venv(args.venv, ONEDNN)  # oneDNN's include/ and lib/
    epochs = {way: [] for way in WAYS}
    accuracy = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        library = build(prefix, work)
        env = {**os.environ, "DIGITNET_CACHE_DIR": str(work / "cache")}
        subprocess.run([sys.executable, __file__, "--check", str(library)], env=env, check=True)
        for round_ in range(args.rounds):
            for i, way in enumerate(WAYS):
                out = work / f"run{round_}-{i}"
                subprocess.run([sys.executable, __file__, "--data-dir", str(args.data_dir),
                                "--epochs", str(args.epochs), "--train", way, str(library),
                                str(out)], env=env, check=True, capture_output=True)
                history = json.loads((out / "history.json").read_text())
                epochs[way] += [r["seconds"] for r in history[1:]]
                accuracy[way] = history[-1]["val_accuracy"]
    committed = statistics.median(epochs["committed"])
    print(f"\n`digitnet train --recipe cnn --no-augment --epochs {args.epochs}`, "
          f"{args.rounds} rounds, steady epochs (the first of each run left out)")
    print(f"{'convolutions':20}{'steady epoch (s)':>20}{'median':>9}{'ratio':>9}"
          f"{'validation':>12}")
    for way, seconds in epochs.items():
        median = statistics.median(seconds)
        print(f"{way:20}{min(seconds):>10.2f} - {max(seconds):<7.2f}{median:>9.2f}"
              f"{ratio(committed, median):>9}{accuracy[way]:>12.2%}")


if __name__ == "__main__":
    main()
