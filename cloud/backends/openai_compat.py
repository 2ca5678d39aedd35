"""A backend on an OpenAI-compatible completions server that takes token IDs: vLLM.

vLLM's POST /v1/completions accepts `prompt` as a list of token IDs, and with
`logprobs: k` plus `return_tokens_as_token_ids: true` each streamed chunk names
its tokens and their top-k alternatives by ID ("token_id:123"), so nothing is
re-tokenized on the way back; `return_token_ids: true` adds the IDs as a list.
With vLLM's default `logprobs_mode` the log-probs are the model's own
(temperature-1) distribution, like Tandem's signals; the entropy is the top-k
estimate of cloud.backends.http_engine. `cache_salt` (a hash of the caller's
principal) keeps one tenant's prefix cache from answering, or timing, another's.
Closing the HTTP stream aborts the request in vLLM.

What such a server says of itself (GET /health, /v1/models with the context
length, POST /tokenize for the tokenizer check) is shared with SGLang, whose
generation speaks its native /generate instead (cloud.backends.sglang).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Callable, Iterator

from cloud.backends.base import ENTROPY_TOP_K, BackendFacts, Capabilities, Generation
from cloud.backends.http_engine import (
    DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, DEFAULT_TOP_K, HTTPEngineBackend, HTTPGeneration, NotReady,
    token_info,
)
from cloud.contract import GenerationPlan
from engine.generate import TokenInfo
from engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)

TOKEN_PREFIX = "token_id:"


class OpenAICompatBackend(HTTPEngineBackend):
    engine_name = "vllm"

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
        """Connect to the server at `url` (without /v1), take its first model, and verify its tokenizer
        against `tokenizer` on probe texts (TokenizerMismatchError on a difference)."""
        super().__init__(url, tokenizer, top_k=top_k, connect_timeout_s=connect_timeout_s,
                         read_timeout_s=read_timeout_s, max_connections=max_connections)
        _, engine_context = self.start(lambda: self._model_and_context(max_context), start_wait_s,
                                       f"{self.engine_name} at {self.url}")
        self.facts = BackendFacts(tokenizer=tokenizer, max_context=min(max_context or engine_context, engine_context),
                                  vocab_size=tokenizer.vocab_size, fingerprint=None,
                                  default_model_id=model_id or self.served_model)
        self.capabilities = Capabilities(engine=self.engine_name, entropy=ENTROPY_TOP_K, top_k=top_k)

    def _model_and_context(self, max_context: int | None) -> tuple[dict[str, Any], int]:
        """The served model and its context length (the engine's, else `max_context`; neither: ValueError)."""
        model = self._model()
        engine_context = int(model.get("max_model_len") or max_context or 0)
        if not engine_context:
            raise ValueError(f"{self.url} does not say its context length; give --max-context")
        return model, engine_context

    def _model(self) -> dict[str, Any]:
        health = self.client.get("/health")
        if health.status_code != 200:
            raise NotReady(f"/health answered {health.status_code}")
        models = self.client.get("/v1/models")
        models.raise_for_status()
        data = models.json().get("data") or []
        if not data:
            raise NotReady("/v1/models lists no model yet")
        self.served_model = str(data[0]["id"])  # the tokenizer check's /tokenize names it
        return data[0]

    def tokenize(self, text: str) -> list[int]:
        reply = self.client.post("/tokenize", json={"model": self.served_model, "prompt": text,
                                                    "add_special_tokens": False})
        reply.raise_for_status()
        return [int(t) for t in reply.json()["tokens"]]

    def generate(self, plan: GenerationPlan, *, principal: str, should_stop: Callable[[], bool],
                 seed: object | None = None) -> Generation:
        return CompletionGeneration(self, plan, should_stop, principal)

    def request_body(self, plan: GenerationPlan, principal: str) -> dict[str, Any]:
        """Token IDs, Tandem's sampling (no penalties), top-k log-probs keyed by ID, the tenant's cache salt."""
        s = plan.sampling
        body: dict[str, Any] = {
            "model": self.served_model, "prompt": plan.token_ids, "max_tokens": plan.max_new_tokens,
            "stream": True, "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k or -1,
            "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
            "logprobs": self.top_k, "return_tokens_as_token_ids": True, "return_token_ids": True,
            "skip_special_tokens": False, "cache_salt": cache_salt(principal),
        }
        if s.seed is not None:
            body["seed"] = s.seed
        return body


class CompletionGeneration(HTTPGeneration):
    """One streamed request to the backend's `path` with its `request_body`; SGLang's reuses it with its own
    path and chunk format."""

    backend: OpenAICompatBackend
    path = "/v1/completions"

    def __init__(self, backend: OpenAICompatBackend, plan: GenerationPlan, should_stop: Callable[[], bool],
                 principal: str) -> None:
        super().__init__(backend, plan, should_stop)
        self.principal = principal

    def request(self) -> tuple[str, dict[str, Any]]:
        return self.path, self.backend.request_body(self.plan, self.principal)

    def tokens_of(self, event: dict[str, Any]) -> Iterator[TokenInfo]:
        for choice in event.get("choices") or ():
            logprobs = choice.get("logprobs") or {}
            names = logprobs.get("tokens") or []
            ids = choice.get("token_ids") or [_token_id(name) for name in names]
            values = logprobs.get("token_logprobs") or []
            tops = logprobs.get("top_logprobs") or []
            for i, token_id in enumerate(ids):
                self.received += 1
                if i < len(values) and values[i] is not None:
                    top = [(_token_id(name), lp) for name, lp in (tops[i] if i < len(tops) else {}).items()]
                    yield token_info(token_id, values[i], top, self.backend.top_k)
                else:
                    yield TokenInfo(int(token_id), 0.0, 0.0, 1.0)
            if choice.get("finish_reason"):
                self.engine_stop = "length" if choice["finish_reason"] == "length" else "stop"


def cache_salt(principal: str) -> str:
    """The salt of one tenant's prefix cache: a hash of its principal, so the engine never sees the name."""
    return hashlib.sha256(principal.encode()).hexdigest()[:32]


def _token_id(name: str) -> int:
    if not name.startswith(TOKEN_PREFIX):
        raise RuntimeError(f"the completions server named a token {name!r}, not by ID: it needs "
                           "return_tokens_as_token_ids (vLLM >= 0.6)")
    return int(name[len(TOKEN_PREFIX):])
