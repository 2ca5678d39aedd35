"""Uploaded KV caches waiting for their ResumeFromKV: bounded, expiring, single use.

An upload is decoded as it arrives and only a complete, verified cache is put
here, so a broken upload never occupies the store. Memory is bounded in bytes
(least recently stored first out), every entry expires `ttl_s` after its
upload, and `take` removes the entry: a handle resumes once, and only for the
principal that uploaded it (for anyone else it does not exist).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable

from engine.model import KVCache


class StoreFullError(Exception):
    pass


@dataclass
class StoredKV:
    tokens: list[int]  # the tokens whose keys and values the cache holds (len == cache.pos)
    cache: KVCache
    expires_at: float
    principal: str


class KVStore:
    def __init__(self, max_bytes: int, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, StoredKV] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, tokens: list[int], cache: KVCache, principal: str) -> str:
        """Keep `cache` under a new unguessable handle, evicting expired entries, then the oldest entry
        of whoever holds the most bytes (with the new entry counted): one caller's uploads push out its
        own, never those of a caller holding less. Refused (StoreFullError) when that would be this
        entry itself."""
        if cache.nbytes > self.max_bytes:
            raise StoreFullError(f"the decoded cache takes {cache.nbytes} bytes; this server keeps at most "
                                 f"{self.max_bytes} bytes of uploaded caches")
        handle = secrets.token_urlsafe(18)
        with self._lock:
            self._expire()
            self._entries[handle] = StoredKV(list(tokens), cache, self._clock() + self.ttl_s, principal)
            self._bytes += cache.nbytes
            while self._bytes > self.max_bytes:
                held: Counter[str] = Counter()
                for entry in self._entries.values():
                    held[entry.principal] += entry.cache.nbytes
                biggest = max(held, key=lambda p: (held[p], p == principal))  # a tie: the newcomer's own
                oldest = next(h for h, e in self._entries.items() if e.principal == biggest)
                self._bytes -= self._entries.pop(oldest).cache.nbytes
                if oldest == handle:
                    raise StoreFullError(f"the uploaded caches of other callers fill this server's {self.max_bytes} "
                                         f"bytes; hand off by token IDs, or retry once they are taken")
        return handle

    def take(self, handle: str, principal: str) -> StoredKV | None:
        """Remove and return the principal's entry, or None when unknown, expired, taken or someone else's."""
        with self._lock:
            self._expire()
            entry = self._entries.get(handle)
            if entry is None or not hmac.compare_digest(entry.principal, principal):
                return None
            del self._entries[handle]
            self._bytes -= entry.cache.nbytes
            return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _expire(self) -> None:
        now = self._clock()
        for handle in [h for h, e in self._entries.items() if e.expires_at <= now]:
            self._bytes -= self._entries.pop(handle).cache.nbytes
