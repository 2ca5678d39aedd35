"""Helpers for the edge SDK tests: policies derived from the shipped ones, a capture of
everything the cloud receives, and `tandem serve-cloud` as a real process to kill or stall."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml

from edge.client import DEFAULT_POLICY
from router import Policy, parse_policy
from tests.cloud_fixtures import wait_for_port
from tests.conftest import REPO


def policy_with(base: Path = DEFAULT_POLICY, **sections: dict[str, Any]) -> Policy:
    """A policy file (policies/default.yaml unless `base`) with some sections' keys replaced (None drops a key or a section),
    e.g. policy_with(edge={"max_context_tokens": 64})."""
    doc = yaml.safe_load(base.read_text())
    for name, values in sections.items():
        if values is None:
            doc.pop(name, None)
        else:
            base_section = doc.get(name, {})
            if "signal" in values and values["signal"] != base_section.get("signal"):
                base_section = {}  # another signal: the base's signal-specific keys do not apply
            merged = {**base_section, **values}
            doc[name] = {k: v for k, v in merged.items() if v is not None}
    doc["audit"] = {"enabled": False}
    return parse_policy(yaml.safe_dump(doc), source="test-policy")


# The confidence rule fires at the 6th token of any answer whose window holds a token below p = 0.999.
ALWAYS_UNSURE = {"signal": "min_prob", "threshold": 0.999, "window": 4, "min_tokens": 6, "quantile": None}


@dataclass
class Capture:
    """Every request message the cloud server received, by method."""

    requests: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, method: str) -> list[Any]:
        with self.lock:
            return [r for m, r in self.requests if m.endswith("/" + method)]


class CaptureInterceptor(grpc.aio.ServerInterceptor):
    """Records each deserialized request before the servicer sees it (the cloud's view of the edge)."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        def recorded(behaviour):
            async def run(request, context):
                with self.capture.lock:
                    self.capture.requests.append((method, request))
                return await behaviour(request, context)
            return run

        if handler.unary_unary:
            return handler._replace(unary_unary=recorded(handler.unary_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=recorded(handler.unary_stream))
        return handler


class ByteRecorder:
    """A loopback TCP proxy in front of the server that keeps every byte the client sends."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.received = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def data(self) -> bytes:
        with self._lock:
            return bytes(self.received)

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if record:
                    with self._lock:
                        self.received += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def cloud_process(*args: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """`tandem serve-cloud` in its own process (SmolLM2), for faults only a real process can have."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem", "serve-cloud", "--port", "0", "--max-context", "2048", "--grace", "0", *args],
        cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield proc, wait_for_port(proc, timeout=120)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
