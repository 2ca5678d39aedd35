"""The `tandem` command. Each area of the project registers its own subcommands.

Registration is by module name so `tandem policy ...` never imports torch and
`tandem --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that expose `register(subparsers)`; each adds its subcommands and sets
# `func(args) -> int` on the parsers it creates.
COMMAND_MODULES = (
    "engine.cli",
    "router.cli",
    "cloud.cli",
    "edge.cli",
    "edge.serve_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise  # a missing dependency inside the module, not a missing area
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
