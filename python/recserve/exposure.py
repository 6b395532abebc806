"""What was served and whether it was viewed: per item, ``served`` and ``served_not_viewed``.

Every item a feed page returns to a user is served once (one per page appearance). A served
item that gets no event from that user within ``view_timeout_ms`` of its serve time is
served-not-viewed: its page position was never reached. (Its ``impressions`` counter, kept by
the profiles, counts the users who did meet it.)

    ledger = ExposureLedger(view_timeout_ms=300_000, max_pending=1_000_000)
    ledger.record(user_key, page_keys, now_ms, seen)  # when the page goes out: a few µs
    ledger.resolve(now_ms, profiles.seen)            # after each event batch
    ledger.counts(item_key)                          # (served, served_not_viewed)

The pending pages wait in serve-time order; ``resolve`` settles those whose window has passed,
asking ``seen(user_key, keys)`` (``Profiles.seen``: the user has an event on the item) which of
their items were viewed. When more than ``max_pending`` items wait, the oldest pages settle at
once, early. Counters live in memory only (serving is a read, not in the write-ahead log) and
only for items that were served; ``drop_item`` forgets one (a takedown).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["ExposureCounts", "ExposureLedger", "Seen"]

#: ``seen(user_key, item_keys)``: per item, whether the user has an event on it.
Seen = Callable[[int, npt.NDArray[np.uint64]], npt.NDArray[np.bool_]]

MAX_TIMEOUT_MS = 7 * 86_400_000  # a week: a longer window is a mistake in units
MAX_PENDING = 100_000_000


class ExposureCounts(NamedTuple):
    served: int
    served_not_viewed: int


class _Page(NamedTuple):
    ts_ms: int
    user: int
    keys: npt.NDArray[np.uint64]


class ExposureLedger:
    """Thread-safe: pages are recorded from feed threads while batches resolve."""

    def __init__(self, view_timeout_ms: int, max_pending: int) -> None:
        if not 1 <= view_timeout_ms <= MAX_TIMEOUT_MS:
            raise ValueError(
                f"view_timeout_ms must be in 1..{MAX_TIMEOUT_MS}, got {view_timeout_ms}"
            )
        if not 1 <= max_pending <= MAX_PENDING:
            raise ValueError(f"max_pending must be in 1..{MAX_PENDING}, got {max_pending}")
        self.view_timeout_ms = int(view_timeout_ms)
        self.max_pending = int(max_pending)
        self._lock = threading.Lock()
        self._pages: deque[_Page] = deque()
        self._pending = 0  # items in self._pages
        # item key -> [served, served_not_viewed]; only items served since the start
        self._counts: dict[int, list[int]] = {}
        self.early = 0  # pages settled before their window passed (the bound was hit)

    def record(self, user_key: int, keys: Any, now_ms: int, seen: Seen) -> None:
        """One page served to the user at ``now_ms``. Past ``max_pending``, the oldest pages
        settle now, early, with ``seen``."""
        page = np.asarray(keys, dtype=np.uint64).reshape(-1)
        if not page.size:
            return
        overflow: list[_Page] = []
        with self._lock:
            counts = self._counts
            for key in page.tolist():
                entry = counts.get(key)
                if entry is None:
                    counts[key] = [1, 0]
                else:
                    entry[0] += 1
            self._pages.append(_Page(int(now_ms), int(user_key), page))
            self._pending += page.size
            while self._pending > self.max_pending and len(self._pages) > 1:
                overflow.append(self._take_oldest())
            self.early += len(overflow)
        if overflow:
            self._settle(overflow, seen)

    def resolve(self, now_ms: int, seen: Seen) -> int:
        """Settles the pages served at least ``view_timeout_ms`` before ``now_ms``; returns
        how many items were settled."""
        due: list[_Page] = []
        limit = int(now_ms) - self.view_timeout_ms
        with self._lock:
            while self._pages and self._pages[0].ts_ms <= limit:
                due.append(self._take_oldest())
        self._settle(due, seen)
        return sum(int(p.keys.size) for p in due)

    def counts(self, item_key: int) -> ExposureCounts:
        with self._lock:
            entry = self._counts.get(int(item_key))
            return ExposureCounts(0, 0) if entry is None else ExposureCounts(*entry)

    def pending(self) -> int:
        """Items served whose window is still open."""
        with self._lock:
            return self._pending

    def items(self) -> int:
        """Items with counters."""
        with self._lock:
            return len(self._counts)

    def drop_item(self, item_key: int) -> None:
        """Forgets the item's counters (taken down); its pending entries settle as nothing."""
        with self._lock:
            self._counts.pop(int(item_key), None)

    def forget_user(self, user_key: int) -> None:
        """Drops the user's pending pages (an erasure); the counts they made stay, anonymous."""
        with self._lock:
            kept = deque(p for p in self._pages if p.user != int(user_key))
            self._pending = sum(int(p.keys.size) for p in kept)
            self._pages = kept

    def _take_oldest(self) -> _Page:
        page = self._pages.popleft()
        self._pending -= page.keys.size
        return page

    def _settle(self, pages: list[_Page], seen: Seen) -> None:
        # The seen-set reads outside the lock: feed threads keep recording meanwhile.
        missed = [page.keys[~seen(page.user, page.keys)] for page in pages]
        with self._lock:
            for keys in missed:
                for key in keys.tolist():
                    entry = self._counts.get(key)
                    if entry is not None:  # None: taken down since
                        entry[1] += 1
