"""`tandem demo` and `tandem chat` as a user runs them."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from edge.demo import DEMO_POLICY, SCENARIOS, TABLE_NOTE, main_with_servers, table
from router import DecisionRecord
from tests.cloud_fixtures import running_server
from tests.conftest import REPO
from tests.test_edge_paths import QUESTION


def test_demo_shows_every_path_and_ends_with_the_decision_table(smollm2, smollm2_device, tmp_path):
    out = io.StringIO()
    audit = tmp_path / "demo-audit.jsonl"
    status = main_with_servers("smollm2-135m", "smollm2-135m", cloud=None, policy=DEMO_POLICY, max_new_tokens=24,
                               audit_log=str(audit), load_edge=lambda name: smollm2_device,
                               load_cloud=lambda name: smollm2, out=out)
    assert status == 0
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(records) == len(SCENARIOS)
    local, long, unsure, pinned, redacted, down = records
    assert (local["route"], local["tier"], local["escalated"]) == ("local", "edge", False)
    assert (long["route"], long["tier"], long["escalation_reason"]) == ("cloud", "cloud", "context_over_device_budget")
    assert (unsure["route"], unsure["tier"]) == ("local", "cloud")
    assert unsure["escalation_reason"].startswith("low_confidence")
    assert (pinned["route"], pinned["tier"], pinned["bytes_sent"]) == ("local_only", "edge", 0)
    assert pinned["signals"]["fired_at"] is not None
    assert (redacted["route"], redacted["tier"], redacted["redactions"]) == ("cloud", "cloud", 1)
    assert (down["tier"], down["fallback"], down["bytes_sent"]) == ("edge", "answer_local:UNAVAILABLE", 0)
    text = out.getvalue()
    egress = next(line for line in text.splitlines() if line.startswith("may leave the device (redacted)"))
    assert "[EMAIL_1]" in egress and "jane.doe@example.com" not in egress  # what left the device
    restored = next(line for line in text.splitlines() if "placeholders restored on the device:" in line)
    assert "jane.doe@example.com" in restored and "[EMAIL_1]" not in restored  # what the user reads
    combined = next(line for line in text.splitlines() if "the device's kept text + the cloud's:" in line)
    answer = combined.split(": ", 1)[1]  # the escalated answer, whole: the device's first words, then the cloud's
    assert answer.startswith("The ") and "third wife" in answer, answer
    table = text[text.index("#  route"):].split("\n\n")[0].splitlines()
    assert len(table) >= 3 + len(SCENARIOS) and "bytes" in table[0] and table[-1] == TABLE_NOTE
    assert max(len(line) for line in table) <= 100


def test_the_decision_table_wraps_long_reasons_within_100_columns():
    from router import decide, load_policy

    decision = decide("What is the capital of France?", caller_tags=(), token_count=12,
                      policy=load_policy(DEMO_POLICY), new_tokens=8)
    record = DecisionRecord.from_decision(decision)
    record.escalation_reason = "a custom policy's reason that runs on and on " * 4
    record.tier = "cloud"
    text = table([(SCENARIOS[0], record), (SCENARIOS[1], None)])
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert " ".join(" ".join(lines).split()).count("runs on and on") == 4  # wrapped, nothing cut
    assert lines[-1] == TABLE_NOTE


def test_chat_marks_the_tier_of_each_answer(smollm2):
    with running_server(smollm2) as (_, port):
        proc = subprocess.run(
            [sys.executable, "-m", "tandem", "chat", "--cloud", f"127.0.0.1:{port}", "--max-new-tokens", "16",
             "--audit-log", "/dev/null"],
            input=f"{QUESTION}\n\n", capture_output=True, text=True, cwd=REPO, timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    assert "[edge] The capital of France is Paris." in proc.stdout
    assert "(local, answered by edge," in proc.stdout


def chat(*args: str, turns: str = f"{QUESTION}\n\n", cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tandem", "chat", "--max-new-tokens", "16", *args], input=turns,
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_chat_without_cloud_says_it_never_escalates_and_where_it_logs(tmp_path):
    proc = chat(cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "No --cloud given: every answer comes from the device and nothing will ever escalate" in proc.stderr
    audit = tmp_path / "tandem-audit.jsonl"  # the default policy's audit path, in the working directory
    assert f"appended to {audit}" in proc.stderr
    assert audit.is_file() and "[edge] The capital of France is Paris." in proc.stdout


def test_chat_repeats_the_kept_answer_after_a_fallback_so_no_word_is_split(tmp_path):
    """Unsure on the device, the cloud down: the device goes on from what it showed, and the
    line after the notice holds the whole answer, not a fragment starting mid-word. The demo
    policy's hand-set rule shows tokens as they come (the default's judge holds them back)."""
    from edge.demo import dead_address

    # 32 tokens: room for the answer to reach the name, where the device turns unsure
    proc = chat("--cloud", dead_address(), "--deadline", "2", "--policy", "demo", "--audit-log", str(tmp_path / "a.jsonl"),
                "--max-new-tokens", "32", turns="What was the name of the third wife of the 14th king of Norway?\n\n")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    notice = next(i for i, line in enumerate(lines) if "(cloud unavailable:" in line)
    before, after = lines[notice - 1].removeprefix("you> "), lines[notice + 1]
    assert before.startswith("[edge] ") and after.startswith(before), (before, after)


def test_chat_refuses_a_bad_cloud_address_before_loading_anything(tmp_path):
    for value, expected in [
        ("127.0.0.1", "'127.0.0.1' has no port: write HOST:PORT"),
        ("http://127.0.0.1:50051", "gRPC addresses have no scheme (http:)"),
        ("127.0.0.1:99999", "the port must be 1-65535"),
    ]:
        proc = chat("--cloud", value)
        assert proc.returncode == 2 and f"argument --cloud: " in proc.stderr and expected in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr
    proc = chat("--cloud", "no-such-host.invalid:50051")
    assert proc.returncode == 1 and "--cloud cannot resolve the host 'no-such-host.invalid'" in proc.stderr
    missing = tmp_path / "token.txt"
    proc = chat("--cloud", "127.0.0.1:50051", "--auth-token-file", str(missing))
    assert proc.returncode == 2 and f"argument --auth-token-file: no such file: '{missing}'" in proc.stderr
    missing.write_text("# no token here\n")
    proc = chat("--cloud", "127.0.0.1:50051", "--auth-token-file", str(missing))
    assert proc.returncode == 1 and f"--auth-token-file: auth token file {missing} holds no token" in proc.stderr
    proc = chat("--policy", "no-such-policy")
    assert proc.returncode == 1 and "packaged policy: default, demo, health-app, strict-privacy" in proc.stderr
