"""What the commands share: the error that means bad usage, and reading MNIST.

The commands read MNIST through this module's functions, looked up when they are called, so
a test can hand them small data instead.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import DigitnetError


class UsageError(DigitnetError):
    """Bad command-line arguments: exit code 2."""


def load_data(args: argparse.Namespace):
    from ..data import load_mnist

    return load_mnist(args.data_dir, download=not args.no_download, progress=sys.stderr.isatty())


def load_test_set(args: argparse.Namespace):
    """MNIST's test images and labels alone: all that evaluating needs, so the training
    files need not be there (nor be downloaded)."""
    from ..data import load_mnist_test

    return load_mnist_test(args.data_dir, download=not args.no_download,
                           progress=sys.stderr.isatty())


def percent(fraction: float) -> str:
    return f"{fraction * 100:.2f}%"
