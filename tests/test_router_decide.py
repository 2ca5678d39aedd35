"""Routing decisions: the order of the rules, what leaves the device, and the
two promises as properties: local_only never leaves, and redacted egress holds
none of the redacted text yet restores to the original exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router import Route, StreamMonitor, TagAction, decide, load_policy, parse_policy

POLICIES = {p.stem: load_policy(p) for p in sorted((Path(__file__).resolve().parents[1] / "policies").glob("*.yaml"))}
DEFAULT = POLICIES["default"]

POLICY_TEXT = """\
version: "t"
edge: {max_context_tokens: 1000, max_new_tokens: 100}
cloud: {allowed: %s}
privacy:
  local_only: [health, card]
  redact: [email, phone, confidential]
  allow: [ip_address, public]
"""
OPEN = parse_policy(POLICY_TEXT % "true")
CLOSED = parse_policy(POLICY_TEXT % "false")


def test_within_budget_runs_locally_and_may_escalate_with_redacted_egress():
    text = "Draft a reply to bob@example.com about the outage on 10.0.0.7"
    decision = decide(text, token_count=200, policy=OPEN)
    assert decision.route is Route.LOCAL and decision.may_escalate
    assert decision.egress == "Draft a reply to [EMAIL_1] about the outage on 10.0.0.7"
    assert decision.codes == ["detector:email->redact", "detector:ip_address->allow", "within_device_budget"]
    assert decision.findings == {"email": 1, "ip_address": 1}
    assert decision.tags == {"email": TagAction.REDACT, "ip_address": TagAction.ALLOW}
    assert decision.redaction.restore(decision.egress) == text


def test_over_the_context_budget_goes_to_the_cloud():
    decision = decide("hello", token_count=950, policy=OPEN)  # 950 + 100 reserved > 1000
    assert decision.route is Route.CLOUD and decision.over_device_budget
    assert decision.codes == ["context_over_device_budget"]
    assert decision.egress == "hello"


def test_asking_for_more_new_tokens_than_the_device_makes_goes_to_the_cloud():
    decision = decide("hello", token_count=10, policy=OPEN, new_tokens=150)
    assert decision.route is Route.CLOUD
    assert decision.codes == ["new_tokens_over_device_budget"]
    decision = decide("hello", token_count=600, policy=OPEN, new_tokens=500)
    assert decision.codes == ["context_over_device_budget"]


def test_new_tokens_asked_for_replace_the_reserved_maximum():
    assert decide("x", token_count=950, policy=OPEN, new_tokens=20).route is Route.LOCAL


def test_over_budget_with_the_cloud_disallowed_is_local_only_and_flagged():
    decision = decide("hello", token_count=5000, policy=CLOSED)
    assert decision.route is Route.LOCAL_ONLY and decision.over_device_budget
    assert not decision.may_escalate and decision.egress is None
    assert decision.codes == ["context_over_device_budget", "cloud_disallowed"]


def test_cloud_disallowed_within_budget_is_local_without_egress():
    decision = decide("mail bob@example.com", token_count=10, policy=CLOSED)
    assert decision.route is Route.LOCAL and not decision.may_escalate and decision.egress is None
    assert decision.codes[-1] == "cloud_disallowed"


def test_caller_tag_local_only_pins_the_request_even_over_budget():
    decision = decide("what helps with a headache?", caller_tags=["Health"], token_count=5000, policy=OPEN)
    assert decision.route is Route.LOCAL_ONLY and decision.egress is None and not decision.may_escalate
    assert decision.codes == ["tag_local_only:health", "context_over_device_budget", "over_budget_local_only"]


def test_detector_local_only_pins_the_request():
    decision = decide("charge 4111 1111 1111 1111 and mail bob@example.com", token_count=10, policy=OPEN)
    assert decision.route is Route.LOCAL_ONLY and decision.egress is None
    assert "detector:card->local_only" in decision.codes


def test_unknown_caller_tag_takes_the_default_action():
    decision = decide("hi", caller_tags=["payroll"], token_count=10, policy=OPEN)
    assert decision.route is Route.LOCAL_ONLY
    assert "default_action" in decision.reasons[0].detail


def test_caller_tag_with_redact_also_redacts_findings_that_are_otherwise_allowed():
    decision = decide("server 10.0.0.7 is down", caller_tags=["confidential"], token_count=10, policy=OPEN)
    assert decision.egress == "server [IP_ADDRESS_1] is down"
    assert decision.codes[0] == "tag_redact:confidential"


def test_messages_keep_their_shape_and_share_placeholders():
    messages = [
        {"role": "system", "content": "You help bob@example.com.", "name": "sys"},
        {"role": "user", "content": "Email bob@example.com and 312-867-5309."},
    ]
    decision = decide(messages, token_count=30, policy=OPEN)
    assert decision.egress == [
        {"role": "system", "content": "You help [EMAIL_1].", "name": "sys"},
        {"role": "user", "content": "Email [EMAIL_1] and [PHONE_1]."},
    ]
    assert decision.findings == {"email": 2, "phone": 1}
    assert [len(spans) for spans in decision.spans] == [1, 2]
    assert messages[0]["content"] == "You help bob@example.com."  # the caller's messages are untouched


def test_bad_inputs_are_clear_errors():
    with pytest.raises(TypeError, match="wrap a single tag"):
        decide("x", caller_tags="health", token_count=1, policy=OPEN)
    with pytest.raises(TypeError, match="message 1 needs string 'content'"):
        decide([{"role": "user", "content": "a"}, {"role": "user"}], token_count=1, policy=OPEN)
    with pytest.raises(ValueError, match="token_count"):
        decide("x", token_count=-1, policy=OPEN)
    with pytest.raises(ValueError, match="caller tags"):
        decide("x", caller_tags=[""], token_count=1, policy=OPEN)
    with pytest.raises(ValueError, match="at most 32 caller tags"):
        decide("x", caller_tags=[f"t{i}" for i in range(33)], token_count=1, policy=OPEN)
    for tag in ("t" * 65, "two\nlines", "bell\x07"):
        with pytest.raises(ValueError, match="at most 64 characters"):
            decide("x", caller_tags=[tag], token_count=1, policy=OPEN)
    assert decide("x", caller_tags=["患者"] * 40, token_count=1, policy=OPEN).tags  # one tag, in any script


def test_decision_names_the_policy_it_applied():
    decision = decide("x", token_count=1, policy=DEFAULT)
    assert (decision.policy_version, decision.policy_hash) == (DEFAULT.version, DEFAULT.content_hash)


def test_health_app_policy_keeps_medical_text_local():
    decision = decide("I was diagnosed with diabetes last year, MRN 00482913", token_count=20,
                      policy=POLICIES["health-app"])
    assert decision.route is Route.LOCAL_ONLY
    assert decision.findings == {"health_condition": 1, "medical_record_number": 1, "medical_term": 2, "mrn": 1}


def test_the_default_policy_keeps_a_persons_condition_on_the_device_but_not_a_question_about_one():
    """A condition tied to someone pins the request to the device, as a caller's `health` tag does; a
    question about an illness may reach the cloud whole. A policy that redacts health sends a placeholder."""
    text = "My son has been diagnosed with ADHD - help me write to his school."
    decision = decide(text, token_count=20, policy=DEFAULT)
    assert (decision.route, decision.egress) == (Route.LOCAL_ONLY, None)
    assert "detector:health_condition->local_only" in decision.codes
    tagged = decide("What is the capital of France?", caller_tags=["health"], token_count=8, policy=DEFAULT)
    assert (tagged.route, tagged.egress, tagged.codes[0]) == (Route.LOCAL_ONLY, None, "tag_local_only:health")
    question = "What are the early signs of ADHD in children, and how is it diagnosed?"
    assert decide(question, token_count=20, policy=DEFAULT).egress == question
    default_text = (Path(__file__).resolve().parents[1] / "policies" / "default.yaml").read_text()
    redacting = parse_policy(default_text.replace("bank_account, health, special_category]", "bank_account, special_category]").replace(
        "person_name, employment]", "person_name, employment, health]"))
    decision = decide(text, token_count=20, policy=redacting)
    assert decision.egress == "My son has been diagnosed with [HEALTH_CONDITION_1] - help me write to his school."
    assert "detector:health_condition->redact" in decision.codes and decision.redaction.restore(decision.egress) == text


# --- properties -------------------------------------------------------------------

FILLER = ["please", "summarize", "the meeting notes", "from Tuesday", "order 58213", "v1.2.3", "at 14:30",
          "for $1,299.99", "thanks!", "Hello", "and", "2024-03-15", "the report"]
# Per example policy: texts whose detectors map to local_only there.
LOCAL_ONLY_VALUES = {
    "default": ["4111 1111 1111 1111", "SSN 146-25-2971", "DE89 3704 0044 0532 0130 00", "AKIALDPA6HNBEGTDNBVQ",
                "diagnosed with asthma", "my brother is gay"],
    "strict-privacy": ["bob@example.com", "(212) 555-1234", "10.0.0.7", "build.corp", "4111 1111 1111 1111"],
    "health-app": ["diabetes", "MRN 00482913", "E11.9", "4111 1111 1111 1111", "AKIALDPA6HNBEGTDNBVQ"],
}
LOCAL_ONLY_VALUES["demo"] = LOCAL_ONLY_VALUES["default"]  # the default policy with a smaller device budget
REDACTED_VALUES = ["bob@example.com", "ana.costa@uol.com.br", "(212) 555-1234", "+44 20 7946 0958",
                   "10.0.0.7", "2001:db8::8a2e:370:7334", "030 12345678"]
SEPARATORS = st.sampled_from([" ", ", ", ". ", "\n", " (", ") "])
confidence_streams = st.lists(
    st.tuples(st.floats(min_value=-40, max_value=0), st.floats(min_value=0, max_value=12),
              st.floats(min_value=0, max_value=1)),
    max_size=40,
)


def _join(parts: list[str], seps: list[str]) -> str:
    return "".join(p + s for p, s in zip(parts, seps + [""] * len(parts)))


@st.composite
def local_only_requests(draw):
    name = draw(st.sampled_from(sorted(POLICIES)))
    policy = POLICIES[name]
    parts = draw(st.lists(st.sampled_from(FILLER), max_size=6))
    caller_tags = draw(st.lists(st.sampled_from(["public", "beta"]), max_size=2))
    if draw(st.booleans()):
        pinned = [t for t, a in policy.privacy.actions.items() if a is TagAction.LOCAL_ONLY] + ["unlisted-tag"]
        caller_tags.append(draw(st.sampled_from(pinned)))
    else:
        parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from(LOCAL_ONLY_VALUES[name])))
    seps = draw(st.lists(SEPARATORS, min_size=len(parts), max_size=len(parts)))
    return policy, _join(parts, seps), caller_tags


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=local_only_requests(), token_count=st.integers(0, 200_000),
       new_tokens=st.none() | st.integers(0, 100_000), stream=confidence_streams, as_messages=st.booleans())
def test_local_only_never_leaves_under_any_policy_budget_or_monitor_outcome(
    request, token_count, new_tokens, stream, as_messages
):
    policy, text, caller_tags = request
    payload = [{"role": "user", "content": text}] if as_messages else text
    decision = decide(payload, caller_tags=caller_tags, token_count=token_count, policy=policy,
                      new_tokens=new_tokens)
    assert decision.route is Route.LOCAL_ONLY
    assert decision.may_escalate is False and decision.egress is None
    monitor = StreamMonitor(policy.confidence, may_escalate=decision.may_escalate)
    assert not any(monitor.observe(*_with_hidden(policy, signals)).escalate for signals in stream)


def _with_hidden(policy, signals: tuple[float, ...]) -> tuple:
    """A token's signals, plus a hidden state where the policy's calibrated judge reads one."""
    rule = policy.confidence
    if rule is None or rule.calibration is None:
        return signals
    return (*signals, [signals[0] / 40.0] * len(rule.calibration.judge.prompt_probe.weights))


@st.composite
def redactable_requests(draw):
    parts = draw(st.lists(st.sampled_from(FILLER), max_size=6))
    values = draw(st.lists(st.sampled_from(REDACTED_VALUES), min_size=1, max_size=5))
    for value in values:
        parts.insert(draw(st.integers(0, len(parts))), value)
    seps = draw(st.lists(SEPARATORS, min_size=len(parts), max_size=len(parts)))
    return _join(parts, seps)


@settings(max_examples=150, deadline=None)
@given(text=redactable_requests(), token_count=st.integers(0, 20_000), literal_placeholder=st.booleans())
def test_redacted_egress_holds_no_redacted_span_and_restores_exactly(text, token_count, literal_placeholder):
    if literal_placeholder:  # a user who literally typed a placeholder-looking string
        text = "see [EMAIL_1] " + text
    decision = decide(text, token_count=token_count, policy=DEFAULT)
    assert decision.route in (Route.LOCAL, Route.CLOUD) and decision.may_escalate
    (spans,) = decision.spans
    redacted = [text[f.start:f.end] for f in spans if DEFAULT.privacy.action_for(f.tag) is TagAction.REDACT]
    assert redacted, "the strategy always inserts something to redact"
    for value in redacted:
        assert value not in decision.egress
    assert decision.redaction.restore(decision.egress) == text


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(redactable_requests(), min_size=1, max_size=4))
def test_redacted_messages_restore_message_by_message(texts):
    messages = [{"role": "user", "content": t} for t in texts]
    decision = decide(messages, token_count=100, policy=DEFAULT)
    for original, sent in zip(messages, decision.egress):
        assert decision.redaction.restore(sent["content"]) == original["content"]


def test_monitor_for_a_request_that_may_leave_does_escalate():
    decision = decide("What's new in Python?", token_count=10, policy=DEFAULT)
    monitor = StreamMonitor(DEFAULT.confidence, may_escalate=decision.may_escalate)
    # A hidden state the default policy's prompt probe reads as "the device does not know this".
    probe = DEFAULT.confidence.calibration.judge.prompt_probe
    hidden = [-10.0 * math.copysign(1.0, w) for w in probe.weights]
    verdicts = [monitor.observe(math.log(0.01), 5.0, 0.0, hidden) for _ in range(DEFAULT.confidence.window)]
    assert verdicts[0].escalate and verdicts[0].before_decoding
