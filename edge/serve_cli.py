"""`tandem serve-edge`: the device model behind an OpenAI-compatible HTTP endpoint (edge/openai_server.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

API_KEY_ENV = "TANDEM_API_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:
    from edge.cli import add_cloud_arguments
    from engine.cli import add_model_arguments
    from tandem.args import non_negative_float, non_negative_int

    p = subparsers.add_parser("serve-edge", help="serve the edge SDK as an OpenAI-compatible HTTP API")
    add_model_arguments(p, precision="device")
    add_cloud_arguments(p)
    p.add_argument("--policy", default=None, help="policy file (default: policies/default.yaml)")
    p.add_argument("--audit-log", default=None, help="append decision records here (default: the policy's)")
    p.add_argument("--model-id", default=None, help="model id clients name (default: --model; 'tandem' also works)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all interfaces)")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    p.add_argument("--api-key-file", default=None,
                   help=f"file with accepted API keys, one a line (or set {API_KEY_ENV}); without either, /v1 is open")
    p.add_argument("--stream-interval-ms", type=non_negative_float, default=None,
                   help="a stream's text goes out at most this often, the first token and the end at once "
                        "(default 50; 0: every token as it comes)")
    p.add_argument("--max-concurrent", type=non_negative_int, default=None,
                   help="requests answered at once; one more gets 503 with Retry-After (default 8; 0: no limit)")
    p.add_argument("--max-concurrent-per-key", type=non_negative_int, default=None,
                   help="requests of one API key answered at once; one more gets 429 with Retry-After "
                        "(default: half of --max-concurrent when there are two keys or more; 0: no cap)")
    p.set_defaults(func=cmd_serve_edge, max_context=4096)


def cmd_serve_edge(args: argparse.Namespace) -> int:
    from cloud.auth import load_tokens
    from edge.async_client import AsyncTandemClient
    from edge.cli import _cloud_options
    from edge.client import DEFAULT_POLICY
    from edge.openai_server import DEFAULT_MAX_CONCURRENT, DEFAULT_STREAM_INTERVAL_S, build_app, default_per_key, \
        serve
    from engine.errors import EngineError
    from engine.runtime import LocalModel
    from router import PolicyError

    try:
        keys = load_tokens(token=os.environ.get(API_KEY_ENV), token_file=args.api_key_file)
        local = LocalModel.load(args.model, tokenizer=args.tokenizer, max_context=args.max_context,
                                precision=args.precision, kv_cache=args.kv_cache)
        client = AsyncTandemClient(local, policy=args.policy or DEFAULT_POLICY,
                                   audit_log=args.audit_log or "policy", **_cloud_options(args))
    except (EngineError, PolicyError, OSError, ValueError) as exc:
        print(f"tandem serve-edge: error: {exc}", file=sys.stderr)
        return 1
    if not keys and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"tandem serve-edge: warning: no API key (--api-key-file or {API_KEY_ENV}): anyone who reaches "
              f"{args.host} may use this endpoint", file=sys.stderr)
    interval = DEFAULT_STREAM_INTERVAL_S if args.stream_interval_ms is None else args.stream_interval_ms / 1000
    limit = DEFAULT_MAX_CONCURRENT if args.max_concurrent is None else args.max_concurrent or None
    per_key = default_per_key(limit, len(keys)) if args.max_concurrent_per_key is None else \
        args.max_concurrent_per_key or None
    app = build_app(client, model_id=args.model_id or args.model, api_keys=keys, stream_interval_s=interval,
                    max_concurrent=limit, max_concurrent_per_key=per_key)

    def started(port: int) -> None:
        cloud = f", cloud {args.cloud}" if args.cloud else ", no cloud"
        print(f"tandem serve-edge: serving {args.model_id or args.model} (OpenAI API) on {args.host}:{port}"
              f"{cloud}", file=sys.stderr, flush=True)

    try:
        asyncio.run(serve(app, host=args.host, port=args.port, on_started=started))
    except OSError as exc:
        print(f"tandem serve-edge: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
