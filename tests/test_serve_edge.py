"""`tandem serve-edge` through the official `openai` package: SmolLM2 on the device, a real cloud
server on loopback, the HTTP server on loopback (in this process, and once as the real command)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from edge import AsyncTandemClient
from edge.demo import DOCUMENT, dead_address
from edge.openai_api import APIError, parse_call
from edge.openai_server import bound_port, build_app, uvicorn_server
from tests.cloud_fixtures import running_server, wait_for_port
from tests.conftest import REPO
from tests.edge_fixtures import ALWAYS_UNSURE, Capture, CaptureInterceptor, policy_with
from tests.test_edge_paths import QUESTION, SMALL_DEVICE, greedy_text

KEY = "sk-test-edge-key"
MODEL = "smollm2-135m"
LONG_PROMPT = DOCUMENT[:400] + "\n\nWhat is this about?"
ESCALATES = {"confidence": {**ALWAYS_UNSURE, "action": "escalate_continue"}}


@pytest.fixture(scope="module")
def cloud(smollm2):
    capture = Capture()
    with running_server(smollm2, interceptors=[CaptureInterceptor(capture)]) as (server, port):
        yield f"127.0.0.1:{port}", capture, server


@contextlib.contextmanager
def serve_edge(model, cloud_address, policy, tmp_path, app_options=None,
               **kwargs) -> Iterator[tuple[str, AsyncTandemClient]]:
    """build_app + uvicorn (what `tandem serve-edge` runs) on a free loopback port, in a thread."""
    client = AsyncTandemClient(model, cloud=cloud_address, policy=policy, audit_log=tmp_path / "audit.jsonl",
                               **kwargs)
    app = build_app(client, model_id=MODEL, **{"api_keys": [KEY], **(app_options or {})})
    server = uvicorn_server(app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "serve-edge did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{bound_port(server)}", client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def api(url: str, key: str | None = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key or "none", max_retries=0, timeout=120)


def records(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def read_stream(stream) -> tuple[str, list, str]:
    """(text a plain client shows, every chunk, the text a Tandem-aware client shows)."""
    plain, aware, chunks = "", "", []
    for chunk in stream:
        chunks.append(chunk)
        note = (chunk.model_extra or {}).get("tandem") or {}
        if note.get("event") == "escalation":
            aware = aware[: note["keep_chars"]]
        if chunk.choices:
            choice = chunk.choices[0]
            text = choice.delta.content if hasattr(choice, "delta") else choice.text  # chat or text completion
            plain += text or ""
            aware += text or ""
    return plain, chunks, aware


def test_local_answer_whole_and_streamed_with_routing_and_logprobs(smollm2, cloud, tmp_path):
    address, capture, _ = cloud
    before = len(capture.requests)
    ids = smollm2.encode_prompt(QUESTION)
    reference = list(smollm2.stream(ids, max_new_tokens=16))
    expected = "".join(e.text for e in reference)
    finish = "length" if reference[-1].finish_reason == "length" else "stop"
    signals = [e.token.logprob for e in reference]
    with serve_edge(smollm2, address, policy_with(), tmp_path) as (url, _):
        raw = api(url).chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=16, logprobs=True,
            top_logprobs=2)
        whole = raw.parse()
        with api(url).chat.completions.with_streaming_response.create(
                model="tandem", messages=[{"role": "user", "content": QUESTION}], max_tokens=16, stream=True,
                stream_options={"include_usage": True}) as response:
            stream_headers = response.headers
            plain, chunks, _ = read_stream(response.parse())
    assert whole.choices[0].message.content == expected == plain and "Paris" in expected
    assert whole.choices[0].finish_reason == finish and whole.usage.completion_tokens == len(reference)
    assert (raw.headers["x-tandem-tier"], raw.headers["x-tandem-route"]) == ("edge", "local")
    assert raw.headers["x-tandem-reasons"] == "within_device_budget"
    tandem = whole.model_extra["tandem"]
    assert (tandem["tier"], tandem["route"], tandem["escalated"]) == ("edge", "local", False)
    assert tandem["reasons"] == ["within_device_budget"] and tandem["request_id"] == raw.headers["x-tandem-request-id"]
    got = [(t.token, t.logprob) for t in whole.choices[0].logprobs.content]
    assert [lp for _, lp in got] == pytest.approx(signals[: len(got)], abs=1e-4) and len(got) >= len(signals) - 2
    assert "".join(t for t, _ in got) == expected
    # top_logprobs: the device's two most likely tokens at each position, as the engine ranked them.
    ranked = [[(smollm2.tokenizer.decode([i]), lp) for i, lp in e.token.top] for e in reference]
    tops = [[(a.token, a.logprob) for a in t.top_logprobs] for t in whole.choices[0].logprobs.content]
    assert all(len(top) == 2 and top[0][0] == token for top, (token, _) in zip(tops, got))  # greedy: chosen first
    for top, engine in zip(tops, ranked):
        assert [a for a, _ in top] == [a for a, _ in engine]
        assert [lp for _, lp in top] == pytest.approx([lp for _, lp in engine], abs=1e-4)
    assert any(top[1][1] > -5 for top in tops)  # a runner-up worth showing, not a placeholder
    # The stream: routing in the headers before the answer, the tier at its end, usage last.
    assert stream_headers["x-tandem-route"] == "local" and "x-tandem-tier" not in stream_headers
    done = next(c for c in chunks if (c.model_extra.get("tandem") or {}).get("event") == "done")
    assert done.model_extra["tandem"]["tier"] == "edge" and done.choices[0].finish_reason == finish
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(reference)
    assert len(capture.requests) == before
    assert [r["tier"] for r in records(tmp_path)] == ["edge", "edge"]


def test_escalation_mid_stream_is_seen_by_an_aware_client_and_harmless_to_a_plain_one(smollm2, cloud, tmp_path):
    address, _, _ = cloud
    expected = greedy_text(smollm2, smollm2.encode_prompt(QUESTION), 24)
    messages = [{"role": "user", "content": QUESTION}]
    with serve_edge(smollm2, address, policy_with(**ESCALATES), tmp_path) as (url, _):
        whole = api(url).chat.completions.with_raw_response.create(model=MODEL, messages=messages, max_tokens=24)
        settled = api(url).chat.completions.create(model=MODEL, messages=messages, max_tokens=24, stream=True)
        plain, chunks, aware = read_stream(settled)
        draft = api(url).chat.completions.create(model=MODEL, messages=messages, max_tokens=24, stream=True,
                                                 extra_headers={"X-Tandem-Stream": "draft"})
        draft_plain, draft_chunks, draft_aware = read_stream(draft)
    assert whole.headers["x-tandem-tier"] == "cloud" and whole.headers["x-tandem-escalated"] == "true"
    tandem = whole.parse().model_extra["tandem"]
    assert tandem["escalation_reason"] == "low_confidence:min_prob" and tandem["tier"] == "cloud"
    # Same weights on both tiers: the cloud continues the device's own greedy answer.
    assert whole.parse().choices[0].message.content == expected
    # Default ("settled"): a client that only appends content ends with the answer; the escalation is announced.
    assert plain == aware == expected
    notes = [c.model_extra["tandem"] for c in chunks if c.model_extra.get("tandem")]
    assert any(n.get("event") == "escalation" for n in notes) and notes[-1]["tier"] == "cloud"
    assert {n["tier"] for n in notes if set(n) == {"tier"}} == {"edge", "cloud"}
    # "draft": the device's tokens as they come; an aware client cuts at keep_chars and ends with the answer.
    (escalation,) = [c for c in draft_chunks if (c.model_extra.get("tandem") or {}).get("event") == "escalation"]
    assert escalation.choices[0].delta.content is None
    assert draft_aware == expected and draft_plain.startswith(expected[: escalation.model_extra["tandem"]["keep_chars"]])


def test_cloud_route_local_only_and_tags_from_body_or_header(smollm2, cloud, tmp_path):
    address, capture, _ = cloud
    with serve_edge(smollm2, address, policy_with(edge=SMALL_DEVICE), tmp_path) as (url, _):
        too_long = api(url).completions.with_raw_response.create(model=MODEL, prompt=LONG_PROMPT, max_tokens=8,
                                                                 logprobs=2)
        before = len(capture.requests)
        by_body = api(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}],
                                                   max_tokens=8, extra_body={"tags": ["health"]})
        by_header = api(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}],
                                                     max_tokens=8, extra_headers={"X-Tandem-Tags": "health"})
        after = len(capture.requests)
    assert (too_long.headers["x-tandem-route"], too_long.headers["x-tandem-tier"]) == ("cloud", "cloud")
    assert too_long.parse().choices[0].text == greedy_text(smollm2, smollm2.encode_prompt(LONG_PROMPT, chat=False), 8)
    cloud_lp = too_long.parse().choices[0].logprobs  # the cloud's stream has no alternatives: each token lists itself
    assert cloud_lp.tokens
    assert cloud_lp.top_logprobs == [{t: p} for t, p in zip(cloud_lp.tokens, cloud_lp.token_logprobs)]
    for answer in (by_body, by_header):
        tandem = answer.model_extra["tandem"]
        assert (tandem["route"], tandem["tier"]) == ("local_only", "edge") and answer.choices[0].message.content
    assert after == before  # nothing of the tagged requests reached the cloud


def test_unreachable_cloud_falls_back_or_fails_in_the_openai_shape(smollm2, tmp_path):
    policy = policy_with(edge=SMALL_DEVICE)
    with serve_edge(smollm2, dead_address(), policy, tmp_path, deadline_s=5.0) as (url, _):
        whole = api(url).completions.create(model=MODEL, prompt=LONG_PROMPT, max_tokens=6, logprobs=2)
        plain, chunks, _ = read_stream(api(url).completions.create(model=MODEL, prompt=LONG_PROMPT, max_tokens=6,
                                                                   stream=True))
    assert whole.model_extra["tandem"]["fallback"] == "answer_local:UNAVAILABLE"
    assert whole.model_extra["tandem"]["tier"] == "edge" and whole.choices[0].text
    device_lp = whole.choices[0].logprobs  # legacy shape: the device's two most likely tokens at each position
    assert all(t in top and len(top) <= 2 for t, top in zip(device_lp.tokens, device_lp.top_logprobs))
    assert any(len(top) == 2 for top in device_lp.top_logprobs)
    notes = [c.model_extra.get("tandem") or {} for c in chunks]
    assert any(n.get("event") == "fallback" and n["reason"] in ("UNAVAILABLE", "CIRCUIT_OPEN") for n in notes)
    failing = policy_with(edge=SMALL_DEVICE, cloud={"on_unreachable": "fail"})
    with serve_edge(smollm2, dead_address(), failing, tmp_path, deadline_s=3.0) as (url, _):
        with pytest.raises(openai.InternalServerError) as info:
            api(url).completions.create(model=MODEL, prompt=LONG_PROMPT, max_tokens=6)
    assert info.value.status_code == 503
    assert "on_unreachable is fail" in info.value.body["message"] and info.value.body["code"] == "UNAVAILABLE"


def test_auth_and_bad_requests_get_openai_errors(smollm2, tmp_path):
    with serve_edge(smollm2, None, policy_with(), tmp_path) as (url, _):
        with pytest.raises(openai.AuthenticationError) as no_key:
            api(url, key=None).models.list()
        with pytest.raises(openai.AuthenticationError):
            api(url, key="sk-wrong").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        models = [m.id for m in api(url).models.list()]
        malformed = httpx.post(url + "/v1/chat/completions", content=b'{"model": "tandem", "messages": [',
                               headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        with pytest.raises(openai.BadRequestError) as two:
            api(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=2)
        with pytest.raises(openai.BadRequestError) as no_messages:
            api(url).chat.completions.create(model=MODEL, messages=[])
        with pytest.raises(openai.NotFoundError) as unknown:
            api(url).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        health = httpx.get(url + "/health").json()  # open: probes send no key
    assert no_key.value.status_code == 401 and no_key.value.body["code"] == "invalid_api_key"
    assert models == [MODEL, "tandem"]
    assert malformed.status_code == 400
    error = malformed.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and "not valid JSON" in error["message"]
    assert error["type"] == "invalid_request_error"
    assert two.value.body["param"] == "n" and no_messages.value.body["param"] == "messages"
    assert unknown.value.body["code"] == "model_not_found"
    assert health == {"status": "ok", "in_flight": 0, "max_concurrent": 8, "max_concurrent_per_key": None,
                      "journeys": 0}


def test_a_client_that_disconnects_mid_stream_frees_the_device_and_the_cloud(smollm2, cloud, tmp_path):
    address, _, server = cloud
    headers = {"Authorization": f"Bearer {KEY}"}
    cases = [  # a raw continuation of a long speech: far from done after 400 tokens
        ("edge", None, policy_with(), "/v1/completions", {"prompt": DOCUMENT[:600]}),
        ("cloud", address, policy_with(edge=SMALL_DEVICE), "/v1/chat/completions",
         {"messages": [{"role": "user", "content": LONG_PROMPT}]}),
    ]
    for tier, cloud_address, policy, path, request in cases:
        with serve_edge(smollm2, cloud_address, policy, tmp_path) as (url, client):
            body = {"model": MODEL, "max_tokens": 400, "stream": True, "tandem_stream": "draft", **request}
            with httpx.stream("POST", url + path, json=body, headers=headers, timeout=120) as response:
                assert response.status_code == 200
                seen = 0
                for line in response.iter_lines():
                    seen += line.startswith("data: {") and f'"tier":"{tier}"' in line
                    if seen == 3:
                        break  # leaving the block closes the connection
            left_at = time.monotonic()
            while (client.in_flight or server.servicer.admission.active) and time.monotonic() - left_at < 10:
                time.sleep(0.02)
            assert (client.in_flight, server.servicer.admission.active) == (0, 0), tier
            assert httpx.get(url + "/health").json()["in_flight"] == 0
            if tier == "edge":  # a whole answer whose client stops waiting is cancelled as well
                body = {"model": MODEL, "max_tokens": 400, **request}
                with pytest.raises(httpx.ReadTimeout):
                    httpx.post(url + path, json=body, headers=headers, timeout=httpx.Timeout(60, read=1.0))
                left_at = time.monotonic()
                while client.in_flight and time.monotonic() - left_at < 10:
                    time.sleep(0.02)
                assert client.in_flight == 0
    on_device, whole, in_cloud = records(tmp_path)
    assert whole["fallback"] == "abandoned_by_caller" and whole["tokens"]["edge"] < 400
    assert on_device["fallback"] == in_cloud["fallback"] == "abandoned_by_caller"
    assert on_device["route"] == "local" and on_device["tokens"]["edge"] < 100
    assert in_cloud["route"] == "cloud" and in_cloud["tokens"]["cloud"] < 100


def test_a_full_server_turns_the_next_request_away_with_503_and_retry_after(smollm2, cloud, tmp_path):
    """max_concurrent=1: while one stream is open, another request is refused at once (OpenAI error shape,
    Retry-After); once the stream's client has gone, its slot is free again."""
    address, _, _ = cloud
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 4}
    with serve_edge(smollm2, address, policy_with(), tmp_path, app_options={"max_concurrent": 1}) as (url, _):
        with api(url).chat.completions.with_streaming_response.create(
                model=MODEL, messages=[{"role": "user", "content": LONG_PROMPT}], max_tokens=400,
                stream=True) as held:
            next(iter(held.parse()))  # the stream is open and routed: it holds the one slot
            busy_health = httpx.get(url + "/health").json()
            refused = httpx.post(url + "/v1/chat/completions", headers=auth, json=body, timeout=30)
            with pytest.raises(openai.InternalServerError) as info:
                api(url).chat.completions.create(**body)
        deadline = time.monotonic() + 30
        while httpx.get(url + "/health").json()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        after = api(url).chat.completions.create(**body)
    assert busy_health["in_flight"] == 1 and busy_health["max_concurrent"] == 1
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "server_busy"
    assert "busy" in error["message"] and error["type"] == "server_error"
    assert info.value.status_code == 503
    assert after.choices[0].message.content and after.model_extra["tandem"]["tier"] == "edge"
    assert [r["fallback"] for r in records(tmp_path)] == ["abandoned_by_caller", None]


def test_one_key_cannot_take_every_slot(smollm2, cloud, tmp_path):
    """Two keys, two slots, one a key: while key A's stream holds its slot, A's next request gets 429
    (the OpenAI rate-limit shape, Retry-After) although a slot is free, and key B is still answered."""
    address, _, _ = cloud
    other = "sk-other-tenant-key"
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 4}
    options = {"api_keys": [KEY, other], "max_concurrent": 2, "max_concurrent_per_key": 1}
    with serve_edge(smollm2, address, policy_with(), tmp_path, app_options=options) as (url, _):
        with api(url).chat.completions.with_streaming_response.create(
                model=MODEL, messages=[{"role": "user", "content": LONG_PROMPT}], max_tokens=400,
                stream=True) as held:
            next(iter(held.parse()))  # key A's stream is open: it holds A's one slot
            health = httpx.get(url + "/health").json()
            refused = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                                 json=body, timeout=30)
            with pytest.raises(openai.RateLimitError):
                api(url).chat.completions.create(**body)
            answered = api(url, other).chat.completions.create(**body)
    assert health["in_flight"] == 1 and health["max_concurrent_per_key"] == 1
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "share" in error["message"]
    assert answered.choices[0].message.content


def test_a_key_with_three_streams_gets_no_more_of_the_device_than_a_key_with_one(smollm2, cloud, tmp_path):
    """Key A holds three streams while key B asks for one answer: during B's answer A's streams
    together get about as many tokens as B does (the device's turns are shared by key, engine/turns.py),
    not three times as many (one share a stream)."""
    address, _, _ = cloud
    other = "sk-other-tenant-key"
    options = {"api_keys": [KEY, other], "max_concurrent": 4, "max_concurrent_per_key": 3, "stream_interval_s": 0}
    stamps: list[float] = []  # when each of A's chunks came
    stop = threading.Event()

    def hold() -> None:
        with api(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": LONG_PROMPT}],
                                              max_tokens=400, stream=True,
                                              extra_body={"tandem_stream": "draft"}) as stream:
            for _ in stream:  # draft: each token as it comes
                stamps.append(time.perf_counter())
                if stop.is_set():
                    return

    with serve_edge(smollm2, address, policy_with(confidence=None), tmp_path, app_options=options) as (url, _):
        holders = [threading.Thread(target=hold, daemon=True) for _ in range(3)]
        for t in holders:
            t.start()
        deadline = time.monotonic() + 120
        while len(stamps) < 30 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.perf_counter()
        answer = api(url, other).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Write a long story about a dragon."}], max_tokens=40)
        ended = time.perf_counter()
        a_during = sum(1 for t in stamps if started <= t <= ended)
        stop.set()
        for t in holders:
            t.join(timeout=60)
    b_tokens = answer.usage.completion_tokens
    assert b_tokens >= 30 and answer.model_extra["tandem"]["tier"] == "edge"
    assert a_during <= 1.6 * b_tokens, f"key A's three streams had {a_during} tokens during B's {b_tokens}"


def test_the_commands_per_key_cap_is_half_the_slots_once_there_are_two_keys():
    from edge.openai_server import default_per_key

    assert [default_per_key(8, n) for n in (0, 1, 2, 5)] == [None, None, 4, 4]
    assert default_per_key(3, 2) == 2 and default_per_key(1, 3) == 1 and default_per_key(None, 3) is None


def test_one_key_cannot_reach_another_keys_cloud_session(smollm2, cloud, tmp_path):
    """Every caller of a serve-edge reaches the cloud as one principal: the session id a caller names
    goes out derived from its API key, so another key naming the same id gets a session of its own
    (it can neither evict the first key's cached prefix nor time a guess of its text against it)."""
    address, capture, _ = cloud
    other = "sk-other-tenant-key"
    options = {"api_keys": [KEY, other]}
    with serve_edge(smollm2, address, policy_with(edge=SMALL_DEVICE), tmp_path, app_options=options) as (url, _):
        before = len(capture.of("Generate"))
        for key in (KEY, other, KEY):
            api(url, key=key).completions.create(model=MODEL, prompt=LONG_PROMPT, max_tokens=2,
                                                 extra_body={"session_id": "support-42"})
        sent = [r.session_id for r in capture.of("Generate")[before:]]
    assert len(sent) == 3 and "support-42" not in sent
    assert sent[0] == sent[2] != sent[1]  # one key keeps its session from turn to turn


def test_tags_in_any_script_are_answered_and_bounded(smollm2, cloud, tmp_path):
    """A tag in any script is a tag (its reason goes out %-escaped in X-Tandem-Reasons, which is
    latin-1); too many or too long tags and over-large bodies are refused before any work, and no
    refused or answered stream leaves a decode running."""
    address, _, _ = cloud
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 4, "tags": ["患者"]}
    auth = {"Authorization": f"Bearer {KEY}"}
    with serve_edge(smollm2, address, policy_with(), tmp_path, app_options={"max_body_bytes": 4096}) as (url, client):
        whole = httpx.post(url + "/v1/chat/completions", headers=auth, json=body, timeout=60)
        streamed = httpx.post(url + "/v1/chat/completions", headers=auth, json={**body, "stream": True}, timeout=60)
        many = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=30,
                          json={**body, "tags": [f"t{i}" for i in range(40)]})
        long = httpx.post(url + "/v1/chat/completions", headers=auth, json={**body, "tags": ["x" * 100]}, timeout=30)
        big = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=30,
                         json={**body, "messages": [{"role": "user", "content": "word " * 2000}]})
        deadline = time.monotonic() + 30
        while client.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        journeys = client.in_flight
    assert whole.status_code == 200 and streamed.status_code == 200 and "data: [DONE]" in streamed.text
    assert whole.json()["tandem"]["route"] == "local_only"
    assert "%E6%82%A3%E8%80%85" in whole.headers["x-tandem-reasons"]  # 患者
    assert [r.status_code for r in (many, long)] == [400, 400]
    assert many.json()["error"]["param"] == "tags" and "at most 32" in many.json()["error"]["message"]
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    assert journeys == 0


def test_a_stream_interval_groups_text_but_not_the_first_token_or_the_end(smollm2, cloud, tmp_path):
    """With a 30 s interval the first token goes out at once and the rest with the end (which is not held);
    with none, text goes out as it comes. The text is the same."""
    address, _, _ = cloud
    story = "Write a short story about a lighthouse keeper."  # long enough to outlast the policy's 16 held tokens
    request = {"model": MODEL, "messages": [{"role": "user", "content": story}], "max_tokens": 40, "stream": True,
               "extra_headers": {"X-Tandem-Stream": "draft"}}  # the device's text as it comes, not held

    def content_chunks(interval: float) -> tuple[str, int, float]:
        with serve_edge(smollm2, address, policy_with(), tmp_path,
                        app_options={"stream_interval_s": interval}) as (url, _):
            start = time.monotonic()
            plain, chunks, _ = read_stream(api(url).chat.completions.create(**request))
            return plain, sum(1 for c in chunks if c.choices and c.choices[0].delta.content), time.monotonic() - start

    grouped, grouped_chunks, grouped_s = content_chunks(30.0)
    each, each_chunks, _ = content_chunks(0.0)
    assert grouped == each and len(grouped) > 60
    assert grouped_chunks <= 2 < each_chunks and grouped_s < 30


def test_the_tandem_serve_edge_command(smollm2, cloud, tmp_path):
    """The real command: its own process, model, policy file, key file and cloud address."""
    address, _, _ = cloud
    (tmp_path / "keys").write_text(f"# serve-edge keys\n{KEY}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem", "serve-edge", "--port", "0", "--max-context", "2048", "--cloud", address,
         "--api-key-file", str(tmp_path / "keys"), "--audit-log", str(tmp_path / "audit.jsonl")],
        cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = f"http://127.0.0.1:{wait_for_port(proc, timeout=120)}"
        with pytest.raises(openai.AuthenticationError):
            api(url, key=None).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        whole = api(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}],
                                                 max_tokens=12)
        plain, chunks, _ = read_stream(api(url).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=12, stream=True))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()
    assert "Paris" in whole.choices[0].message.content and plain == whole.choices[0].message.content
    assert whole.model_extra["tandem"]["route"] == "local" and whole.model_extra["tandem"]["tier"] == "edge"
    assert chunks[-1].model_extra["tandem"]["event"] == "done"
    assert [r["route"] for r in records(tmp_path)] == ["local", "local"]


def test_request_fields_and_headers_map_to_sdk_options():
    body = {"model": "tandem", "messages": [{"role": "developer", "content": "Be brief."},
                                            {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                                                         {"type": "text", "text": "there"}]}],
            "tags": ["health"], "session_id": "from-body", "max_completion_tokens": 7, "temperature": 0.5,
            "top_p": 0.9, "seed": 3, "stop": "\n", "logprobs": True, "top_logprobs": 2}
    call = parse_call("chat", body, {"x-tandem-tags": "confidential, public", "x-tandem-session-id": "from-header",
                                     "x-tandem-stream": "draft"})
    assert call.request == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    assert call.tags == ["health", "confidential", "public"] and call.session_id == "from-body"
    assert (call.max_new_tokens, call.stop, call.stream_mode, call.top_logprobs) == (7, ("\n",), "draft", 2)
    assert (call.sampling.temperature, call.sampling.top_p, call.sampling.seed) == (0.5, 0.9, 3)
    assert parse_call("chat", {**body, "session_id": "x"}, {}).session_id == "x"
    assert parse_call("text", {"model": "m", "prompt": ["once"], "logprobs": 1}, {}).request == "once"
    with pytest.raises(APIError, match="at most 2") as legacy:  # legacy `logprobs` counts alternatives too
        parse_call("text", {"model": "m", "prompt": "once", "logprobs": 3}, {})
    assert legacy.value.param == "logprobs"


@pytest.mark.parametrize("change, param", [
    ({"temperature": 3}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"logprobs": False, "top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 3}, "top_logprobs"),  # the device ranks two
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages[0].content"),
    ({"tags": "health"}, None),  # a comma-separated string is accepted like the header
    ({"tags": [f"t{i}" for i in range(33)]}, "tags"),
    ({"tags": ["a" * 65]}, "tags"),
    ({"tags": ["line\nbreak"]}, "tags"),
    ({"tandem_stream": "fast"}, "tandem_stream"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"model": ""}, "model"),
])
def test_bad_fields_are_named_in_the_error(change, param):
    body = {"model": "tandem", "messages": [{"role": "user", "content": "hi"}], **change}
    if param is None:
        assert parse_call("chat", body, {}).tags == ["health"]
        return
    with pytest.raises(APIError) as info:
        parse_call("chat", body, {})
    assert info.value.status == 400 and info.value.param == param
    assert set(info.value.body()["error"]) == {"message", "type", "param", "code"}
