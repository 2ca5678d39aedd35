"""What every backend on a serving engine over HTTP shares: the client, the failure mapping, the text layer.

The gateway keeps the text layer itself: its own tokenizer detokenizes, and stop
tokens, stop strings and max_new_tokens are applied here exactly as the built-in
engine applies them, so a stream reads the same whichever engine runs it. Ending
a stream early (a stop string, the client's cancel, a shutdown) closes the HTTP
response: the engine sees the connection close and aborts the request.

A stop must also reach an engine that is still silent: llama-server sends its
response headers only with the first token, so during a long prefill there is
no response to close yet. Each generation therefore runs on its own connection
(no keep-alive for streams: one TCP connect per request) whose socket a watcher
shuts down as soon as `should_stop()` is true; the engine sees the peer gone
and drops the request at its next batch, and the gateway's worker and
admission slot are free within a poll interval.

Failures map to the contract: the engine unreachable, busy (5xx, e.g. 503 while
loading or out of slots) or silent past the read timeout -> UNAVAILABLE with a
retry hint, so the SDK retries or falls back; a 4xx is a request the gateway
should not have sent (a bug: INTERNAL, the log has the engine's answer).

Engines that report only their top-k probabilities give exact log-probs of the
chosen token and exact margins (k >= 2), but the entropy is a top-k estimate:
the entropy of the k probabilities plus the remaining mass as one outcome, a
lower bound of the true entropy. Info says so (capabilities.entropy) and so
does the SDK's decision record.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from abc import abstractmethod
from typing import Any, Callable, Iterator, Sequence, TypeVar

import grpc
import httpx

from cloud.backends.base import Backend, Generation
from cloud.backends.tokenizer_check import check_tokenizer
from cloud.contract import GenerationPlan, RequestError
from engine.generate import TokenInfo
from engine.runtime import StreamEvent, stream_events
from engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 10              # alternatives asked per token
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 120.0  # longest silence of the engine: a long prefill on a busy engine
RETRY_AFTER_MS = 1000
STOP_POLL_S = 0.05              # how often a silent stream checks whether its caller has gone

Alternatives = tuple[tuple[int, float], ...]
T = TypeVar("T")


class EngineUnavailableError(OSError):
    """The engine could not be reached (or was not ready) when the gateway started."""


def top_k_entropy(probs: Sequence[float]) -> float:
    """Entropy (nats) of the top-k probabilities with the remaining mass as one outcome: a lower bound of the
    true entropy, exact when the top k hold all the mass."""
    rest = max(0.0, 1.0 - sum(probs))
    return -sum(p * math.log(p) for p in (*probs, rest) if p > 0.0)


def token_info(token_id: int, logprob: float, alternatives: Sequence[tuple[int, float]], k: int) -> TokenInfo:
    """Tandem's signals of one token from the engine's log-prob of it and its top alternatives."""
    top = tuple(sorted(((int(i), float(lp)) for i, lp in alternatives), key=lambda item: -item[1])[:k])
    probs = [math.exp(lp) for _, lp in top]
    margin = (probs[0] - probs[1]) if len(probs) > 1 else (probs[0] if probs else 1.0)
    return TokenInfo(int(token_id), float(logprob), top_k_entropy(probs), margin, top=top)


def unavailable(message: str, retry_after_ms: int = RETRY_AFTER_MS) -> RequestError:
    return RequestError(grpc.StatusCode.UNAVAILABLE, f"{message}; retry after {retry_after_ms} ms", retry_after_ms)


def status_error(response: httpx.Response, engine: str) -> Exception:
    if response.status_code >= 500:
        try:
            retry_ms = int(float(response.headers.get("retry-after", "")) * 1000)
        except ValueError:
            retry_ms = RETRY_AFTER_MS
        return unavailable(f"the engine answered HTTP {response.status_code} (busy or loading)", retry_ms)
    return RuntimeError(f"{engine} refused the request: HTTP {response.status_code} {response.text[:500]}")


class HTTPEngineBackend(Backend):
    """A client to one engine; `wait_ready` polls `probe()` until it answers or the wait is over."""

    engine_name = "engine"

    def __init__(self, url: str, tokenizer: Tokenizer, *, top_k: int, connect_timeout_s: float,
                 read_timeout_s: float, max_connections: int) -> None:
        self.url = url.rstrip("/")
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.client = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        # Generation streams: a fresh connection each, so a stop can cut it before the engine answers.
        self.streams = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=0),
        )
        self.kv = None

    def wait_ready(self, probe: Callable[[], Any], wait_s: float) -> Any:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return probe()
            except (httpx.HTTPError, NotReady) as exc:
                why = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise EngineUnavailableError(f"{self.engine_name} at {self.url} is not ready ({why}); start it "
                                             "first (or give it time to load its model with a longer wait)")
            time.sleep(0.5)

    def start(self, ready: Callable[[], T], wait_s: float, engine: str) -> T:
        """What `ready()` reads of the engine once it answers (retried while it loads, up to `wait_s`), after
        the engine's tokenizer is checked against ours (TokenizerMismatchError); any failure closes the client."""
        try:
            answer = self.wait_ready(ready, wait_s)
            check_tokenizer(self.tokenizer, self.tokenize, engine=engine)
        except BaseException:
            self.close()
            raise
        return answer

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """The engine's token IDs for `text` (special-token strings parsed, no BOS added)."""

    def close(self) -> None:
        self.client.close()
        self.streams.close()


class NotReady(Exception):
    """The engine answered but is not serving yet (e.g. still loading its model)."""


class HTTPGeneration(Generation):
    """One streamed engine request under the gateway's text layer; subclasses turn the engine's
    server-sent events into TokenInfo (`tokens_of`) and say when the engine itself stopped."""

    def __init__(self, backend: HTTPEngineBackend, plan: GenerationPlan, should_stop: Callable[[], bool]) -> None:
        self.backend, self.plan, self.should_stop = backend, plan, should_stop
        self.received = 0
        self.engine_stop: str | None = None  # "stop" | "length" once the engine ended the stream itself
        self._response: httpx.Response | None = None
        self._socket: socket.socket | None = None  # the stream's connection, once connected
        self._done = threading.Event()

    @abstractmethod
    def request(self) -> tuple[str, dict[str, Any]]:
        """(path, JSON body) of the streamed engine request."""

    @abstractmethod
    def tokens_of(self, event: dict[str, Any]) -> Iterator[TokenInfo]:
        """The tokens one server-sent event carries (setting `engine_stop` on the engine's last)."""

    def __iter__(self) -> Iterator[StreamEvent]:
        plan = self.plan
        for event in stream_events(self._engine_tokens(), self.backend.tokenizer, plan.stop_strings,
                                   plan.max_new_tokens):
            yield event
            if event.finish_reason is not None or self.should_stop():
                return
        if self.engine_stop is None and not self.should_stop():
            raise unavailable(f"{self.backend.engine_name} ended the stream after {self.received} tokens "
                              "without finishing it; resend the prompt plus the tokens received")
        # The engine ended on its own before any of our ends: an end-of-generation token of its vocabulary
        # that is not one of our stop IDs, or its context filled. No event is left to carry the reason.
        self.finish_reason = self.engine_stop

    def _engine_tokens(self) -> Iterator[TokenInfo]:
        name = self.backend.engine_name
        streams = self.backend.streams
        try:
            path, body = self.request()
            threading.Thread(target=self._watch, name="engine-stream-stop", daemon=True).start()
            request = streams.build_request("POST", path, json=body, extensions={"trace": self._trace})
            self._response = response = streams.send(request, stream=True)
            if response.status_code != 200:
                response.read()
                raise status_error(response, name)
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                event = json.loads(payload)
                if "error" in event:
                    raise _event_error(event["error"], name)
                yield from self.tokens_of(event)
                if self.engine_stop is not None:
                    return
        except httpx.TimeoutException as exc:
            raise unavailable(f"{name} did not answer within its timeout ({type(exc).__name__}) after "
                              f"{self.received} tokens") from None
        except httpx.TransportError as exc:
            if self.should_stop():  # the watcher cut the connection: the caller went away
                return
            raise unavailable(f"{name} is unreachable or dropped the stream after {self.received} tokens "
                              f"({type(exc).__name__})") from None
        finally:
            self._done.set()

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: keep the socket of the connection this stream opened (TCP, then TLS)."""
        if event.endswith(".complete") and hasattr(info.get("return_value"), "get_extra_info"):
            self._socket = info["return_value"].get_extra_info("socket") or self._socket

    def _watch(self) -> None:
        """Until the stream ends: once the caller has gone, shut the connection down, waking a read that waits
        on a silent engine (a long prefill) and telling the engine to drop the request."""
        while not self._done.wait(STOP_POLL_S):
            if self.should_stop():
                self._cut()
                return

    def _cut(self) -> None:
        sock = self._socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def close(self) -> None:
        """Closing the response closes the connection: the engine aborts the request and frees its slot."""
        self._done.set()
        if self._response is not None:
            self._response.close()
        else:
            self._cut()  # a request still waiting for the engine's first answer


def _event_error(error: Any, engine: str) -> Exception:
    code = error.get("code", 500) if isinstance(error, dict) else 500
    if isinstance(code, int) and code >= 500:
        return unavailable(f"{engine} failed the request mid-stream (error {code})")
    return RuntimeError(f"{engine} error: {error}")
