"""Per-session prefix cache: a follow-up turn prefills only what is new.

A conversation's next request carries the whole conversation so far (prompt,
the answer the server streamed, the next user turn). The KV cache left by the
previous turn already holds most of it, so the server keeps that cache per
session id and reuses the longest common token prefix. The token check makes
reuse safe even if a client sends an unrelated prompt under an old session id;
the key (principal, session id) makes sessions invisible to each other and to
other callers. A kept cache is cut down to the positions it holds, so memory is
accounted by what each session really holds; it is bounded in bytes and in
entries, and the biggest holder loses its least recently used session first.
A cache is taken out of the store while a request uses it, so two concurrent
requests never share one.
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
KEEP_STEP = 16         # positions; a kept session's cache is cut down to its valid positions in these steps


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


def shrink(model: LocalModel, cache: KVCache) -> KVCache:
    """`cache` itself, or a copy with room for just its valid positions (rounded to KEEP_STEP) when it
    was allocated for much more: a kept session costs what it holds, not what its last turn reserved."""
    size = min(model.max_context, max(KEEP_STEP, -(-cache.pos // KEEP_STEP) * KEEP_STEP))
    if cache.max_seq_len <= size:
        return cache
    return cache.copy_into(model.new_cache(size))


class PrefixCache:
    """Session caches of every principal, bounded in bytes and entries.

    Entries are keyed by (principal, session id), so a session id names
    nothing outside its principal. Past a bound, the principal holding the
    most (bytes, or entries when the entry bound is hit) loses its least
    recently used session first: one caller opening many sessions evicts its
    own, not everyone else's.
    """

    def __init__(self, max_bytes: int, max_sessions: int) -> None:
        self.max_bytes = max_bytes
        self.max_sessions = max_sessions
        self._owners: dict[str, OrderedDict[str, CachedPrefix]] = {}
        self._owner_bytes: dict[str, int] = {}
        self._bytes = 0
        self._count = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return self._count

    def bytes_of(self, principal: str) -> int:
        return self._owner_bytes.get(principal, 0)

    def take(self, principal: str, session_id: str, prompt: Sequence[int]) -> tuple[KVCache | None, int]:
        """Remove the principal's session cache and rewind it to what `prompt` shares with it.

        Returns (cache, reused positions), or (None, 0) on a miss. At least the
        last prompt token is left to prefill: its logits choose the first new token.
        """
        with self._lock:
            entry = self._pop(principal, session_id)
        if entry is None:
            return None, 0
        reused = min(common_prefix(entry.tokens, prompt), len(prompt) - 1)
        if reused <= 0:
            return None, 0
        entry.cache.truncate(reused)
        return entry.cache, reused

    def put(self, principal: str, session_id: str, tokens: Sequence[int], cache: KVCache) -> None:
        """Keep `cache` (holding exactly `tokens`, shrunk first to what it holds) for the session's next turn."""
        if len(tokens) != cache.pos:
            raise ValueError(f"cache holds {cache.pos} positions but {len(tokens)} tokens were given")
        if cache.nbytes > self.max_bytes or self.max_sessions == 0 or not tokens:
            return
        with self._lock:
            self._pop(principal, session_id)
            self._owners.setdefault(principal, OrderedDict())[session_id] = CachedPrefix(list(tokens), cache)
            self._owner_bytes[principal] = self._owner_bytes.get(principal, 0) + cache.nbytes
            self._bytes += cache.nbytes
            self._count += 1
            while self._bytes > self.max_bytes or self._count > self.max_sessions:
                by_count = self._count > self.max_sessions
                victim = max(self._owners, key=lambda p: len(self._owners[p]) if by_count else self._owner_bytes[p])
                evicted = next(iter(self._owners[victim]))
                entry = self._pop(victim, evicted)
                log.debug("evicted session %s of %s (%d positions, %d bytes)", evicted, victim, entry.cache.pos,
                          entry.cache.nbytes)

    def clear(self) -> None:
        with self._lock:
            self._owners.clear()
            self._owner_bytes.clear()
            self._bytes = self._count = 0

    def _pop(self, principal: str, session_id: str) -> CachedPrefix | None:
        owned = self._owners.get(principal)
        entry = owned.pop(session_id, None) if owned is not None else None
        if entry is None:
            return None
        self._bytes -= entry.cache.nbytes
        self._count -= 1
        self._owner_bytes[principal] -= entry.cache.nbytes
        if not owned:
            del self._owners[principal], self._owner_bytes[principal]
        return entry
