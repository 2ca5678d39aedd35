"""Why a KV payload is refused; each maps to one gRPC status on the cloud tier.

    KVError (EngineError)
    ├── KVFormatError     corrupt, truncated or inconsistent frames     INVALID_ARGUMENT
    ├── KVMismatchError   from a model whose cache this one cannot use  FAILED_PRECONDITION
    └── KVLimitError      larger than the receiver accepts              RESOURCE_EXHAUSTED
"""

from __future__ import annotations

from engine.errors import EngineError


class KVError(EngineError, ValueError):
    """Base class of every refusal of a KV payload."""


class KVFormatError(KVError):
    pass


class KVMismatchError(KVError):
    pass


class KVLimitError(KVError):
    pass
