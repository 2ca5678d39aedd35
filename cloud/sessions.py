"""Per-session prefix cache: a follow-up turn prefills only what is new.

A conversation's next request carries the whole conversation so far (prompt,
the answer the server streamed, the next user turn). The KV cache left by the
previous turn already holds most of it, so the server keeps that cache per
session id and reuses the longest common token prefix. The token check makes
reuse safe even if a client sends an unrelated prompt under an old session id;
the key makes sessions invisible to each other. Memory is bounded in bytes and
in entries, least recently used first out. A cache is taken out of the store
while a request uses it, so two concurrent requests never share one.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

from engine.model import KVCache
from engine.runtime import LocalModel

log = logging.getLogger(__name__)

ALLOCATION_STEP = 256  # positions; caches grow in steps to limit copies on long sessions


@dataclass
class CachedPrefix:
    tokens: list[int]  # exactly the tokens whose keys and values the cache holds (len == cache.pos)
    cache: KVCache


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def allocation(n_positions: int, max_context: int) -> int:
    """Positions to allocate for `n_positions`, rounded up to the step, capped at the context."""
    return min(max_context, -(-n_positions // ALLOCATION_STEP) * ALLOCATION_STEP)


def fit_cache(model: LocalModel, cache: KVCache | None, n_positions: int) -> KVCache:
    """A cache with room for `n_positions`: the given one, a copy into a larger one, or a new one."""
    size = allocation(n_positions, model.max_context)
    if cache is None:
        return model.new_cache(size)
    if cache.max_seq_len >= n_positions:
        return cache
    return cache.copy_into(model.new_cache(size))


class PrefixCache:
    def __init__(self, max_bytes: int, max_sessions: int) -> None:
        self.max_bytes = max_bytes
        self.max_sessions = max_sessions
        self._entries: OrderedDict[str, CachedPrefix] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, session_id: str, prompt: Sequence[int]) -> tuple[KVCache | None, int]:
        """Remove the session's cache and rewind it to what `prompt` shares with it.

        Returns (cache, reused positions), or (None, 0) on a miss. At least the
        last prompt token is left to prefill: its logits choose the first new token.
        """
        with self._lock:
            entry = self._entries.pop(session_id, None)
            if entry is not None:
                self._bytes -= entry.cache.nbytes
        if entry is None:
            return None, 0
        reused = min(common_prefix(entry.tokens, prompt), len(prompt) - 1)
        if reused <= 0:
            return None, 0
        entry.cache.truncate(reused)
        return entry.cache, reused

    def put(self, session_id: str, tokens: Sequence[int], cache: KVCache) -> None:
        """Keep `cache` (holding exactly `tokens`) for the session's next turn, evicting LRU entries."""
        if len(tokens) != cache.pos:
            raise ValueError(f"cache holds {cache.pos} positions but {len(tokens)} tokens were given")
        if cache.nbytes > self.max_bytes or self.max_sessions == 0 or not tokens:
            return
        with self._lock:
            old = self._entries.pop(session_id, None)
            if old is not None:
                self._bytes -= old.cache.nbytes
            self._entries[session_id] = CachedPrefix(list(tokens), cache)
            self._bytes += cache.nbytes
            while self._bytes > self.max_bytes or len(self._entries) > self.max_sessions:
                evicted, entry = self._entries.popitem(last=False)
                self._bytes -= entry.cache.nbytes
                log.debug("evicted session %s (%d positions, %d bytes)", evicted, entry.cache.pos, entry.cache.nbytes)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

