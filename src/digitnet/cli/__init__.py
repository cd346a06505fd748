"""The `digitnet` command: parse arguments, call one library function, render the result.

Each command lives in a module of this package (train, predict, report, convert, serve);
this one parses the arguments, runs the command and turns what went wrong into an exit code:
0 ok, 1 error (one line on stderr; --debug for the traceback), 2 usage, 130 Ctrl-C.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Sequence

from ..errors import DigitnetError
from .args import build_parser
from .common import UsageError
from .convert import cmd_export, cmd_import
from .predict import cmd_predict
from .report import cmd_data, cmd_evaluate, cmd_plot
from .serve import cmd_serve
from .train import cmd_train


COMMANDS = {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate,
            "predict": cmd_predict, "plot": cmd_plot, "export": cmd_export, "import": cmd_import,
            "serve": cmd_serve}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help/--version
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("digitnet: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        if args.debug:
            raise
        print(f"digitnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except DigitnetError as exc:
        if args.debug:
            raise
        print(f"digitnet: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1  # e.g. `digitnet predict ... | head`


def _in_a_training_of_several() -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and jax.distributed.is_initialized()


def entry_point() -> None:
    """The `digitnet` command itself (console script, `python -m digitnet`)."""
    code = main()
    if code and _in_a_training_of_several():
        # JAX's exit handler would wait (up to its shutdown timeout) for every other process
        # to reach the end too, which a dead or failed one never does: leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    # The process ends here. Its final garbage collection would walk every object that JAX,
    # Flax and the rest left behind, 0.4 s after a training on this machine, to find cycles
    # of which none needs finalising: everything is written and closed. Skip it.
    gc.freeze()
    sys.exit(code)

