"""The embedded default: profiles in memory, made durable by a WAL and snapshots in a directory.

    data_dir/wal/wal-<lsn>.log            the write-ahead log (recserve.ingest.wal)
    data_dir/snapshots/profiles-<lsn>.snap   full state including every record up to lsn
    data_dir/snapshots/state-<lsn>.json      the extension's state at lsn (with CRC-32C)
    data_dir/snapshots/<role>-<lsn>.<ext>    a FileExtension's own files (e.g. the ANN index)
    data_dir/users.sqlite                 users evicted from memory (recserve.store.disk_users)

An *extension* (the feed service's catalogue, amplification and onboarding state) shares the
log and the snapshots: ``log(kind, body, apply)`` makes its records durable and applies them in
lsn order with the store's own; at open its ``restore`` gets the state stored with the snapshot
and its ``apply_record`` every later record of its kinds (>= ``EXTENSION_KINDS``). A
``FileExtension`` also keeps files of its own with each snapshot (an ``image()`` taken with
applies paused, written after they resume, before the state file that names them); opening
hands them to its ``load``, which may rebuild what a damaged file held (``recovery.files``
says what was loaded and what rebuilt, ``recovery.problems`` why) or refuse the snapshot.

``apply(events)`` checks the batch, appends it to the WAL (durable before it returns: group
commit with concurrent callers) and applies it, in lsn order, before returning: the caller's
next read sees it. ``snapshot()`` writes the state (temporary file, fsync, rename), keeps the
newest two snapshots, and drops the WAL segments the older of the two no longer needs.

Bounded memory (``config.user_lru = False``): at most ``config.user_capacity`` users stay in
memory. Past it, the least recently updated go to ``users.sqlite`` (their images, as DynamoDB
keeps them) before they leave, and come back exactly when an event or a read names them
(``ensure_users``); both happen in lsn order with the applies, so replay meets every user in the
state it had. The WAL keeps their events until a snapshot has synced the user file.

``erase_user(key)`` forgets a user everywhere this store keeps them; ``compact()`` then writes
a snapshot that becomes the only one and drops every WAL segment before it, so no file of the
store holds the erased user's bytes any more.

Opening = the newest snapshot that loads + replay of the WAL after it. A damaged snapshot is
reported in ``recovery.problems`` and the previous one is used (the WAL is kept back to it); a
torn WAL tail is cut; damage anywhere else raises ``CorruptFileError``: nothing is skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np

from recserve import _core
from recserve._arrays import as_id_rows, as_ids
from recserve._core import CorruptFileError
from recserve._files import fsync_directory, write_atomic
from recserve.ingest.wal import Record, WriteAheadLog
from recserve.profiles import ApplyResult, Events, Profiles, ProfilesConfig
from recserve.store.disk_users import DiskUsers

__all__ = [
    "EXTENSION_KINDS",
    "EmbeddedStore",
    "Extension",
    "ExtensionImage",
    "FileExtension",
    "LoadedFiles",
    "Recovery",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

EVENTS, SET_ITEMS, REMOVE_ITEMS, ERASE_USER, MARK = 1, 2, 3, 4, 5  # MARK: a no-op
EXTENSION_KINDS = 16  # record kinds from here on belong to the extension
_STATE_MAGIC = b"RSSTATE1"
_STATE_HEADER = struct.Struct("<8sIQ")  # magic, CRC-32C of the body, body length
_EVENT_COLUMNS = (
    ("users", np.uint64),
    ("items", np.uint64),
    ("types", np.uint8),
    ("watch_ms", np.uint32),
    ("duration_ms", np.uint32),
    ("ts_ms", np.int64),
    ("seq", np.uint64),
)
_COUNT = struct.Struct("<IB")
_SEQ_PER_RECORD = 1 << 20
KEEP_SNAPSHOTS = 2


def _encode_events(events: Events) -> bytes:
    parts = [_COUNT.pack(len(events), events.event_keys is not None)]
    parts += [getattr(events, name).tobytes() for name, _ in _EVENT_COLUMNS]
    if events.event_keys is not None:
        parts.append(events.event_keys.tobytes())
    return b"".join(parts)


def _decode_events(body: bytes) -> Events:
    n, has_keys = _COUNT.unpack_from(body)
    offset = _COUNT.size
    columns: dict[str, Any] = {}
    for name, dtype in (*_EVENT_COLUMNS, *((("event_keys", np.uint64),) if has_keys else ())):
        size = n * np.dtype(dtype).itemsize
        columns[name] = np.frombuffer(body, dtype=dtype, count=n, offset=offset)
        offset += size
    if offset != len(body):
        raise CorruptFileError(f"a WAL events record has {len(body)} bytes, expected {offset}")
    return Events(**columns)


def _encode_items(ids: np.ndarray, vectors: np.ndarray | None) -> bytes:
    head = struct.pack("<Q", ids.shape[0])
    return head + ids.tobytes() + (b"" if vectors is None else vectors.tobytes())


def _decode_items(body: bytes, dims: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    (n,) = struct.unpack_from("<Q", body)
    ids = np.frombuffer(body, dtype=np.uint64, count=n, offset=8)
    if dims is None:
        return ids, None
    vectors = np.frombuffer(body, dtype=np.float32, offset=8 + 8 * n).reshape(n, dims)
    return ids, vectors


class Extension(Protocol):
    """State kept beside the profiles, durable through the same log and snapshots."""

    def state(self) -> Any:
        """A JSON-ready image of the state; called with applies paused."""
        ...

    def restore(self, state: Any, profiles: Profiles) -> None:
        """Loads an image ``state()`` returned (None: start empty) beside the profiles of the
        same snapshot."""
        ...

    def apply_record(self, kind: int, body: bytes, profiles: Profiles) -> None:
        """Replays one logged record of the extension's kinds."""
        ...

    def applied_events(self, events: Events, profiles: Profiles) -> None:
        """Called after each batch of events is applied, live and in replay, in lsn order."""
        ...

    def erase_user(self, user: int) -> None:
        """Forgets what the extension keeps of a user (live and in replay, in lsn order)."""
        ...


class ExtensionImage(Protocol):
    """What an extension keeps in files of its own at one lsn: taken with applies paused,
    written after they resume."""

    def write(self, directory: Path, lsn: int) -> dict[str, str]:
        """Writes the files into directory, each whole (temporary file, fsync, rename), named
        ``<role>-<lsn:020d>.<ext>``; returns role -> file name."""
        ...


class LoadedFiles(NamedTuple):
    """What ``FileExtension.load`` found: the state for ``restore``, how each file came back
    (role -> "loaded" or "rebuilt") and why any was not loaded."""

    state: Any
    how: dict[str, str]
    problems: list[str]


@runtime_checkable
class FileExtension(Extension, Protocol):
    """An extension whose bulk state travels in files of its own beside each snapshot (the
    catalogue, the ANN index), so that opening loads it instead of rebuilding it."""

    def image(self) -> ExtensionImage:
        """Called with applies paused, after ``state()``: must be quick (copies, not I/O)."""
        ...

    def load(self, state: Any, files: Mapping[str, Path]) -> LoadedFiles:
        """Reads and checks the files written with the snapshot whose ``state()`` was
        ``state`` (role -> path; none for a snapshot written without them). Raises
        CorruptFileError if one it cannot do without is damaged: the snapshot is not used."""
        ...


def _write_state(path: Path, state: Any) -> None:
    body = json.dumps(state, separators=(",", ":")).encode()
    write_atomic(path, _STATE_HEADER.pack(_STATE_MAGIC, _core.crc32c(body), len(body)) + body)


def _read_state(path: Path) -> Any:
    data = path.read_bytes()
    if len(data) < _STATE_HEADER.size:
        raise CorruptFileError(f"{path} is truncated ({len(data)} bytes)")
    magic, crc, length = _STATE_HEADER.unpack_from(data)
    body = data[_STATE_HEADER.size :]
    if magic != _STATE_MAGIC or length != len(body) or _core.crc32c(body) != crc:
        raise CorruptFileError(f"{path} is damaged (bad magic, length or checksum)")
    return json.loads(body)


@dataclass
class Recovery:
    """What opening the store found and did."""

    snapshot: Path | None = None
    snapshot_lsn: int = 0
    records_replayed: int = 0
    wal_torn_bytes_cut: int = 0
    problems: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # extension file role -> loaded/rebuilt


class EmbeddedStore:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        config: ProfilesConfig,
        *,
        segment_bytes: int = 64 << 20,
        extension: Extension | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.config = config
        self.extension = extension
        self.max_event_seq = 0  # the largest event seq ever logged (a source of fresh seqs)
        self._snapshots_dir = self.data_dir / "snapshots"
        self._snapshots_dir.mkdir(parents=True, exist_ok=True)
        self.recovery = Recovery()
        self.profiles = self._load_snapshot()
        self.disk_users = None if config.user_lru else DiskUsers(self.data_dir / "users.sqlite")
        self._evict(self.recovery.snapshot_lsn)  # a snapshot of a run with more user_capacity
        self.wal = WriteAheadLog(self.data_dir / "wal", segment_bytes=segment_bytes)
        self.recovery.wal_torn_bytes_cut = self.wal.torn_bytes_cut
        if self.wal.last_lsn < self.recovery.snapshot_lsn:
            # New records would reuse lsns the snapshot already holds, and be skipped later.
            self.wal.close()
            raise CorruptFileError(
                f"the WAL ends at lsn {self.wal.last_lsn}, before the snapshot's lsn "
                f"{self.recovery.snapshot_lsn}: log segments are missing"
            )
        self._applied_lsn = self.recovery.snapshot_lsn
        if extension is not None:
            extension.restore(self._extension_state, self.profiles)
        for record in self.wal.records(after_lsn=self.recovery.snapshot_lsn):
            self._apply_record(record)
            self._applied_lsn = record.lsn
            self.recovery.records_replayed += 1
        self._turn = threading.Condition()  # applies run in lsn order
        self._snapshot_lock = threading.Lock()  # one snapshot at a time
        self._failed: BaseException | None = None

    # ---- recovery ----------------------------------------------------------------------------
    def _snapshot_paths(self) -> list[tuple[int, Path]]:
        found = []
        for path in self._snapshots_dir.glob("profiles-*.snap"):
            try:
                found.append((int(path.stem.split("-", 1)[1]), path))
            except ValueError:
                continue
        return sorted(found, reverse=True)

    def _load_snapshot(self) -> Profiles:
        for lsn, path in self._snapshot_paths():
            try:
                profiles, stored_lsn = Profiles.load(str(path), self.config)
            except CorruptFileError as error:
                problem = f"snapshot {path.name} is damaged and was not loaded: {error}"
                log.error(problem)
                self.recovery.problems.append(problem)
                continue
            if stored_lsn != lsn:
                raise CorruptFileError(
                    f"snapshot {path} holds lsn {stored_lsn}, its name says {lsn}"
                )
            state_path = self._state_path(lsn)
            try:
                state = _read_state(state_path) if state_path.exists() else {}
            except (CorruptFileError, ValueError) as error:
                problem = f"state {state_path.name} is damaged; its snapshot was not used: {error}"
                log.error(problem)
                self.recovery.problems.append(problem)
                continue
            if self.extension is not None and "extension" not in state:
                problem = f"snapshot {path.name} has no extension state and was not used"
                self.recovery.problems.append(problem)
                continue
            extension_state = state.get("extension")
            if isinstance(self.extension, FileExtension) and extension_state is not None:
                try:
                    loaded = self.extension.load(extension_state, self._files_of(state))
                except (CorruptFileError, OSError) as error:
                    problem = f"a file of snapshot {path.name} is damaged; it was not used: {error}"
                    log.error(problem)
                    self.recovery.problems.append(problem)
                    continue
                extension_state = loaded.state
                self.recovery.files = dict(loaded.how)
                for problem in loaded.problems:
                    log.error(problem)
                self.recovery.problems.extend(loaded.problems)
            self.max_event_seq = int(state.get("max_event_seq", 0))
            self._extension_state = extension_state
            self.recovery.snapshot, self.recovery.snapshot_lsn = path, lsn
            return profiles
        self._extension_state = None
        return Profiles(self.config)

    def _files_of(self, state: Mapping[str, Any]) -> dict[str, Path]:
        """The extension's files a snapshot's state names (role -> path)."""
        names = state.get("files", {})
        if not isinstance(names, dict) or not all(
            isinstance(name, str) and Path(name).name == name for name in names.values()
        ):
            raise CorruptFileError(f"the state names bad snapshot files: {names!r}")
        return {role: self._snapshots_dir / name for role, name in names.items()}

    def _remove_snapshots_except(self, kept: set[int]) -> None:
        """Removes every snapshot file (profiles, state, the extension's) of an lsn not in
        ``kept``, and every temporary file (a write cut short: none runs now); each profiles
        file first, so what remains of a snapshot half removed is never used."""
        doomed: list[tuple[bool, Path]] = []
        for path in self._snapshots_dir.iterdir():
            stem, _, lsn_text = path.name.split(".", 1)[0].rpartition("-")
            if stem and lsn_text.isdigit() and (int(lsn_text) not in kept or path.suffix == ".tmp"):
                doomed.append((path.suffix != ".snap", path))
        for _, path in sorted(doomed):
            path.unlink(missing_ok=True)

    def _state_path(self, lsn: int) -> Path:
        return self._snapshots_dir / f"state-{lsn:020d}.json"

    def _apply_record(self, record: Record) -> None:
        if record.kind >= EXTENSION_KINDS and self.extension is not None:
            self.extension.apply_record(record.kind, record.body, self.profiles)
        elif record.kind == EVENTS:
            self._apply_events(_decode_events(record.body), record.lsn)
        elif record.kind == SET_ITEMS:
            ids, vectors = _decode_items(record.body, self.config.dims)
            self.profiles.set_items(ids, vectors)
        elif record.kind == REMOVE_ITEMS:
            ids, _ = _decode_items(record.body, None)
            self.profiles.remove_items(ids)
        elif record.kind == ERASE_USER:
            (user,) = struct.unpack("<Q", record.body)
            self._erase(user)
        elif record.kind == MARK:
            pass
        else:
            raise CorruptFileError(f"WAL record {record.lsn} has unknown kind {record.kind}")

    # ---- writes: durable, then applied in lsn order ------------------------------------------
    def _log_and_apply(
        self, kind: int, body: bytes | Callable[[int], bytes], apply: Callable[[], T]
    ) -> T:
        lsn = self.wal.append(kind, body)
        with self._turn:
            while self._applied_lsn != lsn - 1:
                if self._failed is not None:
                    raise RuntimeError(
                        f"an earlier apply failed; the store must be reopened: {self._failed}"
                    )
                self._turn.wait()
            try:
                result = apply()
            except BaseException as error:  # checked before logging, so this is a bug: stop
                self._failed = error
                self._turn.notify_all()
                raise
            self._applied_lsn = lsn
            self._turn.notify_all()
            return result

    def _saw_seqs(self, events: Events) -> None:
        if len(events):
            self.max_event_seq = max(self.max_event_seq, int(events.seq.max()))

    def apply(self, events: Events, *, assign_seq: bool = False) -> ApplyResult:
        """Logs the batch durably, then applies it; a bad batch raises and is not logged.

        ``assign_seq``: replace the batch's seq column with ``lsn * 2**20 + i`` (event i of the
        record at lsn), which grows in log order and so in apply order: for sources whose
        events have no sequence numbers of their own (HTTP), whose redeliveries the event
        keys catch instead."""
        if assign_seq:
            if len(events) > _SEQ_PER_RECORD:
                raise ValueError(f"a batch holds at most {_SEQ_PER_RECORD} events")
            events = dataclasses.replace(events, seq=np.ones(len(events), dtype=np.uint64))
        Profiles.check(events)  # before logging: the log holds only batches that apply

        def body(lsn: int) -> bytes:
            if assign_seq:
                events.seq[:] = np.arange(len(events), dtype=np.uint64) + np.uint64(
                    lsn * _SEQ_PER_RECORD
                )
            return _encode_events(events)

        # In its turn, the record being applied is the one after the last applied.
        return self._log_and_apply(
            EVENTS, body, lambda: self._apply_events(events, self._applied_lsn + 1)
        )

    def _apply_events(self, events: Events, lsn: int) -> ApplyResult:
        """Applies the batch logged at lsn: its users in memory first, as they were before it,
        then the events, then users past the capacity out to disk."""
        self._make_resident(events.users, lsn - 1)
        self._saw_seqs(events)
        result = self.profiles.apply(events)
        if self.extension is not None:
            self.extension.applied_events(events, self.profiles)
        self._evict(lsn)
        return result

    # ---- users beyond the memory bound -------------------------------------------------------
    def _make_resident(self, users: np.ndarray, lsn: int) -> None:
        if self.disk_users is None or not len(users):
            return
        distinct = np.unique(users)
        missing = distinct[~self.profiles.user_state(distinct)["found"]]
        if not len(missing):
            return
        stored = self.disk_users.get(missing.tolist(), lsn)
        if stored:
            keys = list(stored)
            self.profiles.import_users(
                keys, [stored[k][0] for k in keys], [stored[k][1] for k in keys]
            )

    def _evict(self, lsn: int) -> None:
        if self.disk_users is None:
            return
        keys, images = self.profiles.evict_users(self.config.user_capacity)
        self.disk_users.put(keys.tolist(), images, lsn)

    def ensure_users(self, users: Any) -> None:
        """Brings users stored on disk back into memory (for a read: a feed, a profile)."""
        if self.disk_users is None:
            return
        keys = as_ids(users)
        missing = keys[~self.profiles.user_state(keys)["found"]]
        # A user on no disk either (new) needs no wait for the apply turn: reads of unknown
        # users are common (cold starts) and must not queue behind applies.
        if not len(missing) or not self.disk_users.holds_any(missing.tolist()):
            return
        with self._turn:  # not while an apply or an eviction runs: the image is current
            self._make_resident(keys, self._applied_lsn)
            self._evict(self._applied_lsn)

    def erase_user(self, user: int) -> None:
        """Forgets a user: memory, the user file, and the extension's part. Logged, so replay
        forgets them too; their bytes stay in older snapshots and WAL segments until
        ``compact()``."""
        self._log_and_apply(ERASE_USER, struct.pack("<Q", int(user)), lambda: self._erase(user))

    def _erase(self, user: int) -> None:
        self.profiles.erase_user(user)
        if self.disk_users is not None:
            self.disk_users.delete(user)
        if self.extension is not None:
            self.extension.erase_user(user)

    def log(self, kind: int, body: bytes, apply: Callable[[], T]) -> T:
        """An extension's record: durable, then ``apply()`` in lsn order. ``apply`` must not
        fail (check the input before): a failure stops the store."""
        if kind < EXTENSION_KINDS or kind > 255:
            raise ValueError(f"extension record kinds are {EXTENSION_KINDS}..255, got {kind}")
        return self._log_and_apply(kind, body, apply)

    def set_items(self, ids: Any, vectors: Any) -> None:
        id_array, vec_array = as_id_rows(ids, vectors)
        if vec_array.ndim != 2 or vec_array.shape != (id_array.shape[0], self.config.dims):
            raise ValueError(
                f"vectors must have shape ({id_array.shape[0]}, {self.config.dims}), "
                f"got {vec_array.shape}"
            )
        if not np.isfinite(vec_array).all():
            raise ValueError("vectors contain NaN or infinity")
        self._log_and_apply(
            SET_ITEMS,
            _encode_items(id_array, vec_array),
            lambda: self.profiles.set_items(id_array, vec_array),
        )

    def remove_items(self, ids: Any) -> int:
        id_array = as_ids(ids)
        return self._log_and_apply(
            REMOVE_ITEMS,
            _encode_items(id_array, None),
            lambda: self.profiles.remove_items(id_array),
        )

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No record is applied inside: for an image of several parts taken at one lsn."""
        with self._turn:
            yield

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> Path:
        """Writes a snapshot of everything applied so far; drops what it makes unneeded."""
        with self._snapshot_lock:
            return self._snapshot()

    def compact(self) -> Path:
        """A snapshot that is the only one kept, with no WAL segment before it and the user
        file's own log emptied: what an erasure waits for. Gives up the fallback to an older
        snapshot until the next one is written."""
        with self._snapshot_lock:
            path = self._snapshot(keep=1)
            # A record after the snapshot starts a new segment, so the one that held the
            # erasures (ended by the snapshot's rotation) can be dropped whole.
            self._log_and_apply(MARK, b"", lambda: None)
            self.wal.drop_through(int(path.stem.split("-", 1)[1]))
            if self.disk_users is not None:
                self.disk_users.sync(truncate=True)
            return path

    def _snapshot(self, keep: int = KEEP_SNAPSHOTS) -> Path:
        with self._turn:  # no apply in between: the image is exactly the records up to lsn
            lsn = self._applied_lsn
            image = self.profiles.snapshot(lsn)
            state: dict[str, Any] = {"max_event_seq": self.max_event_seq}
            if self.extension is not None:
                state["extension"] = self.extension.state()
            files = self.extension.image() if isinstance(self.extension, FileExtension) else None
            self.wal.rotate()
        path = self._snapshots_dir / f"profiles-{lsn:020d}.snap"
        if files is not None:  # then the state naming them: a snapshot is used only with it
            state["files"] = files.write(self._snapshots_dir, lsn)
        _write_state(self._state_path(lsn), state)  # before the profiles, the snapshot's last
        image.write(str(path))
        fsync_directory(self._snapshots_dir)
        kept = self._snapshot_paths()
        self._remove_snapshots_except({old_lsn for old_lsn, _ in kept[:keep]})
        # The WAL reaches back to the oldest kept snapshot, which can stand in for a damaged one;
        # while there are fewer, to the start (only a compaction means to keep one alone).
        oldest = kept[:keep][-1][0] if len(kept) >= keep else 0
        if self.disk_users is not None:  # users evicted up to lsn: durable before their events go
            self.disk_users.prune(oldest)
            self.disk_users.sync()
        self.wal.drop_through(oldest)
        return path

    @property
    def applied_lsn(self) -> int:
        return self._applied_lsn

    def close(self) -> None:
        self.wal.close()
        if self.disk_users is not None:
            self.disk_users.close()

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
