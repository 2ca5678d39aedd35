"""Helpers for the cloud tests: servers on loopback port 0, a client, a self-signed certificate."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest

from cloud.client import CloudClient
from cloud.server import CloudServer, start_server

RPC_TIMEOUT_S = 60.0  # generous: the CPU is shared with other test runs


@contextlib.contextmanager
def running_server(model, **kwargs) -> Iterator[tuple[CloudServer, int]]:
    """A real server on 127.0.0.1, any free port; stopped (no grace) on exit."""
    server, port = start_server(model, host="127.0.0.1", port=0, **kwargs)
    try:
        yield server, port
    finally:
        if not server.stop(None).wait(timeout=30):
            pytest.fail("server did not stop within 30 s")


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def requests_ended(server: CloudServer, code: str, method: str = "Generate") -> float:
    """How many `method` requests the server counted as ended with `code` (0 before the first)."""
    value = server.metrics.registry.get_sample_value("tandem_cloud_requests_total", {"method": method, "code": code})
    return value or 0.0


def client_for(port: int, **kwargs) -> CloudClient:
    return CloudClient(f"127.0.0.1:{port}", **kwargs)


def status_of(call) -> tuple[grpc.StatusCode, str]:
    """Run a call (a function) that must fail; returns its status code and message."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def self_signed_certificate(folder: Path) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) for localhost and 127.0.0.1, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not found (the TLS test makes its certificate with it)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert.read_bytes(), key.read_bytes()


def wait_for_port(proc: subprocess.Popen, timeout: float) -> int:
    """Read serve-cloud's stderr until its 'serving ... on host:port' line (on a thread, so a hang cannot
    block the test); the rest of stderr keeps draining so the process never blocks on a full pipe."""
    found = threading.Event()
    port: list[int] = []
    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            match = re.search(r"serving .* on [\d.]+:(\d+)", line)
            if match and not port:
                port.append(int(match.group(1)))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout):
        pytest.fail(f"serve-cloud did not report its port within {timeout} s; stderr:\n{''.join(lines)}")
    return port[0]
