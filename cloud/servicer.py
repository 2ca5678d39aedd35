"""The CloudInference servicer: methods named as in the proto, streaming by `yield`.

Validation and message building live in cloud.contract, slots in
cloud.admission, reuse in cloud.sessions; this module only sequences them for
one RPC (the KV hand-off's wire side is cloud.kv_handoff, its store
cloud.kv_store). Each stream watches an event set by the RPC's done-callback (client
cancel, deadline, transport loss) and stops between tokens, so an abandoned
stream frees its slot after at most one token or one prefill chunk.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterator

import grpc
import torch

from cloud.admission import Abandoned, Admission, Overloaded
from cloud.config import ServerConfig
from cloud.contract import (
    GenerationPlan, RequestError, StreamClock, chunk_message, info_response, plan_generation, result_message,
)
from cloud.kv_handoff import check_prefill, receive_upload, send_prefill
from cloud.kv_store import KVStore, StoreFullError
from cloud.metrics import CloudMetrics
from cloud.sessions import PrefixCache, common_prefix, fit_cache
from engine.generate import prefill
from engine.model import KVCache
from engine.runtime import LocalModel
from tandem_rpc.v1 import cloud_pb2, cloud_pb2_grpc

log = logging.getLogger(__name__)

RETRY_AFTER_KEY = "retry-after-ms"


class CloudInferenceServicer(cloud_pb2_grpc.CloudInferenceServicer):
    def __init__(
        self,
        model: LocalModel,
        config: ServerConfig,
        *,
        model_id: str,
        metrics: CloudMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.config = config
        self.model_id = model_id
        self.metrics = metrics
        self.admission = Admission(config.max_concurrency, config.max_queue, clock=clock)
        self.sessions = PrefixCache(config.session_cache_bytes, config.max_sessions)
        self.kv_store = KVStore(config.kv_store_bytes, config.kv_ttl_s, clock=clock)
        self._uploads = threading.BoundedSemaphore(max(1, config.kv_max_uploads))
        self.stopping = threading.Event()  # end of the shutdown grace: in-flight streams stop
        self._clock = clock
        self._info = info_response(model, config, model_id=model_id)
        metrics.track(
            active=lambda: self.admission.active, queued=lambda: self.admission.queued,
            cache_bytes=lambda: self.sessions.nbytes, cache_sessions=lambda: len(self.sessions),
        )

    def Info(self, request: cloud_pb2.InfoRequest, context: grpc.ServicerContext) -> cloud_pb2.InfoResponse:
        self.metrics.requests.labels("Info", "OK").inc()
        return self._info

    def Generate(
        self, request: cloud_pb2.GenerateRequest, context: grpc.ServicerContext
    ) -> Iterator[cloud_pb2.GenerateResponse]:
        clock = StreamClock(arrived=self._clock())

        def body() -> Iterator[cloud_pb2.GenerateResponse]:
            plan = self._plan(request)
            return (yield from self._admitted(plan, context, clock))

        return self._guarded("Generate", request.request_id, context, body())

    def ResumeFromKV(
        self, request: cloud_pb2.ResumeRequest, context: grpc.ServicerContext
    ) -> Iterator[cloud_pb2.GenerateResponse]:
        """Generate whose prompt starts with an uploaded cache's tokens: those are not prefilled again."""
        clock = StreamClock(arrived=self._clock())

        def body() -> Iterator[cloud_pb2.GenerateResponse]:
            plan = self._plan(request.generate)
            seed = self._take_upload(request.kv_handle, plan)
            return (yield from self._admitted(plan, context, clock, seed))

        return self._guarded("ResumeFromKV", request.generate.request_id, context, body())

    def UploadKV(self, request_iterator: Iterator[cloud_pb2.KVChunk], context: grpc.ServicerContext
                 ) -> cloud_pb2.KVUploadResult:
        """Verify and decode the frames as they arrive; keep only a complete cache, under a handle."""
        t0 = self._clock()
        if not self._uploads.acquire(blocking=False):
            self.metrics.requests.labels("UploadKV", "UNAVAILABLE").inc()
            context.set_trailing_metadata(((RETRY_AFTER_KEY, "1000"),))
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.config.kv_max_uploads} KV uploads are already "
                          "being received; retry after 1000 ms or hand off by token IDs")
        outcome = "UNKNOWN"
        try:
            tokens, received = receive_upload(self.model, self.config, request_iterator)
            handle = self.kv_store.put(tokens, received.cache)
            outcome = "OK"
            log.info("KV upload: %d positions, %s, %d frames, %d bytes, %.0f ms", received.n_tokens,
                     received.codec, received.frames, received.nbytes, (self._clock() - t0) * 1000)
            return cloud_pb2.KVUploadResult(
                kv_handle=handle, n_tokens=received.n_tokens, frames=received.frames, bytes=received.nbytes,
                decode_ms=(self._clock() - t0) * 1000, expires_in_ms=int(self.config.kv_ttl_s * 1000),
            )
        except RequestError as exc:
            outcome = exc.code.name
            context.abort(exc.code, exc.message)
        except StoreFullError as exc:
            outcome = grpc.StatusCode.RESOURCE_EXHAUSTED.name
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except Exception as exc:
            if context.is_active():
                outcome = grpc.StatusCode.INTERNAL.name
                log.exception("UploadKV failed")
                context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
            outcome = _gone(context)
        finally:
            self._uploads.release()
            self.metrics.requests.labels("UploadKV", outcome).inc()

    def PrefillKV(
        self, request: cloud_pb2.PrefillKVRequest, context: grpc.ServicerContext
    ) -> Iterator[cloud_pb2.KVChunk]:
        """Prefill here (in a decode slot), then stream the compressed cache down (slot released)."""
        clock = StreamClock(arrived=self._clock())

        def body() -> Iterator[cloud_pb2.KVChunk]:
            options = check_prefill(self.model, request)
            ids = list(request.token_ids)
            cancelled = self._watch(context)
            clock.admitted = self.admission.acquire(cancelled)
            try:
                cache = self.model.new_cache(len(ids))
                started = self._clock()
                rest = self._prefill_chunks(cache, ids, cancelled)
                if rest is None:
                    return _gone(context)
                with torch.inference_mode():
                    prefill(self.model.model, cache, rest)
                prefill_s = self._clock() - started
            finally:
                self.admission.release(self._clock() - clock.admitted)
            yield from send_prefill(self.model, cache, options, request_id=request.request_id, token_ids=ids,
                                    prefill_s=prefill_s)
            return "OK"

        return self._guarded("PrefillKV", request.request_id, context, body())

    def _plan(self, request: cloud_pb2.GenerateRequest) -> GenerationPlan:
        return plan_generation(request, vocab_size=self.model.config.vocab_size, max_context=self.model.max_context,
                               config=self.config)

    def _take_upload(self, handle: str, plan: GenerationPlan) -> tuple[KVCache, int]:
        """The uploaded cache rewound to what the prompt shares with it (the last prompt token is always fed)."""
        entry = self.kv_store.take(handle)
        if entry is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND, "unknown, expired or already used kv_handle; upload "
                               "the cache again or send the token IDs with Generate")
        if common_prefix(entry.tokens, plan.token_ids) < len(entry.tokens):
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, "the uploaded cache holds tokens that are not "
                               "a prefix of this prompt; token_ids must start with the tokens named at upload")
        reused = min(len(entry.tokens), len(plan.token_ids) - 1)
        entry.cache.truncate(reused)
        return entry.cache, reused

    def _guarded(self, method: str, request_id: str, context: grpc.ServicerContext, body: Iterator) -> Iterator:
        """Run a streaming body; its refusals and failures become status codes, its outcome a metric."""
        outcome = "UNKNOWN"
        try:
            outcome = yield from body
        except RequestError as exc:
            outcome = exc.code.name
            context.abort(exc.code, exc.message)
        except Overloaded as exc:
            outcome = grpc.StatusCode.UNAVAILABLE.name
            context.set_trailing_metadata(((RETRY_AFTER_KEY, str(exc.retry_after_ms)),))
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry after {exc.retry_after_ms} ms")
        except Abandoned:
            outcome = _gone(context)
        except GeneratorExit:
            outcome = _gone(context)  # gRPC dropped the stream (client went away)
            raise
        except Exception as exc:
            outcome = grpc.StatusCode.INTERNAL.name
            log.exception("%s failed (request %r)", method, request_id)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.metrics.requests.labels(method, outcome).inc()

    def _watch(self, context: grpc.ServicerContext) -> threading.Event:
        """An event set when the RPC ends early (cancel, deadline, transport loss)."""
        cancelled = threading.Event()

        def on_done() -> None:
            cancelled.set()
            self.admission.wake()

        if not context.add_callback(on_done):
            cancelled.set()
        return cancelled

    def _admitted(
        self, plan: GenerationPlan, context: grpc.ServicerContext, clock: StreamClock,
        seed: tuple[KVCache, int] | None = None,
    ) -> Iterator[cloud_pb2.GenerateResponse]:
        """Wait for a slot, then decode (from `seed`, a cache and its reusable positions, if given);
        returns the outcome for metrics."""
        cancelled = self._watch(context)
        self.metrics.escalations.labels(plan.escalation_reason).inc()
        clock.admitted = self.admission.acquire(cancelled)
        self.metrics.queue_seconds.observe(clock.admitted - clock.arrived)
        try:
            return (yield from self._decode(plan, context, clock, cancelled, seed))
        finally:
            self.admission.release(self._clock() - clock.admitted)

    def _decode(
        self, plan: GenerationPlan, context: grpc.ServicerContext, clock: StreamClock, cancelled: threading.Event,
        seed: tuple[KVCache, int] | None,
    ) -> Iterator[cloud_pb2.GenerateResponse]:
        ids = plan.token_ids
        cache, reused = seed if seed is not None else self._lookup(plan)
        cache = fit_cache(self.model, cache, len(ids) + plan.max_new_tokens)
        generated: list[int] = []
        finish: str | None = None
        clock.prefill_started = self._clock()
        try:
            suffix = self._prefill_chunks(cache, ids[reused:], cancelled)
            if suffix is None:
                if self.stopping.is_set():
                    raise self._shutdown_error(0)
                return _gone(context)
            events = self.model.stream(
                suffix, max_new_tokens=plan.max_new_tokens, sampling=plan.sampling,
                stop_strings=plan.stop_strings, cache=cache,
            )
            try:
                for event in events:
                    now = self._clock()
                    clock.first_token = clock.first_token or now
                    clock.last_token = now
                    generated.append(event.token.id)
                    finish = event.finish_reason
                    yield chunk_message(event)
                    if finish is None and (cancelled.is_set() or self.stopping.is_set() or not context.is_active()):
                        break
            finally:
                events.close()
            if finish is None and not self.stopping.is_set():
                return _gone(context)
            if finish is None:
                raise self._shutdown_error(len(generated))
            now = self._clock()
            self._observe(plan, clock, reused, len(generated), now)
            yield result_message(
                plan, model_id=self.model_id, finish_reason=finish, cached=reused, generated=len(generated),
                clock=clock, now=now,
            )
            log.info(
                "request %r session %r (%s %r): %d prompt tokens (%d cached), %d generated, %s, ttft %.0f ms",
                plan.request_id, plan.session_id, plan.escalation_reason, plan.escalation_detail, len(ids), reused,
                len(generated), finish, (clock.first_token - clock.arrived) * 1000,
            )
            return "OK"
        finally:
            if plan.session_id:
                self.sessions.put(plan.session_id, (ids + generated)[: cache.pos], cache)

    def _shutdown_error(self, n_generated: int) -> Overloaded:
        return Overloaded(
            f"server shutting down: stream stopped after {n_generated} tokens; resend the prompt "
            "plus the tokens received to continue elsewhere",
            self.admission.retry_after_ms(),
        )

    def _lookup(self, plan: GenerationPlan) -> tuple[KVCache | None, int]:
        if not plan.session_id:
            return None, 0
        cache, reused = self.sessions.take(plan.session_id, plan.token_ids)
        (self.metrics.cache_hits if reused else self.metrics.cache_misses).inc()
        return cache, reused

    def _prefill_chunks(self, cache: KVCache, ids: list[int], cancelled: threading.Event) -> list[int] | None:
        """Feed all but the last chunk of a long prompt, checking for cancellation in between.

        Returns what is left for `stream` to prefill (it needs the last logits),
        or None when the caller went away meanwhile.
        """
        chunk = self.config.prefill_chunk
        with torch.inference_mode():
            while len(ids) > chunk:
                if cancelled.is_set() or self.stopping.is_set():
                    return None
                prefill(self.model.model, cache, ids[:chunk])
                ids = ids[chunk:]
        return ids

    def _observe(self, plan: GenerationPlan, clock: StreamClock, reused: int, generated: int, now: float) -> None:
        m = self.metrics
        m.prompt_tokens.inc(len(plan.token_ids))
        m.cached_prompt_tokens.inc(reused)
        m.generated_tokens.inc(generated)
        first = clock.first_token or now
        m.prefill_seconds.observe(first - (clock.prefill_started or first))
        m.decode_seconds.observe((clock.last_token or first) - first)
        m.ttft_seconds.observe(first - clock.arrived)


def _gone(context: grpc.ServicerContext) -> str:
    """Why a stream ended without a result: the client's deadline or its cancellation."""
    remaining = context.time_remaining()
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
