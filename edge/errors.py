"""Errors the edge SDK raises. gRPC errors are mapped to these in one place
(`edge.transport`), so callers never need to import grpc; the errors of building
a client (policy, model, cloud address) in `TandemClient.__init__`.

    TandemError
    ├── ConfigurationError          the client cannot be built as asked (also a ValueError)
    │   ├── InvalidPolicyError      the policy file (also a router.PolicyError: .problems)
    │   ├── ModelLoadError          the model (also an engine.EngineError)
    │   ├── InvalidCalibrationError the policy's judge file (also a router.JudgeError)
    │   └── InvalidCloudAddressError  `cloud` is not HOST:PORT
    ├── CloudError                  the cloud tier could not serve the request
    │   ├── CloudUnavailableError   unreachable, overloaded, circuit open, deadline passed
    │   └── CloudRejectedError      the cloud refused the request (bad input, auth, limits)
    ├── HandoffRefusedError         a hand-off would be unsafe (tokenizer mismatch)
    └── PolicyDeniedError           the policy forbids every route for this request
"""

from __future__ import annotations

from engine.errors import EngineError
from router.errors import PolicyError
from router.judge import JudgeError


class TandemError(Exception):
    """Base class of every error the SDK raises on purpose."""


class ConfigurationError(TandemError, ValueError):
    """The client could not be built from what it was given; the message says what to fix."""


class InvalidPolicyError(ConfigurationError, PolicyError):
    """The policy cannot be used; `problems` names each field and line (as router.PolicyError)."""


class ModelLoadError(ConfigurationError, EngineError):
    """The device model could not be loaded (missing, unsupported or corrupt)."""


class InvalidCalibrationError(ConfigurationError, JudgeError):
    """The policy's calibration file cannot be used: unreadable, malformed, or fitted for another model."""


class InvalidCloudAddressError(ConfigurationError):
    """`cloud` is not a HOST:PORT the SDK can dial."""


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
