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
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, requests_ended, running_server, wait_until

JOIN_S = 10.0


def acquire_in_thread(
    admission: Admission, cancelled: threading.Event, outcomes: list, label: str = "admitted", principal: str = ""
) -> threading.Thread:
    def run() -> None:
        try:
            admission.acquire(cancelled, principal)
            outcomes.append(label)
        except (Overloaded, Abandoned) as exc:
            outcomes.append(type(exc).__name__ if label == "admitted" else f"{label} {type(exc).__name__}")

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


def test_a_caller_filling_the_queue_gives_its_newest_place_to_another_caller():
    admission = Admission(max_active=1, max_queue=2)
    admission.acquire(threading.Event(), "flood")
    outcomes: list = []
    floods = []
    for i in (1, 2):  # one after the other, so that flood2 is the newer waiter
        floods.append(acquire_in_thread(admission, threading.Event(), outcomes, f"flood{i}", "flood"))
        assert wait_until(lambda n=i: admission.queued == n)
    with pytest.raises(Overloaded, match="max_queue 2"):
        admission.acquire(threading.Event(), "flood")  # its own third waiter: refused as before
    other = acquire_in_thread(admission, threading.Event(), outcomes, "other", "other")
    floods[1].join(JOIN_S)
    assert outcomes == ["flood2 Overloaded"] and admission.queued == 2
    admission.release(0.1, "flood")  # the two callers now hold nothing: the older waiter goes first
    floods[0].join(JOIN_S)
    admission.release(0.1, "flood")
    other.join(JOIN_S)
    assert outcomes == ["flood2 Overloaded", "flood1", "other"]
    admission.release(0.1, "other")
    assert admission.wait_idle(1.0)


def test_a_freed_slot_goes_to_the_caller_holding_the_fewest():
    admission = Admission(max_active=2, max_queue=4)
    admission.acquire(threading.Event(), "flood")
    admission.acquire(threading.Event(), "flood")
    outcomes: list = []
    waiters = [acquire_in_thread(admission, threading.Event(), outcomes, "flood3", "flood")]
    assert wait_until(lambda: admission.queued == 1)
    waiters.append(acquire_in_thread(admission, threading.Event(), outcomes, "other", "other"))
    assert wait_until(lambda: admission.queued == 2)
    admission.release(0.1, "flood")  # flood still holds one slot, other none: other goes first
    waiters[1].join(JOIN_S)
    assert outcomes == ["other"]
    admission.release(0.1, "flood")
    waiters[0].join(JOIN_S)
    assert outcomes == ["other", "flood3"]


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


def test_a_caller_flooding_the_server_cannot_lock_another_caller_out(smollm2):
    """Two callers told apart by their tokens: one holds the slot and fills the queue with long
    streams; the other's request still gets in line (the flood's newest waiter is refused in its
    place, saying why) and is answered once the flood's streams end."""
    config = ServerConfig(max_concurrency=1, max_queue=2)
    ids = smollm2.encode_prompt("Write a long story about a dragon.")
    with running_server(smollm2, config=config, auth_tokens=["flood-token", "victim-token"]) as (server, port), \
            client_for(port, token="flood-token") as flood, client_for(port, token="victim-token") as victim:
        admission = server.servicer.admission
        floods = []
        for n in (1, 2, 3):  # one by one, so that the last is the newest waiter
            floods.append(flood.stream(generate_request(ids, max_new_tokens=500), timeout=RPC_TIMEOUT_S))
            assert wait_until(lambda n=n: admission.active + admission.queued == n)
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(victim.generate, ids, max_new_tokens=2, timeout=RPC_TIMEOUT_S)
            assert wait_until(lambda: floods[2].done() and admission.queued == 2)
            for call in floods[:2]:
                call.cancel()
            result = answer.result(timeout=RPC_TIMEOUT_S).result
    assert result.usage.generated_tokens == 2
    assert floods[2].code() == grpc.StatusCode.UNAVAILABLE and "went to another caller" in floods[2].details()
