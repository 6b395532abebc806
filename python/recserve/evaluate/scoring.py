"""What a replay scores: which events are engagements, where the split falls, which (user,
item) pairs are scored (``plan_of``), and each policy's HR@k and NDCG@k (``Score``); see
``recserve.evaluate.replay``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from recserve.catalog import Item
from recserve.ingest.event_row import EventRow
from recserve.profiles import UpdateRule

__all__ = [
    "ENGAGING_TYPES",
    "Plan",
    "Score",
    "engaged",
    "in_time_order",
    "plan_of",
    "split_time",
]

#: Event types that are an engagement whatever else happened (a completed watch is one too).
ENGAGING_TYPES = frozenset({"like", "share", "comment", "follow", "replay"})


@dataclass
class Score:
    """Hits and NDCG summed over the evaluated engagements of one policy."""

    k: int
    evaluated: int = 0
    hits: int = 0
    ndcg_sum: float = 0.0

    def add(self, page: Sequence[str], item_id: str) -> None:
        self.evaluated += 1
        top = list(page[: self.k])
        if item_id in top:
            self.hits += 1
            self.ndcg_sum += 1.0 / math.log2(top.index(item_id) + 2)

    @property
    def hr(self) -> float:
        return self.hits / self.evaluated if self.evaluated else 0.0

    @property
    def ndcg(self) -> float:
        return self.ndcg_sum / self.evaluated if self.evaluated else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {f"hr@{self.k}": self.hr, f"ndcg@{self.k}": self.ndcg, "hits": self.hits}


def engaged(row: EventRow, duration_ms: int, rule: UpdateRule) -> bool:
    """Whether the event is an engagement (see the module doc); ``duration_ms`` is the item's,
    used when the event has none."""
    if row.type in ENGAGING_TYPES:
        return True
    if row.type != "watch" or row.watch_ms is None:
        return False
    duration = row.duration_ms if row.duration_ms is not None else duration_ms
    return duration > 0 and row.watch_ms >= rule.completion_threshold * duration


@dataclass(frozen=True)
class Plan:
    """A log in time order, its split, and which pairs are scored."""

    rows: Sequence[EventRow]
    ts: list[int]
    first_ms: int
    last_ms: int
    split_ms: int
    engaged_pairs: set[tuple[str, str]]  # (user, item) pairs with an engaging event
    pairs_at: list[int]  # the row of each engaged pair's first event (met), ascending
    after_split: list[int]  # those at or after the split: what is scored


def in_time_order(events: Sequence[EventRow]) -> list[EventRow]:
    """The events sorted by ``ts`` (ties keep their order), as the replay applies them."""
    order = sorted(range(len(events)), key=lambda i: events[i].ts or 0)
    return [events[i] for i in order]


def split_time(rows: Sequence[EventRow], split: float) -> int:
    """The split time (ms) of a log in time order: ``split`` of the way from its first event
    to its last."""
    first_ms, last_ms = int(rows[0].ts or 0), int(rows[-1].ts or 0)
    return first_ms + math.ceil(split * (last_ms - first_ms))


def plan_of(
    rows: Sequence[EventRow], known: dict[str, Item], rule: UpdateRule, split: float
) -> Plan:
    """Which (user, item) pairs are engaged, where each is first met, which are scored."""
    ts = [int(row.ts or 0) for row in rows]
    first_at: dict[tuple[str, str], int] = {}
    engaged_pairs: set[tuple[str, str]] = set()
    for i, row in enumerate(rows):
        pair = (row.user_id, row.item_id)
        first_at.setdefault(pair, i)
        if engaged(row, known[row.item_id].duration_ms, rule):
            engaged_pairs.add(pair)
    pairs_at = sorted(first_at[pair] for pair in engaged_pairs)
    split_ms = split_time(rows, split) if rows else 0
    after_split = [i for i in pairs_at if ts[i] >= split_ms]
    return Plan(
        rows, ts, ts[0] if ts else 0, ts[-1] if ts else 0, split_ms, engaged_pairs, pairs_at,
        after_split,
    )  # fmt: skip
