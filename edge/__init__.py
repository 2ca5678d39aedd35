"""The edge tier: the SDK applications embed (`TandemClient`) and its CLI.

    from edge import TandemClient
    with TandemClient("smollm2-135m", cloud="gpu-host:50051") as client:
        answer = client.complete("What is the capital of France? Answer in one sentence.")

`AsyncTandemClient` is the same for asyncio services (`async for`, `await`).

Names are loaded on first use so that `tandem --help` (which imports edge.cli)
does not pay for torch and grpc.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Answer": "edge.events",
    "AsyncStream": "edge.async_client",
    "AsyncTandemClient": "edge.async_client",
    "CircuitBreaker": "edge.resilience",
    "CloudError": "edge.errors",
    "CloudRejectedError": "edge.errors",
    "CloudTarget": "edge.transport",
    "CloudUnavailableError": "edge.errors",
    "ConfigurationError": "edge.errors",
    "DEFAULT_POLICY": "edge.client",
    "Done": "edge.events",
    "Escalation": "edge.events",
    "Event": "edge.events",
    "Fallback": "edge.events",
    "HandoffRefusedError": "edge.errors",
    "InvalidCalibrationError": "edge.errors",
    "InvalidCloudAddressError": "edge.errors",
    "InvalidPolicyError": "edge.errors",
    "ModelLoadError": "edge.errors",
    "PolicyDeniedError": "edge.errors",
    "RetryPolicy": "edge.resilience",
    "TandemClient": "edge.client",
    "TandemError": "edge.errors",
    "Text": "edge.events",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edge' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
