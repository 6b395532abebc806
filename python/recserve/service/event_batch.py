"""A batch of clients' events, checked as a whole and turned into the columns the store
applies (``recserve.profiles.Events``). Nothing of a batch with a bad event is applied: the
check comes first and raises a ValueError naming the event's index and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recserve.catalog import Catalog
from recserve.ids import keys_of
from recserve.ingest.event_row import EventRow
from recserve.profiles import EVENT_TYPES, Events

__all__ = ["CheckedEvents", "check_events", "outcome_of"]

_TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}


@dataclass(frozen=True)
class CheckedEvents:
    """The columns of a checked batch that its rows do not hold as they are."""

    rows: Sequence[EventRow]
    types: npt.NDArray[np.uint8]
    watch_ms: npt.NDArray[np.uint32]  # 0 where absent
    duration_ms: npt.NDArray[np.uint32]  # the catalogue's where a watch left it out

    def events(self, now_ms: int) -> Events:
        """The batch as the store applies it; an event without ``ts`` happened at ``now_ms``."""
        rows = self.rows
        return Events.of(
            users=keys_of(r.user_id for r in rows),
            items=keys_of(r.item_id for r in rows),
            types=self.types,
            watch_ms=self.watch_ms,
            duration_ms=self.duration_ms,
            ts_ms=[now_ms if r.ts is None else r.ts for r in rows],
            seq=np.ones(len(rows), dtype=np.uint64),  # replaced by log-ordered seqs in the store
            event_keys=keys_of(r.event_id for r in rows),
        )


def check_events(
    rows: Sequence[EventRow], catalog: Catalog, latest_ms: int, max_clock_skew_s: float
) -> CheckedEvents:
    """ValueError naming the first bad event: a ts past ``latest_ms`` (the server's clock plus
    the skew allowed), a watch without watch_ms, or without duration_ms of an item the
    catalogue does not hold."""
    n = len(rows)
    types = np.empty(n, dtype=np.uint8)
    watch = np.zeros(n, dtype=np.uint32)
    duration = np.zeros(n, dtype=np.uint32)
    for i, row in enumerate(rows):
        types[i] = _TYPE_CODES[row.type]
        if row.ts is not None and row.ts > latest_ms:  # it would be "now" on the events' clock
            raise ValueError(
                f"events[{i}].ts: more than {max_clock_skew_s:g} s ahead of "
                f"the server's clock ({latest_ms} ms with the skew allowed)"
            )
        if row.watch_ms is not None:
            watch[i] = row.watch_ms
        if row.duration_ms is not None:
            duration[i] = row.duration_ms
        elif row.type == "watch":
            item = catalog.get(row.item_id)
            if item is None:
                raise ValueError(
                    f"events[{i}].duration_ms: required for a watch of an item not in the "
                    f"catalogue ({row.item_id!r})"
                )
            duration[i] = item.duration_ms
        if row.type == "watch" and row.watch_ms is None:
            raise ValueError(f"events[{i}].watch_ms: required for a watch")
    return CheckedEvents(rows, types, watch, duration)


def outcome_of(
    event_type: str, watch_ms: int, duration_ms: int, completion_threshold: float
) -> str | None:
    """What an event counts as for its user's experiment arms: an impression, a like, a
    complete watch (at least ``completion_threshold`` of the duration), or nothing."""
    if event_type in ("impression", "like"):
        return event_type
    if event_type == "watch" and duration_ms and watch_ms >= completion_threshold * duration_ms:
        return "complete"
    return None
