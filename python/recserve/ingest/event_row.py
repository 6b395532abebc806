"""One event as a client sends it, ids still strings: what ``POST /v1/events``, the Kinesis
producer and ``recserve eval``'s replay hand the engine.

Its own module, below the service, so that the sources and the evaluation can name it
without importing the service.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EventRow"]


@dataclass(frozen=True)
class EventRow:
    event_id: str
    user_id: str
    item_id: str
    type: str
    watch_ms: int | None = None
    duration_ms: int | None = None
    ts: int | None = None  # ms since the epoch; None: now
    request_id: str | None = None
