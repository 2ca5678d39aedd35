"""The built-in engine: Tandem's own torch model in this process (the embedded default).

It holds what only an in-process engine can: per-session prefix caches
(cloud.sessions), uploaded KV caches waiting for their resume (cloud.kv_store),
and the prefill behind PrefillKV. Every cached object is keyed by the principal
that made it. A long prompt is prefilled in chunks so a cancelled request stops
after at most one chunk.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from cloud.backends.base import Backend, BackendFacts, Capabilities, Generation
from cloud.config import ServerConfig
from cloud.contract import GenerationPlan
from cloud.kv_handoff import check_prefill, receive_upload, send_prefill, take_upload
from cloud.kv_store import KVStore
from cloud.sessions import PrefixCache, fit_cache, shrink
from engine.generate import prefill
from engine.kv import CodecOptions, ReceivedKV
from engine.model import KVCache
from engine.runtime import LocalModel, StreamEvent
from tandem_rpc.v1 import cloud_pb2

Seed = tuple[KVCache, int]  # a cache and how many of its positions the prompt reuses


class TorchBackend(Backend):
    def __init__(self, model: LocalModel, config: ServerConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self.config = config
        self.sessions = PrefixCache(config.session_cache_bytes, config.max_sessions)
        self.kv = TorchKV(self, clock=clock)
        self.facts = BackendFacts(tokenizer=model.tokenizer, max_context=model.max_context,
                                  vocab_size=model.config.vocab_size, fingerprint=model.fingerprint,
                                  default_model_id=Path(model.source).name)
        self.capabilities = Capabilities(engine="torch", kv_import=True, kv_export=True)

    def generate(self, plan: GenerationPlan, *, principal: str, should_stop: Callable[[], bool],
                 seed: object | None = None) -> Generation:
        return _TorchGeneration(self, plan, principal, should_stop, seed)

    def cache_stats(self) -> tuple[int, int]:
        return self.sessions.nbytes, len(self.sessions)

    def close(self) -> None:
        self.sessions.clear()
        self.kv.store.clear()

    def prefill_chunks(self, cache: KVCache, ids: list[int], should_stop: Callable[[], bool],
                       principal: str) -> list[int] | None:
        """Feed all but the last chunk of a long prompt, checking `should_stop` in between; each chunk is
        one of `principal`'s turns on the model (engine/turns.py: callers share it fairly).

        Returns what is left for `stream` to prefill (it needs the last logits),
        or None when the caller went away meanwhile.
        """
        chunk = self.config.prefill_chunk
        with torch.inference_mode():
            while len(ids) > chunk:
                if should_stop():
                    return None
                prefill(self.model.model, cache, ids[:chunk], turn=partial(self.model.turns.turn, principal))
                ids = ids[chunk:]
        return ids


class _TorchGeneration(Generation):
    def __init__(self, backend: TorchBackend, plan: GenerationPlan, principal: str,
                 should_stop: Callable[[], bool], seed: object | None) -> None:
        self.backend, self.plan, self.principal, self.should_stop = backend, plan, principal, should_stop
        self.seed = seed
        self.generated: list[int] = []
        self.cache: KVCache | None = None

    def __iter__(self) -> Iterator[StreamEvent]:
        b, plan = self.backend, self.plan
        cache, reused = self.seed if self.seed is not None else self._lookup()
        self.cached_tokens = reused
        self.cache = cache = fit_cache(b.model, cache, len(plan.token_ids) + plan.max_new_tokens)
        suffix = b.prefill_chunks(cache, plan.token_ids[reused:], self.should_stop, self.principal)
        if suffix is None:
            return
        events = b.model.stream(suffix, max_new_tokens=plan.max_new_tokens, sampling=plan.sampling,
                                stop_strings=plan.stop_strings, cache=cache, caller=self.principal)
        try:
            for event in events:
                self.generated.append(event.token.id)
                yield event
        finally:
            events.close()

    def _lookup(self) -> tuple[KVCache | None, int]:
        if not self.plan.session_id:
            return None, 0
        return self.backend.sessions.take(self.principal, self.plan.session_id, self.plan.token_ids)

    def close(self) -> None:
        """Keep the session's cache for its next turn (what it holds of prompt plus answer)."""
        cache = self.cache
        if self.plan.session_id and cache is not None:
            tokens = (self.plan.token_ids + self.generated)[: cache.pos]
            self.backend.sessions.put(self.principal, self.plan.session_id, tokens, shrink(self.backend.model, cache))


class TorchKV:
    """The KV hand-off of the built-in engine: uploads kept under handles, and PrefillKV's prefill."""

    def __init__(self, backend: TorchBackend, *, clock: Callable[[], float]) -> None:
        self.backend = backend
        self.store = KVStore(backend.config.kv_store_bytes, backend.config.kv_ttl_s, clock=clock)
        self._clock = clock

    def receive(self, chunks: Iterable[cloud_pb2.KVChunk], principal: str) -> tuple[str, ReceivedKV]:
        """Verify, decode and keep an upload; returns its handle (StoreFullError past the store's bound)."""
        tokens, received = receive_upload(self.backend.model, self.backend.config, chunks)
        return self.store.put(tokens, received.cache, principal), received

    def take(self, handle: str, plan: GenerationPlan, principal: str) -> Seed:
        """The caller's uploaded cache rewound to what the prompt shares with it (the last prompt token is
        always fed). Another principal's handle is 'unknown', exactly like one that never existed."""
        entry, reused = take_upload(self.store, handle, plan.token_ids, principal)
        entry.cache.truncate(reused)
        return entry.cache, reused

    def check_prefill(self, request: cloud_pb2.PrefillKVRequest) -> CodecOptions:
        return check_prefill(self.backend.model, request)

    def prefill(self, ids: list[int], should_stop: Callable[[], bool],
                principal: str) -> tuple[KVCache, float] | None:
        """The prompt's cache and the seconds its prefill took, or None when stopped meanwhile."""
        cache = self.backend.model.new_cache(len(ids))
        started = self._clock()
        rest = self.backend.prefill_chunks(cache, ids, should_stop, principal)
        if rest is None:
            return None
        with torch.inference_mode():
            prefill(self.backend.model.model, cache, rest, turn=partial(self.backend.model.turns.turn, principal))
        return cache, self._clock() - started

    def send(self, cache: KVCache, options: CodecOptions, *, request_id: str, token_ids: list[int],
             prefill_s: float) -> Iterator[cloud_pb2.KVChunk]:
        return send_prefill(self.backend.model, cache, options, request_id=request_id, token_ids=token_ids,
                            prefill_s=prefill_s)

