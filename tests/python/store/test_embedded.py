"""recserve.store.embedded: durable apply, snapshots, recovery, and crashes (SIGKILL)."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import recserve
from recserve.profiles import ITEM_STATS, Events, Profiles
from recserve.store.embedded import EmbeddedStore


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
    data_dir: Path, first: int, last: int, kill: tuple[str, int, float] | None
) -> tuple[int, bool]:
    """Runs the child from batch `first`; kills it with SIGKILL at `kill` = (line to wait for,
    how many of them, delay in seconds) if given. Returns the last acknowledged batch (-1: none)
    and whether the kill landed inside a snapshot."""
    last_ack, seen, in_snapshot = first - 1, 0, False
    with subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(first), str(last), "5"],
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
