"""What the benchmarks share: running a command with its wall time and peak memory, the
steady epoch and ratios they print, the virtual environments their references run in, this
machine's float32 matmul rate, and a cold `digitnet predict`.

Imported by the scripts beside it (`from harness import measure, ...`), which Python finds
because a script's own folder is on its path.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run `cmd`; return (wall seconds, peak RSS in MiB, stdout). Fails loudly on error."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode()
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{err.read().decode()[-3000:]}")
    return wall, usage.ru_maxrss / 1024, stdout  # ru_maxrss is in KiB on Linux


def steady(epoch_seconds: list[float]) -> float:
    """Median epoch time after the first (which pays for tracing and compilation)."""
    return statistics.median(epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x"


# Where the benchmarks keep the virtual environments of their references.
BENCH_VENVS = Path.home() / ".cache" / "digitnet" / "bench"


def reference_venv(venv: Path, *requirements: str) -> Path:
    """`venv`, holding `requirements` for a benchmark's reference; made once (an install
    that was cut short is finished on the next call)."""
    installed = venv / "digitnet-bench-installed"
    if not installed.exists() or installed.read_text().split() != list(requirements):
        print(f"installing {' '.join(requirements)} into {venv} (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        *requirements], check=True)
        installed.write_text(" ".join(requirements))
    return venv


def matmul_rate() -> float:
    """Sustained float32 matmul rate of this machine through XLA, in FLOP/s (best of 5)."""
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    product = jax.jit(lambda m: m @ m)
    product(a).block_until_ready()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(5):
            result = product(a)
        result.block_until_ready()
        best = min(best, (time.perf_counter() - started) / 5)
    return 2 * n**3 / best


def cold_predict(run_dir: Path, cache: Path) -> tuple[float, float]:
    """Median wall time (s) and peak RSS (MiB) of `digitnet predict` on one PNG, 5 runs."""
    from PIL import Image, ImageDraw

    image = cache / "digit.png"
    canvas = Image.new("L", (240, 240), 255)
    ImageDraw.Draw(canvas).line([(80, 40), (170, 40), (110, 210)], fill=0, width=18)  # a 7
    canvas.save(image)
    env = {**os.environ, "DIGITNET_CACHE_DIR": str(cache)}
    runs = [measure([sys.executable, "-m", "digitnet", "predict", str(run_dir), str(image)], env)
            for _ in range(5)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


TRAINED_RUNS = BENCH_VENVS / "runs"  # run folders the benchmarks share
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "digitnet"
# The code a trained model may depend on: the package but for what only reads or shows a
# trained model (the command line, the web app, other formats, plots, numbers). The
# preparation of images is in: every generated pen digit and non-digit goes through it, and
# a change there redraws some of them.
TRAINING_CODE = sorted(path for path in PACKAGE.rglob("*.py")
                       if path.relative_to(PACKAGE).parts[0] not in
                       ("cli", "web", "interop", "plots.py", "numbers.py"))


def training_key(recipe: str, seed: int) -> str:
    """What a trained run depends on, hashed: the recipe's settings at `seed` and the source
    of TRAINING_CODE."""
    import hashlib
    import json

    from digitnet.config import recipe as named_recipe

    settings = named_recipe(recipe).replace(seed=seed).to_dict()
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for source in TRAINING_CODE:
        digest.update(source.relative_to(PACKAGE).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def trained_run(recipe: str, seed: int, data_dir: Path) -> Path:
    """A finished run folder of `recipe` at `seed`, trained once by `digitnet train` (of the
    code in this checkout) and kept under TRAINED_RUNS for the benchmarks that read models.
    The folder is named by training_key, so a change to the recipe or to the code training
    depends on trains a new one instead of reusing a stale model."""
    run = TRAINED_RUNS / f"{recipe}-seed{seed}-{training_key(recipe, seed)}"
    if not (run / "model.safetensors").exists():
        print(f"training --recipe {recipe} --seed {seed} into {run} (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "digitnet", "train", "--recipe", recipe,
                        "--seed", str(seed), "--out", str(run), "--overwrite",
                        "--data-dir", str(data_dir)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return run
