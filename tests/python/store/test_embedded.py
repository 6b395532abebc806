"""recserve.store.embedded: durable apply, snapshots, recovery, and crashes (SIGKILL)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import recserve
from recserve._columns import read_columns, write_columns
from recserve.profiles import ITEM_STATS, Events, Profiles
from recserve.store.embedded import EmbeddedStore, LoadedFiles


def _child_module() -> ModuleType:
    path = Path(__file__).with_name("crash_child.py")
    spec = importlib.util.spec_from_file_location("crash_child", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _child_module()
CHILD = Path(__file__).with_name("crash_child.py")


def state(p: Profiles) -> dict[str, np.ndarray]:
    """Everything an event changes, as arrays to compare exactly."""
    users = np.arange(child.USERS + 5)
    items = np.arange(child.ITEMS + 5)
    vectors = p.user_vectors(users, now_ms=0)
    out = {"long_term": vectors.long_term, "session": vectors.session, "found": vectors.found}
    out.update({f"user_{k}": v for k, v in p.user_state(users).items()})
    item = p.items(items)
    out.update({f"item_{name}": item.stats[name] for name in ITEM_STATS})
    out["item_vectors"] = item.vectors
    out["seen"] = np.stack([p.seen(u, items) for u in range(0, child.USERS, 7)])
    out["recent"] = np.concatenate([p.recent_items(u) for u in range(0, child.USERS, 7)])
    return out


def exact_state(source: Profiles | EmbeddedStore) -> dict[str, np.ndarray]:
    """Every user's whole image (brought back from disk first where the store keeps some
    there) and every item's counters: equal only if nothing was lost, doubled or altered."""
    profiles = source.profiles if isinstance(source, EmbeddedStore) else source
    images = []
    for user in range(child.USERS + 5):
        if isinstance(source, EmbeddedStore):
            source.ensure_users([user])
        image = profiles.export_users([user])[0]
        images.append(b"-" if image is None else image[0] + image[1])
    item = profiles.items(np.arange(child.ITEMS + 5))
    out = {f"item_{name}": item.stats[name] for name in ITEM_STATS}
    out["users"] = np.array(images, dtype=object)
    return out


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in a)


def open_store(path: Path) -> EmbeddedStore:
    return EmbeddedStore(path, child.CONFIG, segment_bytes=64 << 10)


def ingest(store: EmbeddedStore, batches: int, snapshot_every: int) -> None:
    """Items, then batches 0..batches-1 with a snapshot after every snapshot_every-th."""
    store.set_items(*child.item_vectors())
    for number in range(batches):
        store.apply(child.batch(number))
        if number % snapshot_every == snapshot_every - 1:
            store.snapshot()


def test_reopening_recovers_the_snapshot_and_the_log_after_it(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.set_items(*child.item_vectors())
        for number in range(3):
            store.apply(child.batch(number))
        store.snapshot()
        for number in range(3, 5):
            store.apply(child.batch(number))
    with open_store(tmp_path) as store:
        assert store.recovery.snapshot_lsn == 4  # set_items + 3 batches
        assert store.recovery.records_replayed == 2
        assert same(state(store.profiles), state(child.oracle(5)))


def test_a_bad_batch_is_refused_before_it_reaches_the_log(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bad = Events.of(users=[1], items=[2], types=["watch"], ts_ms=[0], seq=[1])  # no duration
        with pytest.raises(ValueError, match="duration_ms"):
            store.apply(bad)
        with pytest.raises(ValueError, match="NaN"):
            store.set_items([1], np.full((1, child.CONFIG.dims), np.nan, dtype=np.float32))
        assert store.wal.last_lsn == 0
    with open_store(tmp_path) as store:
        assert store.recovery.records_replayed == 0


def test_snapshots_keep_two_and_drop_the_log_the_older_no_longer_needs(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        ingest(store, 12, snapshot_every=4)
        snapshots = sorted((tmp_path / "snapshots").glob("*.snap"))
        assert [int(p.stem.split("-")[1]) for p in snapshots] == [9, 13]
        first_lsn = int(store.wal.segments()[0].stem.split("-")[1])
        assert first_lsn <= 10  # the log reaches back to snapshot 9


def test_a_damaged_snapshot_falls_back_to_the_previous_one_and_says_so(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        ingest(store, 8, snapshot_every=4)
        store.apply(child.batch(8))
    newest = sorted((tmp_path / "snapshots").glob("*.snap"))[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 3] ^= 0x01
    newest.write_bytes(bytes(data))
    with open_store(tmp_path) as store:
        assert store.recovery.snapshot_lsn == 5
        assert "damaged" in store.recovery.problems[0]
        assert newest.name in store.recovery.problems[0]
        assert same(state(store.profiles), state(child.oracle(9)))


def test_a_damaged_first_snapshot_falls_back_to_the_whole_log(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        ingest(store, 6, snapshot_every=4)  # one snapshot, then more batches
    (first,) = (tmp_path / "snapshots").glob("*.snap")
    first.write_bytes(first.read_bytes()[:-1])
    with open_store(tmp_path) as store:
        assert store.recovery.snapshot is None
        assert "damaged" in store.recovery.problems[0]
        assert same(state(store.profiles), state(child.oracle(6)))


def test_no_usable_snapshot_and_a_trimmed_log_is_an_error_not_an_empty_store(
    tmp_path: Path,
) -> None:
    with open_store(tmp_path) as store:
        ingest(store, 12, snapshot_every=4)
    for snap in (tmp_path / "snapshots").glob("*.snap"):
        snap.write_bytes(snap.read_bytes()[:-1])
    with pytest.raises(recserve.CorruptFileError, match="segments are missing"):
        open_store(tmp_path)


def test_a_log_that_ends_before_the_snapshot_is_an_error(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        ingest(store, 4, snapshot_every=4)
    for segment in (tmp_path / "wal").glob("wal-*.log"):
        segment.unlink()
    with pytest.raises(recserve.CorruptFileError, match="log segments are missing"):
        open_store(tmp_path)


def _run_child(
    data_dir: Path,
    first: int,
    last: int,
    kill: tuple[str, int, float] | None,
    bounded: bool = False,
) -> tuple[int, bool]:
    """Runs the child from batch `first`; kills it with SIGKILL at `kill` = (line to wait for,
    how many of them, delay in seconds) if given. Returns the last acknowledged batch (-1: none)
    and whether the kill landed inside a snapshot."""
    last_ack, seen, in_snapshot = first - 1, 0, False
    with subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(first), str(last), "5"]
        + (["--bounded"] if bounded else []),
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            word = line.split()[0]
            if word == "ack":
                last_ack = int(line.split()[1])
            in_snapshot = line.strip() == "snapshot"
            if kill is not None and word == kill[0]:
                seen += 1
                if seen == kill[1]:
                    time.sleep(kill[2])  # let it run on: into the next batch, or into the snapshot
                    os.kill(proc.pid, signal.SIGKILL)
                    break
        for line in proc.stdout:  # lines printed before the kill landed
            if line.startswith("ack"):
                last_ack = int(line.split()[1])
            in_snapshot = line.strip() == "snapshot"
        returncode = proc.wait(timeout=60)
    assert returncode == (-signal.SIGKILL if kill is not None else 0), returncode
    return last_ack, in_snapshot


def test_every_acknowledged_batch_survives_20_sigkills_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    last_batch = 400
    acked = -1
    oracle_states: dict[int, dict[str, np.ndarray]] = {}
    oracle = Profiles(child.CONFIG)
    oracle.set_items(*child.item_vectors())
    oracle_batches = 0

    def oracle_state(batches: int) -> dict[str, np.ndarray]:
        nonlocal oracle_batches
        if batches not in oracle_states:
            while oracle_batches < batches:
                oracle.apply(child.batch(oracle_batches))
                oracle_batches += 1
            oracle_states[batches] = state(oracle)
        return oracle_states[batches]

    inside_snapshot = 0
    for round_number in range(20):
        if round_number % 3 == 2:  # as a snapshot starts (it takes milliseconds: fsyncs)
            kill = ("snapshot", rng.randint(1, 2), rng.uniform(0.0, 0.002))
        else:
            kill = ("ack", rng.randint(1, 12), rng.uniform(0.0, 0.003))
        last_ack, in_snapshot = _run_child(tmp_path, acked + 1, last_batch, kill)
        acked = max(acked, last_ack)
        inside_snapshot += in_snapshot
        with open_store(tmp_path) as store:
            assert store.recovery.problems == []
            recovered = state(store.profiles)
        # Every acknowledged batch is there once; the batch in flight may be too (it may have
        # reached the log before the kill), but nothing else.
        assert same(recovered, oracle_state(acked + 1)) or same(
            recovered, oracle_state(acked + 2)
        ), round_number
    assert inside_snapshot >= 1  # of 6 aimed there; the others landed just after one
    final, _ = _run_child(tmp_path, acked + 1, acked + 11, None)
    with open_store(tmp_path) as store:
        assert same(state(store.profiles), oracle_state(final + 1))
        applied = int(store.profiles.user_state(np.arange(child.USERS))["events_applied"].sum())
        assert applied == (final + 1) * child.EVENTS_PER_BATCH  # each event once


def test_concurrent_appliers_share_the_log_and_recover_to_the_same_state(tmp_path: Path) -> None:
    def batches_of(thread: int) -> list[Events]:
        # Each thread owns its users, so the final state does not depend on the interleaving.
        out = []
        for number in range(15):
            b = child.batch(thread * 100 + number)
            users = (b.users % 50) + 50 * thread
            out.append(
                Events.of(
                    users=users,
                    items=b.items,
                    types=b.types,
                    watch_ms=b.watch_ms,
                    duration_ms=b.duration_ms,
                    ts_ms=b.ts_ms,
                    seq=b.seq,
                )
            )
        return out

    work = {thread: batches_of(thread) for thread in range(4)}
    with open_store(tmp_path) as store:
        store.set_items(*child.item_vectors())
        errors: list[BaseException] = []

        def run(thread: int) -> None:
            try:
                for events in work[thread]:
                    store.apply(events)
                    if thread == 0:
                        store.snapshot()
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert store.applied_lsn == 1 + 4 * 15
        live = state(store.profiles)
    serial = Profiles(child.CONFIG)
    serial.set_items(*child.item_vectors())
    for thread in range(4):
        for events in work[thread]:
            serial.apply(events)
    assert same(live, state(serial))
    with open_store(tmp_path) as store:
        assert same(state(store.profiles), live)


def open_bounded(path: Path) -> EmbeddedStore:
    return EmbeddedStore(path, child.BOUNDED, segment_bytes=64 << 10)


def oracle_exact(batches: int) -> dict[str, np.ndarray]:
    return exact_state(child.oracle(batches))


def test_users_past_the_capacity_wait_on_disk_and_come_back_exactly(tmp_path: Path) -> None:
    with open_bounded(tmp_path) as store:
        store.set_items(*child.item_vectors())
        for number in range(12):
            store.apply(child.batch(number))
            assert store.profiles.stats()["users"] <= child.BOUNDED.user_capacity
        assert store.disk_users is not None
        assert store.disk_users.count() >= child.USERS - child.BOUNDED.user_capacity
        assert same(exact_state(store), oracle_exact(12))


def test_users_on_disk_survive_snapshots_and_a_restart_with_every_event_once(
    tmp_path: Path,
) -> None:
    with open_bounded(tmp_path) as store:
        store.set_items(*child.item_vectors())
        for number in range(10):
            store.apply(child.batch(number))
            if number % 4 == 3:
                store.snapshot()
    with open_bounded(tmp_path) as store:
        assert store.profiles.stats()["users"] <= child.BOUNDED.user_capacity
        recovered = exact_state(store)
        applied = sum(
            int(store.profiles.user_state([u])["events_applied"][0])
            for u in range(child.USERS)
            if store.ensure_users([u]) is None
        )
    assert same(recovered, oracle_exact(10))
    assert applied == 10 * child.EVENTS_PER_BATCH


def test_every_acknowledged_batch_survives_sigkills_with_users_on_disk(tmp_path: Path) -> None:
    rng = random.Random(20261207)
    acked = -1
    for round_number in range(8):
        if round_number % 3 == 2:
            kill = ("snapshot", rng.randint(1, 2), rng.uniform(0.0, 0.002))
        else:
            kill = ("ack", rng.randint(1, 12), rng.uniform(0.0, 0.003))
        last_ack, _ = _run_child(tmp_path, acked + 1, 400, kill, bounded=True)
        acked = max(acked, last_ack)
        with open_bounded(tmp_path) as store:
            assert store.recovery.problems == []
            recovered = exact_state(store)
        assert same(recovered, oracle_exact(acked + 1)) or same(
            recovered, oracle_exact(acked + 2)
        ), round_number


def _files_holding(directory: Path, needles: list[bytes]) -> list[str]:
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and any(needle in path.read_bytes() for needle in needles)
    )


def _with_user(events: Events, user: int, every: int) -> Events:
    """The batch with every ``every``-th event made the user's."""
    users = events.users.copy()
    users[::every] = user
    return dataclasses.replace(events, users=users)


def test_an_erased_user_leaves_memory_at_once_and_every_file_after_compaction(
    tmp_path: Path,
) -> None:
    erased = 0x9E3779B97F4A7C15  # a key as ids hash to: its bytes occur nowhere by chance
    with open_bounded(tmp_path) as store:
        store.set_items(*child.item_vectors())
        for number in range(10):  # the user goes to disk and back meanwhile
            store.apply(_with_user(child.batch(number), erased, 40))
            if number % 3 == 2:
                store.snapshot()
        assert store.disk_users is not None
        store.ensure_users([erased])
        image = store.profiles.export_users([erased])[0]
        assert image is not None
        # The key as the WAL and snapshots hold it, as SQLite holds it, and the vectors.
        needles = [struct.pack("<Q", erased), struct.pack(">Q", erased), image[0]]
        assert _files_holding(tmp_path, needles[:1])
        store.erase_user(erased)
        assert not store.profiles.user_state([erased])["found"][0]
        store.ensure_users([erased])
        assert not store.profiles.user_state([erased])["found"][0]  # not back from disk
        store.compact()
        assert _files_holding(tmp_path, needles) == []
        others = exact_state(store)
    with open_bounded(tmp_path) as store:  # and a restart does not bring them back
        store.ensure_users([erased])
        assert not store.profiles.user_state([erased])["found"][0]
        assert same(exact_state(store), others)


# ---- an extension with files of its own (the feed service's catalogue and index, in small) ---
class Numbers:
    """A FileExtension in miniature: numbers logged as records of kind 16, kept with each
    snapshot in a file of their own (numbers-<lsn>.bin) that the state file names."""

    def __init__(self) -> None:
        self.values: list[int] = []

    def add(self, store: EmbeddedStore, value: int) -> None:
        store.log(16, struct.pack("<q", value), lambda: self.values.append(value))

    def state(self) -> Any:
        return {"count": len(self.values)}

    def image(self) -> _NumbersImage:
        return _NumbersImage(list(self.values))

    def load(self, state: Any, files: Mapping[str, Path]) -> LoadedFiles:
        if "numbers" not in files:
            raise recserve.CorruptFileError("no numbers file")
        values = read_columns(files["numbers"], b"RSTESTNU", 1)["values"].tolist()
        return LoadedFiles(values, {"numbers": "loaded"}, [])

    def restore(self, state: Any, profiles: Profiles) -> None:
        self.values = list(state or [])

    def apply_record(self, kind: int, body: bytes, profiles: Profiles) -> None:
        self.values.append(struct.unpack("<q", body)[0])

    def applied_events(self, events: Events, profiles: Profiles) -> None:
        pass

    def erase_user(self, user: int) -> None:
        pass


class _NumbersImage:
    def __init__(self, values: list[int]) -> None:
        self.values = values

    def write(self, directory: Path, lsn: int) -> dict[str, str]:
        name = f"numbers-{lsn:020d}.bin"
        values = np.array(self.values, dtype=np.int64)
        write_columns(directory / name, b"RSTESTNU", 1, {"values": values})
        return {"numbers": name}


def open_numbers(path: Path) -> tuple[EmbeddedStore, Numbers]:
    numbers = Numbers()
    return EmbeddedStore(path, child.CONFIG, segment_bytes=64 << 10, extension=numbers), numbers


def _lsns(directory: Path, prefix: str) -> list[int]:
    return sorted(int(p.name.split(".")[0].split("-")[1]) for p in directory.glob(prefix + "-*"))


def test_an_extensions_files_go_with_their_snapshot_and_are_removed_with_it(
    tmp_path: Path,
) -> None:
    store, numbers = open_numbers(tmp_path)
    with store:
        for value in range(12):
            numbers.add(store, value)
            if value % 4 == 3:
                store.snapshot()
        numbers.add(store, 12)
    snapshots = tmp_path / "snapshots"
    assert _lsns(snapshots, "numbers") == _lsns(snapshots, "profiles") == [8, 12]
    store, numbers = open_numbers(tmp_path)
    with store:
        assert store.recovery.files == {"numbers": "loaded"}
        assert store.recovery.problems == []
        assert store.recovery.records_replayed == 1
        assert numbers.values == list(range(13))


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete"])
def test_a_damaged_extension_file_makes_its_snapshot_unused_and_the_older_one_serves(
    tmp_path: Path, damage: str
) -> None:
    store, numbers = open_numbers(tmp_path)
    with store:
        for value in range(10):
            numbers.add(store, value)
            if value % 4 == 3:
                store.snapshot()
    newest = tmp_path / "snapshots" / f"numbers-{8:020d}.bin"
    if damage == "flip a byte":
        data = bytearray(newest.read_bytes())
        data[-3] ^= 0x20
        newest.write_bytes(bytes(data))
    elif damage == "truncate":
        newest.write_bytes(newest.read_bytes()[:-5])
    else:
        newest.unlink()
    store, numbers = open_numbers(tmp_path)
    with store:
        assert store.recovery.snapshot_lsn == 4
        assert newest.name in store.recovery.problems[0]
        assert numbers.values == list(range(10))  # the older snapshot and the log after it


def test_files_of_a_snapshot_cut_short_are_ignored_then_removed(tmp_path: Path) -> None:
    store, numbers = open_numbers(tmp_path)
    with store:
        for value in range(6):
            numbers.add(store, value)
        store.snapshot()
    # What a SIGKILL during the next snapshot leaves: its own files, some whole (renamed) and
    # some half written (temporary), and no profiles file, written last.
    snapshots = tmp_path / "snapshots"
    whole = (snapshots / f"numbers-{6:020d}.bin").read_bytes()
    (snapshots / f"numbers-{9:020d}.bin").write_bytes(whole)
    (snapshots / f"state-{9:020d}.json.tmp").write_bytes(b"RSSTATE1\0\0")
    (snapshots / f"profiles-{9:020d}.snap.tmp").write_bytes(b"half")
    (snapshots / f"profiles-{6:020d}.snap.tmp").write_bytes(b"half")  # the same lsn once more
    store, numbers = open_numbers(tmp_path)
    with store:
        assert (store.recovery.snapshot_lsn, store.recovery.problems) == (6, [])
        assert numbers.values == list(range(6))
        numbers.add(store, 6)
        store.snapshot()
    assert sorted(p.name for p in snapshots.iterdir()) == [
        f"{kind}-{lsn:020d}.{ext}"
        for kind, ext in (("numbers", "bin"), ("profiles", "snap"), ("state", "json"))
        for lsn in (6, 7)
    ]


def co_engagement(p: Profiles, users: range) -> list[tuple[list[int], list[float], list[int]]]:
    """Each user's related items, their scores and recent positives, to compare exactly."""
    out = []
    for user in users:
        keys, scores = p.related(user, now_ms=0, k=50)
        out.append((keys.tolist(), scores.tolist(), p.recent_positives(user).items.tolist()))
    return out


def test_the_co_engagement_index_and_recent_positives_survive_a_restart(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        ingest(store, 6, snapshot_every=4)  # a snapshot after batch 3, then the log
    oracle = co_engagement(child.oracle(6), range(child.USERS))
    assert sum(len(keys) for keys, _, _ in oracle) > 100
    with open_store(tmp_path) as store:
        assert store.recovery.snapshot_lsn == 5
        assert co_engagement(store.profiles, range(child.USERS)) == oracle
        assert store.profiles.stats()["co_engagement_edges"] > 0


def test_recent_positives_wait_on_disk_with_their_user_and_come_back(tmp_path: Path) -> None:
    oracle = co_engagement(child.oracle(8), range(child.USERS))
    with open_bounded(tmp_path) as store:
        store.set_items(*child.item_vectors())
        for number in range(8):
            store.apply(child.batch(number))
        store.snapshot()
        assert store.disk_users is not None
        assert store.disk_users.count() > 0
    with open_bounded(tmp_path) as store:
        for user in range(child.USERS):
            store.ensure_users([user])  # from the user file, if it waited there
            assert co_engagement(store.profiles, range(user, user + 1)) == [oracle[user]], user
