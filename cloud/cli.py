"""`tandem serve-cloud`: load a model and serve it over gRPC until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cloud import config as defaults
from tandem.args import non_negative_float, non_negative_int, port, positive_float, positive_int, readable_file

if TYPE_CHECKING:
    from cloud.config import ServerConfig

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.cli import add_model_arguments

    p = subparsers.add_parser("serve-cloud", help="serve a model to edge clients over gRPC")
    add_model_arguments(p)
    p.add_argument("--model-id", default=None, help="name reported by Info (default: the model file's name)")
    p.add_argument("--engine", choices=("torch", "llama-server", "vllm", "sglang"), default="torch",
                   help="what generates: the built-in torch engine (default), or a serving engine at --engine-url "
                   "serving the same model as --model: llama.cpp's llama-server, vLLM's OpenAI-compatible server "
                   "or SGLang's native /generate (the gateway loads only the model's tokenizer and checks it "
                   "against the engine's)")
    p.add_argument("--engine-url", default=None, help="base URL of the engine, e.g. http://127.0.0.1:8080")
    p.add_argument("--engine-slot-dir", type=Path, default=None,
                   help="llama-server only: the directory it was started with as --slot-save-path, writable by "
                   "this gateway (same host or a shared volume); turns the KV hand-off on: uploaded caches are "
                   "restored into the engine's slots, so it evaluates only the prompt's last token")
    p.add_argument("--engine-wait", type=non_negative_float, default=60.0,
                   help="seconds to wait on start for the engine to be ready (it may be loading its model)")
    p.add_argument("--engine-timeout", type=positive_float, default=120.0,
                   help="longest silence of the engine within a request before it gets UNAVAILABLE")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all interfaces)")
    p.add_argument("--port", type=port, default=50051, help="TCP port to serve on (0 picks a free one)")
    p.add_argument("--max-concurrency", type=positive_int, default=defaults.DEFAULT_MAX_CONCURRENCY,
                   help="streams decoding at once")
    p.add_argument("--max-queue", type=non_negative_int, default=defaults.DEFAULT_MAX_QUEUE,
                   help="streams waiting for a slot; past it requests get UNAVAILABLE")
    p.add_argument("--max-new-tokens", type=positive_int, default=defaults.DEFAULT_MAX_NEW_TOKENS,
                   help="largest max_new_tokens a request may ask for")
    p.add_argument("--max-message-bytes", type=positive_int, default=defaults.DEFAULT_MAX_MESSAGE_BYTES)
    p.add_argument("--session-cache-mb", type=non_negative_int, default=defaults.DEFAULT_SESSION_CACHE_BYTES >> 20,
                   help="memory for per-session prefix caches (0 disables them)")
    p.add_argument("--kv-max-upload-mb", type=non_negative_int, default=defaults.DEFAULT_KV_MAX_UPLOAD_BYTES >> 20,
                   help="largest compressed KV cache one upload may send (0 refuses every upload)")
    p.add_argument("--kv-store-mb", type=non_negative_int, default=defaults.DEFAULT_KV_STORE_BYTES >> 20,
                   help="memory for uploaded caches waiting for their resume")
    p.add_argument("--kv-ttl", type=positive_float, default=defaults.DEFAULT_KV_TTL_S,
                   help="seconds an uploaded cache waits for its resume before it is dropped")
    p.add_argument("--kv-max-uploads", type=non_negative_int, default=defaults.DEFAULT_KV_MAX_UPLOADS,
                   help="uploads decoded at once; past it uploads get RESOURCE_EXHAUSTED")
    p.add_argument("--kv-per-caller", type=positive_int, default=defaults.DEFAULT_KV_PER_CALLER,
                   help="uploads one caller may send at once, and prefilled caches it may leave unread")
    p.add_argument("--kv-same-precision-only", action="store_true",
                   help="refuse caches from a differently quantized twin of the model (e.g. a 4-bit edge)")
    p.add_argument("--kv-idle", type=positive_float, default=defaults.DEFAULT_KV_IDLE_S,
                   help="seconds an upload may send nothing before it is dropped")
    p.add_argument("--kv-max-upload-s", type=positive_float, default=defaults.DEFAULT_KV_MAX_UPLOAD_S,
                   help="seconds any one upload may take, however it is paced")
    p.add_argument("--stream-stall", type=positive_float, default=defaults.DEFAULT_STREAM_STALL_S,
                   help="seconds a stream may wait on a client that reads nothing before it is ended")
    p.add_argument("--max-stream", type=positive_float, default=defaults.DEFAULT_MAX_STREAM_S,
                   help="seconds any one stream may last")
    p.add_argument("--tls-cert", type=readable_file, default=None, help="PEM certificate chain (with --tls-key)")
    p.add_argument("--tls-key", type=readable_file, default=None, help="PEM private key (with --tls-cert)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--auth-token", default=None,
                       help="required bearer token (visible in `ps`; prefer --auth-token-file)")
    token.add_argument("--auth-token-file", type=readable_file, default=None,
                       help="file with accepted bearer tokens, one a line")
    p.add_argument("--metrics-port", type=port, default=None, help="serve Prometheus metrics on this port")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="address for the metrics endpoint (default: loopback only; 0.0.0.0 lets any host scrape)")
    p.add_argument("--grace", type=non_negative_float, default=defaults.DEFAULT_GRACE_S,
                   help="seconds in-flight streams get to finish on shutdown")
    p.set_defaults(func=cmd_serve_cloud)


def _check_bindable(flag: str, host: str, port: int, host_flag: str = "--host") -> None:
    """Fail before loading the model when `host:port` cannot be listened on, naming the flag.

    gRPC would say only "Failed to bind"; a plain socket tells why (in use, not this
    machine's address, a privileged port). Port 0 always binds.
    """
    import errno
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"{host_flag} {host!r} cannot be resolved ({exc.args[-1]}); give an address of this machine, "
                         "e.g. 127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            why = {errno.EADDRINUSE: "another process listens there; stop it or choose another port",
                   errno.EADDRNOTAVAIL: "that address is not one of this machine's",
                   errno.EACCES: "ports below 1024 need privileges; choose a higher one"}.get(exc.errno, "")
            flag = host_flag if exc.errno == errno.EADDRNOTAVAIL else flag
            raise ValueError(f"{flag}: cannot listen on {host}:{port}: {exc.strerror}"
                             + (f" ({why})" if why else "")) from None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (default: 8 per core), as long-running threaded Python servers do.

    The server decodes on a pool of threads; with one arena each, memory freed
    by one thread is not reused by another and the resident size crept up by
    ~11% over 170 requests after warm-up (benchmarks/load.py); with two arenas
    it stayed within a few percent. No effect off glibc.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _backend(args: argparse.Namespace, config: ServerConfig) -> object:
    """The model to serve: loaded here (torch), or an engine's backend once its tokenizer matches ours."""
    if args.engine == "torch":
        if args.engine_url:
            raise ValueError("--engine-url needs --engine llama-server, vllm or sglang (the torch engine runs in this "
                             "process)")
        from engine.runtime import LocalModel

        return LocalModel.load(args.model, tokenizer=args.tokenizer, max_context=args.max_context,
                               precision=args.precision, kv_cache=args.kv_cache)
    if not args.engine_url:
        raise ValueError(f"--engine {args.engine} needs --engine-url, e.g. http://127.0.0.1:8080")
    from cloud.backends.llama_server import LlamaServerBackend
    from cloud.backends.openai_compat import OpenAICompatBackend
    from cloud.backends.sglang import SGLangBackend
    from cloud.backends.tokenizer_check import load_served_tokenizer

    tokenizer = load_served_tokenizer(args.model, args.tokenizer)
    common = dict(max_context=args.max_context, model_id=args.model_id or args.model, start_wait_s=args.engine_wait,
                  read_timeout_s=args.engine_timeout)
    if args.engine != "llama-server":
        if args.engine_slot_dir is not None:
            raise ValueError(f"--engine-slot-dir is llama-server's slot hand-off; {args.engine} takes token IDs only")
        backend = {"vllm": OpenAICompatBackend, "sglang": SGLangBackend}[args.engine]
        return backend(args.engine_url, tokenizer, **common)
    if args.engine_slot_dir is None:
        return LlamaServerBackend(args.engine_url, tokenizer, **common)
    from engine.registry import resolve

    return LlamaServerBackend(args.engine_url, tokenizer, slot_dir=args.engine_slot_dir,
                              served_model=resolve(args.model), kv_config=config, **common)


def cmd_serve_cloud(args: argparse.Namespace) -> int:
    from cloud.auth import load_tokens
    from cloud.config import ServerConfig
    from engine.errors import EngineError

    logging.getLogger("cloud").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    limit_malloc_arenas()
    if (args.tls_cert is None) != (args.tls_key is None):
        print("tandem serve-cloud: error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    try:
        config = ServerConfig(
            max_concurrency=args.max_concurrency, max_queue=args.max_queue, max_new_tokens=args.max_new_tokens,
            default_new_tokens=min(defaults.DEFAULT_NEW_TOKENS, args.max_new_tokens),
            max_message_bytes=args.max_message_bytes, session_cache_bytes=args.session_cache_mb << 20,
            kv_max_upload_bytes=args.kv_max_upload_mb << 20, kv_store_bytes=args.kv_store_mb << 20,
            kv_ttl_s=args.kv_ttl, kv_max_uploads=args.kv_max_uploads,
            kv_cross_precision=not args.kv_same_precision_only, kv_idle_s=args.kv_idle,
            kv_max_upload_s=args.kv_max_upload_s, kv_per_caller=args.kv_per_caller,
            stream_stall_s=args.stream_stall, max_stream_s=args.max_stream,
        )
        try:
            tokens = load_tokens(token=args.auth_token, token_file=args.auth_token_file)
        except ValueError as exc:
            raise ValueError(f"--auth-token-file: {exc}; write one accepted token a line") from None
        _check_bindable("--port", args.host, args.port)
        if args.metrics_port is not None:
            _check_bindable("--metrics-port", args.metrics_host, args.metrics_port, "--metrics-host")
        from cloud.server import start_server  # torch and the model only once the flags are known good

        model = _backend(args, config)
        server, port = start_server(
            model, host=args.host, port=args.port, config=config, model_id=args.model_id or args.model,
            auth_tokens=tokens, tls_cert=args.tls_cert, tls_key=args.tls_key,
            metrics_port=args.metrics_port, metrics_host=args.metrics_host,
        )
    except (EngineError, ValueError, OSError, RuntimeError) as exc:
        print(f"tandem serve-cloud: error: {exc}", file=sys.stderr)
        return 1
    where = f"{args.host}:{port}"
    metrics = f", metrics on :{server.metrics_port}/metrics" if server.metrics_port else ""
    print(f"tandem serve-cloud: serving {args.model_id or args.model} on {where}{metrics}", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    print(f"tandem serve-cloud: shutting down (grace {args.grace:g} s)", file=sys.stderr, flush=True)
    server.stop(args.grace).wait()
    return 0
