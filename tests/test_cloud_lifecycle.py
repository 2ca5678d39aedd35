"""Start and stop: graceful shutdown of a real server, and `tandem serve-cloud` as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud.client import collect, generate_request
from cloud.config import ServerConfig
from cloud.server import start_server
from tandem_rpc.v1 import cloud_pb2
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, status_of, wait_for_port
from tests.conftest import REPO


def health_status(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S).status


def test_shutdown_lets_a_stream_finish_within_the_grace_period(smollm2):
    server, port = start_server(smollm2, config=ServerConfig(max_concurrency=1, max_queue=0))
    ids = smollm2.encode_prompt("Write a short poem about the sea.")
    with client_for(port) as c:
        call = c.stream(generate_request(ids, max_new_tokens=8), timeout=RPC_TIMEOUT_S)
        first = next(call)
        started = time.monotonic()
        stopped = server.stop(30.0)
        done = collect([first, *call])
    assert done.result.finish_reason == cloud_pb2.FINISH_REASON_LENGTH and len(done.token_ids) == 8
    assert stopped.wait(15), "stop waited for the whole grace period although the stream had ended"
    assert time.monotonic() - started < 15


def test_shutdown_refuses_new_work_and_stops_streams_past_the_grace_period(smollm2):
    server, port = start_server(smollm2, config=ServerConfig(max_concurrency=2, max_queue=0))
    ids = smollm2.encode_prompt("Write a long story about a dragon.")
    with client_for(port) as c:
        long_call = c.stream(generate_request(ids, max_new_tokens=500), timeout=RPC_TIMEOUT_S)
        next(long_call)
        stopped = server.stop(1.0)
        assert health_status(port) == health_pb2.HealthCheckResponse.NOT_SERVING
        code, message = status_of(lambda: c.generate(ids, max_new_tokens=1, timeout=RPC_TIMEOUT_S))
        assert code == grpc.StatusCode.UNAVAILABLE and "shutting down" in message
        received = 1
        with pytest.raises(grpc.RpcError) as ended:
            for _ in long_call:
                received += 1
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"stopped after {received} tokens" in ended.value.details()
    assert received < 500
    assert stopped.wait(15)


def test_serve_cloud_command_serves_until_sigterm(tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text("cli-token\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem", "serve-cloud", "--port", "0", "--max-context", "512",
         "--max-concurrency", "1", "--auth-token-file", str(token_file), "--grace", "1",
         "--kv-max-upload-mb", "64", "--kv-ttl", "30", "--kv-same-precision-only"],
        cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        port = wait_for_port(proc, timeout=120)
        assert health_status(port) == health_pb2.HealthCheckResponse.SERVING
        with client_for(port, token="cli-token") as c:
            info = c.info(timeout=RPC_TIMEOUT_S)
        assert info.model_id == "smollm2-135m" and info.max_context == 512 and info.limits.max_concurrency == 1
        assert info.kv_limits.max_upload_bytes == 64 << 20 and info.kv_limits.handle_ttl_ms == 30_000
        assert not info.kv_limits.cross_precision
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stderr.close()
