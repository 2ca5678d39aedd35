"""`tandem policy ...`: check a policy file, or explain what it does to a text.

    tandem policy check FILE...          OK with version and hash, or every problem (exit 1)
    tandem policy explain FILE --text T  route, reasons, findings, and exactly what would leave the device
    tandem policy schema                 the published JSON Schema

Imports nothing heavy: no torch, no model; a token count not given is
estimated from the text's length and marked as such.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from router.decide import Decision, Route, decide
from router.errors import PolicyError
from router.loader import load_policy
from router.policy import Policy
from router.schema import schema_json

CHARS_PER_TOKEN = 4  # rough English average for BPE vocabularies, used only when --tokens is not given


def register(subparsers: Any) -> None:
    """Add `policy` and its subcommands to the `tandem` command."""
    policy = subparsers.add_parser("policy", help="check and explain routing policy files",
                                   description=__doc__.splitlines()[0])
    commands = policy.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    check = commands.add_parser("check", help="validate policy files")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=_check)

    explain = commands.add_parser("explain", help="show the decision a policy makes for a text")
    explain.add_argument("file", metavar="FILE")
    explain.add_argument("--text", required=True, help="the request text ('-' reads standard input)")
    explain.add_argument("--tags", default="", help="caller tags, comma-separated (e.g. health,confidential)")
    explain.add_argument("--tokens", type=int, help="prompt length in tokens (default: estimated from the text)")
    explain.add_argument("--new-tokens", type=int, help="new tokens the caller asks for")
    explain.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    explain.set_defaults(func=_explain)

    schema = commands.add_parser("schema", help="print the policy JSON Schema")
    schema.set_defaults(func=_schema)


def _check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            print(exc, file=sys.stderr)
            status = 1
            continue
        print(f"OK {path}: version {policy.version}, sha256 {policy.content_hash}")
    return status


def _schema(args: argparse.Namespace) -> int:
    print(schema_json(), end="")
    return 0


def _explain(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    text = sys.stdin.read() if args.text == "-" else args.text
    estimated = args.tokens is None
    tokens = -(-len(text) // CHARS_PER_TOKEN) if estimated else args.tokens
    tags = [t for t in args.tags.split(",") if t.strip()]
    try:
        decision = decide(text, caller_tags=tags, token_count=tokens, policy=policy, new_tokens=args.new_tokens)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_as_json(decision, text, tokens, estimated), ensure_ascii=False))
    else:
        print(_as_text(decision, policy, text, tokens, estimated))
    return 0


def _leaves(decision: Decision) -> str:
    if decision.egress is None:
        return "nothing leaves the device"
    if decision.route is Route.CLOUD:
        return "sent to the cloud"
    return "would leave the device only if the stream monitor escalates"


def _as_json(decision: Decision, text: str, tokens: int, estimated: bool) -> dict[str, Any]:
    return {
        "route": decision.route.value,
        "may_escalate": decision.may_escalate,
        "over_device_budget": decision.over_device_budget,
        "token_count": tokens,
        "token_count_estimated": estimated,
        "reasons": [{"code": r.code, "detail": r.detail} for r in decision.reasons],
        "findings": [
            {"kind": f.kind, "tag": f.tag, "start": f.start, "end": f.end, "text": text[f.start:f.end]}
            for f in decision.spans[0]
        ],
        "tags": {tag: action.value for tag, action in decision.tags.items()},
        "egress": decision.egress,
        "policy": {"version": decision.policy_version, "sha256": decision.policy_hash},
    }


def _as_text(decision: Decision, policy: Policy, text: str, tokens: int, estimated: bool) -> str:
    width = max([len(r.code) for r in decision.reasons] + [8])
    lines = [
        f"policy    {policy.source} (version {policy.version}, sha256 {policy.content_hash[:16]}…)",
        f"tokens    {tokens}{' (estimated from length; pass --tokens)' if estimated else ''}",
        f"route     {decision.route.name}   may escalate: {'yes' if decision.may_escalate else 'no'}"
        f"{'   OVER DEVICE BUDGET' if decision.over_device_budget else ''}",
        "reasons",
        *(f"  {r.code:<{width}}  {r.detail}" for r in decision.reasons),
        "findings" + ("" if decision.spans[0] else "  none"),
        *(f"  {f.kind:<18} {text[f.start:f.end]!r} at {f.start}..{f.end}, tag {f.tag} -> "
          f"{decision.tags[f.tag].value}" for f in decision.spans[0]),
        f"egress    {_leaves(decision)}" + (":" if decision.egress is not None else ""),
    ]
    if decision.egress is not None:
        lines += [f"  {line}" for line in str(decision.egress).splitlines() or [""]]
    return "\n".join(lines)
