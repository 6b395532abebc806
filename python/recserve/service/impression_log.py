"""The service's impression log, ``data_dir/impressions`` (``recserve.train.log`` format): what
each feed served, and what users did with it, for the trainer.

Requests only append records to a list in memory; a flush thread writes them
(``ImpressionLogWriter.flush``), so no request waits on the file.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from pathlib import Path

from recserve.feed import Served
from recserve.ingest.event_row import EventRow
from recserve.profiles import Events
from recserve.train.log import Event, Impression, LogWriter, Record, erase_users

__all__ = ["ImpressionLogWriter", "event_records", "impression_records"]


class ImpressionLogWriter:
    """Records wait in memory until ``flush``. Closed (the log is off, or not yet opened, or
    closed) it takes no records."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writer: LogWriter | None = None
        self._pending: list[Record] = []
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def open(self) -> None:
        self._writer = LogWriter(self.directory)

    def append(self, records: Sequence[Record]) -> None:
        if self._writer is not None:
            with self._lock:
                self._pending.extend(records)

    def flush(self) -> None:
        with self._lock:
            records, self._pending = self._pending, []
            if self._writer is not None:
                self._writer.extend(records)
                self._writer.flush()

    def drop_user(self, user_id: str) -> None:
        """Drops the user's records not yet written (an erasure)."""
        with self._lock:
            self._pending = [r for r in self._pending if r.user != user_id]

    def erase(self, users: Collection[str]) -> None:
        """Rewrites the log's files without the records of ``users``."""
        with self._lock:
            if self._writer is not None:
                self._writer.extend(self._pending)
                self._pending = []
                self._writer.close()  # the next record starts a new segment
            erase_users(self.directory, set(users))

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def impression_records(
    ts: float,
    request_id: str,
    user_id: str,
    items: Sequence[Served],
    model_version: str,
    label: str | None,
) -> list[Record]:
    """One impression per item served, at its position in the page."""
    return [
        Impression(ts, request_id, user_id, s.key, position, model_version, label or "")
        for position, s in enumerate(items)
    ]


def event_records(rows: Sequence[EventRow], events: Events) -> list[Record]:
    """The events of an applied batch. A client's ``impression`` event is logged too: the item
    it names was viewed (the served item was logged as an ``Impression`` when served)."""
    return [
        Event(
            ts=int(events.ts_ms[i]) / 1000.0,
            event_id=row.event_id,
            user=row.user_id,
            item=int(events.items[i]),
            type=row.type,
            request_id=row.request_id,
            watch_ms=int(events.watch_ms[i]),
            duration_ms=int(events.duration_ms[i]),
        )
        for i, row in enumerate(rows)
    ]
