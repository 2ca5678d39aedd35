"""Everything the cloud receives, across the whole labelled privacy set, under every example
policy: no private value leaves the device in any form (bytes on the wire, token IDs, text,
stop strings); and the one egress filter every outgoing field passes through."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
import yaml
from google.protobuf.descriptor import FieldDescriptor

from edge import PolicyDeniedError, TandemClient
from edge.egress import FIELD_RULES, EgressFilter, EgressRefusedError, needs_rule
from router import Redaction, TagAction, parse_policy
from tandem_rpc.v1 import cloud_pb2
from tests.cloud_fixtures import running_server
from tests.conftest import REPO
from tests.edge_fixtures import ByteRecorder, Capture, CaptureInterceptor, policy_with

DATA = Path(__file__).parent / "router_data"
POLICIES = sorted((REPO / "policies").glob("*.yaml"))


def _labelled() -> list[tuple[str | list[dict], list[str]]]:
    """(request, private values) for every labelled text: prompts, and chat messages for split values."""
    cases = yaml.safe_load((DATA / "pii_cases.yaml").read_text(encoding="utf-8"))["positives"]
    cases += yaml.safe_load((DATA / "tricky_cases.yaml").read_text(encoding="utf-8"))["positives"]
    generated = [json.loads(line) for line in (DATA / "generated_cases.jsonl").read_text(encoding="utf-8").splitlines()]
    out: list[tuple[str | list[dict], list[str]]] = [
        (c["text"], [v for _, v in c["entities"]]) for c in cases + [g for g in generated if "text" in g]
        if c["entities"]
    ]
    for g in generated:
        if "messages" in g:
            out.append(([{"role": "user", "content": m} for m in g["messages"]], [p for _, _, p in g["entities"]]))
    return out


LABELLED = _labelled()


def contains(haystack: list[int], needle: list[int]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def digit_string(value: str) -> str:
    """The digits of a number-like value in ASCII ("４１１１ １１１１" -> "41111111"): what must not arrive in
    any spelling. Empty for values that are not mostly digits (the digits of a random key mean nothing)."""
    digits = "".join(str(unicodedata.decimal(c)) for c in value if unicodedata.decimal(c, None) is not None)
    return digits if len(digits) * 2 >= sum(c.isalnum() for c in value) else ""


def squeezed(text: str) -> str:
    """Text with separators between digits removed, so a sent "4111-1111" shows as "41111111"."""
    return re.sub(r"(?<=\d)[\s._/\\-]+(?=\d)", "", text)


@pytest.mark.parametrize("policy_file", POLICIES, ids=lambda p: p.stem)
def test_no_private_value_reaches_the_cloud(llama3_small, policy_file):
    # A device budget of 16 tokens sends every request that may leave to the cloud; each request
    # also carries its own text as a stop string, so that field is put to the test too.
    policy = policy_with(policy_file, edge={"max_context_tokens": 16, "max_new_tokens": 1},
                         confidence=None, cloud={"allowed": True, "on_unreachable": "fail"})
    capture = Capture()
    tok = llama3_small.tokenizer
    with running_server(llama3_small, interceptors=[CaptureInterceptor(capture)]) as (_, port):
        recorder = ByteRecorder(port)
        client = TandemClient(llama3_small, cloud=f"127.0.0.1:{recorder.port}", policy=policy, audit_log=None)
        client.connect()
        sent_before = checked = 0
        for request, values in LABELLED:
            text = request if isinstance(request, str) else request[0]["content"]
            try:
                route = client.complete(request, max_new_tokens=1, stop=[text[:200]]).record.route
            except PolicyDeniedError:  # too long for the device and may not leave it: refused
                route = "refused"
            sent = capture.of("Generate")[sent_before:]
            sent_before += len(sent)
            assert bool(sent) == (route == "cloud"), request
            for message in sent:
                ids = list(message.token_ids)
                decoded = tok.decode(ids)
                outgoing = [decoded, *message.stop_strings, message.escalation_detail, message.session_id]
                for value in values:
                    digits = digit_string(value)
                    for field in outgoing:
                        assert value not in field, (policy_file.name, request)
                        assert len(digits) < 6 or digits not in squeezed(field), (policy_file.name, request)
                    assert not contains(ids, tok.encode(value)) and not contains(ids, tok.encode(" " + value))
                checked += 1
        client.close()
        wire = recorder.data()
        recorder.close()
    for _, values in LABELLED:
        for value in values:
            # (a two-digit fragment of a split value is in any binary stream, and six digits turn up in
            # random request ids' hex now and then ('081229' did): the token checks above cover those)
            assert len(value) < 6 or value.isdigit() or value.encode() not in wire, (policy_file.name, value)
            digits = digit_string(value)  # 7+: a shorter run can turn up in a random request id's hex
            assert len(digits) < 7 or digits.encode() not in wire, (policy_file.name, value)
    # The recorder saw the traffic (Info at least), and where the policy redacts rather than pins
    # some kinds, many redacted requests did go to the cloud: the checks had something to see.
    redacts = any(a is TagAction.REDACT for a in policy.privacy.actions.values())
    assert len(wire) > 0 and (checked >= 20 if redacts else checked == 0)


# --- the egress filter ----------------------------------------------------------------------

def _request_messages() -> list:
    """Every message type the SDK can send: the service's request types and the messages inside them."""
    service = cloud_pb2.DESCRIPTOR.services_by_name["CloudInference"]
    seen, todo = {}, [m.input_type for m in service.methods]
    while todo:
        message = todo.pop()
        if message.full_name in seen:
            continue
        seen[message.full_name] = message
        todo += [f.message_type for f in message.fields if f.type == FieldDescriptor.TYPE_MESSAGE]
    return list(seen.values())


def test_every_field_a_request_can_carry_has_an_egress_rule():
    """Adding a string, bytes or token-ID field to a request message without a rule fails here
    (and the filter refuses to send it)."""
    fields = {f.full_name for m in _request_messages() for f in m.fields if needs_rule(f)}
    assert fields - FIELD_RULES.keys() == set(), "fields with no egress rule"
    assert FIELD_RULES.keys() - fields == set(), "rules for fields that no longer exist"
    assert len(fields) >= 10


POLICY = parse_policy((REPO / "policies" / "default.yaml").read_text(), source="default.yaml")


def _filter(**options) -> EgressFilter:
    return EgressFilter(POLICY, Redaction(), decode=lambda ids: "".join(chr(i) for i in ids), **options)


def _message_with(field_name: str, value: str):
    """A request message whose `field_name` (a full proto name) holds `value`."""
    *_, message_name, name = field_name.split(".")
    message = getattr(cloud_pb2, message_name)()
    field = message.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated:
        getattr(message, name).append(value)
    else:
        setattr(message, name, value)
    return message


@pytest.mark.parametrize("field_name", sorted(n for n, r in FIELD_RULES.items() if r == "text"))
def test_each_free_text_field_is_redacted_or_refused(field_name):
    out = _filter().message(_message_with(field_name, "write to jane.doe@example.org today"))
    sent = out.SerializeToString()
    assert b"jane.doe@example.org" not in sent and b"[EMAIL_1]" in sent
    with pytest.raises(EgressRefusedError):
        _filter().message(_message_with(field_name, "my SSN is 146-25-2971"))


@pytest.mark.parametrize("field_name", sorted(n for n, r in FIELD_RULES.items() if r == "token_ids"))
def test_token_ids_that_hold_a_private_value_are_refused(field_name):
    *_, message_name, name = field_name.split(".")
    private = getattr(cloud_pb2, message_name)()
    getattr(private, name).extend(ord(c) for c in "card 4111 1111 1111 1111")
    with pytest.raises(EgressRefusedError):
        _filter().message(private)
    harmless = getattr(cloud_pb2, message_name)()
    getattr(harmless, name).extend(ord(c) for c in "what is the capital of France?")
    assert _filter().message(harmless) == harmless


def test_an_id_the_sdk_issued_leaves_as_it_is_but_the_same_text_from_a_caller_is_checked():
    """The id the SDK makes up for a request (random hex) carries nothing of it, so it leaves unread: a
    request must not fail by its id's luck (a uuid once read as a bank account). Whatever an issued value
    reads as, it passes; the same text from a caller, or inside another field, is checked."""
    issued = "my SSN is 146-25-2971"  # what no random id would say, to show the rule, not the detectors
    message = cloud_pb2.GenerateRequest(request_id=issued)
    assert _filter(issued=frozenset({issued})).message(message) == message
    with pytest.raises(EgressRefusedError, match="request_id holds a"):
        _filter().message(message)
    elsewhere = cloud_pb2.GenerateRequest(request_id=issued, stop_strings=[issued])
    with pytest.raises(EgressRefusedError, match="stop_strings holds a"):  # only the exact issued field value
        _filter(issued=frozenset({issued})).message(elsewhere)


def test_kv_frames_leave_only_when_the_cache_may():
    chunk = cloud_pb2.KVChunk(frame=b"\x00\x01")
    with pytest.raises(EgressRefusedError):
        _filter().message(chunk)
    assert _filter(frames_allowed=True).message(chunk) == chunk


def test_stop_strings_leave_redacted(llama3_small):
    """A stop string is sent to the cloud: an e-mail in it leaves as its placeholder, an SSN not at all."""
    policy = policy_with(edge={"max_context_tokens": 16, "max_new_tokens": 1}, confidence=None,
                         cloud={"allowed": True, "on_unreachable": "fail"})
    capture = Capture()
    with running_server(llama3_small, interceptors=[CaptureInterceptor(capture)]) as (_, port):
        with TandemClient(llama3_small, cloud=f"127.0.0.1:{port}", policy=policy, audit_log=None) as client:
            answer = client.complete("Reply to jane.doe@example.org about the meeting", max_new_tokens=1,
                                     stop=["jane.doe@example.org wrote", "END"])
            assert answer.record.route == "cloud"
            (sent,) = capture.of("Generate")
            assert list(sent.stop_strings) == ["[EMAIL_1] wrote", "END"]
            with pytest.raises(PolicyDeniedError):
                client.complete("Summarise the meeting notes", max_new_tokens=1, stop=["SSN 146-25-2971"])
            assert len(capture.of("Generate")) == 1
