"""The CloudInference servicer: methods named as in the proto.

Each RPC method is a short coroutine that hands a blocking body to
cloud.streams (which runs it on a worker thread and writes for it); the bodies
here only sequence validation (cloud.contract), slots (cloud.admission),
reuse (cloud.sessions) and the KV hand-off (cloud.kv_handoff, cloud.kv_store).
A body watches `Call.cancelled`, set when the RPC ends early (client cancel,
deadline, transport loss, a stalled reader) and stops between tokens, so an
abandoned stream frees its slot after at most one token or one prefill chunk.

Every cached object belongs to the principal that made it (cloud.auth): a
session's prefix and an uploaded cache serve only requests of that principal,
so no caller can seed, read or probe (through `cached_prompt_tokens`)
another's conversation.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable, Iterator

import grpc
import torch

from cloud.admission import Abandoned, Admission, Overloaded
from cloud.auth import principal_of
from cloud.config import ServerConfig
from cloud.contract import (
    GenerationPlan, RequestError, StreamClock, chunk_message, info_response, plan_generation, result_message,
)
from cloud.kv_handoff import check_prefill, receive_upload, send_prefill
from cloud.kv_store import KVStore, StoreFullError
from cloud.metrics import CloudMetrics
from cloud.sessions import PrefixCache, common_prefix, fit_cache, shrink
from cloud.streams import RETRY_AFTER_KEY, Call, StreamLimits
from engine.generate import prefill
from engine.model import KVCache
from engine.runtime import LocalModel
from tandem_rpc.v1 import cloud_pb2, cloud_pb2_grpc

log = logging.getLogger(__name__)

__all__ = ["RETRY_AFTER_KEY", "CloudInferenceServicer"]

Seed = Callable[[], tuple[KVCache, int]]


def internal_error(method: str, request_id: str) -> RequestError:
    """What a client learns of a bug: that it is one, and where the log has it (never the exception text)."""
    return RequestError(grpc.StatusCode.INTERNAL, f"internal error in {method} (a server bug, not your request); "
                        f"the server log has the details under request id {request_id!r}")


class CloudInferenceServicer(cloud_pb2_grpc.CloudInferenceServicer):
    def __init__(
        self,
        model: LocalModel,
        config: ServerConfig,
        *,
        model_id: str,
        metrics: CloudMetrics,
        authenticated: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.config = config
        self.model_id = model_id
        self.metrics = metrics
        self.authenticated = authenticated
        self.admission = Admission(config.max_concurrency, config.max_queue, clock=clock)
        self.sessions = PrefixCache(config.session_cache_bytes, config.max_sessions)
        self.kv_store = KVStore(config.kv_store_bytes, config.kv_ttl_s, clock=clock)
        self.pool = ThreadPoolExecutor(config.worker_threads, thread_name_prefix="cloud-work")
        self.streams = StreamLimits(self.pool, stall_s=config.stream_stall_s, max_stream_s=config.max_stream_s,
                                    on_end=self.admission.wake)
        self._uploads = threading.BoundedSemaphore(max(1, config.kv_max_uploads))
        self.stopping = threading.Event()  # end of the shutdown grace: in-flight streams stop
        self._clock = clock
        self._info = info_response(model, config, model_id=model_id)
        metrics.track(
            active=lambda: self.admission.active, queued=lambda: self.admission.queued,
            cache_bytes=lambda: self.sessions.nbytes, cache_sessions=lambda: len(self.sessions),
            open_streams=lambda: self.streams.open,
        )

    # --- RPCs (on the event loop) -----------------------------------------------------------------

    async def Info(self, request: cloud_pb2.InfoRequest, context: grpc.aio.ServicerContext) -> cloud_pb2.InfoResponse:
        self.metrics.requests.labels("Info", "OK").inc()
        return self._info

    async def Generate(self, request: cloud_pb2.GenerateRequest, context: grpc.aio.ServicerContext) -> None:
        call = self._call(context)
        await self.streams.buffered(context, call, self._generate(request, call))

    async def ResumeFromKV(self, request: cloud_pb2.ResumeRequest, context: grpc.aio.ServicerContext) -> None:
        """Generate whose prompt starts with an uploaded cache's tokens: those are not prefilled again."""
        call = self._call(context)
        await self.streams.buffered(context, call, self._resume(request, call))

    async def PrefillKV(self, request: cloud_pb2.PrefillKVRequest, context: grpc.aio.ServicerContext) -> None:
        """Prefill here (in a decode slot), then stream the compressed cache down (slot released)."""
        call = self._call(context)
        await self.streams.stepwise(context, call, self._prefill_kv(request, call))

    async def UploadKV(self, request_iterator: AsyncIterator[cloud_pb2.KVChunk], context: grpc.aio.ServicerContext
                       ) -> cloud_pb2.KVUploadResult:
        """Verify and decode the frames as they arrive; keep only a complete cache, under a handle."""
        call = self._call(context)
        chunks = self.streams.chunks(request_iterator, self.config.kv_idle_s)
        return await self.streams.unary(context, call, self._upload, chunks, call)

    def _call(self, context: grpc.aio.ServicerContext) -> Call:
        principal = principal_of(context.invocation_metadata(), context.peer(), authenticated=self.authenticated)
        return self.streams.call(context, principal)

    # --- blocking bodies (on worker threads) ------------------------------------------------------

    def _generate(self, request: cloud_pb2.GenerateRequest, call: Call) -> Iterator[cloud_pb2.GenerateResponse]:
        clock = StreamClock(arrived=self._clock())

        def body() -> Iterator[cloud_pb2.GenerateResponse]:
            plan = self._plan(request)
            return (yield from self._admitted(plan, call, clock, None))

        return self._guarded("Generate", request.request_id, call, body())

    def _resume(self, request: cloud_pb2.ResumeRequest, call: Call) -> Iterator[cloud_pb2.GenerateResponse]:
        clock = StreamClock(arrived=self._clock())

        def body() -> Iterator[cloud_pb2.GenerateResponse]:
            plan = self._plan(request.generate)
            # The handle is taken only once a slot is ours: a request refused for overload keeps it.
            seed = lambda: self._take_upload(request.kv_handle, plan, call.principal)  # noqa: E731
            return (yield from self._admitted(plan, call, clock, seed))

        return self._guarded("ResumeFromKV", request.generate.request_id, call, body())

    def _prefill_kv(self, request: cloud_pb2.PrefillKVRequest, call: Call) -> Iterator[cloud_pb2.KVChunk]:
        clock = StreamClock(arrived=self._clock())

        def body() -> Iterator[cloud_pb2.KVChunk]:
            options = check_prefill(self.model, request)
            ids = list(request.token_ids)
            clock.admitted = self.admission.acquire(call.cancelled)
            try:
                cache = self.model.new_cache(len(ids))
                started = self._clock()
                rest = self._prefill_chunks(cache, ids, call.cancelled)
                if rest is None:
                    return call.gone()
                with torch.inference_mode():
                    prefill(self.model.model, cache, rest)
                prefill_s = self._clock() - started
            finally:
                self.admission.release(self._clock() - clock.admitted)
            yield from send_prefill(self.model, cache, options, request_id=request.request_id, token_ids=ids,
                                    prefill_s=prefill_s)
            return "OK"

        return self._guarded("PrefillKV", request.request_id, call, body())

    def _upload(self, chunks: Iterator[cloud_pb2.KVChunk], call: Call) -> cloud_pb2.KVUploadResult:
        t0 = self._clock()
        if not self._uploads.acquire(blocking=False):
            self.metrics.requests.labels("UploadKV", "UNAVAILABLE").inc()
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"{self.config.kv_max_uploads} KV uploads are already "
                               "being received; retry after 1000 ms or hand off by token IDs", 1000)
        outcome = "UNKNOWN"
        try:
            tokens, received = receive_upload(self.model, self.config, chunks)
            handle = self.kv_store.put(tokens, received.cache, call.principal)
            outcome = "OK"
            log.info("KV upload: %d positions, %s, %d frames, %d bytes, %.0f ms", received.n_tokens,
                     received.codec, received.frames, received.nbytes, (self._clock() - t0) * 1000)
            return cloud_pb2.KVUploadResult(
                kv_handle=handle, n_tokens=received.n_tokens, frames=received.frames, bytes=received.nbytes,
                decode_ms=(self._clock() - t0) * 1000, expires_in_ms=int(self.config.kv_ttl_s * 1000),
            )
        except RequestError as exc:
            outcome = exc.code.name
            raise
        except StoreFullError as exc:
            outcome = grpc.StatusCode.RESOURCE_EXHAUSTED.name
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except Exception:
            if call.cancelled.is_set():  # the client went away mid-upload: reading its stream failed
                outcome = call.gone()
                raise RequestError(grpc.StatusCode.CANCELLED, "upload ended by the client") from None
            outcome = grpc.StatusCode.INTERNAL.name
            log.exception("UploadKV failed")
            raise internal_error("UploadKV", "") from None
        finally:
            self._uploads.release()
            self.metrics.requests.labels("UploadKV", outcome).inc()

    def _plan(self, request: cloud_pb2.GenerateRequest) -> GenerationPlan:
        return plan_generation(request, vocab_size=self.model.config.vocab_size, max_context=self.model.max_context,
                               config=self.config)

    def _take_upload(self, handle: str, plan: GenerationPlan, principal: str) -> tuple[KVCache, int]:
        """The caller's uploaded cache rewound to what the prompt shares with it (the last prompt token is
        always fed). Another principal's handle is 'unknown', exactly like one that never existed."""
        entry = self.kv_store.take(handle, principal)
        if entry is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND, "unknown, expired or already used kv_handle; upload "
                               "the cache again or send the token IDs with Generate")
        if common_prefix(entry.tokens, plan.token_ids) < len(entry.tokens):
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, "the uploaded cache holds tokens that are not "
                               "a prefix of this prompt; token_ids must start with the tokens named at upload")
        reused = min(len(entry.tokens), len(plan.token_ids) - 1)
        entry.cache.truncate(reused)
        return entry.cache, reused

    def _guarded(self, method: str, request_id: str, call: Call, body: Iterator) -> Iterator:
        """Run a streaming body; its refusals become RequestErrors (bugs an INTERNAL without their text),
        its outcome a metric."""
        outcome = "UNKNOWN"
        try:
            outcome = yield from body
        except RequestError as exc:
            outcome = exc.code.name
            raise
        except Overloaded as exc:
            outcome = grpc.StatusCode.UNAVAILABLE.name
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry after {exc.retry_after_ms} ms",
                               exc.retry_after_ms) from None
        except Abandoned:
            outcome = call.gone()
        except GeneratorExit:
            outcome = call.gone()  # the stream was ended (client went away, stalled reader)
            raise
        except Exception:
            outcome = grpc.StatusCode.INTERNAL.name
            log.exception("%s failed (request %r)", method, request_id)
            raise internal_error(method, request_id) from None
        finally:
            self.metrics.requests.labels(method, outcome).inc()

    def _admitted(
        self, plan: GenerationPlan, call: Call, clock: StreamClock, seed: Seed | None,
    ) -> Iterator[cloud_pb2.GenerateResponse]:
        """Wait for a slot, then decode (from `seed()`, a cache and its reusable positions, if given);
        returns the outcome for metrics."""
        self.metrics.escalations.labels(plan.escalation_reason).inc()
        clock.admitted = self.admission.acquire(call.cancelled)
        self.metrics.queue_seconds.observe(clock.admitted - clock.arrived)
        try:
            return (yield from self._decode(plan, call, clock, seed() if seed is not None else None))
        finally:
            self.admission.release(self._clock() - clock.admitted)

    def _decode(
        self, plan: GenerationPlan, call: Call, clock: StreamClock, seed: tuple[KVCache, int] | None,
    ) -> Iterator[cloud_pb2.GenerateResponse]:
        ids = plan.token_ids
        cache, reused = seed if seed is not None else self._lookup(plan, call.principal)
        cache = fit_cache(self.model, cache, len(ids) + plan.max_new_tokens)
        generated: list[int] = []
        finish: str | None = None
        clock.prefill_started = self._clock()
        try:
            suffix = self._prefill_chunks(cache, ids[reused:], call.cancelled)
            if suffix is None:
                if self.stopping.is_set():
                    raise self._shutdown_error(0)
                return call.gone()
            events = self.model.stream(
                suffix, max_new_tokens=plan.max_new_tokens, sampling=plan.sampling,
                stop_strings=plan.stop_strings, cache=cache,
            )
            try:
                for event in events:
                    if not math.isfinite(event.token.logprob):
                        raise _numeric_error(plan, from_upload=seed is not None)
                    now = self._clock()
                    clock.first_token = clock.first_token or now
                    clock.last_token = now
                    generated.append(event.token.id)
                    finish = event.finish_reason
                    yield chunk_message(event)
                    if finish is None and (call.cancelled.is_set() or self.stopping.is_set()):
                        break
            finally:
                events.close()
            if finish is None and not self.stopping.is_set():
                return call.gone()
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
                self.sessions.put(call.principal, plan.session_id, (ids + generated)[: cache.pos],
                                  shrink(self.model, cache))

    def _shutdown_error(self, n_generated: int) -> Overloaded:
        return Overloaded(
            f"server shutting down: stream stopped after {n_generated} tokens; resend the prompt "
            "plus the tokens received to continue elsewhere",
            self.admission.retry_after_ms(),
        )

    def _lookup(self, plan: GenerationPlan, principal: str) -> tuple[KVCache | None, int]:
        if not plan.session_id:
            return None, 0
        cache, reused = self.sessions.take(principal, plan.session_id, plan.token_ids)
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


def _numeric_error(plan: GenerationPlan, *, from_upload: bool) -> Exception:
    """Decoding produced a non-finite log-probability. From a caller's cache or sampling numbers that is
    their INVALID_ARGUMENT; from token IDs and greedy decoding alone it can only be a bug."""
    if not from_upload and not plan.sampling.temperature:
        return RuntimeError("non-finite log-probability from a greedy decode of plain token IDs")
    cause = "the uploaded KV cache" if from_upload else f"sampling temperature {plan.sampling.temperature:g}"
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"decoding produced non-finite values (from {cause}); "
                        "nothing was generated from them")
