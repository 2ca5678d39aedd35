"""The cloud server against the real SmolLM2 model on a loopback port: contract,
parity with the local engine, request limits, health, reflection and metrics."""

from __future__ import annotations

import math
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from cloud.client import generate_request
from cloud.config import ServerConfig
from cloud.server import SERVICE_NAME
from tandem_rpc.v1 import cloud_pb2
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, running_server, status_of

CONFIG = ServerConfig(max_concurrency=2, max_queue=4, max_new_tokens=64)


@pytest.fixture(scope="module")
def server(smollm2):
    with running_server(smollm2, config=CONFIG, metrics_port=0) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with client_for(server[1]) as c:
        yield c


def local_tokens(model, ids, max_new_tokens, stop_strings=()):
    return list(model.stream(ids, max_new_tokens=max_new_tokens, stop_strings=stop_strings))


def test_info_reports_the_local_engines_fingerprints_and_limits(client, smollm2):
    info = client.info(timeout=RPC_TIMEOUT_S)
    fp = smollm2.fingerprint
    assert (info.model_fingerprint.architecture, info.model_fingerprint.weights_family,
            info.model_fingerprint.quantization) == (fp.architecture, fp.weights_family, fp.quantization)
    assert info.tokenizer_fingerprint == smollm2.tokenizer.fingerprint
    assert info.max_context == smollm2.max_context == 2048
    assert info.vocab_size == smollm2.config.vocab_size
    assert list(info.stop_token_ids) == smollm2.tokenizer.stop_ids
    layout = info.kv_layout
    assert (layout.n_layers, layout.n_kv_heads, layout.head_dim) == (
        smollm2.config.n_layers, smollm2.config.n_kv_heads, smollm2.config.head_dim)
    assert layout.dtype == "float32" and layout.keys_post_rope
    assert list(info.kv_codecs) == ["fp16", "int8", "q4"]
    assert info.limits.max_prompt_tokens == 2047
    assert info.limits.max_new_tokens == 64
    assert info.limits.max_concurrency == 2 and info.limits.max_queue == 4
    assert info.limits.max_message_bytes == CONFIG.max_message_bytes
    caps = info.capabilities  # the built-in engine: every KV hand-off, exact entropies over the vocabulary
    assert (caps.engine, caps.kv_import, caps.kv_export, caps.entropy, caps.top_k) == ("torch", True, True, "exact", 0)


def test_greedy_generate_streams_exactly_the_local_engines_tokens(client, smollm2):
    ids = smollm2.encode_prompt("Write a short poem about the sea.")
    expected = local_tokens(smollm2, ids, 12)
    got = client.generate(ids, max_new_tokens=12, request_id="parity-1", timeout=RPC_TIMEOUT_S)
    assert got.token_ids == [e.token.id for e in expected]
    assert got.text == "".join(e.text for e in expected)
    for name, values in (("logprob", got.logprobs), ("entropy", got.entropies), ("margin", got.margins)):
        want = [getattr(e.token, name) for e in expected]
        assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5) for a, b in zip(values, want)), name
    result = got.result
    assert result.finish_reason == cloud_pb2.FINISH_REASON_LENGTH
    assert result.request_id == "parity-1"
    assert (result.usage.prompt_tokens, result.usage.cached_prompt_tokens, result.usage.generated_tokens) == (
        len(ids), 0, 12)
    t = result.timings
    assert t.prefill_ms > 0 and t.decode_ms > 0 and t.queue_ms >= 0
    assert t.ttft_ms >= t.prefill_ms and t.total_ms >= t.ttft_ms + t.decode_ms * 0.99


def test_end_of_turn_token_finishes_the_stream_with_stop_like_the_local_engine(client, smollm2):
    ids = smollm2.encode_prompt("What is 2+2? Answer with one number.")
    expected = local_tokens(smollm2, ids, 24)
    got = client.generate(ids, max_new_tokens=24, timeout=RPC_TIMEOUT_S)
    assert expected[-1].finish_reason == "stop"
    assert got.token_ids == [e.token.id for e in expected]
    assert got.token_ids[-1] in smollm2.tokenizer.stop_ids
    assert got.result.finish_reason == cloud_pb2.FINISH_REASON_STOP


def test_stop_string_cuts_the_text_like_the_local_engine(client, smollm2):
    ids = smollm2.encode_prompt("Write a short poem about the sea.")
    expected = local_tokens(smollm2, ids, 16, stop_strings=("ocean",))
    got = client.generate(ids, max_new_tokens=16, stop_strings=["ocean"], timeout=RPC_TIMEOUT_S)
    assert expected[-1].finish_reason == "stop_string"
    assert got.text == "".join(e.text for e in expected) and "ocean" not in got.text
    assert got.result.finish_reason == cloud_pb2.FINISH_REASON_STOP_STRING


def test_seeded_sampling_repeats_and_unset_max_new_tokens_uses_the_default(smollm2):
    config = ServerConfig(max_concurrency=1, max_queue=0, default_new_tokens=5)
    with running_server(smollm2, config=config) as (_, port), client_for(port) as c:
        ids = smollm2.encode_prompt("Tell me a story.")
        runs = [c.generate(ids, temperature=0.9, top_p=0.9, seed=7, timeout=RPC_TIMEOUT_S) for _ in range(2)]
    assert runs[0].token_ids == runs[1].token_ids
    assert runs[0].result.usage.generated_tokens == 5


def test_token_id_outside_the_vocabulary_is_invalid_argument_naming_id_and_position(client):
    code, message = status_of(lambda: client.generate([1, 2, 49152, 5], max_new_tokens=4, timeout=RPC_TIMEOUT_S))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "49152" in message and "position 2" in message and "[0, 49152)" in message


def test_empty_prompt_is_invalid_argument(client):
    code, message = status_of(lambda: client.generate([], max_new_tokens=4, timeout=RPC_TIMEOUT_S))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "empty" in message


def test_prompt_longer_than_the_context_is_out_of_range_naming_the_numbers(client):
    code, message = status_of(lambda: client.generate([1] * 2048, max_new_tokens=1, timeout=RPC_TIMEOUT_S))
    assert code == grpc.StatusCode.OUT_OF_RANGE
    assert "2048 tokens" in message and "at most 2047" in message


def test_prompt_plus_max_new_tokens_past_the_context_is_out_of_range(client):
    code, message = status_of(lambda: client.generate([1] * 2000, max_new_tokens=60, timeout=RPC_TIMEOUT_S))
    assert code == grpc.StatusCode.OUT_OF_RANGE
    assert "2060" in message and "2048" in message


def test_max_new_tokens_above_the_server_limit_is_out_of_range(client):
    code, message = status_of(lambda: client.generate([1, 2, 3], max_new_tokens=65, timeout=RPC_TIMEOUT_S))
    assert code == grpc.StatusCode.OUT_OF_RANGE
    assert "65" in message and "limit of 64" in message


def test_invalid_sampling_is_invalid_argument(client):
    code, message = status_of(lambda: client.generate([1, 2, 3], top_p=1.5, timeout=RPC_TIMEOUT_S))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "top_p" in message


def test_request_larger_than_the_message_limit_is_resource_exhausted(smollm2):
    with running_server(smollm2, config=ServerConfig(max_message_bytes=4096)) as (_, port):
        with client_for(port) as c:
            code, message = status_of(lambda: c.generate([40000] * 2000, max_new_tokens=1, timeout=RPC_TIMEOUT_S))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "4096" in message


def test_health_reports_serving_for_the_server_and_the_service(server):
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_cloud_and_health_services(server):
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=RPC_TIMEOUT_S))
    names = {s.name for s in reply.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_metrics_endpoint_serves_request_token_and_queue_metrics(server, client, smollm2):
    ids = smollm2.encode_prompt("Name a colour.")
    client.generate(ids, max_new_tokens=3, escalation_reason=cloud_pb2.ESCALATION_REASON_LOW_CONFIDENCE,
                    timeout=RPC_TIMEOUT_S)
    status_of(lambda: client.generate([], timeout=RPC_TIMEOUT_S))
    body = urllib.request.urlopen(f"http://127.0.0.1:{server[0].metrics_port}/metrics", timeout=30).read()
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("tandem_cloud_requests_total", (("code", "OK"), ("method", "Generate")))] >= 1
    assert samples[("tandem_cloud_requests_total", (("code", "INVALID_ARGUMENT"), ("method", "Generate")))] >= 1
    assert samples[("tandem_cloud_escalations_total", (("reason", "low_confidence"),))] >= 1
    assert samples[("tandem_cloud_generated_tokens_total", ())] >= 3
    assert samples[("tandem_cloud_prompt_tokens_total", ())] >= len(ids)
    assert samples[("tandem_cloud_queue_depth", ())] == 0
    assert samples[("tandem_cloud_active_streams", ())] == 0
    assert samples[("tandem_cloud_prefill_seconds_count", ())] >= 1
    assert samples[("tandem_cloud_decode_seconds_count", ())] >= 1
    assert ("tandem_cloud_prefix_cache_hits_total", ()) in samples


def test_generate_request_helper_leaves_seed_unset_unless_given():
    assert not generate_request([1]).sampling.HasField("seed")
    assert generate_request([1], seed=0).sampling.HasField("seed")
