"""Write docs/cli.md from the command line's own --help, so the page cannot drift from it.

    .venv/bin/python docs/make_cli_docs.py          # rewrite docs/cli.md
    .venv/bin/python docs/make_cli_docs.py --check  # exit 1 if docs/cli.md is out of date

tests/test_docs.py runs the check.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "cli.md"
WIDTH = "100"  # argparse wraps its help to $COLUMNS

INTRO = """\
# Command line reference

Generated from `digitnet --help` and `digitnet COMMAND --help` by `docs/make_cli_docs.py`;
a test fails when this page and the parser disagree. The training flags' defaults are the
tutorial recipe's; `--recipe` chooses another starting point (see [training](training.md)).

Exit codes: 0 ok, 1 error (one line on stderr; `--debug` shows the traceback), 2 bad usage,
130 interrupted (Ctrl-C).

`digitnet predict RUN_DIR IMAGES --number` reads each image as a number, digits written side
by side: the text output shows the number (or why it is not read) and each digit's
confidence; `--json` rows carry `"number"` (a string, or `null`), `"refused"` and
`"digits"` (each with `"digit"`, `"confidence"`, `"box"` as [left, top, width, height] in the
image's pixels, and `"refused"`); `--csv` has a row per image. Without `--number`, an image
that clearly holds several digits is refused ("3 digits side by side: read them as a
number"). How numbers are found and how well they are read: [numbers](handwriting.md#numbers).
"""


def _help(argv: list[str]) -> str:
    from digitnet.cli.args import build_parser

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser().parse_args(argv)
    return out.getvalue().rstrip()


def render() -> str:
    from digitnet.cli import COMMANDS

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        sections = [INTRO, "## digitnet\n\n```text\n" + _help(["--help"]) + "\n```\n"]
        for command in COMMANDS:
            sections.append(f"## digitnet {command}\n\n```text\n"
                            + _help([command, "--help"]) + "\n```\n")
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(sections)


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run python docs/make_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
