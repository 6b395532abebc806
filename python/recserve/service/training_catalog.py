"""``data_dir/impressions/catalog.npz``: the items the service's impression log can refer to, so
that a data directory is a training set (``recserve train --data-dir``).

The engine writes it after every snapshot (the periodic ones, on the snapshot thread, and the
last one on close) while the impression log is on. It holds every item the log can name: the
live items with their vectors now (an updated item's newest), and every item taken down since,
with the vector it had then, so that older records still join. The rows of items no longer
live come from the previous file (read once, at the first write) and from the takedowns since
(``retire``).

- ``item``: the 64-bit keys (``recserve.ids.key_of``), stored as ``recserve.train.log``
  stores ids (the int64 view; ``Catalog.keys`` gives them back as the records carry them).
- ``created_at``: the item's ``created_at`` in seconds, exactly what the feed reads for the
  item's age (``Catalog.item_columns``): 0 for an item posted without one, which is the age the
  ranker saw at serve time, so training rows match served ones.

Cheap and off the request path: a takedown hands over the item's vector (``retire``: one dict
entry; recovery replays takedowns too, so a restart after a crash still knows the items taken
down since the last write); a write reads the live vectors in chunks on the snapshot thread, is
skipped when nothing changed since the last one, and replaces the file atomically.

No user data: item keys, vectors and creation times. An erasure rewrites the log's segments and
leaves this file as it is.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from recserve.catalog import Catalog
from recserve.profiles import Profiles
from recserve.train.log import CATALOG_FILE, read_catalog, write_catalog

__all__ = ["TrainingCatalog"]

log = logging.getLogger(__name__)

CHUNK = 65_536  # items whose vectors are read at once


class _Rows(NamedTuple):
    keys: npt.NDArray[np.uint64]
    vectors: npt.NDArray[np.float32]
    created_at: npt.NDArray[np.float64]

    @staticmethod
    def empty(dims: int) -> _Rows:
        return _Rows(
            np.zeros(0, np.uint64), np.zeros((0, dims), np.float32), np.zeros(0, np.float64)
        )

    def take(self, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> _Rows:
        return _Rows(self.keys[rows], self.vectors[rows], self.created_at[rows])


def _merged(parts: list[_Rows]) -> _Rows:
    """One row per key, the last part's where several hold it; sorted by key."""
    keys = np.concatenate([p.keys for p in parts])
    _, first_reversed = np.unique(keys[::-1], return_index=True)
    last = len(keys) - 1 - first_reversed
    return _Rows(
        keys[last],
        np.concatenate([p.vectors for p in parts])[last],
        np.concatenate([p.created_at for p in parts])[last],
    )


class TrainingCatalog:
    """Keeps ``directory/catalog.npz`` current (see the module doc)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / CATALOG_FILE
        self._lock = threading.Lock()  # _changes and _retired, held for moments
        self._write_lock = threading.Lock()  # one write at a time
        self._changes = 0
        self._written: int | None = None  # _changes as of the last write
        # key -> (_changes when retired, vector, created_at s): taken down since the last write
        self._retired: dict[int, tuple[int, npt.NDArray[np.float32], float]] = {}
        self._gone: _Rows | None = None  # items in the file, no longer live; None: not read yet

    def changed(self) -> None:
        """Items were posted or updated: the next write rewrites the file."""
        with self._lock:
            self._changes += 1

    def retire(self, key: int, vector: npt.ArrayLike, created_at_s: float) -> None:
        """The item is being taken down: its row stays in the file (call before its vector
        leaves the profiles)."""
        copy = np.array(vector, dtype=np.float32)
        with self._lock:
            self._changes += 1
            self._retired[int(key)] = (self._changes, copy, float(created_at_s))

    def write(self, catalog: Catalog, profiles: Profiles) -> Path | None:
        """Writes the file if anything changed since the last write (or it is missing); its
        path, or None when there was nothing to do."""
        with self._write_lock:
            with self._lock:
                changes = self._changes
            if changes == self._written and self.path.exists():
                return None
            dims = catalog.dims
            gone = self._gone if self._gone is not None else self._previous(dims)
            live = self._live(catalog, profiles)
            # Read after the live items: one taken down meanwhile (no longer live) is here.
            with self._lock:
                retired = dict(self._retired)
            old = _Rows(
                np.fromiter(retired, np.uint64, len(retired)),
                np.stack([v for _, v, _ in retired.values()])
                if retired
                else np.zeros((0, dims), np.float32),
                np.array([c for _, _, c in retired.values()], dtype=np.float64),
            )
            merged = _merged([gone, old, live])
            write_catalog(self.directory, merged.keys, merged.vectors, merged.created_at)
            self._gone = merged.take(~np.isin(merged.keys, live.keys))
            with self._lock:  # what was written is in _gone now
                for key, (seq, _, _) in retired.items():
                    if self._retired.get(key, (-1,))[0] == seq:
                        del self._retired[key]
            self._written = changes
            return self.path

    def _live(self, catalog: Catalog, profiles: Profiles) -> _Rows:
        keys = np.array(catalog.keys(), dtype=np.uint64)  # a copy: the cached array may change
        n = len(keys)
        vectors = np.zeros((n, catalog.dims), dtype=np.float32)
        present = np.zeros(n, dtype=bool)
        for start in range(0, n, CHUNK):
            state = profiles.items(keys[start : start + CHUNK])
            vectors[start : start + CHUNK] = state.vectors
            present[start : start + CHUNK] = state.has_vector
        live, created_at, _ = catalog.item_columns.lookup(keys)
        rows = _Rows(keys, vectors, np.asarray(created_at, dtype=np.float64))
        return rows.take(np.asarray(live, dtype=bool) & present)  # taken down meanwhile: retired

    def _previous(self, dims: int) -> _Rows:
        """The previous file's rows (a start finds the one the last run wrote); an unreadable
        one is moved aside, and the new file starts from the live items."""
        if not self.path.exists():
            return _Rows.empty(dims)
        try:
            previous = read_catalog(self.directory)
            if previous.dims != dims:
                raise ValueError(f"its vectors have {previous.dims} dims, the service's {dims}")
        except (OSError, ValueError) as error:
            aside = self.path.with_name(CATALOG_FILE + ".unreadable")
            log.error("%s: %s; moved to %s, a new one starts", self.path, error, aside.name)
            self.path.replace(aside)
            return _Rows.empty(dims)
        return _Rows(previous.keys.copy(), previous.vector, previous.created_at)
