"""Erasures not yet complete on disk: ``data_dir/erasures.json``.

An erased user is gone from memory and from the API at once; their bytes leave the data
directory's older files (snapshots, WAL segments, the impression log) when the engine next
compacts, within ``erasure_delay_s``. Until then their id is listed here, durably, so a restart
in between still finishes the job. The file itself names them only until it is done.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from recserve._files import write_atomic

__all__ = ["PendingErasures"]


class PendingErasures:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._ids: list[str] = json.loads(path.read_text()) if path.exists() else []

    def add(self, user_id: str) -> None:
        """Records the erasure durably (before it is applied)."""
        with self._lock:
            if user_id not in self._ids:
                self._ids.append(user_id)
                self._write()

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._ids)

    def done(self, user_ids: list[str]) -> None:
        """Those erasures are complete on disk."""
        with self._lock:
            finished = set(user_ids)
            self._ids = [u for u in self._ids if u not in finished]
            self._write()

    def _write(self) -> None:
        if self._ids:
            write_atomic(self.path, json.dumps(self._ids).encode())
        else:
            self.path.unlink(missing_ok=True)
