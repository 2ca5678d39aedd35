"""The edge tier: the SDK applications embed (`TandemClient`) and its CLI.

    from edge import TandemClient
    with TandemClient("smollm2-135m", cloud="gpu-host:50051") as client:
        answer = client.complete("What is the capital of France?")

`AsyncTandemClient` is the same for asyncio services (`async for`, `await`).
"""

from edge.async_client import AsyncStream, AsyncTandemClient
from edge.client import DEFAULT_POLICY, TandemClient
from edge.errors import (
    CloudError,
    CloudRejectedError,
    CloudUnavailableError,
    HandoffRefusedError,
    PolicyDeniedError,
    TandemError,
)
from edge.events import Answer, Done, Escalation, Event, Fallback, Text
from edge.resilience import CircuitBreaker, RetryPolicy
from edge.transport import CloudTarget

__all__ = [
    "Answer",
    "AsyncStream",
    "AsyncTandemClient",
    "CircuitBreaker",
    "CloudError",
    "CloudRejectedError",
    "CloudTarget",
    "CloudUnavailableError",
    "DEFAULT_POLICY",
    "Done",
    "Escalation",
    "Event",
    "Fallback",
    "HandoffRefusedError",
    "PolicyDeniedError",
    "RetryPolicy",
    "TandemClient",
    "TandemError",
    "Text",
]
