"""Hostile and careless clients against a real server on loopback (issue 15): readers that never
read, stalled streams, numbers that break decoding, what Info and errors reveal, failed
authentication. Each test performs the attack and asserts the server's answer."""

from __future__ import annotations

import logging
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud.config import ServerConfig
from cloud.contract import fingerprint_message
from tandem_rpc.v1 import cloud_pb2, cloud_pb2_grpc
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, requests_ended, running_server, status_of, wait_until
from tests.conftest import REPO


def attacker_channel(port: int) -> grpc.Channel:
    """A client that keeps its receive window at HTTP/2's 64 KiB (no BDP growth), so a stream it does
    not read stalls the server's writes at once."""
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.http2.bdp_probe", 0),
                                                                ("grpc.max_receive_message_length", 8 << 20)])


def prefills(server) -> float:
    """PrefillKV calls that finished their prefill (and gave back their decode slot just after)."""
    return server.metrics.registry.get_sample_value("tandem_cloud_prefill_seconds_count") or 0.0


def non_reading_prefills(channel: grpc.Channel, smollm2, prompt, count):
    """PrefillKV calls whose responses (fp16 frames of up to 1 MiB) nobody reads."""
    stub = cloud_pb2_grpc.CloudInferenceStub(channel)
    request = cloud_pb2.PrefillKVRequest(token_ids=prompt, codec="fp16",
                                         receiver=fingerprint_message(smollm2.fingerprint))
    return [stub.PrefillKV(request, timeout=120) for _ in range(count)]


def test_readers_that_never_read_cannot_starve_health_info_or_generate(smollm2):
    # A stall limit longer than the test, so every attacker stream is still held when the victim asks
    # (ending stalled streams is the next test's business), and a per-caller cap above the attacker's
    # streams (capping them is test_kv_server's business): what is shown here is that held streams hold
    # no thread.
    n_attackers = 4 * ServerConfig(max_concurrency=1, max_queue=2, kv_max_uploads=1).worker_threads + 4
    config = ServerConfig(max_concurrency=1, max_queue=2, kv_max_uploads=1, stream_stall_s=600,
                          kv_per_caller=n_attackers + 4)
    prompt = smollm2.encode_prompt("Tell me about the sea. " * 6)
    with running_server(smollm2, config=config) as (server, port):
        servicer = server.servicer
        attacker = attacker_channel(port)
        calls = []
        while len(calls) < n_attackers:  # in waves the admission queue takes, each wave left unread
            calls += non_reading_prefills(attacker, smollm2, prompt, config.max_concurrency + config.max_queue)
            # Every call of the wave prefilled (a stream opens before its body reaches the admission
            # queue, so the gauges alone can read empty while a body still waits for a worker).
            assert wait_until(lambda: prefills(server) == len(calls) and servicer.admission.active == 0
                              and servicer.streams.open == len(calls)), (
                servicer.streams.open, len(calls), [(c.code(), c.details()) for c in calls if c.done()])
        assert servicer.streams.open >= 4 * config.worker_threads
        with client_for(port) as victim:
            health = health_pb2_grpc.HealthStub(victim.channel)
            started = time.monotonic()
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0).status
            health_s = time.monotonic() - started
            started = time.monotonic()
            info = victim.info(timeout=1.0)
            info_s = time.monotonic() - started
            started = time.monotonic()
            answer = victim.generate([1, 2, 3], max_new_tokens=2, timeout=1.0)  # small: the CPU is shared
            generate_s = time.monotonic() - started
        for call in calls:
            call.cancel()
        attacker.close()
        assert wait_until(lambda: servicer.streams.open == 0, timeout=10)
    assert status == health_pb2.HealthCheckResponse.SERVING and info.max_context == smollm2.max_context
    assert len(answer.token_ids) == 2
    assert max(health_s, info_s, generate_s) < 1.0, (health_s, info_s, generate_s)


def test_a_stream_nobody_reads_is_ended_after_the_stall_limit_and_frees_everything(smollm2):
    config = ServerConfig(stream_stall_s=1.0)
    prompt = smollm2.encode_prompt("Tell me about the sea. " * 6)
    with running_server(smollm2, config=config) as (server, port), attacker_channel(port) as channel:
        (call,) = non_reading_prefills(channel, smollm2, prompt, 1)
        assert wait_until(lambda: server.servicer.streams.open == 1, timeout=20)
        assert wait_until(lambda: server.servicer.streams.open == 0, timeout=5)
        # The outcome is counted when the body closes on a worker, just after the stream is let go.
        wait_until(lambda: requests_ended(server, "STALLED", "PrefillKV") > 0, timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            for _ in call:
                pass
    assert requests_ended(server, "STALLED", "PrefillKV") == 1
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED and "read nothing for 1 s" in info.value.details()


def test_no_stream_outlives_the_servers_maximum_stream_time(smollm2):
    with running_server(smollm2, config=ServerConfig(max_stream_s=1.0)) as (server, port), client_for(port) as c:
        started = time.monotonic()
        code, message = status_of(lambda: c.generate([1, 2, 3], max_new_tokens=2000, timeout=RPC_TIMEOUT_S))
        elapsed = time.monotonic() - started
        assert wait_until(lambda: server.servicer.admission.active == 0, timeout=5)
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED and "limit of 1 s" in message
    assert elapsed < 3.0


@pytest.mark.parametrize("temperature", [1e-30, 1e-7, 5e4])
def test_temperatures_that_break_decoding_are_invalid_argument_not_internal(smollm2, temperature):
    with running_server(smollm2) as (_, port), client_for(port) as c:
        code, message = status_of(lambda: c.generate([1, 2, 3], max_new_tokens=2, temperature=temperature,
                                                     seed=1, timeout=RPC_TIMEOUT_S))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "temperature" in message


def test_info_never_reveals_where_the_server_keeps_its_model(smollm2):
    with running_server(smollm2, model_id=str(smollm2.source)) as (_, port), client_for(port) as c:
        model_id = c.info(timeout=RPC_TIMEOUT_S).model_id
    assert model_id == Path(str(smollm2.source)).name and "/" not in model_id


def test_an_internal_error_tells_the_client_nothing_of_the_exception_and_the_log_keeps_it(smollm2, caplog):
    with running_server(smollm2) as (server, port), client_for(port) as c:
        def broken_stream(*args, **kwargs):  # a fake bug: the fault a working engine cannot be made to have
            raise RuntimeError("secret detail at /srv/models/private")

        server.servicer.backend.model = type("Broken", (), {"stream": staticmethod(broken_stream),
                                                    "__getattr__": lambda self, name: getattr(smollm2, name)})()
        with caplog.at_level(logging.ERROR, logger="cloud"):
            code, message = status_of(lambda: c.generate([1, 2, 3], max_new_tokens=2, request_id="r-7",
                                                         timeout=RPC_TIMEOUT_S))
    assert code is grpc.StatusCode.INTERNAL and "r-7" in message
    assert "secret" not in message and "/srv" not in message and "RuntimeError" not in message
    assert "secret detail at /srv/models/private" in caplog.text


def test_failed_authentication_is_logged_without_the_token_and_counted(smollm2, caplog):
    with running_server(smollm2, auth_tokens=["the-real-token"], metrics_port=0) as (server, port):
        with caplog.at_level(logging.WARNING, logger="cloud"):
            with client_for(port, token="guessed-token-123") as c:
                for _ in range(3):
                    status_of(lambda: c.info(timeout=RPC_TIMEOUT_S))
            with client_for(port) as c:
                status_of(lambda: c.info(timeout=RPC_TIMEOUT_S))
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read()
        host = server.metrics_endpoint.host
    assert 'tandem_cloud_auth_failures_total{reason="invalid bearer token"} 3.0' in scraped.decode()
    assert 'tandem_cloud_auth_failures_total{reason="missing credentials"} 1.0' in scraped.decode()
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 4 and "Info" in refusals[0].getMessage() and "127.0.0.1" in refusals[0].getMessage()
    assert "guessed-token-123" not in caplog.text and "the-real-token" not in caplog.text
    assert host == "127.0.0.1"  # the metrics endpoint binds loopback unless told otherwise


def test_compose_publishes_metrics_on_the_hosts_loopback_only():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    ports = [str(p) for p in compose["services"]["cloud"].get("ports", [])]
    metrics = [p for p in ports if p.endswith(":9100")]
    assert metrics and all(p.startswith("127.0.0.1:") for p in metrics)
