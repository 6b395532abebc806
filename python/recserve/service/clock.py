"""What "now" is to the engine: the wall clock in a service, the events' own time in a
simulation or a replay (``clock = "events"``), where a request's wall-clock time says only how
fast the machine ran and would make two runs of the same script differ.

    clock = make_clock("events")
    clock.observe(1_700_000_000_000)   # an event's ts, an item's created_at
    clock.now_ms()                     # 1_700_000_000_000: the newest time observed
"""

from __future__ import annotations

import threading
import time
from typing import Literal, Protocol

__all__ = ["Clock", "EventClock", "WallClock", "latest_ms", "make_clock"]


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def observe(self, ts_ms: int) -> None: ...


class WallClock:
    """Milliseconds since the epoch, as the host tells them; timestamps do not move it."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def observe(self, ts_ms: int) -> None:
        pass


class EventClock:
    """The newest timestamp observed (0 before the first): time moves only as events and items
    say it does, so the same inputs give the same feeds however fast they arrive. It lives in
    memory; after a restart it starts again from the next timestamp posted."""

    def __init__(self) -> None:
        self._ms = 0
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return self._ms

    def observe(self, ts_ms: int) -> None:
        with self._lock:
            self._ms = max(self._ms, int(ts_ms))


def make_clock(kind: Literal["wall", "events"]) -> Clock:
    return EventClock() if kind == "events" else WallClock()


def latest_ms(skew_s: float) -> int:
    """The newest timestamp the service takes now: the wall clock plus ``skew_s``, on either
    clock. On the events' clock this keeps one ts from the far future from becoming "now" for
    good, while a simulation or replay may still jump ahead through its own past (the demo's
    timeline skips days), which a bound relative to the newest ts seen would refuse."""
    return time.time_ns() // 1_000_000 + round(skew_s * 1000)
