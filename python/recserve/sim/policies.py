"""What serves the simulated users: recserve itself (in process, the real engine), the same
engine with profile updates frozen for the session (what a daily batch system gives), and the
baselines: popularity, random, and the oracle that knows every user's hidden taste.

Every policy answers ``page(user, now, n)`` (the n items to show, in order) and hears
``observe(...)`` (what the user did with each, as it happens); ``history`` is what happened
before the session, which every policy may use. The user swipes through a page before the next
is asked for, so a page of 10 cannot adapt inside itself.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from recserve.evaluate.peers import CoOccurrence
from recserve.sim.backends import Backend
from recserve.sim.catalog import SimCatalog
from recserve.sim.users import Reaction, SimUser

__all__ = [
    "EnginePolicy",
    "ItemToItemPolicy",
    "OraclePolicy",
    "Policy",
    "PopularityPolicy",
    "RandomPolicy",
]


class Policy(Protocol):
    name: str

    def add_items(self, indices: npt.NDArray[np.int64], now_ms: int, *, new: bool) -> None: ...
    def history(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None: ...
    def page(self, user: SimUser, now_ms: int, n: int) -> list[int]: ...
    def observe(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None: ...


class _Seen:
    def __init__(self) -> None:
        self.seen: dict[str, set[int]] = defaultdict(set)

    def unseen(self, user: SimUser, live: int) -> npt.NDArray[np.int64]:
        mask = np.ones(live, dtype=bool)
        mask[list(self.seen[user.user_id])] = False
        return np.flatnonzero(mask)


def _top(candidates: npt.NDArray[np.int64], score: npt.NDArray[Any], n: int) -> list[int]:
    """The n candidates of highest score, best first; ties go to the lower index (as argmax)."""
    order = np.argsort(-score, kind="stable")[:n]
    return [int(i) for i in candidates[order]]


class EnginePolicy:
    """A recserve engine behind a ``Backend`` (HTTP or in process), one item per swipe.
    ``frozen``: the session's events are not sent (the profile stays what the history made
    it: a daily batch system), and the served-items memory still keeps pages from repeating.

    ``impression_events``: False drops the ``impression`` events of every swipe, as a client
    that posts only what the user did would (its exposure comes from those events alone).

    It records the client-side latency of every feed and events request and, for new items,
    how often each was served."""

    def __init__(
        self,
        name: str,
        catalog: SimCatalog,
        backend: Backend,
        *,
        frozen: bool,
        impression_events: bool = True,
    ) -> None:
        self.name = name
        self.catalog = catalog
        self.backend = backend
        self.frozen = frozen
        self.impression_events = impression_events
        self.posted = 0  # events sent to the engine
        self.served_new: dict[int, int] = defaultdict(int)  # new item -> impressions
        self.served_total = 0  # impressions of every item: the new items' share is of these
        # per source that filled a slot (ann, explore, trending, cold_start): completions
        self.by_source: dict[str, list[float]] = defaultdict(list)
        self._source: dict[tuple[str, int], str] = {}  # (user, item) served -> its source
        self.latency_s: dict[str, list[float]] = {"feed": [], "events": []}
        self.stage_s: dict[str, list[float]] = defaultdict(list)  # server-side, per feed stage
        self.model_versions: list[str] = []  # the model that ranked each page, in order

    def add_items(self, indices: npt.NDArray[np.int64], now_ms: int, *, new: bool) -> None:
        for start in range(0, len(indices), 1_000):
            body = self.catalog.items(indices[start : start + 1_000], created_at=now_ms)
            self.backend.upsert_items({"items": body, "amplify": new})

    def _post(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        events = []
        for kind, watch_ms in reaction.events:
            if kind == "impression" and not self.impression_events:
                continue
            self.posted += 1
            event: dict[str, Any] = {
                "event_id": f"e{self.posted}",
                "user_id": user.user_id,
                "item_id": self.catalog.id_of(item),
                "type": kind,
                "ts": ts_ms,
            }
            if watch_ms is not None:
                event["watch_ms"] = watch_ms
            events.append(event)
        started = time.perf_counter()
        self.backend.post_events({"events": events})
        self.latency_s["events"].append(time.perf_counter() - started)

    def history(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self._post(user, item, reaction, ts_ms)

    def page(self, user: SimUser, now_ms: int, n: int) -> list[int]:
        started = time.perf_counter()
        page, stages = self.backend.feed(user.user_id, n)
        self.latency_s["feed"].append(time.perf_counter() - started)
        for stage, seconds in stages.items():
            self.stage_s[stage].append(seconds)
        self.model_versions.append(str(page.get("model_version")))
        items = []
        for served in page["items"]:
            item = int(served["item_id"][1:])
            self._source[(user.user_id, item)] = served["source"]
            if self.catalog.created_step[item] >= 0:
                self.served_new[item] += 1
            items.append(item)
        self.served_total += len(items)
        return items

    def observe(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.by_source[self._source.pop((user.user_id, item))].append(reaction.completion)
        if not self.frozen:
            self._post(user, item, reaction, ts_ms)

    def tier_states(self, items: npt.NDArray[np.int64]) -> list[str]:
        """Each item's amplification state now (``testing``, ``promoted``, ``stopped``,
        ``graduated``) with its tier: ``promoted:1``."""
        out = []
        for i in items.tolist():
            amp = self.backend.item(self.catalog.id_of(i))["amplification"]
            out.append(f"{amp['state']}:{amp['tier']}")
        return out

    def close(self) -> None:
        self.backend.close()


class PopularityPolicy(_Seen):
    """The unseen item most completed so far, by anyone (a global chart)."""

    name = "popularity"

    def __init__(self, catalog: SimCatalog) -> None:
        super().__init__()
        self.catalog = catalog
        self.completions = np.zeros(len(catalog))

    def add_items(self, indices: npt.NDArray[np.int64], now_ms: int, *, new: bool) -> None:
        self.completions = np.concatenate([self.completions, np.zeros(len(indices))])

    def history(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.observe(user, item, reaction, ts_ms)

    def page(self, user: SimUser, now_ms: int, n: int) -> list[int]:
        unseen = self.unseen(user, len(self.completions))
        return _top(unseen, self.completions[unseen], n)

    def observe(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.seen[user.user_id].add(item)
        self.completions[item] += reaction.completion


class RandomPolicy(_Seen):
    name = "random"

    def __init__(self, catalog: SimCatalog, seed: int) -> None:
        super().__init__()
        self.catalog = catalog
        self.rng = np.random.default_rng(seed)

    def add_items(self, indices: npt.NDArray[np.int64], now_ms: int, *, new: bool) -> None:
        pass

    def history(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.seen[user.user_id].add(item)

    def page(self, user: SimUser, now_ms: int, n: int) -> list[int]:
        unseen = self.unseen(user, len(self.catalog))
        items: list[int] = []
        for _ in range(min(n, len(unseen))):  # one draw per slot: a page of 1 as it always was
            items.append(int(self.rng.choice(unseen)))
            unseen = unseen[unseen != items[-1]]
        return items

    def observe(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.seen[user.user_id].add(item)


class OraclePolicy(RandomPolicy):
    """The best unseen item by the user's true expected completion, right now."""

    name = "oracle"

    def __init__(self, catalog: SimCatalog) -> None:
        super().__init__(catalog, seed=0)

    def page(self, user: SimUser, now_ms: int, n: int) -> list[int]:
        """The n best right now: the mood drifts while the user swipes through them."""
        unseen = self.unseen(user, len(self.catalog))
        return _top(unseen, user.expected_completion(self.catalog, unseen), n)


def engaged(reaction: Reaction) -> bool:
    """What the item-to-item policy learns from: a completion (watched > 90 %) or a like."""
    return reaction.completion >= 1.0 or any(kind == "like" for kind, _ in reaction.events)


class ItemToItemPolicy(_Seen):
    """Item-to-item co-occurrence, updated online (``recserve.evaluate.peers.CoOccurrence``,
    cosine): items co-engaged with what this user engaged with, the most recent weighing most
    (``decay`` per step back). Everyone's history and every swipe feed the index as they
    happen. Unseen items without a co-occurrence score (and every item for a user with no
    engagement yet) come in popularity order, as ``PopularityPolicy`` ranks them."""

    name = "item2item"

    def __init__(self, catalog: SimCatalog, *, decay: float = 0.8, window: int | None = None):
        super().__init__()
        self.catalog = catalog
        self.decay, self.window = decay, window
        self.completions = np.zeros(len(catalog))
        self.log: list[tuple[str, int]] = []  # (user, item) engagements, in order
        self.index = CoOccurrence(len(catalog), decay=decay, window=window)

    def add_items(self, indices: npt.NDArray[np.int64], now_ms: int, *, new: bool) -> None:
        self.completions = np.concatenate([self.completions, np.zeros(len(indices))])
        if len(self.completions) > self.index.n_items:  # a bigger index, the same contents
            self.index = CoOccurrence(
                max(2 * self.index.n_items, len(self.completions)),
                decay=self.decay,
                window=self.window,
            )
            for user_id, item in self.log:
                self.index.engaged(user_id, item)

    def history(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.observe(user, item, reaction, ts_ms)

    def page(self, user: SimUser, now_ms: int, n: int) -> list[int]:
        live = len(self.completions)
        unseen = self.unseen(user, live)
        related = self.index.scores(user.user_id)[:live][unseen]
        order = np.lexsort((-self.completions[unseen], -related))[:n]  # last key first
        return [int(i) for i in unseen[order]]

    def observe(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.seen[user.user_id].add(item)
        self.completions[item] += reaction.completion
        if engaged(reaction):
            self.log.append((user.user_id, item))
            self.index.engaged(user.user_id, item)
