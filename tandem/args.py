"""Argument types for the `tandem` commands: a bad value fails at parse time, naming the flag.

argparse turns the `ArgumentTypeError` raised here into
`tandem CMD: error: argument --FLAG: <message>` and exit status 2, before any
model is loaded. Imports nothing heavy: `tandem --help` must stay fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.address import MAX_PORT, split_address


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give a whole number of at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give a whole number of at least 0")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a number above 0")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a number of at least 0")
    return value


def probability(text: str) -> float:
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a number above 0 and at most 1")
    return value


def port(text: str) -> int:
    """A TCP port to listen on; 0 asks the system for a free one."""
    value = _int(text)
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port: give 1-{MAX_PORT} (0 picks a free one)")
    return value


def address(text: str) -> str:
    """--cloud HOST:PORT, checked for form (resolution happens when the command starts)."""
    try:
        split_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def readable_file(text: str) -> str:
    """A file that exists and can be read now (token files, certificates)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror}") from None
    return str(path)
