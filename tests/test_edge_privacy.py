"""Everything the cloud receives, across the whole labelled privacy set, under every example
policy: no private value leaves the device in any form (bytes on the wire, token IDs, text)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge import PolicyDeniedError, TandemClient
from router import TagAction
from tests.cloud_fixtures import running_server
from tests.conftest import REPO
from tests.edge_fixtures import ByteRecorder, Capture, CaptureInterceptor, policy_with

CASES = yaml.safe_load((Path(__file__).parent / "router_data" / "pii_cases.yaml").read_text(encoding="utf-8"))
POLICIES = sorted((REPO / "policies").glob("*.yaml"))


def contains(haystack: list[int], needle: list[int]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


@pytest.mark.parametrize("policy_file", POLICIES, ids=lambda p: p.stem)
def test_no_private_value_reaches_the_cloud(llama3_small, tmp_path, policy_file):
    # A device budget of 16 tokens sends every request that may leave to the cloud.
    policy = policy_with(policy_file, edge={"max_context_tokens": 16, "max_new_tokens": 1},
                         confidence=None, cloud={"allowed": True, "on_unreachable": "fail"})
    capture = Capture()
    tok = llama3_small.tokenizer
    with running_server(llama3_small, interceptors=[CaptureInterceptor(capture)]) as (_, port):
        recorder = ByteRecorder(port)
        client = TandemClient(llama3_small, cloud=f"127.0.0.1:{recorder.port}", policy=policy, audit_log=None)
        client.connect()
        sent_before = 0
        checked = 0
        for case in CASES["positives"]:
            try:
                route = client.complete(case["text"], max_new_tokens=1).record.route
            except PolicyDeniedError:  # too long for the device and may not leave it: refused
                route = "refused"
            requests = capture.of("Generate")[sent_before:]
            sent_before += len(requests)
            private = [v for kind, v in case["entities"] if policy.privacy.action_for(kind) is not TagAction.ALLOW]
            assert bool(requests) == (route == "cloud"), case["text"]
            for request in requests:
                ids = list(request.token_ids)
                text = tok.decode(ids)
                for value in private:
                    assert value not in text, (policy_file.name, case["text"])
                    assert not contains(ids, tok.encode(value)) and not contains(ids, tok.encode(" " + value))
                checked += 1
        client.close()
        wire = recorder.data()
        recorder.close()
    for case in CASES["positives"]:
        for kind, value in case["entities"]:
            if policy.privacy.action_for(kind) is not TagAction.ALLOW:
                assert value.encode() not in wire, (policy_file.name, value)
    # The recorder saw the traffic (Info at least), and where the policy redacts rather than pins
    # some kinds, many redacted requests did go to the cloud: the checks had something to see.
    kinds = {kind for case in CASES["positives"] for kind, _ in case["entities"]}
    redacts = any(policy.privacy.action_for(kind) is TagAction.REDACT for kind in kinds)
    assert len(wire) > 0 and (checked >= 20 if redacts else checked == 0)
