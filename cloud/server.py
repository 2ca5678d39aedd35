"""Assemble and run a cloud server: servicer, auth, health, reflection, TLS, metrics.

`start_server` is what the CLI, the tests (on port 0) and the benchmark call.
It returns a `CloudServer`, a grpc.Server whose `stop(grace)` is graceful in
the way a load balancer expects: health turns NOT_SERVING at once, new and
queued requests get UNAVAILABLE with a retry hint, running streams get the
grace period to finish, and whatever still runs after it is stopped between
tokens with UNAVAILABLE (and how many tokens it had sent) before the
transport closes.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from pathlib import Path
from typing import Iterable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cloud.auth import BearerTokenInterceptor
from cloud.config import ServerConfig
from cloud.metrics import CloudMetrics, MetricsEndpoint
from cloud.servicer import CloudInferenceServicer
from engine.runtime import LocalModel
from tandem_rpc.v1 import cloud_pb2, cloud_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = cloud_pb2.DESCRIPTOR.services_by_name["CloudInference"].full_name
_TRANSPORT_GRACE_S = 2.0  # after streams were told to stop: time for their last messages to leave


def add_health(server: grpc.Server) -> health.HealthServicer:
    """Register grpc.health.v1 for the whole server ("") and for CloudInference, NOT_SERVING until ready."""
    servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", SERVICE_NAME):
        servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    return servicer


def set_serving(servicer: health.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        servicer.set(name, status)


def _pem(value: str | Path | bytes) -> bytes:
    return value if isinstance(value, bytes) else Path(value).read_bytes()


class CloudServer(grpc.Server):
    """A started gRPC server plus what its graceful stop needs (delegates the rest)."""

    def __init__(
        self, server: grpc.Server, servicer: CloudInferenceServicer, health_servicer: health.HealthServicer,
        metrics_endpoint: MetricsEndpoint | None,
    ) -> None:
        self._server = server
        self.servicer = servicer
        self.health = health_servicer
        self.metrics_endpoint = metrics_endpoint
        self._stopped: threading.Event | None = None
        self._lock = threading.Lock()

    @property
    def metrics(self) -> CloudMetrics:
        return self.servicer.metrics

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_endpoint.port if self.metrics_endpoint else None

    def add_generic_rpc_handlers(self, generic_rpc_handlers):
        return self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name, method_handlers):
        return self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    def start(self) -> None:
        self._server.start()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)

    def stop(self, grace: float | None) -> threading.Event:
        """Drain and stop in the background; the returned event is set once fully stopped."""
        with self._lock:
            if self._stopped is None:
                self._stopped = threading.Event()
                threading.Thread(
                    target=self._shutdown, args=(grace, self._stopped), name="cloud-shutdown", daemon=True
                ).start()
            return self._stopped

    def _shutdown(self, grace: float | None, stopped: threading.Event) -> None:
        log.info("shutting down (grace %s s)", grace)
        self.health.enter_graceful_shutdown()
        self.servicer.admission.drain()
        if not self.servicer.admission.wait_idle(grace or 0.0):
            log.warning("%d streams still running after the grace period; stopping them",
                        self.servicer.admission.active)
        self.servicer.stopping.set()
        self.servicer.admission.wait_idle(_TRANSPORT_GRACE_S)
        self._server.stop(_TRANSPORT_GRACE_S).wait()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        self.servicer.sessions.clear()
        self.servicer.kv_store.clear()
        log.info("stopped")
        stopped.set()


def start_server(
    model: LocalModel,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ServerConfig | None = None,
    model_id: str | None = None,
    auth_tokens: Sequence[str] = (),
    tls_cert: str | Path | bytes | None = None,
    tls_key: str | Path | bytes | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
    interceptors: Iterable[grpc.ServerInterceptor] = (),
) -> tuple[CloudServer, int]:
    """Start serving `model`; returns the server and the port bound (pass port 0 for any free one).

    TLS needs both `tls_cert` and `tls_key` (PEM bytes or file paths). With
    `auth_tokens`, every RPC but health needs `authorization: Bearer <token>`.
    `metrics_port` (0 for any free one) starts the Prometheus endpoint.
    """
    config = config or ServerConfig()
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both a certificate and a key")
    model_id = model_id or Path(model.source).name
    metrics = CloudMetrics()
    servicer = CloudInferenceServicer(model, config, model_id=model_id, metrics=metrics)
    chain = [*interceptors]
    if auth_tokens:
        chain.append(BearerTokenInterceptor(auth_tokens))
        if tls_cert is None:
            log.warning("auth tokens configured without TLS: tokens cross the network in clear text")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.worker_threads, thread_name_prefix="cloud-rpc"),
        interceptors=chain,
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    cloud_pb2_grpc.add_CloudInferenceServicer_to_server(servicer, server)
    health_servicer = add_health(server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{host}:{port}"
    if tls_cert is not None and tls_key is not None:
        credentials = grpc.ssl_server_credentials([(_pem(tls_key), _pem(tls_cert))])
        bound = server.add_secure_port(address, credentials)
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"could not bind {address}")
    endpoint = None
    if metrics_port is not None:
        endpoint = MetricsEndpoint(metrics, host=metrics_host or host, port=metrics_port)
    server.start()
    set_serving(health_servicer, True)
    log.info("serving %s on %s:%d (%s)", model_id, host, bound, "TLS" if tls_cert is not None else "plaintext")
    return CloudServer(server, servicer, health_servicer, endpoint), bound
