"""The edge SDK end to end: SmolLM2 on the device, a real cloud server on loopback, one test per path."""

from __future__ import annotations

import json
import re

import pytest

from edge import (
    CircuitBreaker,
    CloudUnavailableError,
    Done,
    Escalation,
    Fallback,
    PolicyDeniedError,
    RetryPolicy,
    TandemClient,
    Text,
)
from cloud.client import generate_request
from cloud.config import ServerConfig
from edge.demo import DOCUMENT, dead_address
from tandem_rpc.v1 import cloud_pb2
from tests.cloud_fixtures import client_for, running_server
from tests.edge_fixtures import ALWAYS_UNSURE, Capture, CaptureInterceptor, policy_with

# The bare "What is the capital of France?" is a near-tie at SmolLM2's first token ("The" 0.152 against
# "L'" 0.140 in fp32), which the device tier's int8 activation rounding tips either way by CPU (without
# AMX the prompt takes the int8 tile dot): "L'Étoile, la Marseur, ..." on a Zen 3. Asked for a sentence,
# "The" leads 0.54 to 0.12 on every path.
QUESTION = "What is the capital of France? Answer in one sentence."
SMALL_DEVICE = {"max_context_tokens": 64, "max_new_tokens": 16}


@pytest.fixture(scope="module")
def cloud(smollm2):
    """The same model as the cloud tier, with every request it receives recorded."""
    capture = Capture()
    with running_server(smollm2, interceptors=[CaptureInterceptor(capture)]) as (_, port):
        yield f"127.0.0.1:{port}", capture


def sdk(model, cloud_address, policy, tmp_path, **kwargs) -> TandemClient:
    return TandemClient(model, cloud=cloud_address, policy=policy, audit_log=tmp_path / "audit.jsonl", **kwargs)


def greedy_text(model, ids, n) -> str:
    return "".join(e.text for e in model.stream(ids, max_new_tokens=n))


def shown_text(events) -> str:
    """What a caller following the event contract displays at the end."""
    shown = ""
    for e in events:
        if isinstance(e, Text):
            shown += e.text
        elif isinstance(e, Escalation):
            shown = shown[: e.keep_chars]
    return shown


def test_confident_answer_stays_on_the_device(smollm2, cloud, tmp_path):
    address, capture = cloud
    before = len(capture.of("Generate"))
    events = list(sdk(smollm2, address, policy_with(), tmp_path).generate(QUESTION, max_new_tokens=24))
    done = events[-1]
    assert isinstance(done, Done)
    assert done.text == greedy_text(smollm2, smollm2.encode_prompt(QUESTION), 24) and "Paris" in done.text
    assert {e.tier for e in events if isinstance(e, Text)} == {"edge"}
    r = done.record
    assert (r.route, r.tier, r.escalated, r.bytes_sent, r.fallback) == ("local", "edge", False, 0, None)
    assert r.tokens["edge"] >= 7 and r.tokens["cloud"] == 0 and r.signals["fired_at"] is None
    assert len(capture.of("Generate")) == before
    line = (tmp_path / "audit.jsonl").read_text()
    assert json.loads(line)["request_id"] == r.request_id and "France" not in line


def test_request_too_long_for_the_device_goes_to_the_cloud(smollm2, cloud, tmp_path):
    address, capture = cloud
    prompt = DOCUMENT[:600] + "\n\nWhat is this about?"
    ids = smollm2.encode_prompt(prompt)
    answer = sdk(smollm2, address, policy_with(edge=SMALL_DEVICE), tmp_path).complete(prompt, max_new_tokens=12)
    request = capture.of("Generate")[-1]
    assert list(request.token_ids) == ids
    assert request.escalation_reason == cloud_pb2.ESCALATION_REASON_CONTEXT_TOO_LONG
    assert answer.text == greedy_text(smollm2, ids, 12)  # the cloud runs the same weights
    r = answer.record
    assert (r.route, r.tier, r.escalation_reason) == ("cloud", "cloud", "context_over_device_budget")
    assert r.bytes_sent == request.ByteSize() and r.tokens == {"prompt": len(ids), "edge": 0, "cloud": 12}


def test_low_confidence_continues_in_the_cloud_from_the_kept_tokens(smollm2, cloud, tmp_path):
    address, capture = cloud
    policy = policy_with(confidence={**ALWAYS_UNSURE, "action": "escalate_continue"})
    ids = smollm2.encode_prompt(QUESTION)
    events = list(sdk(smollm2, address, policy, tmp_path).generate(QUESTION, max_new_tokens=24))
    escalations = [e for e in events if isinstance(e, Escalation)]
    assert len(escalations) == 1
    local_ids = [i for e in events[: events.index(escalations[0])] if isinstance(e, Text) for i in e.token_ids]
    kept = escalations[0].kept_tokens
    assert 0 < kept < len(local_ids)
    request = capture.of("Generate")[-1]
    assert list(request.token_ids) == ids + local_ids[:kept]
    assert request.escalation_reason == cloud_pb2.ESCALATION_REASON_LOW_CONFIDENCE
    done = events[-1]
    # Same weights on both tiers: continuing from the kept tokens reproduces the device's own greedy answer.
    assert done.text == shown_text(events) == greedy_text(smollm2, ids, 24)
    assert done.tier == "cloud" and done.record.escalation_reason == "low_confidence:min_prob"
    assert done.record.tokens["edge"] == kept and done.record.tokens["cloud"] > 0


def test_low_confidence_restart_discards_the_draft(smollm2, cloud, tmp_path):
    address, capture = cloud
    policy = policy_with(confidence={**ALWAYS_UNSURE, "action": "escalate_restart"})
    ids = smollm2.encode_prompt(QUESTION)
    events = list(sdk(smollm2, address, policy, tmp_path).generate(QUESTION, max_new_tokens=24))
    (escalation,) = [e for e in events if isinstance(e, Escalation)]
    assert (escalation.keep_chars, escalation.kept_tokens) == (0, 0)
    assert list(capture.of("Generate")[-1].token_ids) == ids
    after = events[events.index(escalation) + 1:]
    assert {e.tier for e in after if isinstance(e, Text)} == {"cloud"}
    assert events[-1].text == shown_text(events) == greedy_text(smollm2, ids, 24)


@pytest.mark.parametrize("prompt, tags", [
    ("My card 4111 1111 1111 1111 was charged twice. " + QUESTION, ()),
    (QUESTION, ("health",)),
])
def test_private_request_is_pinned_to_the_device_whatever_the_monitor_says(smollm2, cloud, tmp_path, prompt, tags):
    address, capture = cloud
    before = len(capture.requests)
    policy = policy_with(confidence=ALWAYS_UNSURE, edge={"max_context_tokens": 128, "max_new_tokens": 16})
    answer = sdk(smollm2, address, policy, tmp_path).complete(prompt, tags=tags, max_new_tokens=12)
    r = answer.record
    assert (r.route, r.tier, r.escalated, r.bytes_sent) == ("local_only", "edge", False, 0)
    assert r.signals["fired_at"] is not None  # the rule fired, and the request still stayed
    assert len(capture.requests) == before  # not even Info was asked


def test_private_request_too_long_for_the_device_is_refused_not_sent(smollm2, cloud, tmp_path):
    address, capture = cloud
    before = len(capture.requests)
    prompt = DOCUMENT[:400] + " My card is 4111 1111 1111 1111."
    with pytest.raises(PolicyDeniedError, match="shorten it"):
        sdk(smollm2, address, policy_with(edge=SMALL_DEVICE), tmp_path).complete(prompt, max_new_tokens=8)
    assert len(capture.requests) == before
    assert json.loads((tmp_path / "audit.jsonl").read_text())["fallback"] == "fail:PolicyDeniedError"


def test_redacted_egress_leaves_as_placeholders_and_is_restored_on_the_device(smollm2, cloud, tmp_path):
    address, capture = cloud
    email = "jane.doe@example.com"
    prompt = "Mailing list: " + ", ".join([email] * 12) + ","
    events = list(sdk(smollm2, address, policy_with(edge=SMALL_DEVICE), tmp_path)
                  .generate(prompt, chat=False, max_new_tokens=12))
    sent = smollm2.tokenizer.decode(capture.of("Generate")[-1].token_ids)
    assert "[EMAIL_1]" in sent and "jane" not in sent
    done = events[-1]
    assert done.record.route == "cloud" and done.record.redactions == 1
    # The cloud only ever saw [EMAIL_1]; the address in the answer was put back on the device.
    assert email in done.text and "[EMAIL_1]" not in done.text


def test_kept_draft_that_repeats_a_private_value_is_redacted_before_it_leaves(smollm2, cloud, tmp_path):
    address, capture = cloud
    email = "jane.doe@example.com"
    prompt = "Mailing list: " + ", ".join([email] * 3) + ","
    policy = policy_with(confidence={**ALWAYS_UNSURE, "action": "escalate_continue", "min_tokens": 12,
                                     "window": 2})
    events = list(sdk(smollm2, address, policy, tmp_path).generate(prompt, chat=False, max_new_tokens=16))
    draft = "".join(e.text for e in events[: next(i for i, e in enumerate(events) if isinstance(e, Escalation))]
                    if isinstance(e, Text))
    assert email in draft  # the device repeated the address before it grew unsure
    sent = smollm2.tokenizer.decode(capture.of("Generate")[-1].token_ids)
    assert "jane" not in sent and "[EMAIL_1]" in sent


def test_refused_connection_falls_back_to_the_device(smollm2, tmp_path):
    client = sdk(smollm2, dead_address(), policy_with(edge=SMALL_DEVICE), tmp_path, deadline_s=5.0)
    prompt = DOCUMENT[:400] + "\n\nWhat is this about?"
    events = list(client.generate(prompt, max_new_tokens=8))
    (fallback,) = [e for e in events if isinstance(e, Fallback)]
    assert fallback.reason == "UNAVAILABLE"
    r = events[-1].record
    assert (r.route, r.tier, r.fallback, r.bytes_sent) == ("cloud", "edge", "answer_local:UNAVAILABLE", 0)
    assert r.latencies_ms["cloud_connect_ms"] < 5000 and r.tokens["edge"] == 8


def test_breaker_stops_trying_a_dead_cloud(smollm2, tmp_path):
    client = sdk(smollm2, dead_address(), policy_with(edge=SMALL_DEVICE), tmp_path,
                 breaker=CircuitBreaker(failure_threshold=1, cooldown_s=60))
    prompt = DOCUMENT[:400]
    first = client.complete(prompt, max_new_tokens=2).record
    second = client.complete(prompt, max_new_tokens=2).record
    assert first.fallback == "answer_local:UNAVAILABLE"
    assert second.fallback == "answer_local:CIRCUIT_OPEN" and second.latencies_ms["cloud_connect_ms"] < 50


def test_fail_policy_raises_a_clear_error_and_still_writes_the_record(smollm2, tmp_path):
    address = dead_address()
    policy = policy_with(edge=SMALL_DEVICE, cloud={"on_unreachable": "fail"})
    client = sdk(smollm2, address, policy, tmp_path, deadline_s=3.0)
    with pytest.raises(CloudUnavailableError, match=address) as info:
        client.complete(DOCUMENT[:400], max_new_tokens=4)
    assert "on_unreachable is fail" in str(info.value)
    record = json.loads((tmp_path / "audit.jsonl").read_text())
    assert record["fallback"] == "fail:UNAVAILABLE" and record["tier"] is None


def test_overloaded_cloud_is_retried_no_sooner_than_it_asks(smollm2, tmp_path):
    config = ServerConfig(max_concurrency=1, max_queue=0)
    with running_server(smollm2, config=config) as (_, port), client_for(port) as other:
        busy = other.stream(generate_request(smollm2.encode_prompt(DOCUMENT, chat=False), max_new_tokens=400),
                            timeout=120)  # raw speech text: decodes for a long while
        next(busy)  # admitted: the only slot is taken
        retry = RetryPolicy(attempts=2, initial_backoff_s=0.001, max_backoff_s=0.001, jitter_s=0)
        client = sdk(smollm2, f"127.0.0.1:{port}", policy_with(edge=SMALL_DEVICE), tmp_path, retry=retry)
        events = list(client.generate(DOCUMENT[:400], max_new_tokens=4))
        busy.cancel()
    (fallback,) = [e for e in events if isinstance(e, Fallback)]
    hint_ms = int(re.search(r"retry after (\d+) ms", fallback.detail).group(1))
    record = events[-1].record
    assert record.fallback == "answer_local:UNAVAILABLE"
    assert record.latencies_ms["cloud_connect_ms"] >= hint_ms  # waited out the server's hint, not 1 ms


def test_a_stream_the_caller_abandons_cancels_the_cloud_call_and_is_recorded(smollm2, cloud, tmp_path):
    address, _ = cloud
    prompt = DOCUMENT[:600]
    stream = sdk(smollm2, address, policy_with(edge=SMALL_DEVICE), tmp_path).generate(prompt, max_new_tokens=200)
    for event in stream:
        if isinstance(event, Text) and event.tier == "cloud":
            break
    stream.close()
    record = json.loads((tmp_path / "audit.jsonl").read_text())
    assert record["fallback"] == "abandoned_by_caller" and record["route"] == "cloud"
    # The server's slot is free again: the next request is answered at once.
    assert sdk(smollm2, address, policy_with(edge=SMALL_DEVICE), tmp_path).complete(
        prompt, max_new_tokens=2).record.tier == "cloud"
