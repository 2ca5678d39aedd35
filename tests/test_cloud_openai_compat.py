"""The gateway's OpenAI-compatible backend (vLLM) against tests/fake_vllm.py, a FAKE vLLM that speaks its
wire format and answers with the built-in engine on the real SmolLM2 (vLLM cannot run here in the time)."""

from __future__ import annotations

import time

import grpc
import pytest

from cloud.backends.openai_compat import OpenAICompatBackend
from cloud.backends.tokenizer_check import TokenizerMismatchError, load_served_tokenizer
from cloud.client import generate_request
from cloud.servicer import RETRY_AFTER_KEY
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, running_server, status_of
from tests.fake_vllm import FakeVLLM

PROMPT = "Name three rivers in Europe."


@pytest.fixture(scope="module")
def fake(smollm2):
    server = FakeVLLM(smollm2)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(fake, smollm2_path):
    backend = OpenAICompatBackend(fake.url, load_served_tokenizer(smollm2_path))
    with running_server(backend, auth_tokens=["tenant-a", "tenant-b"]) as (server, port):
        yield server, port
    backend.close()


def test_ids_in_ids_and_signals_out_exactly_as_the_built_in_engine(gateway, fake, smollm2):
    _, port = gateway
    ids = smollm2.encode_prompt(PROMPT)
    with client_for(port, token="tenant-a") as c:
        info = c.info(timeout=RPC_TIMEOUT_S)
        got = c.generate(ids, max_new_tokens=16, timeout=RPC_TIMEOUT_S)
    assert (info.capabilities.engine, info.capabilities.entropy, info.capabilities.kv_import) == (
        "vllm", "top_k_estimate", False)
    assert info.model_id == "smollm2-fake-vllm" and info.max_context == 2048
    built_in = [e.token for e in smollm2.stream(ids, max_new_tokens=16)]
    assert got.token_ids == [t.id for t in built_in]  # the same engine behind the fake: identical
    assert got.text == "".join(e.text for e in smollm2.stream(ids, max_new_tokens=16))
    for lp, ent, margin, t in zip(got.logprobs, got.entropies, got.margins, built_in):
        assert lp == pytest.approx(t.logprob, abs=1e-4) and margin == pytest.approx(t.margin, abs=1e-4)
        assert ent <= t.entropy + 1e-4  # the top-10 estimate is a lower bound of the exact entropy
    body = fake.requests[-1]
    assert body["prompt"] == ids and body["return_tokens_as_token_ids"] and body["logprobs"] == 10


def test_each_tenant_gets_its_own_cache_salt(gateway, fake, smollm2):
    _, port = gateway
    ids = smollm2.encode_prompt(PROMPT)
    salts = []
    for token in ("tenant-a", "tenant-b", "tenant-a"):
        with client_for(port, token=token) as c:
            c.generate(ids, max_new_tokens=2, timeout=RPC_TIMEOUT_S)
        salts.append(fake.requests[-1]["cache_salt"])
    assert salts[0] == salts[2] != salts[1] and "tenant" not in salts[0]


def test_a_cancelled_stream_closes_the_engine_request(gateway, fake, smollm2):
    _, port = gateway
    before = fake.aborted
    with client_for(port, token="tenant-a") as c:
        call = c.stream(generate_request(smollm2.encode_prompt("Tell me a long story."), max_new_tokens=400),
                        timeout=RPC_TIMEOUT_S)
        for i, _ in enumerate(call):
            if i == 2:
                break
        call.cancel()
    deadline = time.monotonic() + 20
    while fake.aborted == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fake.aborted == before + 1


def test_an_engine_gone_is_unavailable_with_a_retry_hint(smollm2, smollm2_path):
    fake = FakeVLLM(smollm2)
    backend = OpenAICompatBackend(fake.url, load_served_tokenizer(smollm2_path), connect_timeout_s=2)
    try:
        with running_server(backend) as (_, port), client_for(port) as c:
            fake.stop()
            code, message = status_of(lambda: c.generate(smollm2.encode_prompt(PROMPT), max_new_tokens=2,
                                                         timeout=RPC_TIMEOUT_S))
            assert code is grpc.StatusCode.UNAVAILABLE and "unreachable" in message
            with pytest.raises(grpc.RpcError) as info:
                c.generate(smollm2.encode_prompt(PROMPT), max_new_tokens=2, timeout=RPC_TIMEOUT_S)
            assert dict(info.value.trailing_metadata())[RETRY_AFTER_KEY] == "1000"
    finally:
        backend.close()


def test_a_server_with_another_tokenizer_is_refused(fake, llama3_tokenizer_path):
    with pytest.raises(TokenizerMismatchError, match="tokenizes differently"):
        OpenAICompatBackend(fake.url, load_served_tokenizer("smollm2-135m", llama3_tokenizer_path))
