"""The next page of each user who just acted, computed in the background so their next feed
request only has to take it.

A page carries the stamp of what it was computed from (the user's state, the takedowns, the
model: the engine says what goes in it); it is served only while the stamp is still the
user's, else the request computes its own.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

from recserve.feed import FeedResult
from recserve.ids import key_of

__all__ = ["Page", "Precomputer", "Stamp"]

log = logging.getLogger(__name__)

Stamp = tuple[int, ...]
MAX_PAGES = 100_000  # pages waiting; the oldest go first


class Page(NamedTuple):
    stamp: Stamp
    result: FeedResult
    label: str | None  # the experiment arms it was computed for


class Precomputer:
    """Computes a user's next page with ``compute(user_id)`` (None: no page) on a thread of
    its own, one user at a time, each user queued once however many events they send."""

    def __init__(self, compute: Callable[[str], Page | None]) -> None:
        self._compute = compute
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._pages: dict[int, Page] = {}
        self._stop = False
        self._busy = 0
        self._thread = threading.Thread(target=self._run, name="recserve-precompute", daemon=True)
        self._thread.start()

    def enqueue(self, users: Sequence[str]) -> None:
        with self._cond:
            for user in users:
                if user not in self._queued:
                    self._queued.add(user)
                    self._queue.append(user)
            self._cond.notify()

    def take(
        self, user_key: int, stamp_now: Callable[[int], Stamp]
    ) -> tuple[FeedResult, str | None] | None:
        """The user's waiting page if ``stamp_now(user_key)`` still matches its stamp."""
        with self._cond:
            page = self._pages.pop(user_key, None)
        if page is None or page.stamp != stamp_now(user_key):
            return None
        return page.result, page.label

    def pages(self) -> tuple[int, int]:
        """(pages waiting to be served, users waiting for a page or being computed)."""
        with self._cond:
            return len(self._pages), len(self._queue) + self._busy

    def forget(self, user_id: str) -> None:
        with self._cond:
            self._pages.pop(key_of(user_id), None)
            if user_id in self._queued:
                self._queued.discard(user_id)
                self._queue.remove(user_id)

    def drop_containing(self, key: int) -> None:
        """Drops the pages that hold the item ``key`` (taken down)."""
        with self._cond:
            for user in [u for u, page in self._pages.items() if _holds(page, key)]:
                del self._pages[user]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                user = self._queue.popleft()
                self._queued.discard(user)
                self._busy = 1
            try:
                page = self._compute(user)
            except Exception:  # a failed precompute only means the request computes inline
                log.exception("precomputing the feed of %r failed", user)
                page = None
            with self._cond:
                self._busy = 0
                if page is not None:
                    self._pages[key_of(user)] = page
                    while len(self._pages) > MAX_PAGES:
                        self._pages.pop(next(iter(self._pages)))

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)


def _holds(page: Page, key: int) -> bool:
    return any(served.key == key for served in page.result.items)
