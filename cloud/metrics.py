"""Prometheus metrics for one server, in its own registry.

A registry per server (not the process-global one) lets tests and benchmarks
run several servers in one process without duplicate-metric errors.
"""

from __future__ import annotations

import logging
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class CloudMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tandem_cloud_requests", "RPCs finished, by method and gRPC status code", ["method", "code"], registry=r
        )
        self.escalations = Counter(
            "tandem_cloud_escalations", "Generate requests by the edge's escalation reason", ["reason"], registry=r
        )
        self.prompt_tokens = Counter("tandem_cloud_prompt_tokens", "Prompt tokens received", registry=r)
        self.cached_prompt_tokens = Counter(
            "tandem_cloud_cached_prompt_tokens", "Prompt tokens served from a session's prefix cache", registry=r
        )
        self.generated_tokens = Counter("tandem_cloud_generated_tokens", "Tokens generated and streamed", registry=r)
        self.cache_hits = Counter("tandem_cloud_prefix_cache_hits", "Session requests that reused a prefix", registry=r)
        self.cache_misses = Counter(
            "tandem_cloud_prefix_cache_misses", "Session requests that found no reusable prefix", registry=r
        )
        self.auth_failures = Counter(
            "tandem_cloud_auth_failures", "Calls refused for missing, malformed or invalid credentials", ["reason"],
            registry=r,
        )
        self.open_streams = Gauge("tandem_cloud_open_streams", "Response streams being written", registry=r)
        self.queue_depth = Gauge("tandem_cloud_queue_depth", "Streams waiting for a decode slot", registry=r)
        self.active_streams = Gauge("tandem_cloud_active_streams", "Streams holding a decode slot", registry=r)
        self.cache_bytes = Gauge("tandem_cloud_prefix_cache_bytes", "Bytes held by session prefix caches", registry=r)
        self.cache_sessions = Gauge("tandem_cloud_prefix_cache_sessions", "Sessions with a cached prefix", registry=r)
        self.queue_seconds = Histogram(
            "tandem_cloud_queue_seconds", "Time waiting for a decode slot", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.prefill_seconds = Histogram(
            "tandem_cloud_prefill_seconds", "Prefill time up to the first token", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.decode_seconds = Histogram(
            "tandem_cloud_decode_seconds", "First token to last token", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.ttft_seconds = Histogram(
            "tandem_cloud_ttft_seconds", "Arrival to first token", buckets=_LATENCY_BUCKETS, registry=r
        )

    def track(
        self, *, active: Callable[[], float], queued: Callable[[], float],
        cache_bytes: Callable[[], float], cache_sessions: Callable[[], float], open_streams: Callable[[], float],
    ) -> None:
        """Read the gauges from the live objects at scrape time, so they can never drift."""
        self.active_streams.set_function(active)
        self.queue_depth.set_function(queued)
        self.cache_bytes.set_function(cache_bytes)
        self.cache_sessions.set_function(cache_sessions)
        self.open_streams.set_function(open_streams)


class MetricsEndpoint:
    """The HTTP endpoint Prometheus scrapes (`/metrics`), stoppable with the server."""

    def __init__(self, metrics: CloudMetrics, *, host: str, port: int) -> None:
        self._httpd, self._thread = start_http_server(port, addr=host, registry=metrics.registry)
        self.host = host
        self.port = self._httpd.server_port
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
