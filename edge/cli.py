"""`tandem chat` (interactive, shows which tier answered) and `tandem demo` (every routing path, scripted)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tandem.args import address, positive_float, positive_int, readable_file


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.cli import add_model_arguments, add_sampling_arguments

    chat = subparsers.add_parser("chat", help="chat with the edge model; escalates to the cloud per the policy")
    add_model_arguments(chat, precision="device")
    add_sampling_arguments(chat)
    add_cloud_arguments(chat)
    chat.add_argument("--policy", default="default",
                      help="a packaged policy's name (default, strict-privacy, health-app, demo) or a file")
    chat.add_argument("--tags", default="", help="caller tags for every turn, comma-separated (e.g. health)")
    chat.add_argument("--audit-log", default=None, help="append decision records here (default: the policy's)")
    chat.set_defaults(func=cmd_chat, max_context=2048)

    demo = subparsers.add_parser("demo", help="run scripted requests that show each routing path")
    demo.add_argument("--model", default="smollm2-135m", help="device model (default smollm2-135m)")
    demo.add_argument("--cloud-model", default=None, help="cloud model (default: the device model's source)")
    demo.add_argument("--precision", default="device", help="device model precision (default device; the cloud "
                      "tier loads its model at full precision)")
    add_cloud_arguments(demo)
    demo.add_argument("--policy", default="demo", help="a packaged policy's name or a file (default: demo)")
    demo.add_argument("--max-new-tokens", type=positive_int, default=48)
    demo.add_argument("--max-context", type=positive_int, default=2048, help="context window to allocate (tokens)")
    demo.add_argument("--audit-log", default=None, help="append decision records here")
    demo.set_defaults(func=cmd_demo)


def add_cloud_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cloud", type=address, default=None,
                        help="cloud tier address HOST:PORT, no scheme (demo: start one on loopback)")
    parser.add_argument("--auth-token-file", type=readable_file, default=None,
                        help="file whose first line is the cloud's bearer token")
    parser.add_argument("--tls-ca", type=readable_file, default=None,
                        help="PEM file of the CA that signed the cloud's certificate")
    parser.add_argument("--deadline", type=positive_float, default=30.0,
                        help="seconds the cloud's part of a request may take")


def _cloud_options(args: argparse.Namespace) -> dict:
    """What TandemClient needs to reach the cloud; ValueError naming the flag when a file or host is unusable."""
    from cloud.auth import load_tokens
    from edge.address import check_resolvable

    if args.cloud and (problem := check_resolvable(args.cloud)):
        raise ValueError(f"--cloud {problem}")
    try:
        tokens = load_tokens(token_file=args.auth_token_file) if args.auth_token_file else []
    except ValueError as exc:
        raise ValueError(f"--auth-token-file: {exc}; put the bearer token on its first line") from None
    return {
        "cloud": args.cloud,
        "token": tokens[0] if tokens else None,
        "root_certificates": Path(args.tls_ca).read_bytes() if args.tls_ca else None,
        "deadline_s": args.deadline,
    }


def cmd_chat(args: argparse.Namespace) -> int:
    from edge.client import TandemClient, open_policy
    from edge.errors import TandemError
    from edge.events import Done, Escalation, Fallback, Text
    from engine.cli import sampling_from_args
    from engine.errors import EngineError
    from engine.runtime import LocalModel
    from router import PolicyError

    try:
        cloud = _cloud_options(args)
        policy = open_policy(args.policy)
        local = LocalModel.load(args.model, tokenizer=args.tokenizer, max_context=args.max_context,
                                precision=args.precision, kv_cache=args.kv_cache)
        audit = args.audit_log if args.audit_log else "policy"
        client = TandemClient(local, policy=policy, audit_log=audit, **cloud)
    except (EngineError, PolicyError, TandemError, OSError, ValueError) as exc:
        print(f"tandem chat: error: {exc}", file=sys.stderr)
        return 1
    tags = [t for t in args.tags.split(",") if t.strip()]
    messages: list[dict[str, str]] = []
    for line in _chat_banner(args, client):
        print(line, file=sys.stderr)
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
                        shown = shown[:event.keep_chars]
                        print(f"\n  (escalating: {event.reason}; the cloud continues)\n[cloud] {shown}", end="",
                              flush=True)
                        shown = shown or " "
                    elif isinstance(event, Fallback):
                        # The device goes on from what it showed: repeat that, so no word is split.
                        print(f"\n  (cloud unavailable: {event.reason}; answering on the device)\n[edge] {shown}",
                              end="", flush=True)
                        shown = shown or " "
                    elif isinstance(event, Done):
                        print(f"\n  ({event.record.route}, answered by {event.tier}, "
                              f"{event.record.latencies_ms.get('total_ms', 0):.0f} ms)")
                        messages.append({"role": "assistant", "content": event.text})
            except TandemError as exc:
                print(f"\n  error: {exc}")
                messages.pop()
    return 0


def _chat_banner(args: argparse.Namespace, client: object) -> list[str]:
    """What a newcomer needs before the first turn: how to stop, where answers come from, what is logged."""
    lines = ["Tandem chat: an empty line or Ctrl-D ends it. Each answer is marked with the tier that gave it."]
    if args.cloud:
        lines.append(f"Cloud tier: {args.cloud}; the policy ({args.policy}) decides when a request goes there.")
    else:
        lines.append("No --cloud given: every answer comes from the device and nothing will ever escalate "
                     "(start a cloud tier with `tandem serve-cloud`, then pass --cloud HOST:PORT).")
    audit = getattr(client, "audit", None)
    if audit is None:
        lines.append("Audit log: off (the policy's audit section disables it).")
    else:
        lines.append(f"Audit log: one decision record per answer (counts and reasons, never text) appended to "
                     f"{Path(audit.path).resolve()} (--audit-log PATH to move it).")
    return lines


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.client import policy_path
    from edge.demo import main_with_servers
    from engine.errors import EngineError
    from engine.runtime import LocalModel

    def load(name: str, precision: str) -> LocalModel:
        return LocalModel.load(name, max_context=args.max_context, precision=precision)

    from edge.address import check_resolvable

    if args.cloud and (problem := check_resolvable(args.cloud)):
        print(f"tandem demo: error: --cloud {problem}", file=sys.stderr)
        return 1
    try:
        return main_with_servers(
            args.model, args.cloud_model or args.model, cloud=args.cloud, policy=policy_path(args.policy),
            max_new_tokens=args.max_new_tokens, audit_log=args.audit_log,
            load_edge=lambda name: load(name, args.precision), load_cloud=lambda name: load(name, "full"),
        )
    except (EngineError, OSError, ValueError) as exc:
        print(f"tandem demo: error: {exc}", file=sys.stderr)
        return 1
