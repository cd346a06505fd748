"""Start-up costs, measured in one run: a cold `digitnet predict`, and where the time of a
short `digitnet train` goes.

    .venv/bin/python bench/startup.py [--data-dir DIR] [--repeats 9]

1. Cold predict: `digitnet predict MODEL one.png` as a fresh process, against
   `python -c "import numpy"`, alternated, medians of --repeats runs each; printed as a
   ratio (target: at most 2.5x). The model is the tutorial network (an MLP) and, apart,
   the `cnn` recipe's shape (random weights: the time does not depend on their values).
2. Training start-up: `digitnet train --recipe fast --no-plots`, the whole command, its wall
   time split into interpreter start, imports, reading MNIST, the first epoch's set-up and
   compilation (or loading from the compile cache), the epochs, and evaluating and saving.
   Run once with empty caches and then with warm ones (the usual case), in fresh processes;
   then the plain command itself (`python -m digitnet train ...`, warm) for its wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import measure

# Run in a fresh process: `digitnet train ARGS` as the command runs it (digitnet.cli's
# entry_point), with the time of each phase noted by wrapping the functions the CLI calls
# (the wrappers cost microseconds).
PHASES = r"""
import gc, json, sys, time
started = time.perf_counter()
import digitnet.cli, digitnet.cli.common, digitnet.runs
cli_imported = time.perf_counter()
import digitnet.training
training_imported = time.perf_counter()
marks = {}

def timed(owner, name, key):
    inner = getattr(owner, name)
    def wrapper(*args, **kwargs):
        marks[key + " start"] = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            marks[key + " end"] = time.perf_counter()
    setattr(owner, name, wrapper)

timed(digitnet.cli.common, "load_data", "data")
timed(digitnet.training, "train", "train")
timed(digitnet.runs, "_finish_run", "finish")
code = digitnet.cli.main(sys.argv[1:])
ended = time.perf_counter()
print(json.dumps({"code": code, "started": started, "cli_imported": cli_imported,
                  "training_imported": training_imported, "ended": ended, **marks}))
gc.freeze()  # as entry_point does
sys.exit(code)
"""


def cold_predict_ratio(model: Path, image: Path, env: dict, repeats: int) -> dict:
    numpy_times, predict_times = [], []
    for _ in range(repeats):
        numpy_times.append(measure([sys.executable, "-c", "import numpy"], env)[0])
        predict_times.append(measure([sys.executable, "-m", "digitnet", "predict", str(model),
                                      str(image)], env)[0])
    numpy_s, predict_s = statistics.median(numpy_times), statistics.median(predict_times)
    return {"numpy": numpy_s, "predict": predict_s, "ratio": predict_s / numpy_s}


def train_phases(out: Path, data_dir: Path, env: dict) -> dict:
    wall_started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PHASES, "train", "--recipe", "fast",
                           "--no-plots", "--no-download", "--data-dir", str(data_dir),
                           "--out", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - wall_started
    if done.returncode != 0:
        sys.exit(f"digitnet train failed:\n{done.stderr}")
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    history = json.loads((out / "history.json").read_text())
    epochs = [row["seconds"] for row in history]
    steady = statistics.median(epochs[1:])
    first_epoch_extra = epochs[0] - steady  # tracing and compilation, or the cache load
    inside_train = marks["train end"] - marks["train start"]
    phases = {
        "interpreter start and exit": wall - (marks["ended"] - marks["started"]),
        "import digitnet, CLI": marks["cli_imported"] - marks["started"],
        "import JAX, Flax, Optax": marks["training_imported"] - marks["cli_imported"],
        "read MNIST": marks["data end"] - marks["data start"],
        "set-up before the first epoch": inside_train - sum(epochs),
        "compile (first epoch's extra)": first_epoch_extra,
        f"training: {len(epochs)} epochs at {steady:.3f} s": steady * len(epochs),
        "evaluate, save the model": marks["finish end"] - marks["finish start"],
    }
    phases["everything else"] = wall - sum(phases.values())
    return {"wall": wall, "phases": phases, "training": steady * len(epochs)}


def random_model(cfg, path: Path) -> Path:
    from digitnet.modelfile import save_model, weight_shapes

    rng = np.random.default_rng(0)
    save_model(path, {n: rng.normal(0, 0.05, s).astype(np.float32)
                      for n, s in weight_shapes(cfg).items()}, cfg)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"),
                        required=os.environ.get("DIGITNET_DATA_DIR") is None)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    from PIL import Image, ImageDraw

    from digitnet.config import recipe

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "DIGITNET_CACHE_DIR": str(work / "cache")}
        image = work / "seven.png"
        canvas = Image.new("L", (240, 240), 255)
        ImageDraw.Draw(canvas).line([(80, 40), (170, 40), (110, 210)], fill=0, width=18)
        canvas.save(image)
        print("1. cold `digitnet predict` of one PNG, against `python -c 'import numpy'` "
              f"(medians of {args.repeats}, alternated)")
        for name in ("tutorial", "cnn"):
            model = random_model(recipe(name), work / f"{name}.safetensors")
            result = cold_predict_ratio(model, image, env, args.repeats)
            print(f"   {name:8} model: predict {result['predict']:.3f} s, import numpy "
                  f"{result['numpy']:.3f} s: {result['ratio']:.2f}x (target <= 2.5x)")

        print("\n2. `digitnet train --recipe fast --no-plots`, where the time goes")
        for caches in ("empty caches", "warm caches"):
            result = train_phases(work / f"run-{caches.split()[0]}", args.data_dir, env)
            print(f"   {caches}: {result['wall']:.2f} s in all, "
                  f"{result['wall'] - result['training']:.2f} s of it not training")
            for phase, seconds in result["phases"].items():
                print(f"     {phase:36} {seconds:6.3f} s")
        plain = measure([sys.executable, "-m", "digitnet", "train", "--recipe", "fast",
                         "--no-plots", "--no-download", "--data-dir", str(args.data_dir),
                         "--out", str(work / "run-plain")], env)
        print(f"   the plain command, warm caches: {plain[0]:.2f} s")


if __name__ == "__main__":
    main()
