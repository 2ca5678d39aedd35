"""Bearer-token authentication and TLS on a real server."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud.auth import check_authorization, load_tokens
from cloud.client import CloudClient
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, running_server, self_signed_certificate, status_of

TOKEN = "s3cret-token"


def test_check_authorization_names_what_is_wrong():
    tokens = [b"one", b"two"]
    assert check_authorization("Bearer two", tokens) is None
    assert check_authorization("bearer one", tokens) is None
    assert "missing" in check_authorization(None, tokens)
    assert "malformed" in check_authorization("Basic b25lOg==", tokens)
    assert check_authorization("Bearer three", tokens) == "invalid bearer token"


def test_load_tokens_reads_a_file_skipping_blanks_and_comments(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# rotated monthly\nalpha\n\n  beta  \n")
    assert load_tokens(token=None, token_file=path) == ["alpha", "beta"]
    assert load_tokens(token=" gamma ") == ["gamma"]
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no token"):
        load_tokens(token_file=tmp_path / "empty")


@pytest.fixture(scope="module")
def auth_server(smollm2):
    with running_server(smollm2, auth_tokens=[TOKEN, "second-token"]) as running:
        yield running


def test_missing_token_is_unauthenticated_with_a_clear_message(auth_server):
    with client_for(auth_server[1]) as c:
        code, message = status_of(lambda: c.info(timeout=RPC_TIMEOUT_S))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer <token>" in message


def test_wrong_token_is_unauthenticated_for_unary_and_streaming_calls(auth_server, smollm2):
    with client_for(auth_server[1], token="guess") as c:
        for call in (lambda: c.info(timeout=RPC_TIMEOUT_S),
                     lambda: c.generate([1, 2, 3], max_new_tokens=1, timeout=RPC_TIMEOUT_S)):
            code, message = status_of(call)
            assert code == grpc.StatusCode.UNAUTHENTICATED and message == "invalid bearer token"


def test_any_configured_token_is_accepted(auth_server, smollm2):
    ids = smollm2.encode_prompt("Hi")
    for token in (TOKEN, "second-token"):
        with client_for(auth_server[1], token=token) as c:
            assert c.info(timeout=RPC_TIMEOUT_S).vocab_size == smollm2.config.vocab_size
            assert c.generate(ids, max_new_tokens=1, timeout=RPC_TIMEOUT_S).result.usage.generated_tokens == 1


def test_health_needs_no_token_so_probes_work(auth_server):
    with grpc.insecure_channel(f"127.0.0.1:{auth_server[1]}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_tls_with_a_self_signed_certificate_serves_and_rejects_plaintext(smollm2, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    ids = smollm2.encode_prompt("Hi")
    with running_server(smollm2, tls_cert=cert, tls_key=key, auth_tokens=[TOKEN]) as (_, port):
        for target in (f"localhost:{port}", f"127.0.0.1:{port}"):
            with CloudClient(target, root_certificates=cert, token=TOKEN) as c:
                assert c.info(timeout=RPC_TIMEOUT_S).max_context == smollm2.max_context
                done = c.generate(ids, max_new_tokens=2, timeout=RPC_TIMEOUT_S)
                assert done.result.usage.generated_tokens == 2
        with client_for(port, token=TOKEN) as plaintext:
            code, _ = status_of(lambda: plaintext.info(timeout=5))
        assert code == grpc.StatusCode.UNAVAILABLE


def test_tls_needs_both_certificate_and_key(smollm2):
    from cloud.server import start_server

    with pytest.raises(ValueError, match="both a certificate and a key"):
        start_server(smollm2, tls_cert=b"cert only")
