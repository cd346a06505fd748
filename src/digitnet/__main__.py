"""`python -m digitnet`: the same as the `digitnet` command."""

from .cli import entry_point

entry_point()
