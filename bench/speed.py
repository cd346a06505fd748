"""digitnet against the original Keras/TensorFlow tutorial program, measured in one run.

    .venv/bin/python bench/speed.py [--repeats 2] [--epochs 10] [--data-dir DIR]

After one first digitnet run (empty caches, reported apart), alternates whole processes
(Keras, digitnet, Keras, digitnet, ...) with the same recipe
(784-128-64-10, Adam 1e-3, batch 32, 10% validation hold-out) on the same local MNIST files,
and prints steady seconds per epoch, whole-process wall time, test accuracy and peak RSS,
with ratios. Then: how much of this machine's float32 matmul rate the epoch uses, start-up
cost on a first and a repeat run, `--recipe fast`, inference throughput and a cold
`digitnet predict`. TensorFlow is installed by this script into its own virtual environment
in the cache folder (`--keras-venv`); it is never a dependency of digitnet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import BENCH_VENVS, cold_predict, matmul_rate, measure, ratio, reference_venv, steady

ROOT = Path(__file__).resolve().parent.parent
KERAS_PROGRAM = ROOT / "bench" / "keras_reference.py"


def run_keras(python: Path, data_dir: Path, epochs: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    wall, rss, stdout = measure([str(python), str(KERAS_PROGRAM), str(data_dir), str(epochs)], env)
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"steady": steady(result["epoch_seconds"]), "wall": wall, "rss": rss,
            "accuracy": result["test_accuracy"]}


def run_digitnet(data_dir: Path, cache: Path, extra: list[str]) -> dict:
    env = {**os.environ, "DIGITNET_CACHE_DIR": str(cache)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        wall, rss, _ = measure([sys.executable, "-m", "digitnet", "train", "--out", str(out),
                                "--data-dir", str(data_dir), "--no-download", *extra], env)
        history = json.loads((out / "history.json").read_text())
        metrics = json.loads((out / "metrics.json").read_text())
    return {"steady": steady([r["seconds"] for r in history]), "wall": wall, "rss": rss,
            "accuracy": metrics["test_accuracy"], "first_epoch": history[0]["seconds"]}


def epoch_flops(layer_sizes: tuple[int, ...], n_images: int, steps: int) -> float:
    """Floating-point operations of one training epoch (multiply-add = 2).

    Per image: forward 2*sum(in*out); backward 2*sum(in*out) for the weight gradients plus
    2*sum(in*out) over all layers but the first for the input gradients; bias, ReLU and
    softmax are counted per element. Adam costs ~12 operations per parameter per step."""
    pairs = list(zip(layer_sizes, layer_sizes[1:]))
    matmul = sum(a * b for a, b in pairs)
    elementwise = sum(b for _, b in pairs) * 4
    per_image = 2 * matmul + 2 * matmul + 2 * sum(a * b for a, b in pairs[1:]) + elementwise
    params = sum(a * b + b for a, b in pairs)
    return per_image * n_images + 12 * params * steps


def matmul_rate_one_core() -> float:
    """The same rate with XLA limited to one core, as `digitnet train` runs batch-32 training."""
    probe = (f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); "
             "from digitnet.training import limit_xla_to_one_core; limit_xla_to_one_core(); "
             "import harness; print(harness.matmul_rate())")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def inference_rate(run_dir: Path, data_dir: Path) -> float:
    """Test images classified per second by the NumPy inference path (best of 5)."""
    from digitnet.data import load_mnist
    from digitnet.predict import Predictor

    images = load_mnist(data_dir, download=False).test_images
    predictor = Predictor.load(run_dir)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        predictor.probabilities(images)
        best = min(best, time.perf_counter() - started)
    return len(images) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each program")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"),
                        required=os.environ.get("DIGITNET_DATA_DIR") is None)
    parser.add_argument("--keras-venv", type=Path,
                        default=BENCH_VENVS / "keras-venv")
    parser.add_argument("--skip-keras", action="store_true", help="measure digitnet only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from digitnet.config import TrainConfig, recipe
    from digitnet.data import load_mnist
    from digitnet.training import validation_size
    from digitnet.network import Dense, to_text

    load_mnist(args.data_dir, download=False)  # fail early, before minutes of benchmarking
    python = (None if args.skip_keras
              else reference_venv(args.keras_venv, "tensorflow-cpu") / "bin" / "python")
    work = Path(tempfile.mkdtemp(prefix="digitnet-bench-"))
    tutorial = ["--epochs", str(args.epochs), "--no-plots"]
    # The first digitnet run on a machine also parses MNIST into the cache and compiles: it is
    # reported on its own line, so the alternating runs compare a user's usual, later runs.
    cold = run_digitnet(args.data_dir, work / "cache", tutorial)
    print(f"digitnet first run: {cold}", file=sys.stderr)
    keras, digitnet = [], []
    for i in range(args.repeats):
        if python:
            keras.append(run_keras(python, args.data_dir, args.epochs))
            print(f"keras    run {i + 1}: {keras[-1]}", file=sys.stderr)
        # Keras draws a new initialisation and order every run; digitnet's run i uses seed i,
        # so that both accuracy medians are over runs that differ, not over one seed repeated.
        digitnet.append(run_digitnet(args.data_dir, work / "cache", [*tutorial, "--seed", str(i)]))
        print(f"digitnet run {i + 1}: {digitnet[-1]}", file=sys.stderr)

    # Start-up: a first run (empty caches: MNIST parsed, XLA compiled) and a repeat run.
    first = run_digitnet(args.data_dir, work / "startup-cache", ["--epochs", "1", "--no-plots"])
    repeat = run_digitnet(args.data_dir, work / "startup-cache", ["--epochs", "1", "--no-plots"])
    fast_cold = run_digitnet(args.data_dir, work / "fast-cache", ["--recipe", "fast", "--no-plots"])
    fast = run_digitnet(args.data_dir, work / "fast-cache", ["--recipe", "fast", "--no-plots"])

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        env = {**os.environ, "DIGITNET_CACHE_DIR": str(work / "cache")}
        subprocess.run([sys.executable, "-m", "digitnet", "train", "--epochs", "1", "--no-plots",
                        "--out", str(run_dir), "--data-dir", str(args.data_dir)], env=env,
                       check=True, capture_output=True)
        images_per_s = inference_rate(run_dir, args.data_dir)
        predict_wall, predict_rss = cold_predict(run_dir, work)

    cfg = TrainConfig(epochs=args.epochs)
    n_train = 60000 - validation_size(cfg, 60000)
    sizes = (784, *(layer.width for layer in cfg.network if isinstance(layer, Dense)))
    flops = epoch_flops(sizes, n_train, -(-n_train // cfg.batch_size))
    peak, peak_one_core = matmul_rate(), matmul_rate_one_core()
    shutil.rmtree(work, ignore_errors=True)

    def med(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {args.repeats} alternating runs each (digitnet "
          f"with seeds 0-{args.repeats - 1}), medians")
    print(f"recipe: {to_text(cfg.network)}, Adam 1e-3, batch 32, "
          f"{args.epochs} epochs, 10% validation hold-out\n")
    rows = [("steady epoch (s)", "steady", True), ("whole run, wall (s)", "wall", True),
            ("peak RSS (MiB)", "rss", True), ("test accuracy (%)", "accuracy", False)]
    print(f"{'':24}{'Keras/TF':>10}{'digitnet':>10}{'ratio':>9}")
    for label, key, is_cost in rows:
        d = med(digitnet, key) * (100 if key == "accuracy" else 1)
        if keras:
            k = med(keras, key) * (100 if key == "accuracy" else 1)
            shown = ratio(k, d) if is_cost else f"{d - k:+.2f} pt"
            print(f"{label:24}{k:>10.2f}{d:>10.2f}{shown:>9}")
        else:
            print(f"{label:24}{'-':>10}{d:>10.2f}")
    if keras:
        print(f"{'whole run, first (s)':24}{med(keras, 'wall'):>10.2f}{cold['wall']:>10.2f}"
              f"{ratio(med(keras, 'wall'), cold['wall']):>9}   (digitnet's first on this machine)")
    achieved = flops / med(digitnet, "steady")
    print(f"\nepoch arithmetic: {flops / 1e9:.1f} GFLOP; matmul peak measured {peak / 1e9:.0f} "
          f"GFLOP/s ({peak_one_core / 1e9:.0f} on one core); digitnet's steady epoch runs at "
          f"{achieved / 1e9:.0f} GFLOP/s = {achieved / peak:.0%} of the machine's peak "
          f"({achieved / peak_one_core:.0%} of one core's: batch 32 trains on one core)")
    print(f"start-up (1-epoch run): first run {first['wall']:.2f} s wall (first epoch "
          f"{first['first_epoch']:.2f} s), repeat run {repeat['wall']:.2f} s (first epoch "
          f"{repeat['first_epoch']:.2f} s)")
    fast_cfg = recipe("fast")
    line = (f"--recipe fast ({fast_cfg.epochs} epochs, batch {fast_cfg.batch_size}): "
            f"{fast['accuracy']:.2%} test accuracy, {fast['wall']:.2f} s wall "
            f"(first run {fast_cold['wall']:.2f} s)")
    if keras:
        line += f"; {ratio(med(keras, 'wall'), fast['wall'])} under Keras' whole run"
    print(line)
    print(f"inference: {images_per_s:,.0f} test images/s (NumPy); cold `digitnet predict` on "
          f"one image: {predict_wall:.2f} s wall, {predict_rss:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({
            "keras": keras, "digitnet": digitnet, "digitnet_first": cold, "startup_first": first,
            "startup_repeat": repeat, "fast": fast, "fast_first": fast_cold,
            "epoch_flops": flops, "matmul_peak": peak, "matmul_peak_one_core": peak_one_core,
            "inference_images_per_s": images_per_s, "cold_predict_s": predict_wall}, indent=1))


if __name__ == "__main__":
    main()
