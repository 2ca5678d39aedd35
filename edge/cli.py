"""`tandem chat` (interactive, shows which tier answered) and `tandem demo` (every routing path, scripted)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.cli import add_model_arguments, add_sampling_arguments

    chat = subparsers.add_parser("chat", help="chat with the edge model; escalates to the cloud per the policy")
    add_model_arguments(chat, precision="device")
    add_sampling_arguments(chat)
    add_cloud_arguments(chat)
    chat.add_argument("--policy", default=None, help="policy file (default: policies/default.yaml)")
    chat.add_argument("--tags", default="", help="caller tags for every turn, comma-separated (e.g. health)")
    chat.add_argument("--audit-log", default=None, help="append decision records here (default: the policy's)")
    chat.set_defaults(func=cmd_chat, max_context=2048)

    demo = subparsers.add_parser("demo", help="run scripted requests that show each routing path")
    demo.add_argument("--model", default="smollm2-135m", help="device model (default smollm2-135m)")
    demo.add_argument("--cloud-model", default=None, help="cloud model (default: the device model's source)")
    demo.add_argument("--precision", default="device", help="device model precision (default device; the cloud "
                      "tier loads its model at full precision)")
    add_cloud_arguments(demo)
    demo.add_argument("--policy", default=None, help="policy file (default: policies/demo.yaml)")
    demo.add_argument("--max-new-tokens", type=int, default=48)
    demo.add_argument("--max-context", type=int, default=2048, help="context window to allocate (tokens)")
    demo.add_argument("--audit-log", default=None, help="append decision records here")
    demo.set_defaults(func=cmd_demo)


def add_cloud_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cloud", default=None, help="cloud tier address host:port (demo: start one on loopback)")
    parser.add_argument("--auth-token-file", default=None, help="file whose first line is the cloud's bearer token")
    parser.add_argument("--tls-ca", default=None, help="PEM file of the CA that signed the cloud's certificate")
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds the cloud's part of a request may take")


def _cloud_options(args: argparse.Namespace) -> dict:
    from cloud.auth import load_tokens

    tokens = load_tokens(token_file=args.auth_token_file) if args.auth_token_file else []
    return {
        "cloud": args.cloud,
        "token": tokens[0] if tokens else None,
        "root_certificates": Path(args.tls_ca).read_bytes() if args.tls_ca else None,
        "deadline_s": args.deadline,
    }


def cmd_chat(args: argparse.Namespace) -> int:
    from edge.client import DEFAULT_POLICY, TandemClient
    from edge.errors import TandemError
    from edge.events import Done, Escalation, Fallback, Text
    from engine.cli import sampling_from_args
    from engine.errors import EngineError
    from engine.runtime import LocalModel
    from router import PolicyError

    try:
        local = LocalModel.load(args.model, tokenizer=args.tokenizer, max_context=args.max_context,
                                precision=args.precision)
        audit = args.audit_log if args.audit_log else "policy"
        client = TandemClient(local, policy=args.policy or DEFAULT_POLICY, audit_log=audit, **_cloud_options(args))
    except (EngineError, PolicyError, OSError, ValueError) as exc:
        print(f"tandem chat: error: {exc}", file=sys.stderr)
        return 1
    tags = [t for t in args.tags.split(",") if t.strip()]
    messages: list[dict[str, str]] = []
    print("Tandem chat: an empty line or Ctrl-D ends it. Each answer is marked with the tier that gave it.",
          file=sys.stderr)
    with client:
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                break
            if not line:
                break
            messages.append({"role": "user", "content": line})
            shown = ""
            try:
                for event in client.chat(messages, tags=tags, max_new_tokens=args.max_new_tokens,
                                         sampling=sampling_from_args(args), stop=args.stop, session_id=str(id(client))):
                    if isinstance(event, Text):
                        if not shown:
                            print(f"[{event.tier}] ", end="")
                        shown += event.text
                        print(event.text, end="", flush=True)
                    elif isinstance(event, Escalation):
                        print(f"\n  (escalating: {event.reason}; the cloud continues)\n[cloud] "
                              f"{shown[:event.keep_chars]}", end="", flush=True)
                        shown = shown[:event.keep_chars] or " "
                    elif isinstance(event, Fallback):
                        print(f"\n  (cloud unavailable: {event.reason}; answering on the device)\n[edge] ", end="")
                        shown = shown or " "
                    elif isinstance(event, Done):
                        print(f"\n  ({event.record.route}, answered by {event.tier}, "
                              f"{event.record.latencies_ms.get('total_ms', 0):.0f} ms)")
                        messages.append({"role": "assistant", "content": event.text})
            except TandemError as exc:
                print(f"\n  error: {exc}")
                messages.pop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import DEMO_POLICY, main_with_servers
    from engine.errors import EngineError
    from engine.runtime import LocalModel

    def load(name: str, precision: str) -> LocalModel:
        return LocalModel.load(name, max_context=args.max_context, precision=precision)

    try:
        return main_with_servers(
            args.model, args.cloud_model or args.model, cloud=args.cloud, policy=args.policy or DEMO_POLICY,
            max_new_tokens=args.max_new_tokens, audit_log=args.audit_log,
            load_edge=lambda name: load(name, args.precision), load_cloud=lambda name: load(name, "full"),
        )
    except (EngineError, OSError, ValueError) as exc:
        print(f"tandem demo: error: {exc}", file=sys.stderr)
        return 1
