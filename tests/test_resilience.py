"""Retry and circuit-breaker behaviour: on an injected clock so nothing sleeps, then the real SDK
against a real server on loopback (retry-after hints within the deadline, recovery after a restart)."""

from __future__ import annotations

import time

import pytest

from cloud.client import MAX_RECONNECT_BACKOFF_MS, generate_request
from cloud.config import ServerConfig
from cloud.server import start_server
from edge.errors import CloudRejectedError, CloudUnavailableError
from edge.resilience import CircuitBreaker, RetryPolicy
from edge.transport import CloudTarget, CloudTransport
from tests.cloud_fixtures import client_for, running_server


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


def test_a_retry_after_hint_past_the_deadline_stops_retrying_at_once():
    clock, calls = Clock(), []

    def overloaded():
        calls.append(clock.now)
        raise CloudUnavailableError("busy", code="UNAVAILABLE", retry_after_s=30.0)

    with pytest.raises(CloudUnavailableError):
        RetryPolicy(attempts=5).run(overloaded, deadline=2.0, clock=clock, sleep=clock.sleep)
    assert calls == [0.0] and clock.now == 0.0  # no sleep that could only end after the deadline


def test_a_retry_after_hint_within_the_deadline_is_honoured_but_never_passes_it():
    clock = Clock()

    def overloaded():
        raise CloudUnavailableError("busy", code="UNAVAILABLE", retry_after_s=0.8)

    with pytest.raises(CloudUnavailableError):
        RetryPolicy(attempts=5, initial_backoff_s=0.01, jitter_s=0.0).run(
            overloaded, deadline=2.0, clock=clock, sleep=clock.sleep)
    assert clock.slept and all(s >= 0.8 for s in clock.slept) and clock.now <= 2.0


# --- the real SDK against a real server on loopback -------------------------------------------------

def _hold_the_only_slot(port: int):
    """Start a long stream that keeps the server's single decode slot busy; returns the call."""
    call = client_for(port).stream(generate_request([1, 2, 3], max_new_tokens=1500), timeout=120)
    next(call)
    return call


def test_sdk_never_waits_past_its_deadline_for_a_long_retry_after_hint(smollm2):
    config = ServerConfig(max_concurrency=1, max_queue=0)
    with running_server(smollm2, config=config) as (server, port):
        call = _hold_the_only_slot(port)
        try:
            server.servicer.admission._mean_hold_s = 30.0  # as if streams here lasted 30 s: hints of 30 s
            transport = CloudTransport(CloudTarget(f"127.0.0.1:{port}"))
            for deadline_s in (2.0, 0.5):
                started = time.monotonic()
                with pytest.raises(CloudUnavailableError) as info:
                    list(transport.generate(generate_request([4, 5, 6], max_new_tokens=2),
                                            deadline=started + deadline_s))
                elapsed = time.monotonic() - started
                assert info.value.code == "UNAVAILABLE" and info.value.retry_after_s >= 8
                assert elapsed < deadline_s, f"waited {elapsed:.2f} s on a {deadline_s} s deadline"
            transport.close()
        finally:
            call.cancel()


def test_sdk_reaches_a_restarted_cloud_within_seconds(smollm2):
    """The cloud goes away for 10 s (long enough for gRPC's default back-off to reach ~6 s between
    attempts, and the breaker to open), then comes back on the same port."""
    server, port = start_server(smollm2, port=0)
    transport = CloudTransport(CloudTarget(f"127.0.0.1:{port}"))

    def ask() -> bool:
        try:
            list(transport.generate(generate_request([1, 2, 3], max_new_tokens=1), deadline=time.monotonic() + 2))
            return True
        except CloudUnavailableError:
            return False

    try:
        assert ask()
        server.stop(None).wait(30)
        down_until = time.monotonic() + 10
        while time.monotonic() < down_until:
            assert not ask()
            time.sleep(0.2)
        server, again = start_server(smollm2, port=port)
        assert again == port
        back_at = time.monotonic()
        while not ask():
            assert time.monotonic() - back_at < 4.0, "the SDK did not reach the restarted cloud within 4 s"
            time.sleep(0.1)
        recovered_s = time.monotonic() - back_at
        assert recovered_s < 2.0 * MAX_RECONNECT_BACKOFF_MS / 1000 + 1.0
    finally:
        transport.close()
        server.stop(None).wait(30)
