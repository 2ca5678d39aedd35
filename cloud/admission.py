"""Bounded concurrency with a bounded FIFO queue: past both, refuse at once.

A CPU or GPU host decodes a few streams well and many streams badly, so at most
`max_active` run; up to `max_queue` more wait in arrival order; anything past
that is refused with a retry hint instead of piling up until deadlines pass.
A freed slot is handed straight to the oldest waiter, so late arrivals cannot
overtake the queue.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

MIN_RETRY_AFTER_MS = 100
MAX_RETRY_AFTER_MS = 30_000
_SAFETY_POLL_S = 0.5  # waiters recheck this often even if a wake-up were missed


class Overloaded(Exception):
    """No slot and no queue room (or the server is draining); retry after `retry_after_ms`."""

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


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
        self._waiting: deque[object] = deque()
        self._granted: set[object] = set()
        self._draining = False
        self._mean_hold_s = 1.0  # exponentially weighted; seeds the first retry hints

    @property
    def active(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def acquire(self, cancelled: threading.Event) -> float:
        """Take a slot, waiting in line if needed; returns the monotonic time it was granted.

        Raises Overloaded when the line is full or the server drains, Abandoned when
        `cancelled` is set while waiting (call `wake()` after setting it).
        """
        with self._cond:
            self._refuse_if_draining()
            if self._active < self.max_active and not self._waiting:
                self._active += 1
                return self._clock()
            if len(self._waiting) >= self.max_queue:
                raise Overloaded(
                    f"server busy: {self._active} streams running (max_concurrency {self.max_active}) and "
                    f"{len(self._waiting)} queued (max_queue {self.max_queue})",
                    self.retry_after_ms(),
                )
            ticket = object()
            self._waiting.append(ticket)
            while True:
                if ticket in self._granted:
                    self._granted.discard(ticket)
                    return self._clock()
                if self._draining or cancelled.is_set():
                    self._waiting.remove(ticket)
                    self._refuse_if_draining()
                    raise Abandoned("request cancelled while queued")
                self._cond.wait(_SAFETY_POLL_S)

    def release(self, held_s: float) -> None:
        """Give the slot back (to the oldest waiter if any); `held_s` tunes the retry hint."""
        with self._cond:
            self._mean_hold_s = 0.8 * self._mean_hold_s + 0.2 * max(held_s, 0.0)
            if self._waiting:
                self._granted.add(self._waiting.popleft())
            else:
                self._active -= 1
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
