"""Retry and circuit-breaker behaviour, on an injected clock so nothing sleeps."""

from __future__ import annotations

import pytest

from edge.errors import CloudRejectedError, CloudUnavailableError
from edge.resilience import CircuitBreaker, RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_retry_backs_off_exponentially_then_succeeds():
    clock, calls = Clock(), []

    def flaky():
        calls.append(clock.now)
        if len(calls) < 3:
            raise CloudUnavailableError("down")
        return "ok"

    policy = RetryPolicy(attempts=5, initial_backoff_s=0.1, max_backoff_s=1.0, jitter_s=0.0)
    assert policy.run(flaky, deadline=10.0, clock=clock, sleep=clock.sleep) == "ok"
    assert len(calls) == 3
    assert clock.slept[1] > clock.slept[0] > 0


def test_retry_never_passes_the_deadline():
    clock = Clock()

    def dead():
        raise CloudUnavailableError("down")

    policy = RetryPolicy(attempts=100, initial_backoff_s=0.5, max_backoff_s=0.5, jitter_s=0.0)
    with pytest.raises(CloudUnavailableError):
        policy.run(dead, deadline=2.0, clock=clock, sleep=clock.sleep)
    assert clock.now <= 2.5  # at most one backoff step past the check


def test_rejections_are_not_retried():
    calls = []

    def rejected():
        calls.append(1)
        raise CloudRejectedError("bad token id")

    with pytest.raises(CloudRejectedError):
        RetryPolicy(attempts=5).run(rejected, deadline=1e9)
    assert len(calls) == 1


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=30, clock=clock)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 29
    assert not breaker.allow() and breaker.remaining_cooldown() == pytest.approx(1)
    clock.now += 1
    assert breaker.state == "half_open" and breaker.allow()
    breaker.record_failure()  # the trial call failed: open again for a full cool-down
    assert breaker.state == "open"
    clock.now += 30
    breaker.record_success()
    assert breaker.state == "closed"
