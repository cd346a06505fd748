"""digitnet's CNN recipe against the same network in eager PyTorch, measured in one run.

    .venv/bin/python bench/cnn_speed.py [--data-dir DIR] [--torch-epochs 3]

1. Steady epoch: `digitnet train --recipe cnn` without augmentation against PyTorch eager
   (bench/torch_cnn_reference.py) with the same network, batch size and optimizer.
2. To the target: the whole `digitnet train --recipe cnn` command (augmentation on, seed 0),
   its test accuracy and wall time, against the time PyTorch needs for the same number of
   epochs at its steady rate (PyTorch runs no augmentation, so it is given the cheaper epoch).
3. Share of the arithmetic limit: the epoch's floating-point operations over this machine's
   float32 matmul rate through XLA.
4. Cold `digitnet predict` of one PNG with the CNN model against the tutorial MLP's.

PyTorch is installed by this script into its own virtual environment (`--torch-venv`, pinned
to torch==2.13.0, the CPU build); it is never a dependency of digitnet.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import BENCH_VENVS, cold_predict, matmul_rate, measure, ratio, reference_venv, steady

ROOT = Path(__file__).resolve().parent.parent
TORCH_PROGRAM = ROOT / "bench" / "torch_cnn_reference.py"


def digitnet_train(out: Path, data_dir: Path, cache: Path, *extra: str) -> dict:
    env = {**os.environ, "DIGITNET_CACHE_DIR": str(cache)}
    wall, rss, _ = measure([sys.executable, "-m", "digitnet", "train", "--recipe", "cnn",
                            "--no-plots", "--out", str(out), "--data-dir", str(data_dir),
                            "--no-download", *extra], env)
    history = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall": wall, "rss": rss, "epoch_seconds": [r["seconds"] for r in history],
            "accuracy": metrics["test_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"),
                        help="MNIST folder (default: $DIGITNET_DATA_DIR)")
    parser.add_argument("--torch-epochs", type=int, default=3,
                        help="epochs of each steady-epoch measurement")
    parser.add_argument("--torch-venv", type=Path,
                        default=BENCH_VENVS / "torch-venv")
    args = parser.parse_args()
    if args.data_dir is None:
        sys.exit("give --data-dir or set DIGITNET_DATA_DIR")
    from digitnet.config import recipe
    from digitnet.network import flops, to_text

    cfg = recipe("cnn")
    python = reference_venv(args.torch_venv, "torch==2.13.0", "numpy") / "bin" / "python"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = work / "cache"
        torch_wall, _, out = measure([str(python), str(TORCH_PROGRAM), str(args.data_dir),
                                      str(args.torch_epochs), str(cfg.batch_size), str(cfg.lr),
                                      ",".join(map(str, cfg.conv)),
                                      ",".join(map(str, cfg.dense)),
                                      str(cfg.convs_per_block), str(cfg.weight_decay)])
        torch_run = json.loads(out.strip().splitlines()[-1])
        plain = digitnet_train(work / "plain", args.data_dir, cache, "--no-augment",
                               "--epochs", str(args.torch_epochs))
        full = digitnet_train(work / "full", args.data_dir, cache)
        mlp_run = work / "mlp"
        subprocess.run([sys.executable, "-m", "digitnet", "train", "--epochs", "1",
                        "--no-plots", "--out", str(mlp_run), "--data-dir", str(args.data_dir)],
                       env={**os.environ, "DIGITNET_CACHE_DIR": str(cache)}, check=True,
                       capture_output=True)
        cnn_predict, _ = cold_predict(work / "full", work)
        mlp_predict, _ = cold_predict(mlp_run, work)
    peak = matmul_rate()

    torch_epoch = steady(torch_run["epoch_seconds"])
    plain_epoch = steady(plain["epoch_seconds"])
    full_epoch = steady(full["epoch_seconds"])
    n_train = 54000
    epoch_flops = 3 * flops(cfg.network) * n_train  # forward, and backward at twice that
    torch_to_target = torch_epoch * cfg.epochs
    print(f"\nnetwork: {to_text(cfg.network)}, batch {cfg.batch_size}, "
          f"{cfg.epochs} epochs; torch {torch_run['torch']}, 2 threads")
    print(f"{'':36}{'PyTorch':>10}{'digitnet':>10}{'ratio':>9}")
    print(f"{'steady epoch, no augmentation (s)':36}{torch_epoch:>10.2f}{plain_epoch:>10.2f}"
          f"{ratio(torch_epoch, plain_epoch):>9}")
    print(f"{'steady epoch, digitnet augmenting (s)':36}{torch_epoch:>10.2f}{full_epoch:>10.2f}"
          f"{ratio(torch_epoch, full_epoch):>9}")
    print(f"{'recipe training time (s)':36}{torch_to_target:>10.1f}"
          f"{sum(full['epoch_seconds']):>10.1f}"
          f"{ratio(torch_to_target, sum(full['epoch_seconds'])):>9}")
    print(f"\nwhole `digitnet train --recipe cnn`: {full['wall']:.0f} s, test accuracy "
          f"{full['accuracy']:.2%}, peak RSS {full['rss']:.0f} MiB")
    print(f"PyTorch test accuracy after {args.torch_epochs} epochs (no augmentation, "
          f"{args.torch_epochs}-epoch schedule): {torch_run['test_accuracy'][-1]:.2%}")
    print(f"epoch arithmetic: {epoch_flops / 1e12:.2f} TFLOP; at the matmul rate "
          f"({peak / 1e9:.0f} GFLOP/s) {epoch_flops / peak:.2f} s; the epoch without "
          f"augmentation uses {epoch_flops / peak / plain_epoch:.0%} of it")
    print(f"cold `digitnet predict` of one PNG: CNN {cnn_predict:.2f} s, MLP {mlp_predict:.2f} s "
          f"({ratio(cnn_predict, mlp_predict)} the MLP's)")


if __name__ == "__main__":
    main()
