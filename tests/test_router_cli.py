"""`tandem policy ...` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from router import load_policy
from router.schema import PUBLISHED_PATH

REPO = Path(__file__).resolve().parents[1]


def tandem(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tandem", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def test_check_prints_ok_with_version_and_hash_for_every_example():
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "policies").glob("*.yaml"))
    result = tandem("policy", "check", *files)
    assert result.returncode == 0, result.stderr
    for path in files:
        policy = load_policy(REPO / path)
        assert f"OK {path}: version {policy.version}, sha256 {policy.content_hash}" in result.stdout


def test_check_names_file_field_and_line_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1"\nedge:\n  max_context_tokens: 4096\n  max_new_tokns: 512\ncloud: {allowed: true}\n')
    result = tandem("policy", "check", str(bad))
    assert result.returncode == 1
    expected = f"{bad}:4: edge.max_new_tokns: unknown field 'max_new_tokns'; did you mean 'max_new_tokens'?"
    assert expected in result.stderr
    assert f"{bad}:2: edge.max_new_tokens: required field is missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_explain_shows_route_reasons_findings_and_exact_egress():
    result = tandem("policy", "explain", "policies/default.yaml", "--text",
                    "Email bob@example.com about server 10.0.0.7", "--tokens", "12")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "route     LOCAL   may escalate: yes" in out
    assert "detector:email->redact" in out and "within_device_budget" in out
    assert "'bob@example.com' at 6..21, tag email -> redact" in out
    assert "would leave the device only if the stream monitor escalates:\n" in out
    assert "\n  Email [EMAIL_1] about server [IP_ADDRESS_1]" in out


def test_explain_local_only_says_nothing_leaves():
    result = tandem("policy", "explain", "policies/health-app.yaml", "--text", "my insulin dose", "--tags", "public")
    assert result.returncode == 0, result.stderr
    assert "route     LOCAL_ONLY" in result.stdout and "nothing leaves the device" in result.stdout
    assert "(estimated from length; pass --tokens)" in result.stdout


def test_explain_json_is_machine_readable():
    result = tandem("policy", "explain", "policies/default.yaml", "--text", "call 312-867-5309", "--tokens", "9000",
                    "--json")
    data = json.loads(result.stdout)
    assert data["route"] == "cloud" and data["over_device_budget"]
    assert data["egress"] == "call [PHONE_1]"
    assert [r["code"] for r in data["reasons"]] == ["detector:phone->redact", "context_over_device_budget"]
    assert data["findings"] == [{"kind": "phone", "tag": "phone", "start": 5, "end": 17, "text": "312-867-5309"}]


def test_explain_with_a_broken_policy_reports_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [\n")
    result = tandem("policy", "explain", str(bad), "--text", "hi")
    assert result.returncode == 1 and "YAML syntax error" in result.stderr and f"{bad}:" in result.stderr


def test_schema_prints_the_published_schema():
    result = tandem("policy", "schema")
    assert result.returncode == 0
    assert result.stdout == PUBLISHED_PATH.read_text(encoding="utf-8")
