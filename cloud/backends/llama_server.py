"""A backend on llama.cpp's llama-server: token IDs in, token IDs and their probabilities out, over HTTP.

Each request is one streamed POST /completion whose `prompt` is the token IDs
(never text), with `return_tokens` (the IDs of each chunk) and `n_probs`
(the engine's top-k probabilities, taken from the model's temperature-1
distribution before sampling, like Tandem's own signals). The gateway keeps
the text layer itself: its own tokenizer detokenizes, and stop tokens, stop
strings and max_new_tokens are applied here exactly as the built-in engine
does, so a stream reads the same whichever engine runs it. Ending a stream
early (a stop string, the client's cancel, a shutdown) closes the HTTP
response: llama-server sees the connection close and frees the slot.

Signals: the log-prob of the chosen token is exact (llama-server's softmax is
over the whole vocabulary); the margin is exact when k >= 2; the entropy is a
top-k estimate, the entropy of the k probabilities plus the remaining mass as
one bucket (a lower bound of the true entropy). Info says so
(capabilities.entropy = "top_k_estimate") and the SDK's decision record too.

llama-server sends no chunk for a token that leaves an incomplete UTF-8
character (the first bytes of an emoji or CJK character); the next chunk
carries the text of both. Such a token is recovered from that text and the
gateway's vocabulary (its ID is the entry with exactly the missing bytes), and
it carries the signals of the token that completed the character.

Failures map to the contract: the engine unreachable, busy (503) or silent past
the read timeout -> UNAVAILABLE with a retry hint, so the SDK retries or falls
back; nothing else of the engine's answer reaches the client.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Callable, Iterator, Sequence

import grpc
import httpx

from cloud.backends.base import ENTROPY_TOP_K, Backend, BackendFacts, Capabilities, Generation
from cloud.backends.tokenizer_check import check_tokenizer
from cloud.contract import GenerationPlan, RequestError
from engine.detokenize import Detokenizer
from engine.generate import TokenInfo
from engine.runtime import StreamEvent
from engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 10           # alternatives asked per token (n_probs)
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 120.0  # longest silence of the engine: a long prefill on a busy engine
RETRY_AFTER_MS = 1000


class EngineUnavailableError(OSError):
    """The engine could not be reached when the gateway started."""


class LlamaServerBackend(Backend):
    def __init__(
        self,
        url: str,
        tokenizer: Tokenizer,
        *,
        max_context: int | None = None,
        top_k: int = DEFAULT_TOP_K,
        model_id: str | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        start_wait_s: float = 0.0,
        max_connections: int = 64,
    ) -> None:
        """Connect to the engine at `url`, read its context size and verify its tokenizer against
        `tokenizer` (TokenizerMismatchError on a difference). The engine may still be loading its model:
        the gateway waits up to `start_wait_s` for it (EngineUnavailableError past it)."""
        self.url = url.rstrip("/")
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.client = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        try:
            props = self._wait_for_engine(start_wait_s)
            engine_context = int(props["default_generation_settings"]["n_ctx"])
            check_tokenizer(tokenizer, self.tokenize, engine=f"llama-server at {self.url}")
        except BaseException:
            self.client.close()
            raise
        self.slots = int(props.get("total_slots", 1))
        self.engine_model = str(props.get("model_path", ""))
        context = min(max_context or engine_context, engine_context)
        self.facts = BackendFacts(tokenizer=tokenizer, max_context=context, vocab_size=tokenizer.vocab_size,
                                  fingerprint=None, default_model_id=model_id or _basename(self.engine_model))
        self.capabilities = Capabilities(engine="llama-server", entropy=ENTROPY_TOP_K, top_k=top_k)
        self.kv = None
        log.info("llama-server at %s: %d slots of %d positions, tokenizer verified", self.url, self.slots,
                 engine_context)

    def _wait_for_engine(self, wait_s: float) -> dict[str, Any]:
        """The engine's /props once /health says it is ready (503: still loading its model)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                health = self.client.get("/health")
                if health.status_code == 200:
                    props = self.client.get("/props")
                    props.raise_for_status()
                    return props.json()
                why = f"/health answered {health.status_code}"
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise EngineUnavailableError(f"llama-server at {self.url} is not ready ({why}); start it first "
                                             "(or give it time to load its model with a longer wait)")
            time.sleep(0.5)

    def tokenize(self, text: str) -> list[int]:
        """The engine's token IDs for `text` (special-token strings parsed, no BOS added)."""
        reply = self.client.post("/tokenize", json={"content": text, "add_special": False, "parse_special": True})
        reply.raise_for_status()
        return [int(t) for t in reply.json()["tokens"]]

    def generate(self, plan: GenerationPlan, *, principal: str, should_stop: Callable[[], bool],
                 seed: object | None = None) -> Generation:
        return _LlamaGeneration(self, plan, should_stop)

    def request_body(self, plan: GenerationPlan) -> dict[str, Any]:
        """The /completion request: token IDs, Tandem's sampling and nothing of llama.cpp's other samplers
        (penalties, min-p, typical, DRY, XTC off), so both engines sample the same distribution."""
        s = plan.sampling
        return {
            "prompt": plan.token_ids, "n_predict": plan.max_new_tokens, "stream": True, "return_tokens": True,
            "n_probs": self.top_k, "post_sampling_probs": False,
            "cache_prompt": bool(plan.session_id),  # the engine's prefix cache, for a conversation's next turn
            "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
            "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "dry_multiplier": 0.0, "xtc_probability": 0.0,
            "samplers": ["top_k", "top_p", "temperature"],
            "seed": s.seed if s.seed is not None else -1,
        }

    def close(self) -> None:
        self.client.close()


class _LlamaGeneration(Generation):
    def __init__(self, backend: LlamaServerBackend, plan: GenerationPlan, should_stop: Callable[[], bool]) -> None:
        self.backend, self.plan, self.should_stop = backend, plan, should_stop
        self._response: httpx.Response | None = None
        self._received = 0
        self._engine_stop: str | None = None

    def __iter__(self) -> Iterator[StreamEvent]:
        b, plan = self.backend, self.plan
        detok = Detokenizer(b.tokenizer, plan.stop_strings)
        stops = set(b.tokenizer.stop_ids)
        count = 0
        for token in self._engine_tokens():
            count += 1
            if token.id in stops:
                yield StreamEvent(token, detok.flush(), "stop")
                return
            text = detok.push(token.id)
            if detok.stopped:
                yield StreamEvent(token, text, "stop_string")
                return
            if count == plan.max_new_tokens:
                yield StreamEvent(token, text + detok.flush(), "length")
                return
            yield StreamEvent(token, text)
            if self.should_stop():
                return
        if self._engine_stop is not None:
            # The engine ended on its own before any of our ends: an end-of-generation token of its vocabulary
            # that is not one of our stop IDs ("eos"), or its context filled ("limit").
            self.finish_reason = "stop" if self._engine_stop == "eos" else "length"
            if text := detok.flush():
                log.debug("llama-server ended request %r with held-back text %r", plan.request_id, text)

    def _engine_tokens(self) -> Iterator[TokenInfo]:
        try:
            request = self.backend.client.build_request("POST", "/completion", json=self.backend.request_body(self.plan))
            self._response = response = self.backend.client.send(request, stream=True)
            if response.status_code != 200:
                response.read()
                raise _status_error(response)
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = json.loads(line[len("data: "):])
                if "error" in data:
                    raise _engine_error(data["error"])
                yield from self._tokens_of(data)
                if data.get("stop"):
                    self._engine_stop = str(data.get("stop_type") or "eos")
                    return
        except httpx.TimeoutException as exc:
            raise _unavailable(f"the engine did not answer within its timeout ({type(exc).__name__}) after "
                               f"{self._received} tokens") from None
        except httpx.TransportError as exc:
            raise _unavailable(f"the engine is unreachable or dropped the stream after {self._received} tokens "
                               f"({type(exc).__name__})") from None

    def _tokens_of(self, data: dict[str, Any]) -> Iterator[TokenInfo]:
        ids = [int(t) for t in data.get("tokens") or ()]
        probs = data.get("completion_probabilities") or ()
        missed = int(data.get("tokens_predicted", self._received + len(ids))) - self._received - len(ids)
        if ids and missed > 0:  # tokens the engine held back inside an incomplete UTF-8 character
            signals = _signals(probs[0]) if probs else _NO_SIGNALS
            for token_id in _recover(self.backend.tokenizer, data.get("content", ""), ids[0], missed):
                self._received += 1
                yield TokenInfo(token_id, *signals[:3])
        for i, token_id in enumerate(ids):
            self._received += 1
            entry = probs[i] if i < len(probs) else None
            logprob, entropy, margin, top = _signals(entry) if entry else _NO_SIGNALS
            yield TokenInfo(token_id, logprob, entropy, margin, top=top)

    def close(self) -> None:
        """Closing the response closes the connection: llama-server aborts the request and frees its slot."""
        if self._response is not None:
            self._response.close()


Signals = tuple[float, float, float, tuple[tuple[int, float], ...]]
_NO_SIGNALS: Signals = (0.0, 0.0, 1.0, ())  # a chunk without probabilities (n_probs 0): no uncertainty known


def _signals(entry: dict[str, Any]) -> Signals:
    """(log-prob, entropy estimate, margin, top-k alternatives) of one token from the engine's top-k."""
    top = tuple(sorted(((int(t["id"]), float(t["logprob"])) for t in entry.get("top_logprobs") or ()),
                       key=lambda item: -item[1]))
    probs = [math.exp(lp) for _, lp in top]
    margin = (probs[0] - probs[1]) if len(probs) > 1 else (probs[0] if probs else 1.0)
    return float(entry["logprob"]), top_k_entropy(probs), margin, top


def top_k_entropy(probs: Sequence[float]) -> float:
    """Entropy (nats) of the top-k probabilities with the remaining mass as one outcome: a lower bound of the
    true entropy, exact when the top k hold all the mass."""
    rest = max(0.0, 1.0 - sum(probs))
    return -sum(p * math.log(p) for p in (*probs, rest) if p > 0.0)


def _recover(tokenizer: Tokenizer, content: str, current: int, missed: int) -> list[int]:
    """The `missed` token IDs before `current` whose bytes, with current's, make `content`."""
    data, tail = content.encode("utf-8"), tokenizer.piece(current)
    if missed != 1 or not tail or not data.endswith(tail):
        raise RuntimeError(f"llama-server skipped {missed} tokens inside a character the gateway cannot recover "
                           f"(chunk text {content!r}, next token {current})")
    token_id = tokenizer.token_id(data[: len(data) - len(tail)])
    if token_id is None:
        raise RuntimeError(f"llama-server skipped a token whose bytes {data[:-len(tail)]!r} are no vocabulary entry")
    return [token_id]


def _unavailable(message: str, retry_after_ms: int = RETRY_AFTER_MS) -> RequestError:
    return RequestError(grpc.StatusCode.UNAVAILABLE, f"{message}; retry after {retry_after_ms} ms", retry_after_ms)


def _status_error(response: httpx.Response) -> Exception:
    """503 (loading, or no free slot) and other 5xx: UNAVAILABLE, with the engine's Retry-After if it sent one;
    a 4xx is a request the gateway should not have sent: a bug, reported as INTERNAL (the log has the body)."""
    if response.status_code >= 500:
        try:
            retry_ms = int(float(response.headers.get("retry-after", "")) * 1000)
        except ValueError:
            retry_ms = RETRY_AFTER_MS
        return _unavailable(f"the engine answered HTTP {response.status_code} (busy or loading)", retry_ms)
    return RuntimeError(f"llama-server refused the request: HTTP {response.status_code} {response.text[:500]}")


def _engine_error(error: Any) -> Exception:
    code = error.get("code", 500) if isinstance(error, dict) else 500
    if isinstance(code, int) and code >= 500:
        return _unavailable(f"the engine failed the request mid-stream (error {code})")
    return RuntimeError(f"llama-server error: {error}")


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1] or "llama-server"
