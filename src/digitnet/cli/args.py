"""The `digitnet` command line's arguments: one subcommand per job, TrainConfig's fields as flags.

Defaults for the training flags come from the chosen --recipe, so each lives in config.py only.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .. import __version__
from ..config import RECIPES, TrainConfig
from ..interop import EXPORT_FORMATS


def _widths(text: str) -> tuple[int, ...]:
    """'128,64' -> (128, 64); '' -> () (a CNN without dense layers)."""
    if not text.strip():
        return ()
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths such as 128,64, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return widths


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults come from the chosen --recipe."""
    group = parser.add_argument_group("training configuration (defaults: --recipe)")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS,
                               help=f"{f.metadata['help']} (tutorial: {'on' if default else 'off'})")
            continue
        kind = {"int": int, "float": float, "str": str}.get(str(f.type), _widths)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        shown = "none" if shown == "" else shown
        group.add_argument(
            flag, dest=f.name, type=kind,
            choices=f.metadata.get("choices"), default=argparse.SUPPRESS,
            metavar=None if f.metadata.get("choices") else f.name.upper(),
            help=f"{f.metadata['help']} (tutorial: {shown})",
        )


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="folder holding MNIST (default: "
                        "$DIGITNET_DATA_DIR, else the user cache folder)")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading MNIST when it is missing (downloads "
                             "come from $DIGITNET_MNIST_URL when set, else the public mirrors)")


# seconds: machines started by hand need a while to all be up; a dead peer is usually noticed
# at once (its connection closes), this bounds the wait for one that hangs
PEER_TIMEOUT = 60


def _device_count(text: str) -> int | str:
    """'all' or a positive count of devices."""
    if text == "all":
        return text
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a positive count or 'all', got {text!r}")
    return count


def _add_device_flags(parser: argparse.ArgumentParser) -> None:
    """Where training runs: this machine's devices, and the other processes it joins."""
    parser.add_argument("--devices", type=_device_count, default=None, metavar="N|all",
                        help="split every batch over N of this machine's devices (GPUs; CPU "
                             "devices only where XLA is told to make several), or all of "
                             "them; the batch size stays the config's (default: one device, "
                             "JAX's default: the GPU where there is one)")
    group = parser.add_argument_group(
        "several processes or machines (docs/training.md); each one trains its share of "
        "every batch, process 0 writes the run folder")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="process 0's address and a free port, the same for every process "
                            "(default: $JAX_COORDINATOR_ADDRESS, or the cluster's)")
    group.add_argument("--num-processes", type=int, metavar="N",
                       help="how many processes train together (default: the cluster's)")
    group.add_argument("--process-id", type=int, metavar="I",
                       help="this process's number, 0..N-1 (default: the cluster's)")
    group.add_argument("--distributed", action="store_true",
                       help="join a training of several processes with what the cluster "
                            "says (Slurm, Open MPI); implied by the three flags above")
    group.add_argument("--peer-timeout", type=int, default=PEER_TIMEOUT, metavar="SECONDS",
                       help="how long to wait for the coordinator at start, and for a silent "
                            f"process before the training stops (default {PEER_TIMEOUT})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitnet", description="Train, inspect and use a handwritten-digit classifier.")
    parser.add_argument("--version", action="version", version=f"digitnet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("data", help="find, verify (and if needed download) MNIST")
    _add_data_flags(p)

    p = commands.add_parser("train", help="train a network and save a run folder")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="starting configuration; flags below override it (default: tutorial)")
    _add_config_flags(p)
    p.add_argument("--out", type=Path, help="run folder to create (default: runs/<time>); "
                   "it must be missing or empty")
    p.add_argument("--overwrite", action="store_true",
                   help="train into --out even if it is not empty: digitnet's files there "
                        "(an earlier run's) are replaced, other files are left alone")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="go on with an interrupted run from its last finished epoch, with the "
                        "config stored in it (no --recipe, --out or configuration flags)")
    p.add_argument("--no-plots", action="store_true", help="skip drawing the plots")
    _add_device_flags(p)
    _add_data_flags(p)

    p = commands.add_parser("evaluate", help="test-set metrics of a trained run")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="run folder, model file, or Keras or ONNX model file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_flags(p)

    p = commands.add_parser("predict", help="classify image files or test images")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="run folder, model file, or Keras or ONNX model file")
    p.add_argument("images", nargs="*", type=Path, metavar="IMAGE_OR_FOLDER",
                   help="image files (PNG, JPEG, ...) or folders searched recursively; a file "
                        "or folder that cannot be read gets an error line of its own, the "
                        "others are still predicted, and the exit code is 1")
    p.add_argument("--test-index", type=int, nargs="+", default=[], metavar="N",
                   help="also classify these MNIST test images (0..9999)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--csv", action="store_true", help="print CSV")
    p.add_argument("--top", type=int, default=3, metavar="K", help="show the K likeliest digits")
    p.add_argument("--show", type=Path, metavar="OUT_DIR",
                   help="write a PNG per image file: the original beside what the network saw")
    p.add_argument("--number", action="store_true",
                   help="read each image as a number: digits written side by side, each found, "
                        "read and boxed; no number where any digit is refused or unsure")
    _add_data_flags(p)

    p = commands.add_parser("plot", help="(re)draw a run's plots into RUN_DIR/plots")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    _add_data_flags(p)

    p = commands.add_parser("export", help="write a trained model as a Keras or ONNX file")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="run folder, model file, or Keras or ONNX model file")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                   help="keras: a Keras 3 .keras file; onnx: an ONNX graph (opset 17)")
    p.add_argument("--out", type=Path, required=True, help="file to write")

    p = commands.add_parser("import", help="turn a Keras or ONNX model file into a run folder")
    p.add_argument("model_file", type=Path, metavar="MODEL_FILE",
                   help=".keras, .h5 or .onnx file")
    p.add_argument("--out", type=Path, required=True,
                   help="run folder to create; it must be missing or empty")
    p.add_argument("--overwrite", action="store_true",
                   help="import into --out even if it is not empty: digitnet's files there "
                        "are replaced, other files are left alone")
    p.add_argument("--input-scale", type=float, choices=[1.0, 255.0], default=None,
                   help="the pixel range the model was trained on: 1 (0..1, as the tutorial "
                        "divides by 255) or 255 (raw 0..255); default: 255 if the model has a "
                        "Rescaling layer, else 1")
    p.add_argument("--input-mean", type=float, default=0.0, metavar="MEAN",
                   help="the mean subtracted from the pixels before the model, outside it "
                        "(pytorch/examples' MNIST: 0.1307); default 0")
    p.add_argument("--input-std", type=float, default=1.0, metavar="STD",
                   help="the std the pixels were divided by before the model, outside it "
                        "(pytorch/examples' MNIST: 0.3081); default 1")
    _add_data_flags(p)

    p = commands.add_parser("serve", help="web app: draw a digit, look inside the model")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="run folder, model file, or Keras or ONNX model file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes, each with its own copy of the model (default 1)")
    p.add_argument("--allowed-hosts", type=_host_patterns, metavar="HOSTS",
                   help="comma-separated Host header values to accept: names, addresses, "
                        "*.example.org, or * for any (default: the loopback names when "
                        "--host is a loopback address, else the --host value; needed when "
                        "--host listens on every interface)")
    return parser


def _host_patterns(text: str) -> list[str]:
    """'a.org,*.b.org' -> ['a.org', '*.b.org']; a '*' may only stand alone or start '*.'."""
    patterns = [part.strip() for part in text.split(",") if part.strip()]
    bad = [p for p in patterns
           if "*" in p[1:] or (p.startswith("*") and p != "*" and not p.startswith("*."))]
    if not patterns or bad:
        raise argparse.ArgumentTypeError(
            f"expected host names such as digits.example.org,*.example.org, got {text!r}")
    return patterns
