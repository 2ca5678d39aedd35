"""Decision records: one valid JSON line per decision, safe to write from many
threads, and never a trace of the request's text."""

from __future__ import annotations

import json
import threading

from router import AuditLog, DecisionRecord, StreamMonitor, decide, parse_policy

POLICY = parse_policy("""\
version: "audit-test"
edge: {max_context_tokens: 1000, max_new_tokens: 100}
confidence: {signal: min_prob, threshold: 0.2, window: 4, min_tokens: 2}
privacy:
  custom: [{name: project, pattern: 'Project \\w+', tag: confidential}]
  redact: [email, phone, ip_address, confidential, person_name]
  local_only: [card, health]
  allow: [beta]
cloud: {allowed: true}
audit: {path: audit.jsonl}
""")
PRIVATE = ["Dana Whitfield", "dana.whitfield@protonmail.com", "312-867-5309", "Project Falcon", "10.0.0.7"]
TEXT = f"I am {PRIVATE[0]} ({PRIVATE[1]}, {PRIVATE[2]}); {PRIVATE[3]} runs on {PRIVATE[4]}."


def _record() -> DecisionRecord:
    decision = decide(TEXT, caller_tags=["beta"], token_count=40, policy=POLICY)
    record = DecisionRecord.from_decision(decision, request_id="req-1")
    monitor = StreamMonitor(POLICY.confidence, may_escalate=decision.may_escalate)
    for logprob in (-0.1, -0.2, -3.0):
        monitor.observe(logprob, 1.0, 0.3)
    record.signals = monitor.summary()
    record.tier, record.escalated, record.escalation_reason = "cloud", True, "low_confidence:min_prob"
    record.bytes_sent, record.latencies_ms, record.tokens = 1234, {"decide": 0.2, "total": 812.5}, {"prompt": 40}
    return record


def test_record_is_one_line_of_json_with_the_decision_and_the_policy():
    line = _record().to_json()
    assert "\n" not in line
    data = json.loads(line)
    assert data["request_id"] == "req-1" and data["route"] == "local"
    assert data["policy_version"] == "audit-test" and data["policy_hash"] == POLICY.content_hash
    assert data["findings"] == {"email": 1, "ip_address": 1, "person_name": 1, "phone": 1, "project": 1}
    assert data["tags"] == {"beta": "allow", "confidential": "redact", "email": "redact",
                            "ip_address": "redact", "person_name": "redact", "phone": "redact"}
    assert data["reasons"][0] == "tag_allow:beta" and data["redactions"] == 5
    assert data["signals"]["fired_at"] == 2 and data["escalated"] is True
    assert data["timestamp"].endswith("+00:00")


def test_record_holds_no_private_text():
    """Every key and string value of the record (numbers such as the timestamp's digits aside)."""
    data = json.loads(_record().to_json())

    def strings(node) -> list[str]:
        if isinstance(node, dict):
            return [*node, *(s for v in node.values() for s in strings(v))]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) and node != data["timestamp"] else []

    text = "\n".join(strings(data))
    for value in PRIVATE + ["Dana", "Whitfield", "protonmail", "867", "Falcon"]:
        assert value not in text


def test_audit_log_appends_whole_lines_from_many_threads(tmp_path):
    log = AuditLog(tmp_path / "logs" / "audit.jsonl")
    record = _record()

    def write_many():
        for _ in range(200):
            log.write(record)

    threads = [threading.Thread(target=write_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "logs" / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1600
    assert all(json.loads(line)["request_id"] == "req-1" for line in lines)


def test_audit_log_comes_from_the_policy_only_when_enabled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert AuditLog.from_policy(POLICY).path.name == "audit.jsonl"
    off = parse_policy('version: "x"\nedge: {max_context_tokens: 10, max_new_tokens: 5}\ncloud: {allowed: true}\n')
    assert AuditLog.from_policy(off) is None


def test_every_record_gets_its_own_request_id():
    decision = decide("hi", token_count=1, policy=POLICY)
    assert DecisionRecord.from_decision(decision).request_id != DecisionRecord.from_decision(decision).request_id
