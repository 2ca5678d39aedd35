"""`tandem demo` and `tandem chat` as a user runs them."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from edge.demo import DEMO_POLICY, SCENARIOS, main_with_servers
from tests.cloud_fixtures import running_server
from tests.conftest import REPO


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
    assert "[EMAIL_1]" in text and "jane.doe@example.com" in text  # what left vs what the user typed
    table = text[text.index("#  scenario"):].split("\n\n")[0].splitlines()
    assert len(table) == 2 + len(SCENARIOS) and "bytes sent" in table[0]


def test_chat_marks_the_tier_of_each_answer(smollm2):
    with running_server(smollm2) as (_, port):
        proc = subprocess.run(
            [sys.executable, "-m", "tandem", "chat", "--cloud", f"127.0.0.1:{port}", "--max-new-tokens", "16",
             "--audit-log", "/dev/null"],
            input="What is the capital of France?\n\n", capture_output=True, text=True, cwd=REPO, timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    assert "[edge] The capital of France is Paris." in proc.stdout
    assert "(local, answered by edge," in proc.stdout
