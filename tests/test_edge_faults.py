"""Faults a real cloud process has: killed mid-stream, stalled past the deadline. Each request
ends within its deadline, per the policy, and the record says what happened."""

from __future__ import annotations

import signal
import time

from edge import Done, Fallback, TandemClient, Text
from edge.demo import DOCUMENT
from tests.edge_fixtures import cloud_process, policy_with

PROMPT = DOCUMENT[:500] + "\n\nWhat is this speech about?"
POLICY = {"edge": {"max_context_tokens": 64, "max_new_tokens": 16}}


def run_until_first_cloud_text(client: TandemClient, on_first_cloud_text) -> tuple[list, float]:
    """Stream one request; call `on_first_cloud_text()` when the cloud's first text arrives."""
    events, fault_at = [], 0.0
    for event in client.generate(PROMPT, max_new_tokens=40):
        events.append(event)
        if isinstance(event, Text) and event.tier == "cloud" and event.text and not fault_at:
            on_first_cloud_text()
            fault_at = time.monotonic()
    return events, fault_at


def test_cloud_killed_mid_stream_the_device_finishes_the_answer(smollm2, tmp_path):
    with cloud_process() as (proc, port):
        client = TandemClient(smollm2, cloud=f"127.0.0.1:{port}", policy=policy_with(**POLICY),
                              audit_log=tmp_path / "audit.jsonl", deadline_s=60)
        events, killed_at = run_until_first_cloud_text(client, proc.kill)
    assert killed_at, "the cloud never streamed any text"
    fallback = next(e for e in events if isinstance(e, Fallback))
    assert fallback.reason in {"UNAVAILABLE", "INTERNAL", "CANCELLED", "UNKNOWN"}
    done = events[-1]
    assert isinstance(done, Done) and done.tier == "edge"
    r = done.record
    assert r.fallback.startswith("answer_local:") and r.fallback.endswith(":mid_stream")
    assert r.tokens["cloud"] >= 1 and r.tokens["edge"] >= 1 and r.tokens["cloud"] + r.tokens["edge"] <= 40
    # Nothing shown is taken back: the device continued after the cloud's last token.
    assert done.text == "".join(e.text for e in events if isinstance(e, Text))


def test_cloud_stalled_past_the_deadline_falls_back_at_the_deadline(smollm2, tmp_path):
    deadline_s = 8.0
    with cloud_process() as (proc, port):
        client = TandemClient(smollm2, cloud=f"127.0.0.1:{port}", policy=policy_with(**POLICY),
                              audit_log=tmp_path / "audit.jsonl", deadline_s=deadline_s)
        client.connect()  # warm: the deadline then covers the request, not the process start-up
        start = time.monotonic()
        stream = client.generate(PROMPT, max_new_tokens=40)
        events, stopped_at, fell_back_at = [], None, None
        for event in stream:
            events.append(event)
            if isinstance(event, Text) and event.tier == "cloud" and event.text and stopped_at is None:
                proc.send_signal(signal.SIGSTOP)  # the process stays, its connection stays open, nothing comes
                stopped_at = time.monotonic()
            if isinstance(event, Fallback):
                fell_back_at = time.monotonic()
        proc.send_signal(signal.SIGCONT)
    assert stopped_at is not None and fell_back_at is not None
    assert stopped_at - start < deadline_s
    assert fell_back_at - start <= deadline_s + 1.5
    r = events[-1].record
    assert r.fallback == "answer_local:DEADLINE_EXCEEDED:mid_stream" and r.tier == "edge"
