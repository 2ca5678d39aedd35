"""`python -m cloud.healthcheck HOST:PORT`: exit 0 when the server's grpc.health.v1 says SERVING.

For container health checks (docker-compose.yml) and load balancers that run a command.
"""

from __future__ import annotations

import argparse
import os
import sys

from tandem.args import address, positive_float

EXIT_SERVING, EXIT_NOT_SERVING, EXIT_USAGE = 0, 1, 2


def serving(target: str, *, timeout: float = 3.0) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cloud.healthcheck",
        description="Ask a Tandem cloud server's grpc.health.v1 service whether it is SERVING "
        "(plaintext gRPC). Exit status: 0 serving, 1 not serving or unreachable, 2 bad arguments.",
    )
    parser.add_argument("target", type=address, metavar="HOST:PORT", help="the server, e.g. 127.0.0.1:50051")
    parser.add_argument("--timeout", type=positive_float, default=3.0, help="seconds to wait for the answer (default 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # our one line is the output, not gRPC's log
    args = build_parser().parse_args(argv)
    ok = serving(args.target, timeout=args.timeout)
    print("SERVING" if ok else f"NOT SERVING ({args.target} did not answer SERVING within {args.timeout:g} s)",
          file=sys.stderr)
    return EXIT_SERVING if ok else EXIT_NOT_SERVING


if __name__ == "__main__":
    sys.exit(main())
