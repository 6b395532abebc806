"""The state the engine keeps beside the profiles: catalogue, amplification and user
preferences, the embedded store's extension (``recserve.store.embedded.Extension``).

Its changes are records of the store's log (``catalogue_records``), applied here live and in
replay alike; the catalogue, amplification state and index travel in files of their own with
each snapshot (``snapshot_files``), the preferences in its state file. Amplification is judged
after each events record is applied, live and in replay alike, so a restart reaches the same
tiers.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recserve._core import CorruptFileError
from recserve.amplify import Amplifier, AmplifyConfig
from recserve.catalog import Catalog, Item
from recserve.feed import UserPrefs
from recserve.profiles import Events, Profiles
from recserve.retrieve import Trending
from recserve.service import catalogue_snapshots, snapshot_files
from recserve.service.catalogue_records import (
    CATALOGUE_KINDS,
    ItemsRecord,
    ReviewRecord,
    StreamedRecord,
    TakeDownRecord,
    UserPrefsRecord,
    decode,
)
from recserve.service.training_catalog import TrainingCatalog
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
        self.stream_seq: str | None = None  # the last catalogue stream record applied
        #: Keeps the impression log's catalog.npz (the engine sets it while the log is on):
        #: told of every change, live and in replay alike, and handed what a takedown removes.
        self.training: TrainingCatalog | None = None

    def state(self) -> Any:
        # The catalogue, amplification and index travel in files of their own: image().
        return {"users": self.users.state(), "stream_seq": self.stream_seq}

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
            if loaded.users is not None:  # None: a catalogue snapshot, which has no users
                self.users.restore(loaded.users)
            self.stream_seq = loaded.stream_seq
            return
        self.catalog.restore(state["catalog"], vectors_of)  # a snapshot from before the files
        self.amplifier = Amplifier.from_dict(state["amplifier"], self.amplifier.config)
        self.users.restore(state["users"])
        self.stream_seq = state.get("stream_seq")

    def bootstrap(self, files: Mapping[str, Path], seq: str, profiles: Profiles) -> list[str]:
        """Loads an empty state from a catalogue snapshot's files (``catalogue_snapshots``): the
        items' vectors into ``profiles``, the catalogue, amplification and index; the stream is
        read on after ``seq``. Returns the problems met (a rebuilt index). CorruptFileError if a
        file is damaged: nothing is loaded then."""
        keys, vectors = catalogue_snapshots.read_vectors(files["vectors"], self.catalog.dims)
        columns = Catalog.read(files["catalog"]), Amplifier.read(files["amplifier"])
        index, problems = snapshot_files.load_index(files["index"], self.catalog)
        profiles.set_items(keys, vectors)
        try:
            self.restore(snapshot_files.LoadedState(None, *columns, index, seq), profiles)
        except CorruptFileError:
            profiles.remove_items(keys)  # the next snapshot tried meets an empty state
            raise
        return problems

    def check_index(self, store: EmbeddedStore) -> None:
        """After recovery: the index holds the live catalogue, or is rebuilt (reported)."""
        problem = snapshot_files.check_index(
            self.catalog, lambda keys: store.profiles.items(keys).vectors
        )
        if problem is not None:  # logged with the others by the caller
            store.recovery.problems.append(problem)
            store.recovery.files["index"] = "rebuilt"

    def apply_record(self, kind: int, body: bytes, profiles: Profiles) -> None:
        self._apply(decode(kind, body, self.catalog.dims), profiles)

    def _apply(self, record: Any, profiles: Profiles) -> None:
        if isinstance(record, StreamedRecord):
            self.apply_streamed(record.seq, record.kind, record.body, profiles)
        elif isinstance(record, ItemsRecord):
            self.upsert(record.items, record.vectors, record.ts_ms, profiles, record.amplify)
        elif isinstance(record, TakeDownRecord):
            for key in record.keys:
                self.take_down(key, profiles)
        elif isinstance(record, UserPrefsRecord):
            self.users.set(record.user, record.interests, record.blocked)
        elif isinstance(record, ReviewRecord):
            self.review(record.key, record.decision, record.reason, record.ts_ms, profiles)

    # ---- records from the catalogue stream (recserve.service.catalogue_stream) ---------------
    def check_streamed(self, kind: int, body: bytes, profiles: Profiles) -> str | None:
        """Why a record read from the catalogue stream cannot be applied, or None. Every replica
        reaches the same verdict: it reads only the catalogue, which the stream alone changes,
        and the rejections, which travel on it too."""
        if kind not in CATALOGUE_KINDS:
            return f"kind {kind} is not a catalogue record"
        try:
            record = decode(kind, body, self.catalog.dims)
            if isinstance(record, ItemsRecord):
                keys, _ = self.catalog.check(record.items, record.vectors)
                if any(self.amplifier.state_of(k) == "rejected" for k in keys.tolist()):
                    return "it re-posts an item rejected by review"
                added = int((~profiles.items(keys).found).sum())
                capacity = profiles.config.item_capacity
                if int(profiles.stats()["items"]) + added > capacity:
                    return f"its {added} new items would pass item_capacity ({capacity})"
            elif isinstance(record, ReviewRecord) and record.decision not in ("approve", "reject"):
                return f"unknown review decision {record.decision!r}"
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error) as error:
            return f"it does not decode: {type(error).__name__}: {error}"
        return None

    def apply_streamed(self, seq: str, kind: int, body: bytes, profiles: Profiles) -> None:
        """A record of the catalogue stream, checked by ``check_streamed`` when it was read."""
        record = decode(kind, body, self.catalog.dims)
        if (
            isinstance(record, ReviewRecord)
            and record.decision == "reject"
            and self.amplifier.state_of(record.key) != "pending_review"
        ):
            # Decided where the item was pending; here judging saw other events.
            transition = self.amplifier.reject(record.key, record.reason, record.ts_ms)
            if transition is not None:
                self.take_down(record.key, profiles, keep_history=True)
                if self.live:
                    self.transitions.append(transition.state)
        else:
            self._apply(record, profiles)
        self.stream_seq = seq

    def upsert(
        self, items: list[Item], vectors: Any, ts_ms: int, profiles: Profiles, amplify: bool
    ) -> None:
        keys = np.array([item.key for item in items], dtype=np.uint64)
        profiles.set_items(keys, vectors)
        new = self.catalog.upsert(items, vectors)
        if self.training is not None:
            self.training.changed()
        if len(new):
            counters = profiles.items(new).stats
            for i, key in enumerate(new.tolist()):
                self.amplifier.enter(
                    key, ts_ms, {k: int(v[i]) for k, v in counters.items()}, established=not amplify
                )

    def take_down(self, key: int, profiles: Profiles, *, keep_history: bool = False) -> None:
        """The item leaves the catalogue, the index and every pool; its amplification entry
        goes too, or stays (``keep_history``: a rejection, which the history shows)."""
        item = self.catalog.by_key(key)
        if item is not None:
            if self.training is not None:  # its row stays in the training catalogue
                vector = profiles.items([key]).vectors[0]
                self.training.retire(key, vector, item.created_at / 1000.0)
            self.catalog.take_down(item.id)
        if not keep_history:
            self.amplifier.remove(key)
        self.trending.remove(key)
        profiles.remove_items([key])  # its row no longer counts against item_capacity

    def review(self, key: int, decision: str, reason: str, ts_ms: int, profiles: Profiles) -> bool:
        """An admin's decision on an item pending review (``Amplifier.review``); a rejection
        takes the item down. False, and nothing changes, if the item is not pending (a
        second decision on it, or a replay under a configuration without review)."""
        if self.amplifier.state_of(key) != "pending_review":
            return False
        stats = profiles.items([key]).stats
        transition = self.amplifier.review(
            key, decision, reason, ts_ms, {name: v[0] for name, v in stats.items()}
        )
        if decision == "reject":
            self.take_down(key, profiles, keep_history=True)
        if self.live:
            self.transitions.append(transition.state)
        return True

    def review_queue(self, profiles: Profiles, limit: int) -> list[dict[str, Any]]:
        """Items pending review, most-engaged (most users met them) first, at most ``limit``."""
        pending = self.amplifier.pending_review()
        if not pending:
            return []
        keys = np.array([key for key, _ in pending], dtype=np.uint64)
        stats = profiles.items(keys).stats
        order = np.lexsort((keys, -stats["completions"].astype(np.int64),
                            -stats["impressions"].astype(np.int64)))[:limit]  # fmt: skip
        out = []
        for i in order.tolist():
            key, since_ms = pending[i]
            item = self.catalog.by_key(key)
            history = (self.amplifier.state(key) or {}).get("history", [])
            out.append({
                "id": item.id if item is not None else str(key),
                "tier": history[-1]["tier"] if history else 0,
                "pending_since_ms": since_ms,
                "impressions": int(stats["impressions"][i]),
                "completions": int(stats["completions"][i]),
                "likes": int(stats["likes"][i]),
                "reason": history[-1]["reason"] if history else "",
                "rates": history[-1]["rates"] if history else {},
            })  # fmt: skip
        return out

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
        now_ms = int(events.ts_ms.max())
        if self.amplifier.needs_refit(now_ms):  # in event time: a replay refits alike
            self.amplifier.refit(profiles.items(self.amplifier.curve_sample()).stats, now_ms)
        stats = profiles.items(items).stats
        made = self.amplifier.observe(items, stats, now_ms)
        if self.live:
            self.transitions.extend(t.state for _, t in made)

    def drain_transitions(self) -> list[str]:
        """The amplification transitions made live since the last call."""
        made, self.transitions = self.transitions, []
        return made
