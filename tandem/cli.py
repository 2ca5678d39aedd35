"""The `tandem` command. Each area of the project registers its own subcommands.

Registration is by module name, and registering imports neither torch nor grpc,
so `tandem --help` and `tandem policy ...` stay fast (a test checks it). The
command owns its output: gRPC's C core logs to stderr on its own (bind
failures, TLS handshake errors) unless GRPC_VERBOSITY says otherwise, so it is
set to NONE before anything imports grpc (ERROR, its default, with -v; a value the
user set wins).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Modules that expose `register(subparsers)`; each adds its subcommands and sets
# `func(args) -> int` on the parsers it creates.
COMMAND_MODULES = (
    "engine.cli",
    "router.cli",
    "cloud.cli",
    "edge.cli",
    "tandem.calibrate",
    "edge.serve_cli",
)

DESCRIPTION = """\
Tandem: edge-cloud split inference. A small quantized model answers on the
device; a router sends a request to a larger model in the cloud only when the
device is unsure or the context is too long, and never when a privacy policy
pins it to the device."""

EPILOG = """\
start here:
  tandem demo                                  every routing path, on the embedded models
  tandem generate "What is the capital of France? Answer in one sentence."
  tandem serve-cloud --port 50051              then: tandem chat --cloud 127.0.0.1:50051
  tandem policy check POLICY.yaml
`tandem COMMAND --help` describes each command."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument prints the one error line and where to read more, not the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tandem", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at DEBUG level, and let gRPC print its own errors")
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


def quiet_grpc(verbose: bool) -> None:
    """gRPC's C core reads GRPC_VERBOSITY once, when grpc is first imported: set it before that."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if verbose else "NONE")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet_grpc(verbose=any(a in ("-v", "--verbose") for a in argv))
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
