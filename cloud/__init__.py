"""The cloud tier: a gRPC server hosting the larger model, and a thin client for it.

    from cloud import start_server, CloudClient

Names are loaded on first use so that `tandem --help` (which imports cloud.cli)
does not pay for torch and grpc.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CloudClient": "cloud.client",
    "CloudServer": "cloud.server",
    "Completion": "cloud.client",
    "ServerConfig": "cloud.config",
    "collect": "cloud.client",
    "generate_request": "cloud.client",
    "start_server": "cloud.server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cloud' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
