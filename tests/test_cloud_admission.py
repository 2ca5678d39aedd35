"""Bounded concurrency and queue: the Admission rules alone, then a real server
under overload, cancellation and deadlines."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from cloud.admission import MIN_RETRY_AFTER_MS, Abandoned, Admission, Overloaded
from cloud.client import generate_request
from cloud.config import ServerConfig
from cloud.servicer import RETRY_AFTER_KEY
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, running_server, wait_until

JOIN_S = 10.0


def requests_ended(server, code: str) -> float:
    value = server.metrics.registry.get_sample_value(
        "tandem_cloud_requests_total", {"method": "Generate", "code": code}
    )
    return value or 0.0


def acquire_in_thread(
    admission: Admission, cancelled: threading.Event, outcomes: list, label: str = "admitted"
) -> threading.Thread:
    def run() -> None:
        try:
            admission.acquire(cancelled)
            outcomes.append(label)
        except (Overloaded, Abandoned) as exc:
            outcomes.append(type(exc).__name__)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_admits_up_to_the_limit_then_queues_then_refuses_with_a_retry_hint():
    admission = Admission(max_active=2, max_queue=1)
    admission.acquire(threading.Event())
    admission.acquire(threading.Event())
    outcomes: list = []
    waiter = acquire_in_thread(admission, threading.Event(), outcomes)
    assert wait_until(lambda: admission.queued == 1)
    with pytest.raises(Overloaded) as refused:
        admission.acquire(threading.Event())
    assert "max_concurrency 2" in str(refused.value) and "max_queue 1" in str(refused.value)
    assert refused.value.retry_after_ms >= MIN_RETRY_AFTER_MS
    admission.release(0.1)
    waiter.join(JOIN_S)
    assert outcomes == ["admitted"] and admission.active == 2 and admission.queued == 0


def test_a_freed_slot_goes_to_the_oldest_waiter():
    admission = Admission(max_active=1, max_queue=3)
    admission.acquire(threading.Event())
    admitted: list = []
    threads = []
    for name in ("first", "second", "third"):
        threads.append(acquire_in_thread(admission, threading.Event(), admitted, label=name))
        assert wait_until(lambda n=len(threads): admission.queued == n)
    for n in (1, 2, 3):
        admission.release(0.1)
        assert wait_until(lambda n=n: len(admitted) == n)
    for t in threads:
        t.join(JOIN_S)
    assert admitted == ["first", "second", "third"]


def test_a_cancelled_waiter_leaves_the_queue_at_once():
    admission = Admission(max_active=1, max_queue=1)
    admission.acquire(threading.Event())
    cancelled, outcomes = threading.Event(), []
    waiter = acquire_in_thread(admission, cancelled, outcomes)
    assert wait_until(lambda: admission.queued == 1)
    cancelled.set()
    admission.wake()
    waiter.join(JOIN_S)
    assert outcomes == ["Abandoned"] and admission.queued == 0 and admission.active == 1


def test_draining_refuses_new_and_queued_requests_but_keeps_running_ones():
    admission = Admission(max_active=1, max_queue=2)
    admission.acquire(threading.Event())
    outcomes: list = []
    waiter = acquire_in_thread(admission, threading.Event(), outcomes)
    assert wait_until(lambda: admission.queued == 1)
    admission.drain()
    waiter.join(JOIN_S)
    assert outcomes == ["Overloaded"]
    with pytest.raises(Overloaded, match="shutting down"):
        admission.acquire(threading.Event())
    assert admission.active == 1 and not admission.wait_idle(0.05)
    admission.release(0.1)
    assert admission.wait_idle(1.0)


@pytest.fixture(scope="module")
def tight_server(smollm2):
    """One stream decoding, one waiting: the smallest server that shows every admission path."""
    with running_server(smollm2, config=ServerConfig(max_concurrency=1, max_queue=1)) as running:
        yield running


def test_past_concurrency_and_queue_requests_get_unavailable_and_none_hang(tight_server, smollm2):
    server, port = tight_server
    ids = smollm2.encode_prompt("Write a short poem about the sea.")
    callers = 5
    start = threading.Barrier(callers)

    def call(i: int) -> tuple[str, str | None]:
        with client_for(port) as c:
            start.wait()
            try:
                done = c.generate(ids, max_new_tokens=12, request_id=f"r{i}", timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as exc:
                hint = dict(exc.trailing_metadata() or ()).get(RETRY_AFTER_KEY)
                return exc.code().name, hint
            assert done.result.usage.generated_tokens == 12
            return "OK", None

    with ThreadPoolExecutor(callers) as pool:
        outcomes = list(pool.map(call, range(callers), timeout=RPC_TIMEOUT_S * 2))
    codes = [code for code, _ in outcomes]
    assert set(codes) <= {"OK", "UNAVAILABLE"}, outcomes
    assert codes.count("OK") >= 2, outcomes  # the running stream and the queued one both finish
    assert codes.count("UNAVAILABLE") >= 1, outcomes
    assert all(hint is not None and int(hint) >= MIN_RETRY_AFTER_MS for code, hint in outcomes if code != "OK")
    assert wait_until(lambda: server.servicer.admission.active == 0 and server.servicer.admission.queued == 0)


def test_a_cancelled_stream_frees_its_slot_for_the_next_request(tight_server, smollm2):
    server, port = tight_server
    ids = smollm2.encode_prompt("Write a long story about a dragon.")
    with client_for(port) as c:
        call = c.stream(generate_request(ids, max_new_tokens=500), timeout=RPC_TIMEOUT_S)
        next(call)  # the stream is decoding
        call.cancel()
        started = time.monotonic()
        follow_up = c.generate(ids, max_new_tokens=2, timeout=RPC_TIMEOUT_S)
    # 500 tokens would hold the slot for tens of seconds; the next request waited at most a token or two.
    assert follow_up.result.usage.generated_tokens == 2
    assert follow_up.result.timings.queue_ms < 2000
    assert time.monotonic() - started < 10
    assert wait_until(lambda: requests_ended(server, "CANCELLED") >= 1)


def test_a_passed_deadline_stops_generation_and_frees_the_slot(tight_server, smollm2):
    server, port = tight_server
    ids = smollm2.encode_prompt("Write a long story about a dragon.")
    with client_for(port) as c:
        with pytest.raises(grpc.RpcError) as expired:
            c.generate(ids, max_new_tokens=500, timeout=0.5)
        assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_until(lambda: server.servicer.admission.active == 0, timeout=3)
        follow_up = c.generate(ids, max_new_tokens=2, timeout=RPC_TIMEOUT_S)
    assert follow_up.result.timings.queue_ms < 1000
    assert wait_until(lambda: requests_ended(server, "DEADLINE_EXCEEDED") >= 1)
