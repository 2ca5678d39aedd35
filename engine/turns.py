"""Fair turns on the device: whose forward runs next when several requests share one model.

Concurrent requests run their forwards one at a time (two teams of threads on the
same cores take about 4x as long as turns: engine/kernels/decode_step.cpp), so the
order of the turns is how the device is shared. Left to the lock, every stream gets
an equal share, and a caller that opens four streams gets four times the device
of a caller with one. Here the waiting request whose caller has had the least
device time goes next (the oldest of that caller's), so callers share the device
equally however many streams each runs, and a long prefill chunk is paid back
with the other callers' decode steps that follow it. A caller that has been away
for IDLE_FORGET_S comes back level with the least-served caller present: idle
time is not banked for a burst later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

IDLE_FORGET_S = 1.0


@dataclass(eq=False)
class _Waiter:
    caller: Hashable
    granted: bool = False


class DeviceTurns:
    """One model's turns; `turn(caller)` around each forward (a prefill chunk or a decode step)."""

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._cond = threading.Condition()
        self._clock = clock
        self._running: Hashable | None = None
        self._busy = False
        self._waiting: list[_Waiter] = []  # in arrival order
        self._used: dict[Hashable, float] = {}  # device seconds of the callers seen lately
        self._seen: dict[Hashable, float] = {}  # when each last asked for or ended a turn

    @contextmanager
    def turn(self, caller: Hashable) -> Iterator[None]:
        """Hold the device for one forward of `caller`'s, waiting for its fair turn."""
        with self._cond:
            self._enrol(caller)
            if self._busy:
                waiter = _Waiter(caller)
                self._waiting.append(waiter)
                try:
                    while not waiter.granted:
                        self._cond.wait()
                except BaseException:
                    if waiter.granted:
                        self._pass_on()
                    else:
                        self._waiting.remove(waiter)
                    raise
            self._busy, self._running = True, caller
        start = self._clock()
        try:
            yield
        finally:
            with self._cond:
                now = self._clock()
                self._used[caller] += now - start
                self._seen[caller] = now
                self._pass_on()

    def used_s(self, caller: Hashable) -> float:
        """Device seconds `caller` has had (relative: a newcomer starts at the least-served's count)."""
        with self._cond:
            return self._used.get(caller, 0.0)

    def _enrol(self, caller: Hashable) -> None:
        now = self._clock()
        active = {w.caller for w in self._waiting} | {self._running}
        for stale in [c for c, t in self._seen.items() if now - t > IDLE_FORGET_S and c not in active]:
            del self._used[stale], self._seen[stale]
        if caller not in self._used:
            self._used[caller] = min(self._used.values(), default=0.0)
        self._seen[caller] = now

    def _pass_on(self) -> None:
        """The device is free: grant it to the least-served caller's oldest waiter (lock held)."""
        self._running = None
        if not self._waiting:
            self._busy = False
            return
        chosen = min(self._waiting, key=lambda w: self._used[w.caller])  # the first of equals: arrival order
        self._waiting.remove(chosen)
        chosen.granted = True
        self._running = chosen.caller
        self._cond.notify_all()
