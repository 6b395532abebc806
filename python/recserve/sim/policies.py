"""What serves the simulated users: recserve itself (in process, the real engine), the same
engine with profile updates frozen for the session (what a daily batch system gives), and the
baselines: popularity, random, and the oracle that knows every user's hidden taste.

Every policy answers ``next(user)`` (the item to show) and hears ``observe(...)`` (what the
user did); ``history`` is what happened before the session, which every policy may use.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from recserve.catalog import Item
from recserve.service.engine import Engine, EventRow
from recserve.service.settings import load_settings
from recserve.sim.catalog import SimCatalog
from recserve.sim.users import Reaction, SimUser

__all__ = ["EnginePolicy", "OraclePolicy", "Policy", "PopularityPolicy", "RandomPolicy"]


class Policy(Protocol):
    name: str

    def add_items(self, indices: npt.NDArray[np.int64], now_ms: int) -> None: ...
    def history(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None: ...
    def next(self, user: SimUser, now_ms: int) -> int: ...
    def observe(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None: ...


class _Seen:
    def __init__(self) -> None:
        self.seen: dict[str, set[int]] = defaultdict(set)

    def unseen(self, user: SimUser, live: int) -> npt.NDArray[np.int64]:
        mask = np.ones(live, dtype=bool)
        mask[list(self.seen[user.user_id])] = False
        return np.flatnonzero(mask)


class EnginePolicy:
    """The real engine, one page of one item per swipe; ``frozen``: the session's events are
    not applied (the profile stays what the history made it), pages are still not repeated."""

    def __init__(
        self, catalog: SimCatalog, *, frozen: bool, data_dir: Path | None = None, **settings: Any
    ) -> None:
        self.name = "frozen" if frozen else "recserve"
        self.catalog = catalog
        self.frozen = frozen
        self._tmp = None if data_dir is not None else tempfile.TemporaryDirectory()
        directory = data_dir if data_dir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.engine = Engine(
            load_settings(
                None,
                data_dir=directory,
                dims=catalog.dims,
                impression_log=False,
                snapshot_interval_s=3600,
                **({"feed": {"precompute": False, "default_n": 1}} | settings),
            )
        )
        self.engine.start()
        self.posted = 0  # events posted to the engine
        self.served_new: dict[int, int] = defaultdict(int)  # new item -> impressions

    def add_items(self, indices: npt.NDArray[np.int64], now_ms: int) -> None:
        c = self.catalog
        items = [
            Item(c.id_of(i), c.creators[i], int(c.durations_ms[i]), tuple(c.tags[i][:8]), now_ms)
            for i in indices.tolist()
        ]
        self.engine.upsert_items(items, c.embeddings[indices])

    def _post(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        rows = []
        for kind, watch_ms in reaction.events:
            self.posted += 1
            rows.append(
                EventRow(
                    event_id=f"e{self.posted}",
                    user_id=user.user_id,
                    item_id=self.catalog.id_of(item),
                    type=kind,
                    watch_ms=watch_ms,
                    duration_ms=int(self.catalog.durations_ms[item]),
                    ts=ts_ms,
                )
            )
        self.engine.post_events(rows)

    def history(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self._post(user, item, reaction, ts_ms)

    def next(self, user: SimUser, now_ms: int) -> int:
        page = self.engine.feed(user.user_id, 1)
        item = int(page["items"][0]["item_id"][1:])
        if self.catalog.created_step[item] > 0:
            self.served_new[item] += 1
        return item

    def observe(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        if not self.frozen:
            self._post(user, item, reaction, ts_ms)

    def close(self) -> None:
        self.engine.close(snapshot=False)
        if self._tmp is not None:
            self._tmp.cleanup()


class PopularityPolicy(_Seen):
    """The unseen item most completed so far, by anyone (a global chart)."""

    name = "popularity"

    def __init__(self, catalog: SimCatalog) -> None:
        super().__init__()
        self.catalog = catalog
        self.completions = np.zeros(len(catalog))

    def add_items(self, indices: npt.NDArray[np.int64], now_ms: int) -> None:
        self.completions = np.concatenate([self.completions, np.zeros(len(indices))])

    def history(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.observe(user, item, reaction, ts_ms)

    def next(self, user: SimUser, now_ms: int) -> int:
        unseen = self.unseen(user, len(self.completions))
        return int(unseen[np.argmax(self.completions[unseen])])

    def observe(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.seen[user.user_id].add(item)
        self.completions[item] += reaction.completion


class RandomPolicy(_Seen):
    name = "random"

    def __init__(self, catalog: SimCatalog, seed: int) -> None:
        super().__init__()
        self.catalog = catalog
        self.rng = np.random.default_rng(seed)

    def add_items(self, indices: npt.NDArray[np.int64], now_ms: int) -> None:
        pass

    def history(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.seen[user.user_id].add(item)

    def next(self, user: SimUser, now_ms: int) -> int:
        return int(self.rng.choice(self.unseen(user, len(self.catalog))))

    def observe(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.seen[user.user_id].add(item)


class OraclePolicy(RandomPolicy):
    """The best unseen item by the user's true expected completion, right now."""

    name = "oracle"

    def __init__(self, catalog: SimCatalog) -> None:
        super().__init__(catalog, seed=0)

    def next(self, user: SimUser, now_ms: int) -> int:
        unseen = self.unseen(user, len(self.catalog))
        return int(unseen[np.argmax(user.expected_completion(self.catalog, unseen))])
