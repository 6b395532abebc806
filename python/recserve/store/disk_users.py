"""Users that no longer fit in memory: their byte images in an SQLite database.

    data_dir/users.sqlite   a row per user and eviction: key, lsn, vectors, state

The images are the ones the DynamoDB store keeps (``Profiles.export_users``), so the embedded
mode is what the scale-out mode is: a bounded memory table over a durable user store.

Why SQLite: it ships with Python (no dependency, nothing to install), survives a killed process
in WAL mode, reads a key in microseconds, and ``secure_delete`` overwrites an erased user's
bytes instead of leaving them in free pages. LMDB would read faster but needs a binding from
PyPI and a map size chosen up front.

Each image is tagged with the lsn of the last log record it includes, and a read asks for the
newest image at or before an lsn: replay after a snapshot then meets each user as they were at
that point of the log, not as a later eviction left them (whose events replay would take for
redeliveries, and so never count for their items). ``prune(lsn)`` drops the images that no
replay from a snapshot at or after lsn can ask for.

Writes are not fsynced one by one: the store's WAL still holds every event of an evicted user
until the next snapshot, which calls ``sync()`` before it lets those WAL segments go.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["DiskUsers"]

_SIGN = 1 << 63  # SQLite integers are signed 64-bit; keys are unsigned


def _signed(key: int) -> int:
    return key - (1 << 64) if key >= _SIGN else key


def _unsigned(key: int) -> int:
    return key + (1 << 64) if key < 0 else key


class DiskUsers:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # One connection shared by the threads that apply and read; calls are serialised here.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS users (key INTEGER NOT NULL, lsn INTEGER NOT NULL, "
                "vectors BLOB NOT NULL, state BLOB NOT NULL, PRIMARY KEY (key, lsn)) "
                "WITHOUT ROWID"
            )

    def put(self, keys: Sequence[int], images: Sequence[tuple[bytes, bytes]], lsn: int) -> None:
        """Stores each user's image as of ``lsn`` (one transaction)."""
        if not len(keys):
            return
        rows = [(_signed(int(k)), lsn, v, s) for k, (v, s) in zip(keys, images, strict=True)]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO users (key, lsn, vectors, state) VALUES (?, ?, ?, ?)",
                rows,
            )
            self._db.execute("COMMIT")

    def get(self, keys: Iterable[int], lsn: int) -> dict[int, tuple[bytes, bytes]]:
        """Each key's newest image as of ``lsn`` or before, for those that have one."""
        wanted = [_signed(int(k)) for k in keys]
        found: dict[int, tuple[bytes, bytes]] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):  # SQLite's bound on parameters
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, vectors, state in self._db.execute(
                    f"SELECT key, vectors, state FROM users WHERE key IN ({marks}) AND lsn <= ? "
                    "ORDER BY key, lsn",
                    [*chunk, lsn],
                ):
                    found[_unsigned(key)] = (bytes(vectors), bytes(state))  # the newest last
        return found

    def holds_any(self, keys: Iterable[int]) -> bool:
        """Whether any of the keys has an image (a cheap check before a read asks for it)."""
        wanted = [_signed(int(k)) for k in keys]
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT 1 FROM users WHERE key IN ({marks}) LIMIT 1"
                if self._db.execute(query, chunk).fetchone() is not None:
                    return True
        return False

    def prune(self, lsn: int) -> None:
        """Drops each user's images older than their newest one as of ``lsn``."""
        with self._lock:
            self._db.execute(
                "DELETE FROM users WHERE lsn < (SELECT MAX(u.lsn) FROM users AS u "
                "WHERE u.key = users.key AND u.lsn <= ?)",
                (lsn,),
            )

    def delete(self, key: int) -> bool:
        """Removes every image of a user (their bytes overwritten); whether there was one."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM users WHERE key = ?", (_signed(int(key)),))
            return cursor.rowcount > 0

    def count(self) -> int:
        """Users with at least one image."""
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(DISTINCT key) FROM users").fetchone()
        return int(n)

    def sync(self, *, truncate: bool = False) -> None:
        """Makes every write so far durable: a checkpoint copies the SQLite WAL into the
        database and fsyncs both. ``truncate`` also empties the WAL file (after an erasure,
        so no old page of the erased user is left in it)."""
        mode = "TRUNCATE" if truncate else "FULL"
        with self._lock:
            busy, _, _ = self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        if busy:
            raise OSError(f"{self.path}: the checkpoint could not finish (database busy)")

    def close(self) -> None:
        with self._lock:
            self._db.close()
