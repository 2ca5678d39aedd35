"""Bounded concurrency with a bounded queue, fair between callers: past both, refuse at once.

A CPU or GPU host decodes a few streams well and many streams badly, so at most
`max_active` run; up to `max_queue` more wait; anything past that is refused
with a retry hint instead of piling up until deadlines pass. A freed slot goes
straight to a waiter, so late arrivals cannot overtake the queue.

Callers (principals, cloud.auth) share the server fairly, so one that sends as
fast as it can cannot lock the others out:
- a freed slot goes to the waiter whose caller holds the fewest slots (the
  oldest of those), so a caller with nothing running goes first;
- a full queue takes a newcomer anyway when its caller has fewer waiters than
  the caller with the most, whose newest waiter is refused in its place.
With one caller this is the plain FIFO queue.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import grpc

from cloud.contract import RequestError

MIN_RETRY_AFTER_MS = 100
MAX_RETRY_AFTER_MS = 30_000
_SAFETY_POLL_S = 0.5  # waiters recheck this often even if a wake-up were missed


class Overloaded(Exception):
    """No slot and no queue room (or the server is draining); retry after `retry_after_ms`."""

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


@dataclass(eq=False)
class _Ticket:
    """A waiter: its caller, and how its wait ended (a slot, or its place given away)."""

    principal: str
    granted: bool = False
    bumped: str | None = None


class Abandoned(Exception):
    """The caller gave up (cancelled, deadline) while waiting in the queue."""


class Admission:
    def __init__(self, max_active: int, max_queue: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_active < 1 or max_queue < 0:
            raise ValueError(f"need max_active >= 1 and max_queue >= 0, got {max_active} and {max_queue}")
        self.max_active = max_active
        self.max_queue = max_queue
        self._clock = clock
        self._cond = threading.Condition()
        self._active = 0
        self._held: Counter[str] = Counter()  # slots each caller holds
        self._waiting: list[_Ticket] = []  # in arrival order
        self._draining = False
        self._mean_hold_s = 1.0  # exponentially weighted; seeds the first retry hints

    @property
    def active(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def acquire(self, cancelled: threading.Event, principal: str = "") -> float:
        """Take a slot for `principal`, waiting in line if needed; returns the monotonic time it was granted.

        Raises Overloaded when the line is full (or this waiter's place went to a caller with
        fewer waiters) or the server drains, Abandoned when `cancelled` is set while waiting
        (call `wake()` after setting it). Pass the same `principal` to `release`.
        """
        with self._cond:
            self._refuse_if_draining()
            if self._active < self.max_active and not self._waiting:
                self._take(principal)
                return self._clock()
            if len(self._waiting) >= self.max_queue:
                self._make_room(principal)
            ticket = _Ticket(principal)
            self._waiting.append(ticket)
            while True:
                if ticket.granted:
                    return self._clock()
                if ticket.bumped is not None:
                    raise Overloaded(ticket.bumped, self.retry_after_ms())
                if self._draining or cancelled.is_set():
                    self._waiting.remove(ticket)
                    self._refuse_if_draining()
                    raise Abandoned("request cancelled while queued")
                self._cond.wait(_SAFETY_POLL_S)

    def release(self, held_s: float, principal: str = "") -> None:
        """Give `principal`'s slot back (to the fairest waiter, if any); `held_s` tunes the retry hint."""
        with self._cond:
            self._mean_hold_s = 0.8 * self._mean_hold_s + 0.2 * max(held_s, 0.0)
            self._active -= 1
            self._held[principal] -= 1
            if self._held[principal] <= 0:
                del self._held[principal]
            if self._waiting:
                ticket = min(self._waiting, key=lambda t: self._held[t.principal])  # first of the least served
                self._waiting.remove(ticket)
                self._take(ticket.principal)
                ticket.granted = True
            self._cond.notify_all()

    def _take(self, principal: str) -> None:
        self._active += 1
        self._held[principal] += 1

    def _make_room(self, principal: str) -> None:
        """With the queue full: refuse the newest waiter of the caller with the most waiters when
        `principal` has fewer, else raise Overloaded for `principal`."""
        queued = Counter(t.principal for t in self._waiting)
        greedy, most = queued.most_common(1)[0] if queued else (principal, 0)
        if greedy == principal or queued[principal] + 1 >= most:
            raise Overloaded(
                f"server busy: {self._active} streams running (max_concurrency {self.max_active}) and "
                f"{len(self._waiting)} queued (max_queue {self.max_queue})",
                self.retry_after_ms(),
            )
        bumped = next(t for t in reversed(self._waiting) if t.principal == greedy)
        self._waiting.remove(bumped)
        bumped.bumped = (f"server busy: this caller's place in the queue went to another caller (this caller had "
                         f"{most} of the {len(self._waiting) + 1} queued, max_queue {self.max_queue})")
        self._cond.notify_all()

    def wake(self) -> None:
        """Make waiters recheck their cancellation now (called from RPC-done callbacks)."""
        with self._cond:
            self._cond.notify_all()

    def drain(self) -> None:
        """Refuse new and queued requests from now on; running streams keep their slots."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        """Block until no stream holds a slot; False if `timeout` passed first."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while self._active:
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(min(_SAFETY_POLL_S, remaining) if remaining is not None else _SAFETY_POLL_S)
            return True

    def retry_after_ms(self) -> int:
        """Rough time until the queue has moved by one: mean hold time over the slots."""
        estimate = self._mean_hold_s * (len(self._waiting) + 1) / self.max_active
        return int(min(max(estimate * 1000, MIN_RETRY_AFTER_MS), MAX_RETRY_AFTER_MS))

    def _refuse_if_draining(self) -> None:
        if self._draining:
            raise Overloaded("server is shutting down; retry on another replica", self.retry_after_ms())


class PerCaller:
    """At most `limit` of one kind of thing held at once by each principal (uploads being received,
    prefilled caches not yet read): past that, RESOURCE_EXHAUSTED at once. Fair sharing of the decode
    slots is Admission's; this bounds what one caller can pin outside them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, principal: str, what: str) -> None:
        with self._lock:
            if self._held[principal] >= self.limit:
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"this caller already has {self.limit} "
                                   f"{what}, its limit; hand off by token IDs, or retry once one has ended")
            self._held[principal] += 1

    def release(self, principal: str) -> None:
        with self._lock:
            self._held[principal] -= 1
            if not self._held[principal]:
                del self._held[principal]

    @contextmanager
    def hold(self, principal: str, what: str) -> Iterator[None]:
        self.take(principal, what)
        try:
            yield
        finally:
            self.release(principal)
