"""The edge tier: the SDK applications embed (`TandemClient`) and its CLI.

    from edge import TandemClient
    with TandemClient("smollm2-135m", cloud="gpu-host:50051") as client:
        answer = client.complete("What is the capital of France?")
"""

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
