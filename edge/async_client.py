"""The edge SDK for asyncio services: `TandemClient`'s API and events, awaited.

    async with AsyncTandemClient("smollm2-135m", cloud="gpu-host:50051") as client:
        async for event in client.chat([{"role": "user", "content": "..."}]):
            ...
        answer = await client.complete("What is the capital of France? Answer in one sentence.")

There is one request journey (edge/request.py), shared with the sync client. It
runs in a worker thread per request, so the device's prefill and decode never
block the event loop; its events cross into the loop in batches (one wake-up of the
loop for all the events that are waiting, not one per token); its cloud calls
are grpc.aio calls on the loop (edge/aio_cloud.py). Cancelling the task that
reads a stream (or closing the stream) cancels the cloud call in flight and
stops the device within one token; the record says `abandoned_by_caller`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from edge.aio_cloud import JourneyScope, LoopCloudClient, RequestCancelled
from edge.client import DEFAULT_DEADLINE_S, DEFAULT_POLICY, POLICY_AUDIT, TandemClient
from edge.events import Answer, Done, Event, Text
from edge.request import Messages, Request
from edge.resilience import DEFAULT_RETRY, CircuitBreaker, RetryPolicy
from edge.transport import CloudTarget, CloudTransport
from engine.generate import GREEDY, Sampling
from engine.runtime import LocalModel
from router import AuditLog, DecisionRecord, Policy
from tandem_rpc.v1 import cloud_pb2


class AsyncTandemClient:
    """`TandemClient` for asyncio: the same arguments; `chat` and `generate` return an
    `AsyncStream` (iterate it with `async for`), `complete` and `connect` are coroutines.

    Loading the model blocks (once, at construction); use one client per event loop.
    """

    def __init__(
        self,
        model: LocalModel | str | Path = "smollm2-135m",
        *,
        cloud: str | CloudTarget | None = None,
        token: str | None = None,
        root_certificates: bytes | None = None,
        policy: Policy | str | Path = DEFAULT_POLICY,
        audit_log: AuditLog | str | Path | None = POLICY_AUDIT,
        retry: RetryPolicy = DEFAULT_RETRY,
        breaker: CircuitBreaker | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        if isinstance(cloud, str):
            cloud = CloudTarget(cloud, token=token, root_certificates=root_certificates)
        self._cloud = LoopCloudClient(cloud) if cloud else None
        transport = CloudTransport(cloud, retry=retry, breaker=breaker, client=self._cloud) if cloud else None
        self.sync = TandemClient(model, cloud=transport, policy=policy, audit_log=audit_log, deadline_s=deadline_s)
        self._active: set[AsyncStream] = set()

    @property
    def local(self) -> LocalModel:
        return self.sync.local

    @property
    def policy(self) -> Policy:
        return self.sync.policy

    @property
    def in_flight(self) -> int:
        """Journeys still running (a stream being read, or one cancelled and still unwinding)."""
        return len(self._active)

    async def aclose(self) -> None:
        for stream in list(self._active):
            await stream.aclose()
        if self._cloud is not None:
            await self._cloud.aclose()

    async def __aenter__(self) -> AsyncTandemClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def connect(self) -> cloud_pb2.InfoResponse:
        """Reach the cloud now and check that it shares our tokenizer (otherwise it happens on first use)."""
        scope = JourneyScope(asyncio.get_running_loop())

        def connect() -> cloud_pb2.InfoResponse:
            scope.enter()
            return self.sync.connect()

        try:
            return await asyncio.to_thread(connect)
        except asyncio.CancelledError:
            scope.cancel()
            raise

    def chat(
        self,
        messages: Messages,
        *,
        tags: Iterable[str] = (),
        max_new_tokens: int | None = None,
        sampling: Sampling = GREEDY,
        stop: Sequence[str] = (),
        session_id: str = "",
        request_id: str | None = None,
        caller: str | None = None,
    ) -> AsyncStream:
        """Stream the assistant's next turn after `messages`; see TandemClient.chat."""
        messages = [dict(m) for m in messages]
        return AsyncStream(self, lambda: self.sync.journey(
            messages, chat=True, tags=tags, max_new_tokens=max_new_tokens, sampling=sampling, stop=stop,
            session_id=session_id, request_id=request_id, caller=caller))

    def generate(
        self,
        prompt: str,
        *,
        chat: bool = True,
        tags: Iterable[str] = (),
        max_new_tokens: int | None = None,
        sampling: Sampling = GREEDY,
        stop: Sequence[str] = (),
        session_id: str = "",
        request_id: str | None = None,
        caller: str | None = None,
    ) -> AsyncStream:
        """Stream an answer to one user turn (`chat=False`: continue raw text instead)."""
        request: str | Messages = [{"role": "user", "content": prompt}] if chat else prompt
        return AsyncStream(self, lambda: self.sync.journey(
            request, chat=chat, tags=tags, max_new_tokens=max_new_tokens, sampling=sampling, stop=stop,
            session_id=session_id, request_id=request_id, caller=caller))

    async def complete(self, prompt_or_messages: str | Messages, **options: Any) -> Answer:
        """The whole answer and its record."""
        if isinstance(prompt_or_messages, str):
            stream = self.generate(prompt_or_messages, **options)
        else:
            stream = self.chat(prompt_or_messages, **options)
        async with stream:
            async for event in stream:
                if isinstance(event, Done):
                    return Answer(event.text, event.tier, event.finish_reason, event.record)
        raise RuntimeError("the stream ended without a Done event")


_OPEN, _EVENT, _ERROR, _END = "open", "event", "error", "end"
HOLD_BACKSTOP = 5  # held text goes out at the latest this many holds after the last batch


class AsyncStream:
    """One request's events as an async iterator. The journey starts at the first `__anext__`
    (or `opened()`); `aclose()`, leaving `async with`, or cancelling the reading task stops it.

    The bridge from the worker thread wakes the loop once per batch, not once per event: the
    worker appends to an inbox and wakes the loop only when the reader is parked waiting, and
    the reader takes everything waiting in one go (`next_batch` hands it over whole)."""

    def __init__(self, client: AsyncTandemClient, build: Callable[[], Request]) -> None:
        self._client = client
        self._build = build
        self._lock = threading.Lock()
        self._inbox: deque[tuple[str, Any]] = deque()  # filled by the worker, under the lock
        self._waiter: asyncio.Future[None] | None = None  # the parked reader's, under the lock
        self._text_wakes_at = 0.0  # time.monotonic() from which a Text wakes the parked reader (under the lock)
        self._urgent = False  # the inbox holds something other than Text (under the lock)
        self._handed_at: float | None = None  # time.monotonic() of the last batch handed out
        self._ready: deque[Event] = deque()  # taken from the inbox, not yet handed out
        self._error: BaseException | None = None  # raised once the events before it are out
        self._scope: JourneyScope | None = None
        self._finished: asyncio.Future[None] | None = None
        self._record: DecisionRecord | None = None
        self._ended = False

    def __aiter__(self) -> AsyncStream:
        return self

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def opened(self) -> DecisionRecord:
        """Start the journey and return its decision record once routed (route and reasons are
        known before the first token; the tier, signals and latencies are filled in as it runs)."""
        self._start()
        while self._record is None and self._error is None and not self._ended:
            await self._pump()
        if self._record is None:
            self._raise_error()
            raise RuntimeError("the journey ended before it was routed")
        return self._record

    async def __anext__(self) -> Event:
        if not self._ready:
            self._ready.extend(await self.next_batch())
            if not self._ready:
                raise StopAsyncIteration
        return self._ready.popleft()

    async def next_batch(self, *, text_every_s: float = 0.0) -> list[Event]:
        """Every event the journey has produced and the reader not yet taken (at least one), or []
        once the stream has ended. A reader that handles a batch at once (one write for all of
        them) keeps up with the device however busy the loop is.

        `text_every_s` > 0: text is handed over at most that often (the first at once), so the
        loop wakes about once per interval, not once per token: the first token the journey
        produces after the interval brings the ones before it (and if none comes, they go out
        HOLD_BACKSTOP intervals later). Anything else (a hand-off, the end, an error) comes at
        once, with the text before it."""
        if not self._ended:
            self._start()
        while not self._ready and self._error is None and not self._ended:
            hold = self._handed_at + text_every_s if text_every_s > 0 and self._handed_at is not None else None
            await self._pump(hold_text_until=hold)
        self._handed_at = time.monotonic()
        if self._ready:
            batch = list(self._ready)
            self._ready.clear()
            return batch
        self._raise_error()
        return []

    async def aclose(self) -> None:
        """Stop the journey (if it still runs) and wait until it has let go of the device and the cloud."""
        if self._scope is None:
            self._ended = True
            return
        self._ended = True
        self._scope.cancel()
        await asyncio.shield(self._finished)

    def __del__(self) -> None:  # a stream dropped unread still frees the device
        if self._scope is not None and not self._finished.done():
            self._scope.cancel_threadsafe()

    # --- the worker thread and the bridge ------------------------------------------

    def _start(self) -> None:
        if self._scope is not None:
            return
        loop = asyncio.get_running_loop()
        self._scope = JourneyScope(loop)
        self._finished = loop.create_future()
        self._client._active.add(self)
        threading.Thread(target=self._drive, args=(loop,), name="tandem-journey", daemon=True).start()

    def _drive(self, loop: asyncio.AbstractEventLoop) -> None:
        """The journey, start to end, in this worker thread; every item crosses to the loop."""
        scope = self._scope
        scope.enter()

        def post(kind: str, value: Any) -> None:
            urgent = kind != _EVENT or not isinstance(value, Text)
            with self._lock:
                self._inbox.append((kind, value))
                self._urgent = self._urgent or urgent
                waiter = self._waiter if urgent or time.monotonic() >= self._text_wakes_at else None
                if waiter is not None:
                    self._waiter = None
            if waiter is not None:
                _call_soon(loop, _wake, waiter)

        events = None
        try:
            request = self._build()
            post(_OPEN, request.record)
            events = request.run()
            for event in events:
                post(_EVENT, event)
                scope.check()  # cancelled: `events.close()` below unwinds the journey from its yield
        except RequestCancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the reading task, which raises it
            post(_ERROR, exc)
        finally:
            if events is not None:
                events.close()
            post(_END, None)
            _call_soon(loop, self._done)

    def _done(self) -> None:
        self._client._active.discard(self)
        if not self._finished.done():
            self._finished.set_result(None)

    async def _pump(self, *, hold_text_until: float | None = None) -> None:
        """Wait (parked, if nothing is waiting) for the worker's items and take them all; text alone
        does not end the wait before `hold_text_until` (time.monotonic())."""
        loop = asyncio.get_running_loop()
        hold_s = hold_text_until - time.monotonic() if hold_text_until is not None else 0.0
        with self._lock:
            if self._urgent or (self._inbox and hold_s <= 0):
                waiter = None
            else:
                self._waiter = waiter = loop.create_future()
                self._text_wakes_at = hold_text_until if hold_s > 0 else 0.0
        if waiter is not None:
            # The worker wakes us for text once the hold is over; the timer only covers a journey
            # that produces nothing more for a while (a cloud stall), so held text is not stuck.
            timer = loop.call_later(hold_s * HOLD_BACKSTOP, _wake, waiter) if hold_s > 0 else None
            try:
                await waiter
            except asyncio.CancelledError:  # the reading task was cancelled: so is the journey
                with self._lock:
                    self._waiter = None
                self._ended = True
                self._scope.cancel()
                raise
            finally:
                if timer is not None:
                    timer.cancel()
        with self._lock:
            if self._waiter is waiter:  # woken by the timer: the worker must not wake it again
                self._waiter = None
            items = list(self._inbox)
            self._inbox.clear()
            self._urgent = False
        for kind, value in items:
            if kind == _EVENT:
                self._ready.append(value)
            elif kind == _OPEN:
                self._record = value
            elif kind == _ERROR:
                self._error = value
                self._ended = True
            else:
                self._ended = True

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """From a worker thread: run `callback` on the loop, unless the loop is gone (nobody is left to tell)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # closed between the worker's last look and now
        pass
