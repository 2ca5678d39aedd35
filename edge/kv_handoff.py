"""The SDK's side of the KV hand-off: may this hand-off carry a cache, what would it
cost, and moving the cache up (edge -> cloud) or down (cloud -> edge).

The choice itself is router.choose_continuation / choose_prefill (pure, from
the policy's `kv_handoff` rules); this module supplies its inputs from the
models' fingerprints, the server's Info and engine.kv's size estimate.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from cloud.contract import fingerprint_from
from engine.kv import (
    CodecOptions,
    KVFormatError,
    KVLayout,
    ReceivedKV,
    decode_frames,
    encode_cache,
    estimate_raw_bytes,
    incompatibility,
)
from engine.model import KVCache
from engine.runtime import LocalModel
from router import KVHandoffRules, KVOffer
from tandem_rpc.v1 import cloud_pb2


def ineligible(local: LocalModel, info: cloud_pb2.InfoResponse, rules: KVHandoffRules, *,
               direction: str = "up") -> str | None:
    """A reason code when a cache cannot cross between these two models under this policy
    (`direction` "up": an upload the cloud resumes from; "down": the cloud's prefill shipped down)."""
    if info.HasField("capabilities"):  # servers before capabilities always took caches
        caps = info.capabilities
        if not (caps.kv_import if direction == "up" else caps.kv_export):
            return f"kv_not_offered_by_engine:{caps.engine or 'unknown'}"
    if not any(codec in info.kv_codecs for codec in rules.codecs(direction)):
        return "kv_codec_not_offered"
    cloud = fingerprint_from(info.model_fingerprint)
    if incompatibility(local.fingerprint, cloud, allow_cross_precision=True) is not None:
        return "kv_incompatible_models"
    if local.fingerprint.quantization != cloud.quantization:
        if not rules.cross_precision:
            return "kv_cross_precision_not_allowed"
        if not info.kv_limits.cross_precision:
            return "kv_cross_precision_refused_by_cloud"
    return None


def offers(local: LocalModel, info: cloud_pb2.InfoResponse, rules: KVHandoffRules, n_tokens: int, *,
           direction: str = "up") -> list[KVOffer]:
    """What each codec the policy allows and the cloud offers would send of `n_tokens` positions:
    an upload leaves q4's last positions to the cloud; a download carries every position."""
    out = []
    for codec in rules.codecs(direction):
        if codec not in info.kv_codecs:
            continue
        n_sent = sent_tokens(local, n_tokens, codec) if direction == "up" else n_tokens
        out.append(KVOffer(codec, kv_bytes(local, n_sent, codec) if n_sent else 0, n_tokens - n_sent))
    return out


def sent_tokens(local: LocalModel, n_cached: int, codec: str) -> int:
    """How many of the `n_cached` positions an upload carries (q4 leaves the last ones to the cloud)."""
    return CodecOptions.for_model(codec, local.fingerprint).sent_tokens(n_cached)


def kv_bytes(local: LocalModel, n_tokens: int, codec: str) -> int:
    return estimate_raw_bytes(KVLayout.of(local.config), n_tokens, CodecOptions.for_model(codec, local.fingerprint))


def frames_of(local: LocalModel, cache: KVCache, n_tokens: int, codec: str) -> Iterator[bytes]:
    options = CodecOptions.for_model(codec, local.fingerprint)
    return encode_cache(cache, local.fingerprint, options, n_tokens=n_tokens)


def receive_prefill(
    local: LocalModel, chunks: Iterable[cloud_pb2.KVChunk], *, expect_tokens: list[int], room: int,
    allow_cross_precision: bool,
) -> tuple[ReceivedKV, cloud_pb2.KVStart]:
    """Verify and decode a PrefillKV stream into a new cache with `room` spare positions."""
    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None or not first.HasField("start"):
        raise KVFormatError("PrefillKV did not start with a KVStart")
    if list(first.start.token_ids) != expect_tokens:
        raise KVFormatError("PrefillKV's cache holds other tokens than the ones asked for")
    frames = (chunk.frame for chunk in chunks if chunk.HasField("frame"))
    received = decode_frames(frames, KVLayout.of(local.config), local.fingerprint, lambda n: local.new_cache(n + room),
                             max_tokens=local.max_context, allow_cross_precision=allow_cross_precision)
    return received, first.start
