"""`tandem serve-edge`: the OpenAI API over HTTP on the device side (Starlette on uvicorn).

Every request goes through `AsyncTandemClient` exactly as an SDK call does:
POST /v1/chat/completions and /v1/completions (streamed as server-sent events
ending in `data: [DONE]`, or whole), GET /v1/models, and GET /health (open, for
probes). Bearer-key auth on /v1/*; errors in the OpenAI shape. What Tandem adds
to the protocol is in openai_api.py's docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from cloud.auth import bearer_token, check_authorization
from edge.async_client import AsyncStream, AsyncTandemClient
from edge.errors import CloudRejectedError, CloudUnavailableError, HandoffRefusedError, PolicyDeniedError, TandemError
from edge.events import Done, Escalation, Fallback, Text
from edge.openai_api import APIError, CompletionCall, Kind, Shaper, caller_session, event_note, invalid, parse_call, \
    routing, routing_headers
from engine.errors import ContextLengthError, EngineError

log = logging.getLogger(__name__)
ALIAS = "tandem"  # a model id that always names this server's model
# A stream's text goes out at most this often (the first token, hand-offs and the end at once): one wake-up
# of the loop, one write and one chunk for the client to parse per interval, not per token. On a 2-core
# device every wake-up took CPU from the decode's two threads.
DEFAULT_STREAM_INTERVAL_S = 0.05
WHOLE_TEXT_EVERY_S = 1.0  # a whole answer needs its text only at the end
# Requests answered at once; concurrent decodes take turns on the device's cores, so more would only
# make every answer slower (and each holds a KV cache).
DEFAULT_MAX_CONCURRENT = 8
BUSY_RETRY_AFTER_S = 1
# A request body larger than this is refused (413) before it is read whole: a prompt that size is far
# over any context here, and reading, tokenizing and scanning it would cost the device seconds.
DEFAULT_MAX_BODY_BYTES = 1 << 20


def default_per_key(max_concurrent: int | None, n_keys: int) -> int | None:
    """The command's per-key cap: with more than one key, half the slots (rounded up), so one key
    flooding the server leaves the others at least as many; with one key or none, no cap."""
    if max_concurrent is None or n_keys < 2:
        return None
    return (max_concurrent + 1) // 2


class Admission:
    """At most `limit` completions in flight (None: no limit), and at most `per_caller` of them for one
    caller (an API key; None: no cap), so that a key sending as fast as it can leaves the other keys
    room. One more is turned away at once, before any work is done for it, in the OpenAI error shape
    with Retry-After: 429 when it is its caller's share that is full, else 503. A slot is held from
    admission until the answer is sent (for a stream: its last event) or the client has gone."""

    def __init__(self, limit: int | None, per_caller: int | None = None) -> None:
        for name, value in (("max_concurrent", limit), ("max_concurrent_per_key", per_caller)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.limit = limit
        self.per_caller = per_caller
        self.in_flight = 0
        self._held: Counter[str] = Counter()

    def enter(self, caller: str = "") -> None:
        if self.per_caller is not None and self._held[caller] >= self.per_caller:
            raise APIError(429, f"this API key has {self._held[caller]} requests in flight, its share of the "
                           f"server; retry after {BUSY_RETRY_AFTER_S} s", type_="requests",
                           code="rate_limit_exceeded", retry_after_s=BUSY_RETRY_AFTER_S)
        if self.limit is not None and self.in_flight >= self.limit:
            raise APIError(503, f"the server is busy: {self.in_flight} requests in flight, its limit; retry after "
                           f"{BUSY_RETRY_AFTER_S} s", type_="server_error", code="server_busy",
                           retry_after_s=BUSY_RETRY_AFTER_S)
        self.in_flight += 1
        self._held[caller] += 1

    def leave(self, caller: str = "") -> None:
        self.in_flight -= 1
        self._held[caller] -= 1
        if not self._held[caller]:
            del self._held[caller]


def build_app(client: AsyncTandemClient, *, model_id: str, api_keys: Sequence[str] = (),
              stream_interval_s: float = DEFAULT_STREAM_INTERVAL_S,
              max_concurrent: int | None = DEFAULT_MAX_CONCURRENT, max_concurrent_per_key: int | None = None,
              max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Starlette:
    """The ASGI app; `api_keys` empty leaves /v1/* open (only sensible on loopback); `stream_interval_s`
    0 sends every token as it comes; `max_concurrent` None admits any number of requests at once, and
    `max_concurrent_per_key` any number of one key's (default_per_key() is the command's default). With
    keys, a caller's session id names that key's session only (caller_session)."""
    keys = [k.encode() for k in api_keys]
    admission = Admission(max_concurrent, max_concurrent_per_key)
    model_ids = [model_id] if model_id == ALIAS else [model_id, ALIAS]
    created = int(time.time())

    def authorize(request: Request) -> None:
        if keys and check_authorization(request.headers.get("authorization"), keys) is not None:
            raise APIError(401, "missing or incorrect API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    async def models(request: Request) -> Response:
        authorize(request)
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "tandem"} for m in model_ids]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "in_flight": admission.in_flight, "max_concurrent": admission.limit,
                             "max_concurrent_per_key": admission.per_caller, "journeys": client.in_flight})

    def completions(kind: Kind) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            authorize(request)
            try:
                body = json.loads(await _read_body(request, max_body_bytes))
            except (ValueError, UnicodeDecodeError) as exc:
                raise invalid(f"the request body is not valid JSON: {exc}") from None
            call = parse_call(kind, body, {k.lower(): v for k, v in request.headers.items()})
            key = bearer_token(request.headers["authorization"]) if keys else b""
            if keys and call.session_id:
                call.session_id = caller_session(key, call.session_id)
            if call.model not in model_ids:
                raise APIError(404, f"the model {call.model!r} does not exist here; this server offers "
                               f"{', '.join(model_ids)}", param="model", code="model_not_found")
            caller = hashlib.sha256(key).hexdigest()
            call.caller = caller if keys else None  # keys share the device's turns equally; no keys, streams do
            admission.enter(caller)
            try:
                response = await _unless_disconnected(request, _answer(client, call, stream_interval_s))
            except BaseException:
                admission.leave(caller)
                raise
            if isinstance(response, EventStreamResponse):
                response.on_end = lambda: admission.leave(caller)  # the slot is the stream's until its end
            else:
                admission.leave(caller)
            return response
        return endpoint

    async def on_error(request: Request, exc: Exception) -> Response:
        error = api_error(exc)
        return JSONResponse(error.body(), status_code=error.status, headers=_retry_after(exc))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()  # on the server's loop, where the client's grpc.aio channel lives

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/v1/chat/completions", completions("chat"), methods=["POST"]),
            Route("/v1/completions", completions("text"), methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        # Expected errors are answered here; anything else too, then logged with its traceback.
        exception_handlers={cls: on_error for cls in (APIError, HTTPException, TandemError, EngineError, ValueError,
                                                      Exception)},
    )


def api_error(exc: BaseException) -> APIError:
    """The OpenAI-shaped error, and its HTTP status, for whatever a request raised."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return APIError(exc.status_code, exc.detail, code=code)
    if isinstance(exc, ContextLengthError):
        return APIError(400, str(exc), code="context_length_exceeded")
    if isinstance(exc, PolicyDeniedError):
        return APIError(400, str(exc), code="policy_denied")
    if isinstance(exc, ValueError):
        return APIError(400, str(exc))
    if isinstance(exc, CloudUnavailableError):
        return APIError(503, str(exc), type_="service_unavailable", code=exc.code)
    if isinstance(exc, (CloudRejectedError, HandoffRefusedError)):
        return APIError(502, str(exc), type_="upstream_error", code=getattr(exc, "code", None) or "handoff_refused")
    if isinstance(exc, (TandemError, EngineError)):
        return APIError(500, str(exc), type_="server_error")
    log.exception("unexpected error answering a request", exc_info=exc)
    return APIError(500, f"internal error: {type(exc).__name__}", type_="server_error")


def _retry_after(exc: BaseException) -> dict[str, str]:
    seconds = getattr(exc, "retry_after_s", None)  # APIError's own, or CloudUnavailableError's
    return {"Retry-After": str(max(1, round(seconds)))} if seconds else {}


async def _unless_disconnected(request: Request, answering: Awaitable[Response]) -> Response:
    """The answer, unless the client goes away first: then the request is cancelled (device and cloud freed).
    A stream's own disconnects are EventStreamResponse's business, once it is returned."""
    answer = asyncio.ensure_future(answering)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({answer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not answer.done():
        answer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answer
        return Response(status_code=499)  # nobody is listening; the status is for the access log
    return answer.result()


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with a 413 once it is over `limit` bytes (by its Content-Length, or as it comes)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is over {limit} bytes, this server's limit", code="request_too_large")


async def _answer(client: AsyncTandemClient, call: CompletionCall, stream_interval_s: float) -> Response:
    if call.kind == "chat":
        stream = client.chat(call.request, **call.sdk_options())
    else:
        stream = client.generate(call.request, chat=False, **call.sdk_options())
    # Until the stream is handed over (to the response, or to the loop below) a failure closes it: a
    # refusal is still a plain HTTP error, and an answer nobody will read must not go on decoding.
    try:
        record = await stream.opened()
        shaper = Shaper(call, record, lambda i: client.local.tokenizer.decode([i]))
        if call.stream:
            held = call.stream_mode == "settled" and record.route == "local" and record.may_escalate \
                and client.sync.transport is not None
            return EventStreamResponse(_events(stream, shaper, held=held, text_every_s=stream_interval_s),
                                       headers=routing_headers(record, final=False))
    except BaseException:
        await stream.aclose()
        raise
    async with stream:
        texts: list[Text] = []
        while batch := await stream.next_batch(text_every_s=WHOLE_TEXT_EVERY_S):
            for event in batch:
                if isinstance(event, Text):
                    texts.append(event)
                elif isinstance(event, Escalation):
                    texts = _cut(texts, event.keep_chars)
                elif isinstance(event, Done):
                    return JSONResponse(shaper.answer(event, texts),
                                        headers=routing_headers(event.record, final=True))
    raise RuntimeError("the stream ended without a Done event")


async def _events(stream: AsyncStream, shaper: Shaper, *, held: bool, text_every_s: float) -> AsyncIterator[bytes]:
    """The SSE body, one write per batch of events (text at most every `text_every_s`; a batch's text of
    one tier goes out as one chunk). With `held`, the device's text waits until no escalation can take
    it back."""
    call = shaper.call
    waiting: list[Text] = []
    try:
        yield _sse(shaper.chunk(role=True, tandem={"event": "start", **routing(await stream.opened())}))
        while batch := await stream.next_batch(text_every_s=text_every_s):
            out: list[bytes] = []
            shown: list[Text] = []  # consecutive text of one tier: one chunk

            def flush() -> None:
                if shown:
                    out.append(_text_chunk(shaper, shown))
                    shown.clear()

            for event in batch:
                if isinstance(event, Text):
                    if held and event.tier == "edge":
                        waiting.append(event)
                    elif event.text or event.token_ids:
                        if shown and shown[-1].tier != event.tier:
                            flush()
                        shown.append(event)
                    continue
                flush()
                if isinstance(event, Escalation):
                    if held:
                        kept, held, waiting = _cut(waiting, event.keep_chars), False, []
                        if kept:
                            out.append(_text_chunk(shaper, kept))
                    out.append(_sse(shaper.chunk(tandem=event_note(event))))
                elif isinstance(event, Fallback):
                    out.append(_sse(shaper.chunk(tandem=event_note(event))))
                elif isinstance(event, Done):
                    if waiting:
                        out.append(_text_chunk(shaper, waiting))
                    finish = "length" if event.finish_reason == "length" else "stop"
                    out.append(_sse(shaper.chunk(finish=finish, tandem={"event": "done", **routing(event.record)})))
                    if call.include_usage:
                        out.append(_sse(shaper.usage_chunk(event.record)))
            flush()
            if out:
                yield b"".join(out)
        yield b"data: [DONE]\n\n"
    except Exception as exc:  # noqa: BLE001 - the status line is gone: the error travels in the stream
        yield _sse(api_error(exc).body())
    finally:
        with anyio.CancelScope(shield=True):  # a disconnect cancels the body: still wait until the device is free
            await stream.aclose()


def _text_chunk(shaper: Shaper, texts: list[Text]) -> bytes:
    return _sse(shaper.chunk(text="".join(t.text for t in texts), texts=texts, tandem={"tier": texts[0].tier}))


def _cut(texts: list[Text], keep_chars: int) -> list[Text]:
    """The Text events that make up the first `keep_chars` characters (a split one loses its log-probs)."""
    kept, n = [], 0
    for t in texts:
        if n + len(t.text) <= keep_chars:
            kept.append(t)
            n += len(t.text)
            continue
        if keep_chars > n:
            kept.append(Text(t.text[: keep_chars - n], (), t.tier))
        break
    return kept


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


class EventStreamResponse(Response):
    """Server-sent events that stop the moment the client goes away: a disconnect cancels the body,
    whose `finally` closes the Tandem stream (the cloud call is cancelled, the device freed)."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        self.on_end: Callable[[], None] | None = None  # called once the body is closed, however it ends
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self.init_headers({**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch)
            try:
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                async for chunk in self.body_iterator:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the client left while we wrote
                pass
            finally:
                with anyio.CancelScope(shield=True):
                    await self.body_iterator.aclose()
                if self.on_end is not None:
                    self.on_end()
                group.cancel_scope.cancel()


def uvicorn_server(app: Starlette, *, host: str, port: int) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                                         access_log=False, timeout_graceful_shutdown=5))


def bound_port(server: uvicorn.Server) -> int:
    return server.servers[0].sockets[0].getsockname()[1]


async def serve(app: Starlette, *, host: str, port: int, on_started: Callable[[int], None]) -> None:
    """Run until interrupted; `on_started(port)` once the socket listens (port 0 picks a free one)."""
    server = uvicorn_server(app, host=host, port=port)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            raise OSError(f"could not listen on {host}:{port}")
        await asyncio.sleep(0.02)
    on_started(bound_port(server))
    await task
