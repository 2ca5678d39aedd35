"""The CloudInference servicer: methods named as in the proto.

Each RPC method is a short coroutine that hands a blocking body to
cloud.streams (which runs it on a worker thread and writes for it); the bodies
here only sequence validation (cloud.contract), slots (cloud.admission),
and the backend that runs the model (cloud.backends: the built-in torch engine or a
serving engine over HTTP), whose KV hand-off, where it has one, is `backend.kv`.
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
from contextlib import contextmanager
from typing import Any, AsyncIterator, Callable, Iterator

import grpc

from cloud.admission import Abandoned, Admission, Overloaded, PerCaller
from cloud.auth import principal_of
from cloud.backends.base import Backend
from cloud.config import ServerConfig
from cloud.contract import (
    GenerationPlan, RequestError, StreamClock, chunk_message, info_response, plan_generation, result_message,
)
from cloud.kv_store import StoreFullError
from cloud.metrics import CloudMetrics
from cloud.streams import RETRY_AFTER_KEY, Call, StreamLimits
from tandem_rpc.v1 import cloud_pb2, cloud_pb2_grpc

log = logging.getLogger(__name__)

__all__ = ["RETRY_AFTER_KEY", "CloudInferenceServicer"]

Seed = Callable[[], object]


def internal_error(method: str, request_id: str) -> RequestError:
    """What a client learns of a bug: that it is one, and where the log has it (never the exception text)."""
    return RequestError(grpc.StatusCode.INTERNAL, f"internal error in {method} (a server bug, not your request); "
                        f"the server log has the details under request id {request_id!r}")


class CloudInferenceServicer(cloud_pb2_grpc.CloudInferenceServicer):
    def __init__(
        self,
        backend: Backend,
        config: ServerConfig,
        *,
        model_id: str,
        metrics: CloudMetrics,
        authenticated: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.config = config
        self.model_id = model_id
        self.metrics = metrics
        self.authenticated = authenticated
        self.admission = Admission(config.max_concurrency, config.max_queue, clock=clock)
        self.pool = ThreadPoolExecutor(config.worker_threads, thread_name_prefix="cloud-work")
        self.streams = StreamLimits(self.pool, stall_s=config.stream_stall_s, max_stream_s=config.max_stream_s,
                                    on_end=self.admission.wake)
        self._uploads = threading.BoundedSemaphore(max(1, config.kv_max_uploads))
        # What one caller may hold at once: uploads being received, prefilled caches not yet read. Each
        # holds up to a whole decoded cache and the upload slots are everyone's, so a caller past its
        # share is refused, not queued (it can hand off by token IDs).
        self._uploading = PerCaller(config.kv_per_caller)
        self._exporting = PerCaller(config.kv_per_caller)
        self.stopping = threading.Event()  # end of the shutdown grace: in-flight streams stop
        self._clock = clock
        self._info = info_response(backend, config, model_id=model_id)
        metrics.track(
            active=lambda: self.admission.active, queued=lambda: self.admission.queued,
            cache_bytes=lambda: backend.cache_stats()[0], cache_sessions=lambda: backend.cache_stats()[1],
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
        chunks = self.streams.chunks(request_iterator, self.config.kv_idle_s, self.config.kv_max_upload_s)
        return await self.streams.unary(context, call, self._upload, chunks, call)

    def _call(self, context: grpc.aio.ServicerContext) -> Call:
        principal = principal_of(context.invocation_metadata(), context.peer(), authenticated=self.authenticated)
        return self.streams.call(context, principal)

    def _kv(self, method: str, wanted: str) -> Any:
        """The backend's KV hand-off, or UNIMPLEMENTED naming what to do instead (Info says so too)."""
        if not getattr(self.backend.capabilities, wanted):
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED, f"{method}: this server's engine "
                               f"({self.backend.capabilities.engine}) takes no KV caches; send token IDs with "
                               "Generate (Info.capabilities says what it offers)")
        return self.backend.kv

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
            kv = self._kv("ResumeFromKV", "kv_import")
            plan = self._plan(request.generate)
            # The handle is taken only once a slot is ours: a request refused for overload keeps it.
            seed = lambda: kv.take(request.kv_handle, plan, call.principal)  # noqa: E731
            return (yield from self._admitted(plan, call, clock, seed))

        return self._guarded("ResumeFromKV", request.generate.request_id, call, body())

    def _prefill_kv(self, request: cloud_pb2.PrefillKVRequest, call: Call) -> Iterator[cloud_pb2.KVChunk]:
        clock = StreamClock(arrived=self._clock())

        def body() -> Iterator[cloud_pb2.KVChunk]:
            kv = self._kv("PrefillKV", "kv_export")
            options = kv.check_prefill(request)
            ids = list(request.token_ids)
            # The slot is released after the prefill, but the cache lives until its last frame is read.
            with self._exporting.hold(call.principal, "prefilled caches not yet read"):
                with self._slot(call, clock):
                    done = kv.prefill(ids, self._should_stop(call), call.principal)
                    if done is None:
                        return call.gone()
                    cache, prefill_s = done
                    self.metrics.prompt_tokens.inc(len(ids))
                    self.metrics.prefill_seconds.observe(prefill_s)
                yield from kv.send(cache, options, request_id=request.request_id, token_ids=ids, prefill_s=prefill_s)
            return "OK"

        return self._guarded("PrefillKV", request.request_id, call, body())

    def _upload(self, chunks: Iterator[cloud_pb2.KVChunk], call: Call) -> cloud_pb2.KVUploadResult:
        t0 = self._clock()
        outcome = "UNKNOWN"
        try:
            kv = self._kv("UploadKV", "kv_import")
            self._uploading.take(call.principal, "KV uploads being received")
        except RequestError as exc:
            self.metrics.requests.labels("UploadKV", exc.code.name).inc()
            raise
        if not self._uploads.acquire(blocking=False):
            self._uploading.release(call.principal)
            self.metrics.requests.labels("UploadKV", "RESOURCE_EXHAUSTED").inc()
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{self.config.kv_max_uploads} KV uploads are "
                               "already being received; hand off by token IDs, or retry after 1000 ms", 1000)
        try:
            handle, received = kv.receive(chunks, call.principal)
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
            self._uploading.release(call.principal)
            self.metrics.requests.labels("UploadKV", outcome).inc()

    def _plan(self, request: cloud_pb2.GenerateRequest) -> GenerationPlan:
        facts = self.backend.facts
        return plan_generation(request, vocab_size=facts.vocab_size, max_context=facts.max_context,
                               config=self.config)

    def _should_stop(self, call: Call) -> Callable[[], bool]:
        return lambda: call.cancelled.is_set() or self.stopping.is_set()

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
        """Wait for a slot, then decode (from `seed()`, the backend's imported cache, if given);
        returns the outcome for metrics."""
        self.metrics.escalations.labels(plan.escalation_reason).inc()
        with self._slot(call, clock):
            return (yield from self._decode(plan, call, clock, seed() if seed is not None else None))

    @contextmanager
    def _slot(self, call: Call, clock: StreamClock) -> Iterator[None]:
        """A decode slot for the call's caller, held for the block; its wait goes into the queue metric."""
        clock.admitted = self.admission.acquire(call.cancelled, call.principal)
        self.metrics.queue_seconds.observe(clock.admitted - clock.arrived)
        try:
            yield
        finally:
            self.admission.release(self._clock() - clock.admitted, call.principal)

    def _decode(
        self, plan: GenerationPlan, call: Call, clock: StreamClock, seed: object | None,
    ) -> Iterator[cloud_pb2.GenerateResponse]:
        generated = 0
        finish: str | None = None
        clock.prefill_started = self._clock()
        should_stop = self._should_stop(call)
        generation = self.backend.generate(plan, principal=call.principal, should_stop=should_stop, seed=seed)
        events = iter(generation)
        try:
            for event in events:
                if not math.isfinite(event.token.logprob):
                    raise _numeric_error(plan, from_upload=seed is not None)
                now = self._clock()
                clock.first_token = clock.first_token or now
                clock.last_token = now
                generated += 1
                finish = event.finish_reason
                yield chunk_message(event)
                if finish is None and should_stop():
                    break
        finally:
            getattr(events, "close", lambda: None)()
            generation.close()
        reused = generation.cached_tokens
        finish = finish or generation.finish_reason
        if plan.session_id and seed is None:
            (self.metrics.cache_hits if reused else self.metrics.cache_misses).inc()
        if finish is None and not self.stopping.is_set():
            return call.gone()
        if finish is None:
            raise self._shutdown_error(generated)
        now = self._clock()
        self._observe(plan, clock, reused, generated, now)
        yield result_message(
            plan, model_id=self.model_id, finish_reason=finish, cached=reused, generated=generated,
            clock=clock, now=now,
        )
        log.info(
            "request %r session %r (%s %r): %d prompt tokens (%d cached), %d generated, %s, ttft %.0f ms",
            plan.request_id, plan.session_id, plan.escalation_reason, plan.escalation_detail, len(plan.token_ids),
            reused, generated, finish, (clock.first_token - clock.arrived) * 1000,
        )
        return "OK"

    def _shutdown_error(self, n_generated: int) -> Overloaded:
        return Overloaded(
            f"server shutting down: stream stopped after {n_generated} tokens; resend the prompt "
            "plus the tokens received to continue elsewhere",
            self.admission.retry_after_ms(),
        )

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
