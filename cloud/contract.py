"""Between the wire and the engine: request validation, Info, and response messages.

Pure functions of (message, model facts, config), so every limit can be read
in one place and tested without a server. A refusal is a RequestError carrying
the gRPC status code and a message that names the limit and the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import grpc

from cloud.config import ServerConfig
from engine.fingerprint import ModelFingerprint
from engine.generate import Sampling
from engine.kv import CODECS, MAX_FRAME_BYTES
from engine.runtime import LocalModel, StreamEvent
from tandem_rpc.v1 import cloud_pb2

if TYPE_CHECKING:
    from cloud.backends.base import Backend

SERVER_VERSION = "tandem-cloud/0.1.0"
# Below this, logits divided by the temperature overflow float32 (and sampling equals greedy long before);
# above the maximum every token is equally likely, which no caller means.
MIN_TEMPERATURE = 1e-3
MAX_TEMPERATURE = 1e3
KV_AXIS_ORDER = "layer,batch,kv_head,position,head_dim"
FINISH_REASONS = {
    "stop": cloud_pb2.FINISH_REASON_STOP,
    "length": cloud_pb2.FINISH_REASON_LENGTH,
    "stop_string": cloud_pb2.FINISH_REASON_STOP_STRING,
}


class RequestError(Exception):
    """A request the server refuses; `code` is the gRPC status it ends with
    (UNAVAILABLE ones carry `retry_after_ms`, sent as a trailer)."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True)
class GenerationPlan:
    """A validated Generate request in engine terms."""

    request_id: str
    session_id: str
    token_ids: list[int]
    max_new_tokens: int
    sampling: Sampling
    stop_strings: tuple[str, ...]
    escalation_reason: str
    escalation_detail: str = ""


def escalation_reason_name(value: int) -> str:
    """`ESCALATION_REASON_LOW_CONFIDENCE` -> `low_confidence`; values from newer clients -> `unknown`."""
    try:
        return cloud_pb2.EscalationReason.Name(value).removeprefix("ESCALATION_REASON_").lower()
    except ValueError:
        return "unknown"


def plan_generation(
    request: cloud_pb2.GenerateRequest, *, vocab_size: int, max_context: int, config: ServerConfig
) -> GenerationPlan:
    """Check `request` against every limit; raises RequestError naming the first one broken."""
    invalid, out_of_range = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE
    for field in ("request_id", "session_id"):
        if len(getattr(request, field)) > config.max_id_chars:
            raise RequestError(invalid, f"{field} is {len(getattr(request, field))} characters; "
                                        f"the limit is {config.max_id_chars}")
    ids = list(request.token_ids)
    if not ids:
        raise RequestError(invalid, "prompt is empty: send at least one token ID in token_ids")
    outside = out_of_vocabulary(ids, vocab_size)
    if outside is not None:
        raise RequestError(invalid, outside)
    n_prompt, max_prompt = len(ids), max_context - 1
    if n_prompt > max_prompt:
        raise RequestError(
            out_of_range,
            f"prompt is {n_prompt} tokens; this server accepts at most {max_prompt} "
            f"(max context {max_context}, minus at least one token to generate)",
        )
    max_new = request.max_new_tokens
    if max_new > config.max_new_tokens:
        raise RequestError(
            out_of_range, f"max_new_tokens {max_new} is above this server's limit of {config.max_new_tokens}"
        )
    if max_new == 0:
        max_new = min(config.default_new_tokens, config.max_new_tokens, max_context - n_prompt)
    elif n_prompt + max_new > max_context:
        raise RequestError(
            out_of_range,
            f"prompt ({n_prompt} tokens) plus max_new_tokens ({max_new}) is {n_prompt + max_new} tokens, "
            f"past the max context of {max_context}",
        )
    return GenerationPlan(
        request_id=request.request_id,
        session_id=request.session_id,
        token_ids=ids,
        max_new_tokens=max_new,
        sampling=sampling_from(request.sampling),
        stop_strings=stop_strings_from(request.stop_strings, config),
        escalation_reason=escalation_reason_name(request.escalation_reason),
        escalation_detail=request.escalation_detail[: config.max_id_chars],
    )


def out_of_vocabulary(ids: Sequence[int], vocab_size: int) -> str | None:
    """What is wrong with the first token ID outside [0, vocab_size), or None."""
    bad = next(((i, t) for i, t in enumerate(ids) if t >= vocab_size), None)
    if bad is None:
        return None
    return f"token ID {bad[1]} at position {bad[0]} is outside the vocabulary [0, {vocab_size})"


def fingerprint_message(fp: ModelFingerprint) -> cloud_pb2.ModelFingerprint:
    return cloud_pb2.ModelFingerprint(architecture=fp.architecture, weights_family=fp.weights_family,
                                      quantization=fp.quantization)


def fingerprint_from(message: cloud_pb2.ModelFingerprint) -> ModelFingerprint:
    return ModelFingerprint(message.architecture, message.weights_family, message.quantization)


def sampling_from(message: cloud_pb2.Sampling) -> Sampling:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    t = message.temperature
    if not math.isfinite(t) or t < 0 or 0 < t < MIN_TEMPERATURE or t > MAX_TEMPERATURE:
        raise RequestError(invalid, f"sampling.temperature must be 0 (greedy) or between {MIN_TEMPERATURE:g} and "
                           f"{MAX_TEMPERATURE:g}, got {t:g}" + (" (below it logits overflow; send 0 for greedy)"
                                                                 if 0 < t < MIN_TEMPERATURE else ""))
    top_p = message.top_p or 1.0
    if not 0.0 < top_p <= 1.0:
        raise RequestError(invalid, f"sampling.top_p must be in (0, 1] (0 = off), got {message.top_p}")
    seed = message.seed if message.HasField("seed") else None
    return Sampling(temperature=message.temperature, top_k=message.top_k, top_p=top_p, seed=seed)


def stop_strings_from(values: Sequence[str], config: ServerConfig) -> tuple[str, ...]:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    if len(values) > config.max_stop_strings:
        raise RequestError(invalid, f"{len(values)} stop strings; the limit is {config.max_stop_strings}")
    for i, value in enumerate(values):
        if len(value) > config.max_stop_string_chars:
            raise RequestError(
                invalid, f"stop_strings[{i}] is {len(value)} characters; the limit is {config.max_stop_string_chars}"
            )
    return tuple(values)


def info_response(backend: "Backend", config: ServerConfig, *, model_id: str) -> cloud_pb2.InfoResponse:
    """Info from the backend's facts: the tokenizer fingerprint is the gateway's own tokenizer; the KV
    hand-off fields are filled only where the backend imports caches."""
    facts, caps = backend.facts, backend.capabilities
    info = cloud_pb2.InfoResponse(
        model_id=model_id,
        tokenizer_fingerprint=facts.tokenizer.fingerprint,
        max_context=facts.max_context,
        vocab_size=facts.vocab_size,
        stop_token_ids=facts.tokenizer.stop_ids,
        capabilities=cloud_pb2.Capabilities(engine=caps.engine, kv_import=caps.kv_import, kv_export=caps.kv_export,
                                            entropy=caps.entropy, top_k=caps.top_k),
        limits=cloud_pb2.Limits(
            max_prompt_tokens=facts.max_context - 1,
            max_new_tokens=config.max_new_tokens,
            default_new_tokens=config.default_new_tokens,
            max_message_bytes=config.max_message_bytes,
            max_concurrency=config.max_concurrency,
            max_queue=config.max_queue,
            max_stop_strings=config.max_stop_strings,
            max_stop_string_chars=config.max_stop_string_chars,
        ),
        server_version=SERVER_VERSION,
    )
    if facts.fingerprint is not None:
        info.model_fingerprint.CopyFrom(fingerprint_message(facts.fingerprint))
    model = getattr(backend, "model", None)
    kv = getattr(backend, "kv", None)
    served = getattr(kv, "served", None)  # a serving engine's model, known from its file (cloud.backends.llama_slots)
    if (caps.kv_import or caps.kv_export) and (isinstance(model, LocalModel) or served is not None):
        c = model.config if isinstance(model, LocalModel) else served.config
        dtype = model.model.norm.weight.dtype if isinstance(model, LocalModel) else served.cache_dtype
        info.kv_layout.CopyFrom(cloud_pb2.KVLayout(
            n_layers=c.n_layers, n_kv_heads=c.n_kv_heads, head_dim=c.head_dim,
            dtype=str(dtype).removeprefix("torch."),
            keys_post_rope=True, axis_order=KV_AXIS_ORDER,
        ))
        info.kv_codecs.extend(CODECS)
        info.kv_limits.CopyFrom(cloud_pb2.KVLimits(
            max_upload_bytes=config.kv_max_upload_bytes, max_frame_bytes=MAX_FRAME_BYTES,
            max_tokens=facts.max_context, handle_ttl_ms=int(config.kv_ttl_s * 1000),
            cross_precision=config.kv_cross_precision,
        ))
    return info


def chunk_message(event: StreamEvent) -> cloud_pb2.GenerateResponse:
    t = event.token
    return cloud_pb2.GenerateResponse(
        chunk=cloud_pb2.TokenChunk(
            token_ids=[t.id], text=event.text, logprobs=[t.logprob], entropies=[t.entropy], margins=[t.margin]
        )
    )


@dataclass
class StreamClock:
    """Monotonic instants of one stream; everything else is derived in milliseconds."""

    arrived: float
    admitted: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    prefill_started: float | None = None

    def timings(self, now: float) -> cloud_pb2.Timings:
        admitted = self.admitted if self.admitted is not None else now
        prefill_started = self.prefill_started if self.prefill_started is not None else admitted
        first = self.first_token if self.first_token is not None else now
        last = self.last_token if self.last_token is not None else first
        return cloud_pb2.Timings(
            queue_ms=(admitted - self.arrived) * 1000,
            prefill_ms=(first - prefill_started) * 1000,
            decode_ms=(last - first) * 1000,
            ttft_ms=(first - self.arrived) * 1000,
            total_ms=(now - self.arrived) * 1000,
        )


def result_message(
    plan: GenerationPlan, *, model_id: str, finish_reason: str | None, cached: int, generated: int,
    clock: StreamClock, now: float,
) -> cloud_pb2.GenerateResponse:
    return cloud_pb2.GenerateResponse(
        result=cloud_pb2.GenerateResult(
            finish_reason=FINISH_REASONS.get(finish_reason or "", cloud_pb2.FINISH_REASON_UNSPECIFIED),
            usage=cloud_pb2.Usage(
                prompt_tokens=len(plan.token_ids), cached_prompt_tokens=cached, generated_tokens=generated
            ),
            timings=clock.timings(now),
            request_id=plan.request_id,
            model_id=model_id,
        )
    )
