"""The async client's cloud calls: grpc.aio on the caller's event loop, made for a journey
that runs in a worker thread.

A request's journey (edge/request.py) is one synchronous state machine shared by
both clients. `AsyncTandemClient` runs it in a worker thread so the device's
decode never blocks the event loop; the journey's cloud calls go through
`CloudTransport` (retries, breaker, error mapping, unchanged) to a
`LoopCloudClient`, whose RPCs are grpc.aio calls scheduled on the loop. The
worker thread waits for each result; the loop stays free.

Cancellation: each journey runs inside a `JourneyScope`. Cancelling it (on the
loop) cancels every grpc.aio call the journey has open, and the journey's next
cloud result, or its next token, raises `RequestCancelled` in the worker. That
is a `GeneratorExit`: the journey unwinds exactly as when a sync caller closes
its stream (cloud calls cancelled, device cache dropped, the record written as
`abandoned_by_caller`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

import grpc

from cloud.client import CloudClient
from cloud.config import DEFAULT_MAX_MESSAGE_BYTES
from edge.transport import CloudTarget
from tandem_rpc.v1 import cloud_pb2_grpc

T = TypeVar("T")

_SCOPE: ContextVar[JourneyScope | None] = ContextVar("tandem_journey_scope", default=None)
_END = object()


class RequestCancelled(GeneratorExit):
    """The caller cancelled its task or closed its stream; the journey unwinds from where it is."""


class JourneyScope:
    """One journey's link to the event loop: its open cloud calls and whether it was cancelled."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.cancelled = threading.Event()
        self._calls: set[Any] = set()  # grpc.aio calls; touched on the loop only

    def enter(self) -> None:
        """Make this the scope of the current (worker) thread's cloud calls."""
        _SCOPE.set(self)

    def cancel(self) -> None:
        """On the loop: stop the journey and every cloud call it has open."""
        self.cancelled.set()
        for call in list(self._calls):
            call.cancel()

    def cancel_threadsafe(self) -> None:
        self.cancelled.set()
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.cancel)

    def check(self) -> None:
        if self.cancelled.is_set():
            raise RequestCancelled()

    def wait(self, make: Callable[[], Awaitable[T]]) -> T:
        """In the worker: run `make()` on the loop and block this thread (only) until it is done."""
        self.check()
        future = asyncio.run_coroutine_threadsafe(_awaited(make), self.loop)
        while True:
            try:
                return future.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                if self.loop.is_closed():
                    raise RequestCancelled() from None
            except (concurrent.futures.CancelledError, asyncio.CancelledError):
                raise RequestCancelled() from None
            except grpc.RpcError:
                self.check()  # a call we cancelled ends as CANCELLED: that is the caller leaving, not the cloud
                raise

    async def unary(self, call: Any) -> Any:
        self._calls.add(call)
        try:
            return await call
        finally:
            self._calls.discard(call)

    async def opened(self, call: Any) -> Any:
        self._calls.add(call)
        return call

    def forget(self, call: Any) -> None:
        self._calls.discard(call)


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def current_scope() -> JourneyScope:
    scope = _SCOPE.get()
    if scope is None:
        raise RuntimeError("a LoopCloudClient call was made outside an AsyncTandemClient journey")
    return scope


class _ThreadSideStream:
    """A grpc.aio server stream as the blocking call object CloudTransport iterates and cancels."""

    def __init__(self, scope: JourneyScope, call: Any) -> None:
        self._scope = scope
        self._call = call

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        response = self._scope.wait(self._call.read)
        if response is grpc.aio.EOF:
            self._scope.loop.call_soon_threadsafe(self._scope.forget, self._call)
            raise StopIteration
        return response

    def cancel(self) -> None:
        if not self._scope.loop.is_closed():
            self._scope.loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        self._call.cancel()
        self._scope.forget(self._call)


async def _pulled(requests: Iterator[Any]) -> AsyncIterator[Any]:
    """A blocking request iterator (a KV cache being encoded) consumed off the loop."""
    while (item := await asyncio.to_thread(next, requests, _END)) is not _END:
        yield item


class _LoopStub:
    """The CloudInference stub's methods as CloudClient calls them, each made with grpc.aio on the loop."""

    def __init__(self, owner: LoopCloudClient) -> None:
        self._owner = owner

    def Info(self, request, *, timeout, metadata):  # noqa: N802 (the proto's names)
        scope = current_scope()
        return scope.wait(lambda: scope.unary(self._owner.aio_stub().Info(request, timeout=timeout,
                                                                           metadata=metadata)))

    def UploadKV(self, chunks, *, timeout, metadata):  # noqa: N802
        scope = current_scope()
        return scope.wait(lambda: scope.unary(self._owner.aio_stub().UploadKV(_pulled(iter(chunks)), timeout=timeout,
                                                                               metadata=metadata)))

    def Generate(self, request, *, timeout, metadata):  # noqa: N802
        return self._stream("Generate", request, timeout, metadata)

    def ResumeFromKV(self, request, *, timeout, metadata):  # noqa: N802
        return self._stream("ResumeFromKV", request, timeout, metadata)

    def PrefillKV(self, request, *, timeout, metadata):  # noqa: N802
        return self._stream("PrefillKV", request, timeout, metadata)

    def _stream(self, method: str, request, timeout, metadata) -> _ThreadSideStream:
        scope = current_scope()

        async def open_call():
            return await scope.opened(getattr(self._owner.aio_stub(), method)(request, timeout=timeout,
                                                                              metadata=metadata))

        return _ThreadSideStream(scope, scope.wait(open_call))


class LoopCloudClient(CloudClient):
    """CloudClient's calls (and its request building, inherited) over one grpc.aio channel.

    The channel is opened on the event loop at the first call and belongs to that
    loop; the calls themselves are made from a journey's worker thread.
    """

    def __init__(self, target: CloudTarget, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        # Not CloudClient.__init__: that opens a blocking channel; this one opens a grpc.aio channel lazily.
        self.target = target
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._metadata = (("authorization", f"Bearer {target.token}"),) if target.token else ()
        self.stub = _LoopStub(self)
        self.channel: grpc.aio.Channel | None = None
        self._aio_stub: cloud_pb2_grpc.CloudInferenceStub | None = None

    def aio_stub(self) -> cloud_pb2_grpc.CloudInferenceStub:
        """The grpc.aio stub (on the loop: the channel is made where it will live)."""
        if self._aio_stub is None:
            if self.target.root_certificates is not None:
                credentials = grpc.ssl_channel_credentials(root_certificates=self.target.root_certificates)
                self.channel = grpc.aio.secure_channel(self.target.address, credentials, options=self._options)
            else:
                self.channel = grpc.aio.insecure_channel(self.target.address, options=self._options)
            self._aio_stub = cloud_pb2_grpc.CloudInferenceStub(self.channel)
        return self._aio_stub

    async def aclose(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
            self._aio_stub = None

    def close(self) -> None:
        """CloudTransport.close; the async client awaits `aclose` instead."""
