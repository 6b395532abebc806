"""The state the engine keeps beside the profiles: catalogue, amplification and user
preferences, the embedded store's extension (``recserve.store.embedded.Extension``).

Its changes are records of the store's log (``catalogue_records``), applied here live and in
replay alike; the catalogue, amplification state and index travel in files of their own with
each snapshot (``snapshot_files``), the preferences in its state file. Amplification is judged
after each events record is applied, live and in replay alike, so a restart reaches the same
tiers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recserve.amplify import Amplifier, AmplifyConfig
from recserve.catalog import Catalog, Item
from recserve.feed import UserPrefs
from recserve.profiles import Events, Profiles
from recserve.retrieve import Trending
from recserve.service import snapshot_files
from recserve.service.catalogue_records import (
    ItemsRecord,
    TakeDownRecord,
    UserPrefsRecord,
    decode,
)
from recserve.store.embedded import EmbeddedStore, LoadedFiles

__all__ = ["CatalogueState"]


class CatalogueState:
    """Catalogue, amplification and preferences: the store's extension (see the module doc)."""

    def __init__(
        self, dims: int, amplify: AmplifyConfig, trending: Trending, index_threads: int = 0
    ) -> None:
        self.catalog = Catalog(dims, index_threads=index_threads)
        self.amplifier = Amplifier(amplify)
        self.users = UserPrefs()
        self.trending = trending
        self.live = False  # during recovery, transitions are not counted as new
        self.transitions: list[str] = []

    def state(self) -> Any:
        # The catalogue, amplification and index travel in files of their own: image().
        return {"users": self.users.state()}

    def image(self) -> snapshot_files.StateImage:
        return snapshot_files.StateImage(
            self.catalog.image(), self.amplifier.image(), self.catalog.index
        )

    def load(self, state: Any, files: Mapping[str, Path]) -> LoadedFiles:
        return snapshot_files.load(state, files, self.catalog)

    def restore(self, state: Any, profiles: Profiles) -> None:
        if state is None:
            return

        def vectors_of(keys: Any) -> Any:
            return profiles.items(keys).vectors

        if isinstance(state, snapshot_files.LoadedState):
            loaded = state.take()
            with snapshot_files.gc_paused():  # millions of objects, none of them garbage
                self.catalog.restore_columns(loaded.catalog, vectors_of, loaded.index)
                self.amplifier = Amplifier.from_columns(loaded.amplifier, self.amplifier.config)
            self.users.restore(loaded.users)
            return
        self.catalog.restore(state["catalog"], vectors_of)  # a snapshot from before the files
        self.amplifier = Amplifier.from_dict(state["amplifier"], self.amplifier.config)
        self.users.restore(state["users"])

    def check_index(self, store: EmbeddedStore) -> None:
        """After recovery: the index holds the live catalogue, or is rebuilt (reported)."""
        problem = snapshot_files.check_index(
            self.catalog, lambda keys: store.profiles.items(keys).vectors
        )
        if problem is not None:  # logged with the others by the caller
            store.recovery.problems.append(problem)
            store.recovery.files["index"] = "rebuilt"

    def apply_record(self, kind: int, body: bytes, profiles: Profiles) -> None:
        record = decode(kind, body, self.catalog.dims)
        if isinstance(record, ItemsRecord):
            self.upsert(record.items, record.vectors, record.ts_ms, profiles, record.amplify)
        elif isinstance(record, TakeDownRecord):
            for key in record.keys:
                self.take_down(key, profiles)
        elif isinstance(record, UserPrefsRecord):
            self.users.set(record.user, record.interests, record.blocked)

    def upsert(
        self, items: list[Item], vectors: Any, ts_ms: int, profiles: Profiles, amplify: bool
    ) -> None:
        keys = np.array([item.key for item in items], dtype=np.uint64)
        profiles.set_items(keys, vectors)
        new = self.catalog.upsert(items, vectors)
        if len(new):
            counters = profiles.items(new).stats
            for i, key in enumerate(new.tolist()):
                self.amplifier.enter(
                    key, ts_ms, {k: int(v[i]) for k, v in counters.items()}, established=not amplify
                )

    def take_down(self, key: int, profiles: Profiles) -> None:
        item = self.catalog.by_key(key)
        if item is not None:
            self.catalog.take_down(item.id)
        self.amplifier.remove(key)
        self.trending.remove(key)
        profiles.remove_items([key])  # its row no longer counts against item_capacity

    def erase_user(self, user: int) -> None:
        self.users.forget(user)

    def applied_events(self, events: Events, profiles: Profiles) -> None:
        # Only items in an open tier are judged: read the counters of those alone.
        items = np.array(
            [k for k in np.unique(events.items).tolist() if self.amplifier.is_open(k)],
            dtype=np.uint64,
        )
        if not len(items):
            return
        stats = profiles.items(items).stats
        made = self.amplifier.observe(items, stats, int(events.ts_ms.max()))
        if self.live:
            self.transitions.extend(t.state for _, t in made)

    def drain_transitions(self) -> list[str]:
        """The amplification transitions made live since the last call."""
        made, self.transitions = self.transitions, []
        return made
