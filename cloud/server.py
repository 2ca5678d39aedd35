"""Assemble and run a cloud server: servicer, auth, health, reflection, TLS, metrics.

`start_server` is what the CLI, the tests (on port 0) and the benchmark call.
The gRPC server is grpc.aio on an event loop of its own thread (why: see
cloud.streams); `start_server` returns a `CloudServer` whose `stop(grace)` is
graceful in the way a load balancer expects: health turns NOT_SERVING at once,
new and queued requests get UNAVAILABLE with a retry hint, running streams get
the grace period to finish, and whatever still runs after it is stopped between
tokens with UNAVAILABLE (and how many tokens it had sent) before the transport
closes.

Connections are pinged every `keepalive_s` (a peer that vanished without a
FIN is found), clients may ping every 30 s, and a connection is asked to
reconnect after `max_connection_age_s`, its streams given `max_stream_s` to end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Iterable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cloud.auth import BearerTokenInterceptor
from cloud.backends.base import Backend
from cloud.backends.torch_engine import TorchBackend
from cloud.config import ServerConfig
from cloud.metrics import CloudMetrics, MetricsEndpoint
from cloud.servicer import CloudInferenceServicer
from engine.runtime import LocalModel
from tandem_rpc.v1 import cloud_pb2, cloud_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = cloud_pb2.DESCRIPTOR.services_by_name["CloudInference"].full_name
_TRANSPORT_GRACE_S = 2.0  # after streams were told to stop: time for their last messages to leave
CLIENT_PING_S = 30  # the fastest keepalive a client may send (the SDK pings every 60 s)
# A stream ended for a stalled reader keeps its unread bytes in the transport until the client reads,
# its deadline passes or the connection ages out; this bounds how many one connection can pile up.
MAX_STREAMS_PER_CONNECTION = 128

def add_health(server: grpc.aio.Server) -> health.aio.HealthServicer:
    """Register grpc.health.v1 for the whole server ("") and for CloudInference (NOT_SERVING until started);
    it answers on the event loop, so no load on the servicer's threads can delay it."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


async def set_serving(servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        await servicer.set(name, status)


def _pem(value: str | Path | bytes) -> bytes:
    return value if isinstance(value, bytes) else Path(value).read_bytes()


def public_model_id(name: str) -> str:
    """The name Info reports: a file or folder on this server (or any absolute path) is reduced to its
    last component, so Info never tells a client where the server keeps its models."""
    if os.path.isabs(name) or os.path.exists(name) or "\\" in name:
        return Path(name.replace("\\", "/")).name or "model"
    return name


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", int(config.keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", CLIENT_PING_S * 1000),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        ("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(config.max_stream_s * 1000)),
    ]


class CloudServer:
    """A started server: its servicer, health, metrics endpoint, and a graceful `stop`."""

    def __init__(
        self, server: grpc.aio.Server, loop: asyncio.AbstractEventLoop, thread: threading.Thread,
        servicer: CloudInferenceServicer, health_servicer: health.aio.HealthServicer,
        metrics_endpoint: MetricsEndpoint | None,
    ) -> None:
        self._server = server
        self._loop = loop
        self._thread = thread
        self.servicer = servicer
        self.health = health_servicer
        self.metrics_endpoint = metrics_endpoint
        self._stopped: threading.Event | None = None
        self._terminated = threading.Event()
        self._lock = threading.Lock()

    @property
    def metrics(self) -> CloudMetrics:
        return self.servicer.metrics

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_endpoint.port if self.metrics_endpoint else None

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """True once stopped; False if `timeout` passed first."""
        return self._terminated.wait(timeout)

    def stop(self, grace: float | None) -> threading.Event:
        """Drain and stop in the background; the returned event is set once fully stopped."""
        with self._lock:
            if self._stopped is None:
                self._stopped = threading.Event()
                threading.Thread(
                    target=self._shutdown, args=(grace, self._stopped), name="cloud-shutdown", daemon=True
                ).start()
            return self._stopped

    def _on_loop(self, coroutine) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _shutdown(self, grace: float | None, stopped: threading.Event) -> None:
        log.info("shutting down (grace %s s)", grace)
        self._on_loop(self.health.enter_graceful_shutdown())
        self.servicer.admission.drain()
        if not self.servicer.admission.wait_idle(grace or 0.0):
            log.warning("%d streams still running after the grace period; stopping them",
                        self.servicer.admission.active)
        self.servicer.stopping.set()
        self.servicer.admission.wait_idle(_TRANSPORT_GRACE_S)
        self._on_loop(self._server.stop(_TRANSPORT_GRACE_S))
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        self.servicer.pool.shutdown(wait=False, cancel_futures=True)
        self.servicer.backend.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        log.info("stopped")
        self._terminated.set()
        stopped.set()


def start_server(
    model: LocalModel | Backend,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ServerConfig | None = None,
    model_id: str | None = None,
    auth_tokens: Sequence[str] = (),
    tls_cert: str | Path | bytes | None = None,
    tls_key: str | Path | bytes | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
) -> tuple[CloudServer, int]:
    """Start serving `model` (a LocalModel runs on the built-in torch engine; a Backend is served as it
    is); returns the server and the port bound (pass port 0 for any free one).

    TLS needs both `tls_cert` and `tls_key` (PEM bytes or file paths). With
    `auth_tokens`, every RPC but health needs `authorization: Bearer <token>`.
    `metrics_port` (0 for any free one) starts the Prometheus endpoint, on
    loopback unless `metrics_host` says otherwise.
    """
    config = config or ServerConfig()
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both a certificate and a key")
    backend = model if isinstance(model, Backend) else TorchBackend(model, config)
    model_id = public_model_id(model_id or backend.facts.default_model_id)
    metrics = CloudMetrics()
    servicer = CloudInferenceServicer(backend, config, model_id=model_id, metrics=metrics,
                                      authenticated=bool(auth_tokens))
    chain = [*interceptors]
    if auth_tokens:
        chain.append(BearerTokenInterceptor(auth_tokens, lambda reason: metrics.auth_failures.labels(reason).inc()))
        if tls_cert is None:
            log.warning("auth tokens configured without TLS: tokens cross the network in clear text")
    address = f"{host}:{port}"
    credentials = grpc.ssl_server_credentials([(_pem(tls_key), _pem(tls_cert))]) if tls_cert and tls_key else None

    async def build() -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
        server = grpc.aio.server(interceptors=chain, options=server_options(config))
        cloud_pb2_grpc.add_CloudInferenceServicer_to_server(servicer, server)
        health_servicer = add_health(server)
        await set_serving(health_servicer, False)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        bound = (server.add_secure_port(address, credentials) if credentials is not None
                 else server.add_insecure_port(address))
        if bound == 0:
            raise OSError(f"could not bind {address}")
        await server.start()
        await set_serving(health_servicer, True)
        return server, health_servicer, bound

    endpoint = None if metrics_port is None else MetricsEndpoint(metrics, host=metrics_host, port=metrics_port)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="cloud-grpc", daemon=True)
    thread.start()
    try:
        server, health_servicer, bound = asyncio.run_coroutine_threadsafe(build(), loop).result()
    except Exception as exc:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        servicer.pool.shutdown(wait=False)
        if endpoint is not None:
            endpoint.stop()
        if isinstance(exc, RuntimeError) and "bind" in str(exc).lower():
            raise OSError(f"could not bind {address}: {exc}") from exc
        raise
    log.info("serving %s on %s:%d (%s)", model_id, host, bound, "TLS" if credentials is not None else "plaintext")
    return CloudServer(server, loop, thread, servicer, health_servicer, endpoint), bound
