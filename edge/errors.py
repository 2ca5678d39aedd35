"""Errors the edge SDK raises. gRPC errors are mapped to these in one place
(`edge.transport`), so callers never need to import grpc.

    TandemError
    ├── CloudError                  the cloud tier could not serve the request
    │   ├── CloudUnavailableError   unreachable, overloaded, circuit open, deadline passed
    │   └── CloudRejectedError      the cloud refused the request (bad input, auth, limits)
    ├── HandoffRefusedError         a hand-off would be unsafe (tokenizer mismatch)
    └── PolicyDeniedError           the policy forbids every route for this request
"""

from __future__ import annotations


class TandemError(Exception):
    """Base class of every error the SDK raises on purpose."""


class CloudError(TandemError):
    """`code` is the gRPC status name (or the SDK's own, e.g. CIRCUIT_OPEN);
    `retryable` says whether trying again soon may succeed, `retry_after_s`
    when the server asked to be left alone for a while (overload)."""

    def __init__(
        self, message: str, *, code: str | None = None, retryable: bool = False, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class CloudUnavailableError(CloudError):
    def __init__(
        self, message: str, *, code: str | None = None, retryable: bool = True, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, code=code, retryable=retryable, retry_after_s=retry_after_s)


class CloudRejectedError(CloudError):
    pass


class HandoffRefusedError(TandemError):
    pass


class PolicyDeniedError(TandemError):
    pass
