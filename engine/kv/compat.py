"""May a cache made by one model seed another? Decided from fingerprints alone.

Equal architecture (layers, heads, head dim, RoPE) and weights family are
required: anything else would decode garbage. A different quantization recipe
(the 4-bit edge model and its full-precision cloud twin) is allowed only when
the caller says so, which the SDK takes from the policy's
`kv_handoff.cross_precision`, a choice informed by the measured top-1
agreement (benchmarks/kv_handoff.py).
"""

from __future__ import annotations

from engine.fingerprint import ModelFingerprint
from engine.kv.errors import KVMismatchError


def cross_precision(sender: ModelFingerprint, receiver: ModelFingerprint) -> bool:
    return sender.quantization != receiver.quantization


def incompatibility(sender: ModelFingerprint, receiver: ModelFingerprint, *, allow_cross_precision: bool) -> str | None:
    """Why `receiver` cannot use a cache from `sender`, or None when it can."""
    if sender.architecture != receiver.architecture:
        return (f"the KV cache comes from another architecture ({sender.architecture}, this model is "
                f"{receiver.architecture})")
    if sender.weights_family != receiver.weights_family:
        return (f"the KV cache comes from another weights family ({sender.weights_family}, this model is "
                f"{receiver.weights_family})")
    if cross_precision(sender, receiver) and not allow_cross_precision:
        return (f"the KV cache comes from the {sender.quantization} model and this one is "
                f"{receiver.quantization}; cross-precision hand-off is not allowed")
    return None


def check_compatible(sender: ModelFingerprint, receiver: ModelFingerprint, *, allow_cross_precision: bool) -> None:
    reason = incompatibility(sender, receiver, allow_cross_precision=allow_cross_precision)
    if reason is not None:
        raise KVMismatchError(reason)
