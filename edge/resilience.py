"""Retry with backoff and a circuit breaker for calls to the cloud tier.

Retries (tenacity) cover transient failures (UNAVAILABLE, DEADLINE_EXCEEDED on
connect) within an overall deadline; the breaker stops trying a dead cloud for
a cool-down so each request falls back at once instead of waiting out retries.
The clock and sleep are injectable so tests of the breaker take no time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import tenacity

from cloud.client import MAX_RECONNECT_BACKOFF_MS
from edge.errors import CloudUnavailableError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 1.0
    jitter_s: float = 0.05

    def run(
        self,
        fn: Callable[[], T],
        *,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """Call `fn` until it succeeds, retrying a retryable CloudUnavailableError
        with exponential backoff and jitter, never past `deadline` (a clock() value).

        A server's retry-after hint lengthens the wait but never past the deadline:
        a hint that ends after it stops the retries at once (the caller falls back
        now rather than at the deadline with nothing gained)."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, CloudUnavailableError) and e.retryable),
            stop=tenacity.stop_after_attempt(self.attempts) | _stop_at(deadline, clock),
            wait=_at_least_retry_after(
                tenacity.wait_exponential(multiplier=self.initial_backoff_s, max=self.max_backoff_s)
                + tenacity.wait_random(0, self.jitter_s),
                deadline, clock,
            ),
            sleep=sleep,
            reraise=True,
        )
        return retrying(fn)


DEFAULT_RETRY = RetryPolicy()


def _retry_after_s(state: tenacity.RetryCallState) -> float:
    """The server's hint of when to come back (UNAVAILABLE + retry-after-ms), 0 if none."""
    error = state.outcome.exception() if state.outcome else None
    return getattr(error, "retry_after_s", None) or 0.0


def _at_least_retry_after(
    backoff: tenacity.wait.wait_base, deadline: float, clock: Callable[[], float]
) -> Callable[[tenacity.RetryCallState], float]:
    """The backoff, or longer when the server said when to come back, never past `deadline`."""

    def wait(state: tenacity.RetryCallState) -> float:
        return max(0.0, min(max(backoff(state), _retry_after_s(state)), deadline - clock()))

    return wait


def _stop_at(deadline: float, clock: Callable[[], float]) -> tenacity.stop.stop_base:
    class _StopAtDeadline(tenacity.stop.stop_base):
        def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
            now = clock()
            return now >= deadline or now + _retry_after_s(retry_state) >= deadline

    return _StopAtDeadline()


# Two of the channel's longest reconnect back-offs: by the end of a cool-down the channel has tried to
# connect again, so the half-open trial meets a restarted cloud instead of a stale failure.
DEFAULT_COOLDOWN_S = 2 * MAX_RECONNECT_BACKOFF_MS / 1000


class CircuitBreaker:
    """Closed -> open after `failure_threshold` consecutive failures; after
    `cooldown_s` one trial call is let through (half-open); success closes it."""

    def __init__(
        self, failure_threshold: int = 3, cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        with self._lock:
            return self._state() != "open"

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.failure_threshold or self._state() == "half_open":
                self._opened_at = self._clock()

    def remaining_cooldown(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
