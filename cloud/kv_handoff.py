"""The cloud side of the KV hand-off, between the wire and engine.kv.

`receive_upload` turns an UploadKV stream into a verified cache and its tokens;
`take_upload` hands a kept upload back to the principal that sent it;
`send_prefill` encodes a prefilled cache as a PrefillKV stream.

An upload's header names how many positions follow, and a 136-byte frame can
claim thousands: the destination is therefore allocated uninitialised
(torch.empty), so memory is committed page by page as frames are decoded into
it, and the assembler refuses a cache with any position unwritten. A complete
cache is checked for NaN and infinite values, which would pass every frame
check and break decoding later. Errors become
RequestError with the status the contract names: KVFormatError ->
INVALID_ARGUMENT, KVMismatchError -> FAILED_PRECONDITION, KVLimitError ->
RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

import grpc
import torch

from cloud.config import ServerConfig
from cloud.contract import RequestError, fingerprint_from, fingerprint_message, out_of_vocabulary
from cloud.kv_store import KVStore, StoredKV
from cloud.sessions import allocation, common_prefix
from engine.kv import (
    CODECS,
    CodecOptions,
    KVAssembler,
    KVError,
    KVFormatError,
    KVLayout,
    KVLimitError,
    KVMismatchError,
    ReceivedKV,
    encode_cache,
    incompatibility,
)
from engine.config import ModelConfig
from engine.fingerprint import ModelFingerprint
from engine.model import KVCache
from engine.runtime import LocalModel
from tandem_rpc.v1 import cloud_pb2

_STATUS = {
    KVFormatError: grpc.StatusCode.INVALID_ARGUMENT,
    KVMismatchError: grpc.StatusCode.FAILED_PRECONDITION,
    KVLimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def request_error(exc: KVError) -> RequestError:
    return RequestError(_STATUS.get(type(exc), grpc.StatusCode.INVALID_ARGUMENT), str(exc))


def check_tokens(ids: list[int], *, vocab_size: int, max_tokens: int, what: str) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    if not ids:
        raise RequestError(invalid, f"{what}: token_ids is empty")
    if len(ids) > max_tokens:
        raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"{what}: {len(ids)} tokens, more than this server's {max_tokens}")
    outside = out_of_vocabulary(ids, vocab_size)
    if outside is not None:
        raise RequestError(invalid, f"{what}: {outside}")


class CacheModel(Protocol):
    """What receiving a cache needs of the model it is for: the built-in LocalModel, or a serving engine's model
    known from its file (cloud.backends.llama_slots.ServedModel)."""

    config: ModelConfig
    max_context: int

    @property
    def fingerprint(self) -> ModelFingerprint: ...

    def new_cache(self, n_positions: int | None = None) -> KVCache: ...


def receive_upload(model: CacheModel, config: ServerConfig, chunks: Iterable[cloud_pb2.KVChunk]) -> tuple[list[int], ReceivedKV]:
    """Verify and decode an UploadKV stream; nothing of it survives an error."""
    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None or not first.HasField("start"):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "UploadKV must start with a KVStart message")
    start = first.start
    tokens = list(start.token_ids)
    check_tokens(tokens, vocab_size=model.config.vocab_size, max_tokens=model.max_context, what="UploadKV")
    reserve = min(start.reserve_tokens, model.max_context)

    def make_cache(n: int) -> KVCache:
        return _uncommitted_cache(model, allocation(n + reserve, model.max_context))

    assembler = KVAssembler(KVLayout.of(model.config), model.fingerprint, make_cache, max_tokens=model.max_context,
                            max_bytes=config.kv_max_upload_bytes, allow_cross_precision=config.kv_cross_precision)
    try:
        for chunk in chunks:
            if not chunk.HasField("frame"):
                raise KVFormatError("UploadKV sent a second KVStart; after the first, every message is a frame")
            assembler.add(chunk.frame)
        received = assembler.finish()
    except KVError as exc:
        raise request_error(exc) from None
    if received.n_tokens != len(tokens):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"the frames hold {received.n_tokens} positions but KVStart names {len(tokens)} tokens")
    _check_finite(received.cache)
    return tokens, received


def take_upload(store: KVStore, handle: str, token_ids: list[int], principal: str) -> tuple[StoredKV, int]:
    """The caller's upload and how many of its positions the prompt reuses (the last prompt token is always
    fed). Another principal's handle is 'unknown', exactly like one that never existed."""
    entry = store.take(handle, principal)
    if entry is None:
        raise RequestError(grpc.StatusCode.NOT_FOUND, "unknown, expired or already used kv_handle; upload "
                           "the cache again or send the token IDs with Generate")
    if common_prefix(entry.tokens, token_ids) < len(entry.tokens):
        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, "the uploaded cache holds tokens that are not "
                           "a prefix of this prompt; token_ids must start with the tokens named at upload")
    return entry, min(len(entry.tokens), len(token_ids) - 1)


def _uncommitted_cache(model: CacheModel, n_positions: int) -> KVCache:
    """A cache for `n_positions` whose memory the OS commits only as it is written."""
    cache = model.new_cache(1)
    for name in ("k", "v", "k_scale", "v_scale"):  # [n_layers, B, n_kv_heads, S(, head_dim)]; no scales: None
        t = getattr(cache, name)
        if t is not None:
            setattr(cache, name, t.new_empty((*t.shape[:3], n_positions, *t.shape[4:])))
    cache.max_seq_len = n_positions
    return cache


def _check_finite(cache: KVCache) -> None:
    """Refuse NaN or infinite keys and values (one layer at a time, to bound the check's memory); an int8
    cache's are its row scales."""
    tensors = (cache.k, cache.v) if cache.k_scale is None else (cache.k_scale, cache.v_scale)
    for name, tensor in zip(("keys", "values"), tensors):
        for layer in range(tensor.shape[0]):
            finite = torch.isfinite(tensor[layer, :, :, : cache.pos])
            if not bool(finite.all()):
                position = int((~finite).nonzero()[0][2])
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"the uploaded cache holds NaN or infinite "
                                   f"{name} (layer {layer}, position {position}); nothing was kept")


def check_prefill(model: LocalModel, request: cloud_pb2.PrefillKVRequest) -> CodecOptions:
    ids = list(request.token_ids)
    check_tokens(ids, vocab_size=model.config.vocab_size, max_tokens=model.max_context, what="PrefillKV")
    if request.codec not in CODECS:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"unknown KV codec {request.codec!r}; this server encodes {', '.join(CODECS)}")
    reason = incompatibility(model.fingerprint, fingerprint_from(request.receiver),
                             allow_cross_precision=request.allow_cross_precision)
    if reason is not None:
        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, reason.replace("this model", "the receiver"))
    return CodecOptions.for_model(request.codec, model.fingerprint)


def send_prefill(model: LocalModel, cache: KVCache, options: CodecOptions, *, request_id: str,
                 token_ids: list[int], prefill_s: float) -> Iterator[cloud_pb2.KVChunk]:
    yield cloud_pb2.KVChunk(start=cloud_pb2.KVStart(
        token_ids=token_ids, codec=options.codec, request_id=request_id,
        sender=fingerprint_message(model.fingerprint), prefill_ms=prefill_s * 1000,
    ))
    for frame in encode_cache(cache, model.fingerprint, options):
        yield cloud_pb2.KVChunk(frame=frame)
