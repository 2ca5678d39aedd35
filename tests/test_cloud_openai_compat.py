"""The gateway's backends on OpenAI-compatible servers: vLLM (/v1/completions) and SGLang (native /generate).

They run against tests/fake_serving_engine.py, a FAKE engine that speaks both wire formats and answers with
the built-in engine on the real SmolLM2 (neither engine can run in this suite's time here; SGLang has no
CPU build on this machine), and, where TANDEM_VLLM_URL points at a real vLLM serving SmolLM2
(scripts/vllm_cpu.sh starts vLLM's CPU build on the embedded model), the same tests run against it.
Without it those cases skip with that hint: they never count as passed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import grpc
import httpx
import pytest

from cloud.backends.openai_compat import OpenAICompatBackend
from cloud.backends.sglang import SGLangBackend
from cloud.backends.tokenizer_check import TokenizerMismatchError, load_served_tokenizer
from cloud.client import generate_request
from cloud.servicer import RETRY_AFTER_KEY
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, running_server, status_of
from tests.fake_serving_engine import FakeServingEngine

PROMPT = "Name three rivers in Europe."
VLLM_URL_ENV = "TANDEM_VLLM_URL"
VLLM_HINT = (f"no real vLLM: run `scripts/vllm_cpu.sh start` (vLLM's CPU build on the embedded SmolLM2) and set "
             f"{VLLM_URL_ENV}=http://127.0.0.1:8000, then rerun these tests")
BACKENDS = {"vllm": OpenAICompatBackend, "sglang": SGLangBackend}


@dataclass
class Engine:
    """One engine the tests talk to: its protocol, URL, what it serves, and how to see its aborts."""

    protocol: str
    url: str
    name: str
    max_model_len: int
    fake: FakeServingEngine | None
    idle: Callable[[], bool]  # no request running on the engine

    @property
    def backend(self) -> type[OpenAICompatBackend]:
        return BACKENDS[self.protocol]


def _fake_engine(protocol: str, model, **kwargs) -> Engine:
    fake = FakeServingEngine(model, **kwargs)
    return Engine(protocol, fake.url, fake.name, fake.max_model_len, fake, idle=lambda: False)


def _real_vllm() -> Engine:
    url = os.environ.get(VLLM_URL_ENV, "").rstrip("/")
    if not url:
        pytest.skip(VLLM_HINT)
    try:
        model = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        pytest.fail(f"{VLLM_URL_ENV}={url} does not answer as vLLM ({exc}); {VLLM_HINT}")

    def idle() -> bool:  # vLLM's Prometheus gauge of requests in its running batch
        text = httpx.get(f"{url}/metrics", timeout=10).text
        running = re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.e+]+)$", text, re.M)
        return bool(running) and all(float(v) == 0 for v in running)

    return Engine("vllm", url, str(model["id"]), int(model["max_model_len"]), None, idle)


@pytest.fixture(scope="module", params=["fake-vllm", "fake-sglang", "fake-sglang-incremental", "real-vllm"])
def engine(request, smollm2):
    if request.param == "real-vllm":
        yield _real_vllm()
        return
    protocol = request.param.split("-")[1]
    e = _fake_engine(protocol, smollm2, incremental=request.param.endswith("incremental"))
    yield e
    e.fake.stop()


@pytest.fixture(scope="module")
def gateway(engine, smollm2_path):
    backend = engine.backend(engine.url, load_served_tokenizer(smollm2_path), start_wait_s=30)
    with running_server(backend, auth_tokens=["tenant-a", "tenant-b"]) as (server, port):
        yield server, port
    backend.close()


def test_ids_in_ids_and_signals_out_as_the_built_in_engine(gateway, engine, smollm2):
    _, port = gateway
    ids = smollm2.encode_prompt(PROMPT)
    with client_for(port, token="tenant-a") as c:
        info = c.info(timeout=RPC_TIMEOUT_S)
        got = c.generate(ids, max_new_tokens=16, timeout=RPC_TIMEOUT_S)
    assert (info.capabilities.engine, info.capabilities.entropy, info.capabilities.kv_import) == (
        engine.protocol, "top_k_estimate", False)
    assert info.model_id == engine.name and info.max_context == engine.max_model_len
    built_in = [e.token for e in smollm2.stream(ids, max_new_tokens=16)]
    # The fake runs the built-in engine: identical. A real engine runs the same fp32 weights with its own
    # kernels: greedy tokens agree here (asserted), log-probs to summation-order noise.
    assert got.token_ids == [t.id for t in built_in]
    assert got.text == "".join(e.text for e in smollm2.stream(ids, max_new_tokens=16))
    tol = 1e-4 if engine.fake else 2e-3
    for lp, ent, margin, t in zip(got.logprobs, got.entropies, got.margins, built_in):
        assert lp == pytest.approx(t.logprob, abs=tol) and margin == pytest.approx(t.margin, abs=tol)
        assert 0.0 <= ent <= t.entropy + tol  # the top-10 estimate is a lower bound of the exact entropy
    if engine.fake:
        body = engine.fake.requests[-1]
        sent = body["prompt"] if engine.protocol == "vllm" else body["input_ids"]
        k = body["logprobs"] if engine.protocol == "vllm" else body["top_logprobs_num"]
        assert sent == ids and k == 10


def test_continuation_from_kept_tokens_matches_one_stream(gateway, engine, smollm2):
    """The SDK escalates with the prompt plus the tokens kept so far: the engine continues exactly there."""
    _, port = gateway
    ids = smollm2.encode_prompt(PROMPT)
    with client_for(port, token="tenant-a") as c:
        whole = c.generate(ids, max_new_tokens=12, timeout=RPC_TIMEOUT_S).token_ids
        rest = c.generate(ids + whole[:5], max_new_tokens=7, timeout=RPC_TIMEOUT_S).token_ids
    assert whole[:5] + rest == whole


def test_each_tenant_gets_its_own_cache_salt(gateway, engine, smollm2):
    if engine.fake is None:
        pytest.skip("the request bodies are seen only by the fake; the real engine accepted the salt above")
    _, port = gateway
    ids = smollm2.encode_prompt(PROMPT)
    salts = []
    for token in ("tenant-a", "tenant-b", "tenant-a"):
        with client_for(port, token=token) as c:
            c.generate(ids, max_new_tokens=2, timeout=RPC_TIMEOUT_S)
        salts.append(engine.fake.requests[-1]["cache_salt"])
    assert salts[0] == salts[2] != salts[1] and "tenant" not in salts[0]


def test_a_cancelled_stream_closes_the_engine_request(gateway, engine, smollm2):
    _, port = gateway
    before = engine.fake.aborted if engine.fake else 0
    with client_for(port, token="tenant-a") as c:
        call = c.stream(generate_request(smollm2.encode_prompt("Tell me a long story."), max_new_tokens=400),
                        timeout=RPC_TIMEOUT_S)
        for i, _ in enumerate(call):
            if i == 2:
                break
        assert engine.fake is not None or not engine.idle()  # the real engine is decoding it now
        call.cancel()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if (engine.fake.aborted == before + 1) if engine.fake else engine.idle():
            break
        time.sleep(0.1)
    if engine.fake:
        assert engine.fake.aborted == before + 1
    else:
        assert engine.idle(), "vLLM still runs the request the client cancelled"


@pytest.mark.parametrize("protocol", ["vllm", "sglang"])
def test_an_engine_gone_is_unavailable_with_a_retry_hint(protocol, smollm2, smollm2_path):
    fake = FakeServingEngine(smollm2)
    backend = BACKENDS[protocol](fake.url, load_served_tokenizer(smollm2_path), connect_timeout_s=2)
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


def test_a_request_sglang_aborts_is_unavailable(smollm2, smollm2_path):
    """SGLang ends a request it drops (overload, shutdown) with finish_reason type "abort": the client is told
    to retry, never handed a short answer as if the engine had finished it."""
    fake = FakeServingEngine(smollm2, abort_after=3)
    backend = SGLangBackend(fake.url, load_served_tokenizer(smollm2_path))
    try:
        with running_server(backend) as (_, port), client_for(port) as c:
            code, message = status_of(lambda: c.generate(smollm2.encode_prompt(PROMPT), max_new_tokens=8,
                                                         timeout=RPC_TIMEOUT_S))
        assert code is grpc.StatusCode.UNAVAILABLE and "aborted the request after 3 tokens" in message
    finally:
        backend.close()
        fake.stop()


def test_a_server_with_another_tokenizer_is_refused(engine, llama3_tokenizer_path):
    with pytest.raises(TokenizerMismatchError, match=rf"engine \({engine.protocol} at .* tokenizes differently"):
        engine.backend(engine.url, load_served_tokenizer("smollm2-135m", llama3_tokenizer_path))


def test_serve_cloud_names_the_engine_that_tokenizes_differently(engine, llama3_tokenizer_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "serve-cloud", "--engine", engine.protocol, "--engine-url", engine.url,
         "--tokenizer", str(llama3_tokenizer_path), "--port", "0", "--engine-wait", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert f"({engine.protocol} at {engine.url}) tokenizes differently" in proc.stderr
    assert "Traceback" not in proc.stderr
