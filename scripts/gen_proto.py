"""Regenerate the committed gRPC stubs from proto/ (the only way they are made).

    python scripts/gen_proto.py            # writes tandem_rpc/v1/*_pb2*.py{,i}
    python scripts/gen_proto.py --out DIR  # writes DIR/tandem_rpc/v1/... (the staleness test)

The .proto files live under proto/ in the folder layout of the Python package
they generate into, so protoc emits package imports (`from tandem_rpc.v1 import
...`) with no post-processing (grpc issues #29390/#32177, fixed by #29459).
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "proto"
PROTO_FILES = ("tandem_rpc/v1/cloud.proto",)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generated_files(proto: str) -> list[str]:
    """Paths (relative to the output root) that protoc writes for one .proto."""
    stem = proto.removesuffix(".proto")
    return [stem + suffix for suffix in GENERATED_SUFFIXES]


def generate(out: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) for every .proto; returns the files written."""
    from grpc_tools import protoc

    well_known = str(resources.files("grpc_tools") / "_proto")
    written = []
    for proto in PROTO_FILES:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--pyi_out={out}",
            str(PROTO_ROOT / proto),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
        written += [out / name for name in generated_files(proto)]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO, help="output root (default: the repository)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in generate(args.out):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
