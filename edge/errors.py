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
    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class CloudUnavailableError(CloudError):
    pass


class CloudRejectedError(CloudError):
    pass


class HandoffRefusedError(TandemError):
    pass


class PolicyDeniedError(TandemError):
    pass
