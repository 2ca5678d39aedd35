"""Hand-off by token IDs between different models that share the Llama 3 tokenizer, and the
refusal to hand off to a cloud whose tokenizer differs."""

from __future__ import annotations

import json

import pytest

from edge import Escalation, HandoffRefusedError, TandemClient, Text
from tests.cloud_fixtures import running_server
from tests.edge_fixtures import ALWAYS_UNSURE, Capture, CaptureInterceptor, policy_with

PROMPT = "Summarise the plot of Hamlet in two sentences."


def test_edge_and_cloud_models_differ_but_share_the_tokenizer(llama3_small, llama3_large):
    assert llama3_small.fingerprint.architecture != llama3_large.fingerprint.architecture
    assert llama3_small.tokenizer.fingerprint == llama3_large.tokenizer.fingerprint


@pytest.mark.parametrize("action", ["escalate_continue", "escalate_restart"])
def test_small_model_hands_off_to_a_larger_one_by_token_ids(llama3_small, llama3_large, tmp_path, action):
    capture = Capture()
    policy = policy_with(confidence={**ALWAYS_UNSURE, "action": action})
    ids = llama3_small.encode_prompt(PROMPT)
    with running_server(llama3_large, interceptors=[CaptureInterceptor(capture)]) as (_, port):
        client = TandemClient(llama3_small, cloud=f"127.0.0.1:{port}", policy=policy, audit_log=None)
        events = list(client.generate(PROMPT, max_new_tokens=20))
    (escalation,) = [e for e in events if isinstance(e, Escalation)]
    at = events.index(escalation)
    local_ids = [i for e in events[:at] if isinstance(e, Text) for i in e.token_ids]
    kept = local_ids[: escalation.kept_tokens]
    assert (len(kept) > 0) == (action == "escalate_continue")
    (request,) = capture.of("Generate")
    assert list(request.token_ids) == ids + kept
    # The cloud's tokens are exactly what the larger model decodes greedily from those IDs.
    expected = [e.token.id for e in llama3_large.stream(ids + kept, max_new_tokens=20 - len(kept))]
    cloud_ids = [i for e in events[at:] if isinstance(e, Text) and e.tier == "cloud" for i in e.token_ids]
    assert cloud_ids == expected
    assert events[-1].record.tier == "cloud"


def test_cloud_with_another_tokenizer_is_refused(smollm2, llama3_large, tmp_path):
    capture = Capture()
    policy = policy_with(edge={"max_context_tokens": 64, "max_new_tokens": 16})
    with running_server(llama3_large, interceptors=[CaptureInterceptor(capture)]) as (_, port):
        client = TandemClient(smollm2, cloud=f"127.0.0.1:{port}", policy=policy,
                              audit_log=tmp_path / "audit.jsonl")
        with pytest.raises(HandoffRefusedError, match="different tokenizer"):
            client.connect()
        with pytest.raises(HandoffRefusedError, match="nothing is handed off"):
            client.complete("word " * 80, max_new_tokens=8)
    assert capture.of("Generate") == []  # Info was asked; no token ID left the device
    record = json.loads((tmp_path / "audit.jsonl").read_text())
    assert record["route"] == "cloud" and record["fallback"] == "fail:HandoffRefusedError"
