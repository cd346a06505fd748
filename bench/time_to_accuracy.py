"""Time to accuracy: how long whole commands take, from their start, until the test accuracy
first reaches 98 %, 99 % and 99.5 %, measured in one run.

    .venv/bin/python bench/time_to_accuracy.py [--data-dir DIR] [--recipes tutorial,fast,cnn]
        [--seeds 0,1,2] [--second-run] [--references pytorch,keras] [--stop-at 0.99]
        --plot CURVES.png [--json CURVES.json]

The programs, each a fresh process timed from just before it starts (interpreter start,
imports, reading MNIST and compilation are part of its time), one after the other:
- pytorch/examples' MNIST program (bench/pytorch_examples_mnist.py; torch CPU wheel) and
  keras-io's MNIST convnet (bench/keras_io_convnet.py; tensorflow-cpu), the two programs
  people copy, re-implemented faithfully (their docstrings say where they differ) in their
  own virtual environments. They test after every epoch and print the time of each test.
- `digitnet train --recipe R` for each recipe R in --recipes, as a person runs it, with an
  empty cache folder (a first run: it parses MNIST and compiles its epoch; a repeat run
  skips both, see bench/startup.py; `--second-run` times that too, each recipe and seed run
  again with the cache its first run filled). `digitnet train` validates on a hold-out,
  never on the test set, so the test accuracy after every epoch is found from the checkpoint
  it writes after each epoch (runs.py): this script hard-links each checkpoint as it appears
  (polling every 10 ms), and once every command has finished, rebuilds each epoch's weights from it
  and evaluates them on the test set. The time of an epoch is its checkpoint file's
  modification time: the epoch has trained and been validated, and its weights are out.
  (Running `--validate-on test` instead would not time the recipe: validating on the test
  set trains on all 60,000 images, not the recipe's 54,000, a different command.) The last
  epoch's test accuracy is checked against the one the command itself reports.

The test set only measures here: nothing is chosen by it. Times depend on what else the
machine runs (the load average is printed before and after). Prints the times, the
ratios against pytorch/examples, and draws the test accuracy against time of every program
into one PNG (--plot).

--epochs and --train-images (the references only: digitnet checks MNIST's checksums, so it
always trains on all of it) shorten every program, to check this script quickly; numbers
from such a run measure nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import BENCH_VENVS, ratio, reference_venv

ROOT = Path(__file__).resolve().parent.parent
TARGETS = (0.98, 0.99, 0.995)
POLL_S = 0.01  # how often the checkpoint of a digitnet run is looked for
REFERENCES = {  # name: (label, program, virtual environment, its requirements)
    "pytorch": ("pytorch/examples mnist", "pytorch_examples_mnist.py", "torch-venv",
                ("torch==2.13.0", "numpy")),
    "keras": ("keras-io mnist_convnet", "keras_io_convnet.py", "keras-venv",
              ("tensorflow-cpu",)),
}


@dataclass
class Curve:
    """One command's test accuracy after each epoch, at seconds since the command started."""

    label: str
    wall: float  # the whole command, seconds
    epochs: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)  # fractions
    note: str = ""

    def reaches(self, target: float) -> float | None:
        """Seconds until the test accuracy first reached `target` (None: never)."""
        return next((s for s, a in zip(self.seconds, self.accuracy) if a >= target), None)


def start(cmd: list[str], env: dict, folder: Path) -> tuple[subprocess.Popen, float]:
    """Start `cmd` with its output in `folder`; return it and its start (time.time())."""
    out, err = open(folder / "stdout", "wb"), open(folder / "stderr", "wb")
    started = time.time()
    with out, err:
        return subprocess.Popen(cmd, stdout=out, stderr=err, env=env), started


def finish(proc: subprocess.Popen, started: float, folder: Path,
           stopped: bool = False) -> tuple[float, str]:
    """Wait for `proc`; its wall seconds and stdout. Fails loudly on error (unless it was
    `stopped` here)."""
    code = proc.wait()
    wall = time.time() - started
    if code != 0 and not stopped:
        tail = (folder / "stderr").read_text(errors="replace")[-3000:]
        sys.exit(f"{' '.join(map(str, proc.args))} failed ({code}):\n{tail}")
    return wall, (folder / "stdout").read_text(errors="replace")


def run_reference(name: str, data_dir: Path, work: Path, epochs: int | None,
                  train_images: int, stop_at: float | None = None) -> Curve:
    label, program, venv, requirements = REFERENCES[name]
    python = reference_venv(BENCH_VENVS / venv, *requirements) / "bin" / "python"
    cmd = [str(python), str(ROOT / "bench" / program), str(data_dir)]
    if epochs or train_images:
        cmd += [str(epochs or (14 if name == "pytorch" else 15)), str(train_images)]
    folder = work / name
    folder.mkdir()
    proc, started = start(cmd, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, folder)
    stopped = stop_at is not None and _stop_once_reached(proc, folder / "stdout", stop_at)
    wall, stdout = finish(proc, started, folder, stopped)
    curve = Curve(label, wall)
    for point in _test_lines(stdout):
        curve.epochs.append(point["epoch"])
        curve.seconds.append(point["time"] - started)
        curve.accuracy.append(point["test_accuracy"])
        curve.note = next(f"{k} {point[k]}" for k in ("torch", "keras") if k in point)
    if not curve.epochs:
        sys.exit(f"{' '.join(cmd)} printed no test results")
    if stopped:
        curve.note += f"; stopped once it reached {stop_at:.1%}: 'wall' is until then"
    return curve


def _test_lines(stdout: str) -> list[dict]:
    """The test results a reference program printed, one per epoch."""
    points = []
    for line in stdout.splitlines():
        _, marker, rest = line.partition("TEST {")  # Keras' progress may precede it
        if marker:
            points.append(json.loads("{" + rest))
    return points


def _stop_once_reached(proc: subprocess.Popen, stdout: Path, target: float) -> bool:
    """Wait for `proc`, ending it once its printed test accuracy reaches `target`; whether
    it was ended so."""
    while proc.poll() is None:
        text = stdout.read_text(errors="replace")
        complete = text[:text.rfind("\n") + 1]  # a line being written is read next time
        if any(p["test_accuracy"] >= target for p in _test_lines(complete)):
            proc.terminate()
            proc.wait()
            return True
        time.sleep(0.5)
    return False


def run_digitnet(recipe: str, seed: int, data_dir: Path, work: Path, epochs: int | None,
                 label: str, cache: Path, devices: str | None = None) -> dict:
    """`digitnet train --recipe RECIPE --seed SEED [--devices DEVICES]` with each epoch's
    checkpoint kept (module docstring), its cache folder `cache` (empty: a first run): the
    wall time, and (epoch, checkpoint file, its seconds since the start) for each."""
    folder = work / label.replace(" ", "_")
    run, kept = folder / "run", folder / "checkpoints"
    kept.mkdir(parents=True)
    cmd = [sys.executable, "-m", "digitnet", "train", "--recipe", recipe, "--seed", str(seed),
           "--no-plots", "--out", str(run), "--data-dir", str(data_dir), "--no-download"]
    cmd += ["--epochs", str(epochs)] if epochs else []
    cmd += ["--devices", devices] if devices else []
    env = {**os.environ, "DIGITNET_CACHE_DIR": str(cache)}
    proc, started = start(cmd, env, folder)
    checkpoint, seen, captured = run / "checkpoint.safetensors", None, []
    while proc.poll() is None:
        try:
            now = checkpoint.stat()
            if (now.st_ino, now.st_mtime_ns) != seen:
                copy = kept / f"{len(captured) + 1}.safetensors"
                os.link(checkpoint, copy)  # the inode stays when the next epoch replaces it
                stat = copy.stat()  # what was linked (a later epoch's, were it replaced)
                seen = (stat.st_ino, stat.st_mtime_ns)
                captured.append((copy, stat.st_mtime_ns / 1e9 - started))
        except FileNotFoundError:
            pass  # not written yet, or replaced or removed between stat and link
        time.sleep(POLL_S)
    wall, _ = finish(proc, started, folder)
    return {"label": label, "run": run, "wall": wall, "captured": captured,
            "metrics_seconds": (run / "metrics.json").stat().st_mtime - started}


def digitnet_curve(result: dict, data) -> Curve:
    """The test accuracy of every epoch a digitnet run checkpointed (see run_digitnet)."""
    import numpy as np

    from digitnet.checkpoint import load_checkpoint
    from digitnet.predict import Predictor
    from digitnet.training import checkpoint_weights

    curve = Curve(result["label"], result["wall"])
    checkpoints = (load_checkpoint(path) for path, _ in result["captured"])
    for (checkpoint, weights), (_, seconds) in zip(checkpoint_weights(checkpoints, data),
                                                   result["captured"]):
        probs = Predictor(checkpoint.config, weights).probabilities(data.test_images)
        curve.epochs.append(checkpoint.epoch)
        curve.seconds.append(seconds)
        curve.accuracy.append(float(np.mean(probs.argmax(1) == data.test_labels)))
    metrics = json.loads((result["run"] / "metrics.json").read_text())
    trained = metrics["epochs_trained"]
    if curve.epochs != list(range(1, len(curve.epochs) + 1)) or len(curve.epochs) < trained - 1:
        sys.exit(f"{curve.label}: checkpoints of epochs {curve.epochs} seen of {trained}")
    if len(curve.epochs) == trained - 1:  # removed before it was seen: the model file has it
        curve.epochs.append(trained)
        curve.seconds.append(result["metrics_seconds"])
        curve.accuracy.append(metrics["test_accuracy"])
        curve.note = "last epoch timed at the command's own test evaluation"
    elif abs(curve.accuracy[-1] - metrics["test_accuracy"]) > 1e-9:
        sys.exit(f"{curve.label}: the last checkpoint tests at {curve.accuracy[-1]:.4%}, the "
                 f"command reported {metrics['test_accuracy']:.4%}")
    return curve


def report(curves: list[Curve]) -> None:
    heads = "".join(f"{f'{t:.1%}':>9}" for t in TARGETS)
    print("\nseconds from the command's start until the test accuracy first reached")
    print(f"{'program':34}{heads}{'last':>9}{'best':>9}{'epochs':>8}{'wall (s)':>10}")
    for c in curves:
        times = "".join(f"{t:>9.1f}" if (t := c.reaches(x)) is not None else f"{'-':>9}"
                        for x in TARGETS)
        print(f"{c.label:34}{times}{c.accuracy[-1]:>9.2%}{max(c.accuracy):>9.2%}"
              f"{len(c.epochs):>8}{c.wall:>10.1f}" + (f"   ({c.note})" if c.note else ""))
    base = next((c for c in curves if c.label == REFERENCES["pytorch"][0]), None)
    if base is None:
        return
    print("\npytorch/examples' time over each program's (higher is faster; '-': not reached)")
    print(f"{'program':34}{heads}")
    for c in curves:
        cells = ""
        for x in TARGETS:
            mine, theirs = c.reaches(x), base.reaches(x)
            both = mine is not None and theirs is not None
            cells += f"{ratio(theirs, mine) if both else '-':>9}"
        print(f"{c.label:34}{cells}")


def report_seeds(curves: list[Curve], recipes: list[str]) -> None:
    """Each recipe's mean over its seeds' first runs: final test accuracy, wall time, and
    the time to 99 % (where every seed reached it)."""
    print("\nmean over the seeds (first runs)")
    print(f"{'recipe':34}{'last':>9}{'wall (s)':>10}{'to 99.0%':>10}")
    for recipe in recipes:
        mine = [c for c in curves if c.label.startswith(f"digitnet --recipe {recipe} --seed ")
                and not c.label.endswith("(2nd run)")]
        to99 = [c.reaches(0.99) for c in mine]
        reached = f"{sum(to99) / len(to99):>10.1f}" if None not in to99 else f"{'-':>10}"
        print(f"{recipe:34}{sum(c.accuracy[-1] for c in mine) / len(mine):>9.2%}"
              f"{sum(c.wall for c in mine) / len(mine):>10.1f}{reached}")


def plot(curves: list[Curve], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for c in curves:
        ax.plot(c.seconds, [100 * a for a in c.accuracy], marker="o", markersize=3.5,
                label=f"{c.label} ({c.wall:.0f} s)")
    for target in TARGETS:
        ax.axhline(100 * target, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"{target:.1%}", (1, 100 * target), xycoords=("axes fraction", "data"),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8,
                    color="grey")
    lowest = min(min(c.accuracy) for c in curves) * 100
    ax.set_ylim(min(97.0, lowest - 0.2), 100)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds since the command started (whole command)")
    ax.set_ylabel("test accuracy after the epoch (%)")
    ax.set_title("MNIST test accuracy against time, one process each")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def names(text: str, known, what: str) -> list[str]:
    chosen = [n for n in text.split(",") if n]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        sys.exit(f"unknown {what} {', '.join(unknown)}: choose from {', '.join(known)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"),
                        help="MNIST folder (default: $DIGITNET_DATA_DIR)")
    parser.add_argument("--recipes", default="tutorial,fast,cnn",
                        help="digitnet recipes to run, comma separated")
    parser.add_argument("--seeds", default="0",
                        help="digitnet's seeds: each recipe runs once per seed, comma separated")
    parser.add_argument("--second-run", action="store_true",
                        help="run each digitnet command a second time, with the cache folder "
                             "its first run filled (parsed MNIST, compiled programs)")
    parser.add_argument("--references", default="pytorch,keras",
                        help="reference programs to run, comma separated (pytorch, keras; "
                             "'' for none)")
    parser.add_argument("--plot", type=Path, required=True,
                        help="where to draw the curves (a PNG file)")
    parser.add_argument("--json", type=Path, help="also write the curves here")
    parser.add_argument("--devices", metavar="N|all",
                        help="digitnet's runs split every batch over these devices "
                             "(`digitnet train --devices`; default: one)")
    parser.add_argument("--stop-at", type=float,
                        help="end each reference program once its test accuracy reaches this "
                             "fraction (its time to it is measured; the rest is not run)")
    parser.add_argument("--epochs", type=int,
                        help="for checking this script: train every program this many epochs")
    parser.add_argument("--train-images", type=int, default=0,
                        help="for checking this script: the references train on this many "
                             "images (0: all)")
    args = parser.parse_args()
    if args.data_dir is None:
        sys.exit("give --data-dir or set DIGITNET_DATA_DIR")
    from digitnet.config import RECIPES
    from digitnet.data import load_mnist

    recipes = names(args.recipes, RECIPES, "recipe")
    references = names(args.references, REFERENCES, "reference")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    data = load_mnist(args.data_dir, download=False, use_cache=False)  # fails early
    shortened = args.epochs is not None or args.train_images
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="digitnet-tta-") as tmp:
        work = Path(tmp)
        curves = [run_reference(name, args.data_dir, work, args.epochs, args.train_images,
                                args.stop_at) for name in references]
        runs = []
        for recipe in recipes:
            for seed in seeds:
                label = f"digitnet --recipe {recipe}" + (f" --seed {seed}" if len(seeds) > 1
                                                         else "")
                cache = work / f"cache-{recipe}-{seed}"  # empty: a first run
                for again in (False, True) if args.second_run else (False,):
                    runs.append(run_digitnet(recipe, seed, args.data_dir, work, args.epochs,
                                             label + (" (2nd run)" if again else ""), cache,
                                             args.devices))
        load_after = os.getloadavg()
        curves += [digitnet_curve(result, data) for result in runs]  # after all the timing
    print(f"\n{os.cpu_count()} cores; load average {load[0]:.1f} before, {load_after[0]:.1f} "
          f"after; the test set measured only, it chose nothing")
    if runs:
        print("digitnet: the test accuracy of each epoch's checkpoint, evaluated once every "
              "command had finished; timed at the checkpoint's writing")
    if shortened:
        print("SHORTENED RUN (--epochs/--train-images): these numbers check the script, "
              "they measure nothing")
    report(curves)
    if len(seeds) > 1:
        report_seeds(curves, recipes)
    plot(curves, args.plot)
    print(f"\ncurves drawn in {args.plot}")
    if args.json:
        args.json.write_text(json.dumps([vars(c) for c in curves], indent=1))


if __name__ == "__main__":
    main()
