"""Between grpc.aio's event loop and the servicer's blocking bodies.

The server runs on grpc.aio so that a client which stops reading holds no
thread: with grpc's thread-per-RPC server, every stream whose client stopped
reading kept a worker blocked in its write, and ten such streams left no
worker for Health, Info or anyone's Generate. Here the event loop answers
Health and Info itself and only moves messages; the blocking work (admission,
prefill, decode, KV encode and decode) runs on a bounded thread pool and
never waits on a client:

- `buffered` runs a Generate body to its end on a worker, queueing its
  messages (bounded by max_new_tokens) for the loop to write: a slow reader
  costs memory for its tokens, never a decode slot or a thread.
- `stepwise` asks a worker for one message at a time (a PrefillKV stream's
  frames, up to 1 MiB each): a non-reading client holds its encoded cache,
  not a thread.
- Every write must finish within `stall_s` and every stream within
  `max_stream_s`; past either the stream ends with DEADLINE_EXCEEDED and its
  body is told to stop (`Call.cancelled`), which frees its slot.
- `chunks` lets a worker read a client stream, ending an upload that sends
  nothing for `idle_s`.

A body reports a refusal by raising RequestError (with a retry hint for
UNAVAILABLE); `abort` turns it into the gRPC status.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

import grpc

from cloud.contract import RequestError

RETRY_AFTER_KEY = "retry-after-ms"
_END = object()
T = TypeVar("T")


@dataclass
class Call:
    """What a blocking body may know of its RPC: who asked, whether it ended, its deadline."""

    principal: str
    deadline: float | None  # time.monotonic() value, None without a client deadline
    cancelled: threading.Event = field(default_factory=threading.Event)
    stalled: bool = False

    def gone(self) -> str:
        """Why the stream ended without a result (for metrics)."""
        if self.stalled:
            return "STALLED"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "DEADLINE_EXCEEDED"
        return "CANCELLED"


class StreamLimits:
    """The pool the bodies run on, and how long a stream may wait on its client."""

    def __init__(self, pool: concurrent.futures.ThreadPoolExecutor, *, stall_s: float, max_stream_s: float,
                 on_end: Callable[[], None]) -> None:
        self.pool = pool
        self.stall_s = stall_s
        self.max_stream_s = max_stream_s
        self._on_end = on_end  # wakes bodies that wait (e.g. in the admission queue) to see `cancelled`
        self.open = 0  # response streams being written (the tandem_cloud_open_streams gauge)

    def call(self, context: grpc.aio.ServicerContext, principal: str) -> Call:
        remaining = context.time_remaining()
        call = Call(principal, None if remaining is None else time.monotonic() + remaining)

        def ended(_: object) -> None:
            call.cancelled.set()
            self._on_end()

        context.add_done_callback(ended)
        return call

    async def unary(self, context: grpc.aio.ServicerContext, call: Call, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a worker; its RequestError becomes the call's status."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        except RequestError as exc:
            await abort(context, exc)
        finally:
            call.cancelled.set()

    async def buffered(self, context: grpc.aio.ServicerContext, call: Call, body: Iterator[Any]) -> None:
        """Run `body` to its end on a worker while the loop writes what it yields."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def produce() -> None:
            item: object = _END
            try:
                for message in body:
                    loop.call_soon_threadsafe(queue.put_nowait, message)
            except BaseException as exc:  # handed to the loop, which raises it in the handler
                item = exc
            loop.call_soon_threadsafe(queue.put_nowait, item)

        self.pool.submit(produce)
        await self._write_all(context, call, queue.get)

    async def stepwise(self, context: grpc.aio.ServicerContext, call: Call, body: Iterator[Any]) -> None:
        """Ask a worker for `body`'s next message only once the previous one is written."""
        pending: list[concurrent.futures.Future] = []

        async def next_message() -> object:
            future = self.pool.submit(next, body, _END)
            pending[:] = [future]
            return await asyncio.wrap_future(future)

        try:
            await self._write_all(context, call, next_message)
        finally:
            try:
                self.pool.submit(_close_after, pending[0] if pending else None, body)
            except RuntimeError:  # the pool is shut (server stopped): the body's `finally` runs when it is dropped
                pass

    async def _write_all(self, context: grpc.aio.ServicerContext, call: Call, get: Callable) -> None:
        self.open += 1
        ends_at = time.monotonic() + self.max_stream_s
        try:
            while True:
                try:
                    item = await asyncio.wait_for(get(), max(ends_at - time.monotonic(), 0.001))
                except RequestError as exc:
                    await abort(context, exc)
                except asyncio.TimeoutError:
                    return _end(context, self._too_long())
                if item is _END:
                    return
                if isinstance(item, RequestError):
                    await abort(context, item)
                if isinstance(item, BaseException):
                    raise item
                left = ends_at - time.monotonic()
                try:
                    await asyncio.wait_for(context.write(item), max(min(self.stall_s, left), 0.001))
                except asyncio.TimeoutError:
                    if left <= self.stall_s:
                        return _end(context, self._too_long())
                    call.stalled = True
                    return _end(context, RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, "stream ended: the client "
                                                      f"read nothing for {self.stall_s:g} s; resend to continue"))
        finally:
            self.open -= 1
            call.cancelled.set()
            self._on_end()

    def _too_long(self) -> RequestError:
        return RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, f"stream ended: it passed this server's limit of "
                            f"{self.max_stream_s:g} s per stream; resend the prompt plus the tokens received")

    def chunks(self, requests: AsyncIterator[T], idle_s: float, total_s: float) -> Iterator[T]:
        """A client stream as a blocking iterator for a worker; a gap over `idle_s`, or a stream still
        sending after `total_s` (one frame dripped every idle_s - 1 would hold an upload for hours),
        ends it."""
        loop = asyncio.get_running_loop()
        stream = aiter(requests)

        def read() -> Iterator[T]:
            end = time.monotonic() + total_s
            while True:
                future = asyncio.run_coroutine_threadsafe(_next_or_end(stream), loop)
                left = end - time.monotonic()
                try:
                    item = future.result(timeout=max(0.0, min(idle_s, left)))
                except concurrent.futures.TimeoutError:
                    future.cancel()
                    why = (f"nothing received for {idle_s:g} s" if left > idle_s
                           else f"still sending after {total_s:g} s")
                    raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                       f"{why}; the upload was dropped and its memory freed") from None
                if item is _END:
                    return
                yield item

        return read()


async def _next_or_end(stream: AsyncIterator[T]) -> object:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return _END


def _close_after(future: concurrent.futures.Future | None, body: Iterator[Any]) -> None:
    """Close a stepwise body once its last step is done (its `finally` blocks release what it holds)."""
    if future is not None:
        concurrent.futures.wait([future])
    body.close()


def _end(context: grpc.aio.ServicerContext, error: RequestError) -> None:
    """End a stream whose last write may still be waiting for the client.

    Not `abort`: its status would queue behind the unread message and hold the
    handler until the client reads. With the status set and the handler
    returned, it reaches the client if it ever reads (else its deadline or the
    connection's maximum age ends the call).
    """
    context.set_code(error.code)
    context.set_details(error.message)


async def abort(context: grpc.aio.ServicerContext, error: RequestError) -> None:
    if error.retry_after_ms is not None:
        context.set_trailing_metadata(((RETRY_AFTER_KEY, str(error.retry_after_ms)),))
    await context.abort(error.code, error.message)
