"""The gateway on a real llama.cpp llama-server (built by `make engines`) serving the embedded SmolLM2
GGUF: token-ID hand-off, signals, continuation, cancellation, an engine gone, a tokenizer mismatch.

Without the engine these tests skip, saying how to build it (the summary repeats it); .ci/run
builds it first, so CI always runs them.
"""

from __future__ import annotations

import math
import time

import grpc
import httpx
import pytest
import torch

from cloud.backends.llama_server import EngineUnavailableError, LlamaServerBackend, top_k_entropy
from cloud.backends.tokenizer_check import TokenizerMismatchError, load_served_tokenizer
from cloud.client import generate_request
from cloud.config import ServerConfig
from cloud.contract import plan_generation
from cloud.engines import BUILD_HINT, LlamaServerProcess, free_port, llama_server_binary
from cloud.servicer import RETRY_AFTER_KEY
from edge import TandemClient
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, running_server, status_of
from tests.edge_fixtures import ALWAYS_UNSURE, policy_with

pytestmark = pytest.mark.skipif(llama_server_binary() is None, reason=f"llama-server not built: {BUILD_HINT}")

PROMPTS = ("What is the capital of France?", "Name three rivers in Europe.", "Write a haiku about the sea.",
           "Explain photosynthesis in one sentence.")
N_NEW = 24


@pytest.fixture(scope="module")
def engine(smollm2_path):
    with LlamaServerProcess(smollm2_path, slots=2, context=2048) as proc:
        yield proc


@pytest.fixture(scope="module")
def gateway(engine, smollm2_path):
    backend = LlamaServerBackend(engine.url, load_served_tokenizer(smollm2_path))
    with running_server(backend) as (server, port):
        yield server, port
    backend.close()


def greedy(port: int, ids: list[int], n: int = N_NEW):
    with client_for(port) as c:
        return c.generate(ids, max_new_tokens=n, timeout=RPC_TIMEOUT_S)


def test_info_says_what_the_engine_offers(gateway, smollm2):
    _, port = gateway
    with client_for(port) as c:
        info = c.info(timeout=RPC_TIMEOUT_S)
    caps = info.capabilities
    assert caps.engine == "llama-server" and not caps.kv_import and not caps.kv_export
    assert caps.entropy == "top_k_estimate" and caps.top_k == 10
    assert info.tokenizer_fingerprint == smollm2.tokenizer.fingerprint  # the gateway's own tokenizer
    assert not info.kv_codecs and info.max_context == 2048


def direct(engine, ids: list[int], n: int) -> dict:
    """The engine's own greedy answer for `ids`, asked without the gateway."""
    body = {"prompt": ids, "n_predict": n, "temperature": 0, "n_probs": 1, "return_tokens": True, "cache_prompt": False}
    return httpx.post(engine.url + "/completion", json=body, timeout=RPC_TIMEOUT_S).json()


def test_token_id_hand_off_is_exact_through_the_gateway(gateway, engine, smollm2):
    """The gateway hands the token IDs over untouched and relays the engine's tokens untouched: its greedy
    stream is the engine's own answer to the same IDs, token for token, with the same log-probs."""
    _, port = gateway
    for prompt in PROMPTS:
        ids = smollm2.encode_prompt(prompt)
        through, own = greedy(port, ids), direct(engine, ids, N_NEW)
        n = len(through.token_ids)
        assert through.token_ids == own["tokens"][:n] and n == len(own["tokens"]), prompt
        assert through.logprobs == pytest.approx([c["logprob"] for c in own["completion_probabilities"]], abs=1e-4)
        assert through.result.usage.generated_tokens == n and through.result.finish_reason in (1, 2)
        shown = through.token_ids[:-1] if through.result.finish_reason == 1 else through.token_ids
        assert through.text == smollm2.tokenizer.decode(shown)


@pytest.mark.parametrize("tier", ["full", "device"])
def test_the_engine_agrees_with_the_built_in_engine_on_the_same_weights(engine, smollm2, smollm2_device, tier):
    """Same GGUF, different arithmetic: llama.cpp multiplies the Q4_1 weights with Q8_0-quantized
    activations, the built-in engine with float activations (on dequantized weights for the cloud tier,
    on the Q4_1 blocks for the device tier), so near-ties can flip and free-running greedy answers part
    (here on 'capital of France' at the first token: llama.cpp says "L'Étoile", the built-in "The").
    Measured over these prompts, 24 tokens each, teacher-forced on the engine's tokens: the built-in
    engine's top-1 agrees on 126 of 135 positions (93%) on both tiers and its log-prob of the engine's
    token differs by 0.05 nats on average (0.31 at most). Asserted with room for the noise: >= 85% and
    a mean under 0.12 nats."""
    model = smollm2 if tier == "full" else smollm2_device
    agree = total = 0
    diffs = []
    for prompt in (*PROMPTS, "Give me a synonym for happy.", "How many legs does a spider have?"):
        ids = model.encode_prompt(prompt)
        own = direct(engine, ids, N_NEW)
        tokens, logprobs = own["tokens"], [c["logprob"] for c in own["completion_probabilities"]]
        with torch.inference_mode():
            logits = model.model(torch.tensor([ids + tokens]), model.new_cache(len(ids) + len(tokens)))
        ours = torch.log_softmax(logits[0, len(ids) - 1: len(ids) - 1 + len(tokens)].float(), dim=-1)
        agree += sum(int(a) == b for a, b in zip(ours.argmax(-1), tokens))
        total += len(tokens)
        diffs += [abs(float(ours[i, t]) - lp) for i, (t, lp) in enumerate(zip(tokens, logprobs))]
    assert agree / total >= 0.85, f"{agree}/{total}"
    assert sum(diffs) / len(diffs) < 0.12


def test_every_token_carries_its_top_k_ids_and_logprobs(engine, smollm2_path, smollm2):
    backend = LlamaServerBackend(engine.url, load_served_tokenizer(smollm2_path))
    try:
        request = generate_request(smollm2.encode_prompt(PROMPTS[0]), max_new_tokens=12)
        plan = plan_generation(request, vocab_size=backend.facts.vocab_size, max_context=2048,
                               config=ServerConfig())
        generation = backend.generate(plan, principal="p", should_stop=lambda: False)
        events = list(generation)
        generation.close()
    finally:
        backend.close()
    assert len(events) == 12
    for event in events:
        t = event.token
        assert len(t.top) == 10 and all(0 <= i < smollm2.config.vocab_size for i, _ in t.top)
        assert [lp for _, lp in t.top] == sorted((lp for _, lp in t.top), reverse=True)
        assert t.top[0][0] == t.id and t.top[0][1] == pytest.approx(t.logprob)  # greedy picks the top one
        assert t.logprob <= 0 and 0 <= t.margin <= 1 and t.entropy >= 0
        assert t.entropy == pytest.approx(top_k_entropy([math.exp(lp) for _, lp in t.top]), abs=1e-6)
        assert t.margin == pytest.approx(math.exp(t.top[0][1]) - math.exp(t.top[1][1]), abs=1e-6)


def test_tokens_inside_a_multi_token_character_are_recovered(gateway, engine, smollm2):
    """llama-server sends no chunk for a token that leaves a character incomplete (an emoji takes up to
    three SmolLM2 tokens): the gateway must still stream every ID, exactly the engine's."""
    _, port = gateway
    ids = smollm2.encode_prompt("Reply with three rocket emoji and nothing else.")
    ids += smollm2.tokenizer.encode("🚀🚀")  # the answer so far: the engine goes on in emoji
    through, own = greedy(port, ids, 12), direct(engine, ids, 12)
    assert through.token_ids == own["tokens"][: len(through.token_ids)] and len(own["tokens"]) == 12
    assert any(ord(ch) > 0xFFFF for ch in through.text), through.text  # at least one 4-byte character came


def test_continuation_from_kept_tokens(gateway, smollm2):
    """The edge keeps its first tokens and hands prompt + kept tokens over: the engine goes on from there."""
    _, port = gateway
    ids = smollm2.encode_prompt(PROMPTS[2])
    whole = greedy(port, ids, 16).token_ids
    kept = whole[:6]
    rest = greedy(port, ids + kept, 10).token_ids
    assert rest == whole[6:16]


def test_stop_strings_and_length_end_the_stream_as_the_built_in_engine_does(gateway, smollm2):
    _, port = gateway
    ids = smollm2.encode_prompt(PROMPTS[0])
    whole = greedy(port, ids, 16)
    word = whole.text.split()[2]
    with client_for(port) as c:
        cut = c.generate(ids, max_new_tokens=16, stop_strings=[word], timeout=RPC_TIMEOUT_S)
        short = c.generate(ids, max_new_tokens=3, timeout=RPC_TIMEOUT_S)
    assert cut.result.finish_reason == 3 and word not in cut.text and whole.text.startswith(cut.text)
    assert short.result.finish_reason == 2 and short.token_ids == whole.token_ids[:3]


def slots_busy(engine) -> int:
    return sum(bool(s.get("is_processing")) for s in httpx.get(engine.url + "/slots", timeout=10).json())


def test_a_cancelled_stream_frees_the_engines_slot(gateway, engine, smollm2):
    server, port = gateway
    ids = smollm2.encode_prompt("Tell me a very long story about a dragon.")
    with client_for(port) as c:
        call = c.stream(generate_request(ids, max_new_tokens=1500), timeout=RPC_TIMEOUT_S)
        received = 0
        for response in call:
            received += response.HasField("chunk")
            if received == 3:
                break
        assert slots_busy(engine) == 1
        call.cancel()
    deadline = time.monotonic() + 10
    while (slots_busy(engine) or server.servicer.admission.active) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slots_busy(engine) == 0 and server.servicer.admission.active == 0


def test_kv_hand_off_rpcs_answer_unimplemented_and_the_sdk_sends_token_ids(gateway, smollm2, tmp_path):
    _, port = gateway
    with client_for(port) as c:
        code, message = status_of(lambda: list(c.prefill_kv([1, 2, 3], codec="int8", receiver=None,
                                                              timeout=RPC_TIMEOUT_S)))
        assert code is grpc.StatusCode.UNIMPLEMENTED and "token IDs" in message
        code, _ = status_of(lambda: c.upload_kv([1, 2], iter(()), codec="int8", timeout=RPC_TIMEOUT_S))
        assert code is grpc.StatusCode.UNIMPLEMENTED
    kv = {"enabled": True, "link_mbps": 10000, "rtt_ms": 0, "cloud_prefill_tokens_per_s": 1,
          "edge_prefill_tokens_per_s": 1, "prefill_offload": True, "min_offload_tokens": 8}
    policy = policy_with(kv_handoff=kv, confidence=ALWAYS_UNSURE)
    with TandemClient(smollm2, cloud=f"127.0.0.1:{port}", policy=policy, audit_log=tmp_path / "a.jsonl") as client:
        result = client.complete(PROMPTS[1] + " " + PROMPTS[3], max_new_tokens=12)
    assert result.tier == "cloud" and result.record.handoff == "token_ids"
    assert result.record.handoff_reason == "kv_not_offered_by_engine:llama-server"
    assert result.record.cloud_entropy == "top_k_estimate"


def test_an_engine_gone_gives_unavailable_with_a_retry_hint_and_the_sdk_answers_locally(smollm2_path, smollm2,
                                                                                        tmp_path):
    proc = LlamaServerProcess(smollm2_path, slots=1, context=1024)
    backend = LlamaServerBackend(proc.url, load_served_tokenizer(smollm2_path), connect_timeout_s=2)
    try:
        with running_server(backend) as (_, port):
            assert greedy(port, smollm2.encode_prompt(PROMPTS[0]), 2).token_ids
            proc.stop()
            with client_for(port) as c:
                with pytest.raises(grpc.RpcError) as info:
                    c.generate(smollm2.encode_prompt(PROMPTS[0]), max_new_tokens=4, timeout=RPC_TIMEOUT_S)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE and "unreachable" in info.value.details()
            assert dict(info.value.trailing_metadata())[RETRY_AFTER_KEY] == "1000"
            policy = policy_with(confidence=ALWAYS_UNSURE)
            with TandemClient(smollm2, cloud=f"127.0.0.1:{port}", policy=policy, audit_log=tmp_path / "a.jsonl",
                              deadline_s=30) as client:
                result = client.complete(PROMPTS[1], max_new_tokens=12)
            assert result.tier == "edge" and result.record.fallback.startswith("answer_local:UNAVAILABLE")
    finally:
        proc.stop()
        backend.close()


def test_an_engine_not_there_at_start_is_a_clear_error():
    with pytest.raises(EngineUnavailableError, match="not ready"):
        LlamaServerBackend(f"http://127.0.0.1:{free_port()}", load_served_tokenizer("smollm2-135m"))


def test_a_tokenizer_mismatch_refuses_to_start(engine, llama3_tokenizer_path):
    with pytest.raises(TokenizerMismatchError, match="tokenizes differently"):
        LlamaServerBackend(engine.url, load_served_tokenizer("smollm2-135m", llama3_tokenizer_path))


def test_serve_cloud_refuses_an_engine_with_another_tokenizer(engine, llama3_tokenizer_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "serve-cloud", "--engine", "llama-server", "--engine-url", engine.url,
         "--tokenizer", str(llama3_tokenizer_path), "--port", "0", "--engine-wait", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "tokenizes differently" in proc.stderr and "Traceback" not in proc.stderr


def test_a_cancel_during_the_engines_prefill_stops_it_there(smollm2_path, smollm2):
    """llama-server answers nothing (not even headers) until its first token: a client's cancel during a long
    prefill must still reach it. The gateway cuts the connection within its poll interval, its admission slot
    frees at once, and the engine drops the request at a later batch (batches of 32 tokens here), before the
    prompt's end: it never prints the prompt's timings. The engine is watched through its log only: it checks
    a waiting connection when no other result arrives for a second, so polling its /slots would delay that."""
    proc = LlamaServerProcess(smollm2_path, slots=1, context=2048, extra=("-b", "32", "-ub", "32"))
    backend = LlamaServerBackend(proc.url, load_served_tokenizer(smollm2_path))

    def wait_log(text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while text not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        return text in proc.output()

    try:
        with running_server(backend) as (server, port), client_for(port) as c:
            ids = smollm2.encode_prompt(" ".join(["Tell me about rivers, mountains and seas."] * 160))[:1500]
            call = c.stream(generate_request(ids, max_new_tokens=4), timeout=RPC_TIMEOUT_S)
            assert wait_log("prompt processing, n_tokens", 60)  # the engine is inside the prompt
            assert server.servicer.admission.active == 1
            call.cancel()
            cancelled = time.monotonic()
            while server.servicer.admission.active and time.monotonic() < cancelled + 5:
                time.sleep(0.02)
            freed_s = time.monotonic() - cancelled
            assert wait_log("stop processing", 60)
            stopped_s = time.monotonic() - cancelled
        assert freed_s < 1.0, freed_s
        log = proc.output()
        assert "prompt eval time" not in log  # the prompt was never finished
        done = [int(line.rsplit("n_tokens = ", 1)[1].split(",")[0]) for line in log.splitlines()
                if "stop processing: n_tokens" in line]
        assert done and done[-1] < len(ids), done
        print(f"gateway freed {freed_s:.3f} s after the cancel; the engine stopped {stopped_s:.1f} s after, at "
              f"{done[-1]} of {len(ids)} prompt tokens")
    finally:
        backend.close()
        proc.stop()


def test_the_engines_shared_prompt_cache_is_asked_for_only_while_one_caller_uses_it(engine, smollm2_path, smollm2):
    """llama-server's prompt cache is every caller's: a second principal's prefill time would say
    whether another caller sent a prompt it guesses. A conversation's next turn reuses its prefix
    while one principal (here, one token) uses the gateway; from a second one on, no request asks."""
    backend = LlamaServerBackend(engine.url, load_served_tokenizer(smollm2_path))
    ids = smollm2.encode_prompt(PROMPTS[0])
    with running_server(backend, auth_tokens=["alice", "bob"]) as (_, port):
        with client_for(port, token="alice") as alice, client_for(port, token="bob") as bob:
            first = alice.generate(ids, session_id="a", max_new_tokens=2, timeout=RPC_TIMEOUT_S)
            asked_alone = backend.request_body(backend_plan(ids, "a"))["cache_prompt"]
            second = bob.generate(ids, session_id="b", max_new_tokens=2, timeout=RPC_TIMEOUT_S)
            asked_shared = backend.request_body(backend_plan(ids, "a"))["cache_prompt"]
    backend.close()
    assert first.token_ids == second.token_ids
    assert (asked_alone, asked_shared, backend.shared) == (True, False, True)


def backend_plan(ids: list[int], session_id: str):
    request = generate_request(ids, max_new_tokens=2, session_id=session_id)
    return plan_generation(request, vocab_size=49152, max_context=2048, config=ServerConfig())
