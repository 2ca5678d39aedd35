"""Fair turns on the device (engine/turns.py): callers, not streams, share the model's forwards.

The sharing tests run SmolLM2's real device path on concurrent threads; the bookkeeping tests hold
turns around sleeps, the one stand-in for a forward that takes a known time."""

from __future__ import annotations

import threading
import time

import pytest

from engine.turns import IDLE_FORGET_S, DeviceTurns

PROMPT = "Write a long story about a dragon who learns to bake bread."


def _decode_concurrently(model, streams: list[str | None], n_tokens: int) -> list[tuple[int, str | None, float]]:
    """Run one greedy stream per entry of `streams` (its caller; None: none named) on `model` at once
    through LocalModel.stream; every token as (stream, caller, when it came)."""
    ids = model.encode_prompt(PROMPT)
    log: list[tuple[int, str | None, float]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(streams))
    errors: list[BaseException] = []

    def run(i: int, caller: str | None) -> None:
        try:
            start.wait()
            for _ in model.stream(ids, max_new_tokens=n_tokens, caller=caller):
                with lock:
                    log.append((i, caller, time.perf_counter()))
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert all(sum(1 for s, _, _ in log if s == i) == n_tokens for i in range(len(streams))), "a stream stopped early"
    return log


def test_a_caller_with_three_streams_gets_the_same_device_as_a_caller_with_one(smollm2_device):
    """Key A runs three streams, key B one, all at once: by the time B's answer is done, A's three
    streams together have had about as many tokens (equal shares), not three times as many (what
    one share per stream gives)."""
    n = 40
    log = _decode_concurrently(smollm2_device, ["A", "A", "A", "B"], n)
    b_done = max(t for _, c, t in log if c == "B")
    a_by_then = sum(1 for _, c, t in log if c == "A" and t <= b_done)
    assert a_by_then <= 1.5 * n, f"A had {a_by_then} tokens while B had its {n}"
    assert a_by_then >= 0.6 * n, f"A had only {a_by_then} tokens while B had its {n}: B was favoured"


def test_streams_without_a_caller_each_get_a_share(smollm2_device):
    """Streams with no caller named count as callers of their own: two of them finish together."""
    n = 24
    log = _decode_concurrently(smollm2_device, [None, None], n)
    first_done = min(max(t for s, _, t in log if s == i) for i in (0, 1))
    by_then = [sum(1 for s, _, t in log if s == i and t <= first_done) for i in (0, 1)]
    assert min(by_then) >= n - 4, f"two equal streams: {by_then} of {n} tokens when the first finished"


def _hold(turns: DeviceTurns, caller: str, seconds: float, order: list[str]) -> None:
    with turns.turn(caller):
        order.append(caller)
        time.sleep(seconds)


def test_a_caller_back_from_idle_starts_level_and_does_not_bank_credit():
    """A has used the device alone; B arriving now does not get A's whole past back as a burst: the two
    alternate from the start. A caller gone for longer than IDLE_FORGET_S is forgotten."""
    turns = DeviceTurns()
    order: list[str] = []
    for _ in range(10):
        _hold(turns, "A", 0.01, order)
    assert turns.used_s("B") == 0.0 and turns.used_s("A") >= 0.1
    order.clear()
    threads = [threading.Thread(target=lambda c=c: [_hold(turns, c, 0.01, order) for _ in range(6)])
               for c in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(order) == ["A"] * 6 + ["B"] * 6
    assert order[:6].count("B") <= 4, f"B made up A's past in one burst: {order}"
    time.sleep(IDLE_FORGET_S + 0.1)
    _hold(turns, "C", 0.0, [])
    assert turns.used_s("A") == 0.0, "A was not forgotten after being idle"


def test_an_error_inside_a_turn_passes_the_device_on():
    """A forward that raises (a too-long prompt, a cancelled request) still ends its turn: the next
    waiter runs."""
    turns = DeviceTurns()
    order: list[str] = []
    entered = threading.Event()

    def failing() -> None:
        with pytest.raises(RuntimeError):
            with turns.turn("A"):
                entered.set()
                time.sleep(0.05)
                raise RuntimeError("the forward failed")

    first = threading.Thread(target=failing)
    first.start()
    entered.wait(5)
    waiter = threading.Thread(target=_hold, args=(turns, "B", 0.0, order))
    waiter.start()
    first.join(5)
    waiter.join(5)
    assert order == ["B"] and not waiter.is_alive()
