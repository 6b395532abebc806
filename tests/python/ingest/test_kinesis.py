"""The Kinesis consumer and producer against real local servers: moto (single producer) and
kinesalite (resharding, concurrent producers); faults injected through a client wrapper."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from aws_servers import Faulty, client, new_prefix, new_stream
from recserve.ingest.kinesis import ROOT_SEQ_BASE, Consumed, Producer, Worker, WorkerSettings
from recserve.ingest.leases import SHARD_END, LeaseLost, LeaseTable

FAST = {"lease_duration_s": 1.5, "renew_interval_s": 0.3, "poll_interval_s": 0.05}


class Collector:
    """A handler that remembers what it applied: (shard, Kinesis sequence, our seq, data)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.applied: list[tuple[str, str, int, bytes]] = []

    def __call__(self, shard: str, records: list[dict[str, Any]], first_seq: int) -> Consumed:
        with self.lock:
            for i, record in enumerate(records):
                row = (shard, record["SequenceNumber"], first_seq + i, record["Data"])
                self.applied.append(row)
        return Consumed(len(records), 0)

    def data(self) -> set[bytes]:
        with self.lock:
            return {a[3] for a in self.applied}


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def produce(kinesis: Any, stream: str, users: int, per_user: int, tag: str = "") -> list[bytes]:
    records = [
        (f"u{u}", f"u{u}:{tag}{i}".encode()) for i in range(per_user) for u in range(users)
    ]
    Producer(kinesis, stream).put(records)
    return [data for _, data in records]


def assert_per_user_order(applied: list[tuple[str, str, int, bytes]]) -> None:
    """Each user's records arrive in the order they were put, with growing seqs."""
    last: dict[str, tuple[int, int]] = {}
    for _, _, seq, data in applied:
        user, number = data.decode().split(":")
        n = int(number.lstrip("abcdefghijklmnopqrstuvwxyz"))
        order = (0 if number[0].isdigit() else ord(number[0]), n)
        if user in last:
            assert order > last[user][0], (user, order, last[user])
            assert seq > last[user][1], (user, seq, last[user])
        last[user] = (order, seq)


def worker(dynamodb: str, kinesis: Any, stream: str, prefix: str, name: str,
           handler: Any) -> Worker:
    leases = LeaseTable(client("dynamodb", dynamodb), f"{prefix}leases", name)
    return Worker(kinesis, leases, stream, handler,
                  WorkerSettings(worker_id=name, **FAST))  # type: ignore[arg-type]


def read_all(dynamodb: str, kinesis: Any, stream: str, prefix: str,
             expected: set[bytes]) -> tuple[Collector, Worker]:
    """Runs one worker until it has applied every expected record, then stops it."""
    collector = Collector()
    w = worker(dynamodb, kinesis, stream, prefix, "a", collector)
    w.start()
    try:
        wait_for(lambda: collector.data() == expected)
    finally:
        w.stop()
    return collector, w


def test_a_worker_reads_every_record_in_order_and_checkpoints_each_shard(
    moto_endpoint: str,
) -> None:
    kinesis = client("kinesis", moto_endpoint)
    stream, prefix = new_stream(kinesis, 4), new_prefix()
    sent = produce(kinesis, stream, users=20, per_user=15)
    collector = Collector()
    w = worker(moto_endpoint, kinesis, stream, prefix, "a", collector)
    w.start()
    try:
        wait_for(lambda: collector.data() == set(sent))
        wait_for(lambda: len(w.held) == 4)
    finally:
        w.stop()
    assert len(collector.applied) == len(sent)
    assert_per_user_order(collector.applied)
    leases = LeaseTable(client("dynamodb", moto_endpoint), f"{prefix}leases", "reader").all()
    per_shard: dict[str, list[tuple[str, int]]] = {}
    for shard, sequence, seq, _ in collector.applied:
        per_shard.setdefault(shard, []).append((sequence, seq))
    for shard, rows in per_shard.items():
        seqs = [seq - ROOT_SEQ_BASE for _, seq in rows]
        assert seqs == list(range(1, len(rows) + 1))  # no gap, no repeat
        assert leases[shard].checkpoint == rows[-1][0]
        assert leases[shard].ordinal == len(rows)
        assert leases[shard].owner is None  # released on stop


def test_a_second_worker_takes_every_shard_once_the_first_stops_renewing(
    moto_endpoint: str,
) -> None:
    kinesis = client("kinesis", moto_endpoint)
    stream, prefix = new_stream(kinesis, 4), new_prefix()
    first, second = Collector(), Collector()
    a = worker(moto_endpoint, kinesis, stream, prefix, "a", first)
    b = worker(moto_endpoint, kinesis, stream, prefix, "b", second)
    a.start()
    wait_for(lambda: len(a.held) == 4)
    b.start()
    wait_for(lambda: len(a.held) == 2 and len(b.held) == 2)  # stolen one at a time
    sent = produce(kinesis, stream, users=20, per_user=10)
    wait_for(lambda: first.data() | second.data() == set(sent))
    a.stop(release=False)  # as if killed: its leases are left to expire
    stopped = time.monotonic()
    wait_for(lambda: len(b.held) == 4)
    assert time.monotonic() - stopped <= FAST["lease_duration_s"] + 2 * FAST["renew_interval_s"] + 1
    more = produce(kinesis, stream, users=20, per_user=5, tag="b")
    wait_for(lambda: set(more) <= second.data())
    b.stop()
    # At least once: a record read by both workers carries the same seq both times, so the
    # per-user high-water mark makes the second apply a no-op.
    seq_of: dict[bytes, int] = {}
    for _, _, seq, data in first.applied + second.applied:
        assert seq_of.setdefault(data, seq) == seq
    once = {a[3]: a for a in first.applied + second.applied}
    assert_per_user_order(sorted(once.values(), key=lambda a: a[2]))


def test_a_paused_worker_that_lost_its_lease_can_neither_checkpoint_nor_renew(
    moto_endpoint: str,
) -> None:
    dynamodb = client("dynamodb", moto_endpoint)
    prefix = new_prefix()
    mine = LeaseTable(dynamodb, f"{prefix}leases", "paused")
    theirs = LeaseTable(dynamodb, f"{prefix}leases", "other")
    mine.add_shards([{"ShardId": "shardId-0"}])
    held = mine.take(mine.all()["shardId-0"], seq_base=0)
    mine.checkpoint(held, "100", 0, 1)
    seen = theirs.all()["shardId-0"]  # the counter stopped moving: expired, taken
    theirs.take(seen, seq_base=0)
    with pytest.raises(LeaseLost):
        mine.checkpoint(held, "200", 0, 2)
    with pytest.raises(LeaseLost):
        mine.renew(held)
    stored = theirs.all()["shardId-0"]
    assert (stored.owner, stored.checkpoint, stored.ordinal) == ("other", "100", 1)


class HoldsTheFirstBatch(Collector):
    """Blocks the first call until ``release`` is set (a reader stuck in its handler while its
    lease is lost); every later call applies at once. ``held_by`` is the blocked thread."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked, self.release = threading.Event(), threading.Event()
        self.held_by: threading.Thread | None = None

    def __call__(self, shard: str, records: list[dict[str, Any]], first_seq: int) -> Consumed:
        if self.held_by is None:
            self.held_by = threading.current_thread()
            self.blocked.set()
            self.release.wait(timeout=30)
        return super().__call__(shard, records, first_seq)


def test_a_reader_ending_late_does_not_drop_its_shards_next_taking(moto_endpoint: str) -> None:
    kinesis = client("kinesis", moto_endpoint)
    stream, prefix = new_stream(kinesis, 1), new_prefix()
    handler = HoldsTheFirstBatch()
    a = worker(moto_endpoint, kinesis, stream, prefix, "a", handler)
    other = LeaseTable(client("dynamodb", moto_endpoint), f"{prefix}leases", "other")
    a.start()
    try:
        first = produce(kinesis, stream, users=5, per_user=2)
        assert handler.blocked.wait(timeout=30)
        (shard,) = a.held
        stolen = other.take(other.all()[shard], seq_base=ROOT_SEQ_BASE)
        wait_for(lambda: a.held == [])  # its renewal failed: the lease is lost
        other.release(stolen)
        wait_for(lambda: a.generation(shard) == 2)  # taken again, read by a new reader
        wait_for(lambda: handler.data() == set(first))
        handler.release.set()  # the first reader wakes, fails to checkpoint, and ends
        assert handler.held_by is not None
        handler.held_by.join(timeout=30)
        assert not handler.held_by.is_alive()
        assert a.held == [shard]
        assert a.generation(shard) == 2
        assert a.stats.leases_lost == 1
        more = produce(kinesis, stream, users=5, per_user=2, tag="b")
        wait_for(lambda: set(more) <= handler.data())  # the second reader still reads
    finally:
        handler.release.set()
        a.stop()


def test_throttling_expired_iterators_and_partial_puts_lose_nothing(
    moto_endpoint: str,
) -> None:
    real = client("kinesis", moto_endpoint)
    stream, prefix = new_stream(real, 2), new_prefix()
    faulty = Faulty(real, {
        "put_records": lambda n: "partial" if n % 2 == 1 else None,
        "get_records": lambda n: {1: "ProvisionedThroughputExceededException",
                                  2: "ExpiredIteratorException"}.get(n % 4),
    })
    producer = Producer(faulty, stream)
    records = [(f"u{u}", f"u{u}:{i}".encode()) for i in range(30) for u in range(10)]
    for start in range(0, len(records), 50):
        placed = producer.put(records[start : start + 50])
        assert all(shard for shard, _ in placed)
    assert producer.retried > 0
    expected = {data for _, data in records}
    collector, w = read_all(moto_endpoint, faulty, stream, prefix, expected)
    assert faulty.injected["ProvisionedThroughputExceededException"] > 0
    assert faulty.injected["ExpiredIteratorException"] > 0
    assert w.stats.throttled > 0
    assert w.stats.backoff_s > 0
    assert w.stats.expired_iterators > 0
    assert len(collector.applied) == len(records)  # nothing twice within one holder
    assert_per_user_order(collector.applied)


def test_a_split_shard_is_drained_before_its_children_and_order_holds(
    kinesalite_endpoint: str, moto_endpoint: str
) -> None:
    kinesis = client("kinesis", kinesalite_endpoint)
    stream, prefix = new_stream(kinesis, 1), new_prefix()
    before = produce(kinesis, stream, users=30, per_user=10)
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]
    low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    kinesis.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"],
                        NewStartingHashKey=str((low + high) // 2))
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    after = produce(kinesis, stream, users=30, per_user=10, tag="b")
    collector, _ = read_all(moto_endpoint, kinesis, stream, prefix, set(before) | set(after))
    parent = shard["ShardId"]
    parents = [a for a in collector.applied if a[0] == parent]
    children = [a for a in collector.applied if a[0] != parent]
    assert {a[3] for a in parents} == set(before)
    assert {a[3] for a in children} == set(after)
    assert collector.applied.index(parents[-1]) < collector.applied.index(children[0])
    assert min(a[2] for a in children) > max(a[2] for a in parents)
    assert_per_user_order(collector.applied)
    leases = LeaseTable(client("dynamodb", moto_endpoint), f"{prefix}leases", "r")
    assert leases.all()[parent].checkpoint == SHARD_END


def test_concurrent_producers_put_every_record(
    kinesalite_endpoint: str, moto_endpoint: str
) -> None:
    kinesis = client("kinesis", kinesalite_endpoint)
    stream, prefix = new_stream(kinesis, 2), new_prefix()
    sent: list[list[bytes]] = [[] for _ in range(4)]

    def put(t: int) -> None:
        sent[t] = produce(client("kinesis", kinesalite_endpoint), stream, 10, 20, tag="abcd"[t])

    threads = [threading.Thread(target=put, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {d for part in sent for d in part}
    collector, _ = read_all(moto_endpoint, kinesis, stream, prefix, expected)
    assert len(collector.applied) == 4 * 10 * 20


def test_a_merged_shard_waits_for_both_parents_and_order_holds(
    kinesalite_endpoint: str, moto_endpoint: str
) -> None:
    kinesis = client("kinesis", kinesalite_endpoint)
    stream, prefix = new_stream(kinesis, 2), new_prefix()
    before = produce(kinesis, stream, users=30, per_user=10)
    first, second = sorted(
        kinesis.list_shards(StreamName=stream)["Shards"],
        key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]),
    )
    kinesis.merge_shards(StreamName=stream, ShardToMerge=first["ShardId"],
                         AdjacentShardToMerge=second["ShardId"])
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    after = produce(kinesis, stream, users=30, per_user=10, tag="b")
    collector, _ = read_all(moto_endpoint, kinesis, stream, prefix, set(before) | set(after))
    parents = {first["ShardId"], second["ShardId"]}
    last_parent = max(i for i, a in enumerate(collector.applied) if a[0] in parents)
    first_child = min(i for i, a in enumerate(collector.applied) if a[0] not in parents)
    assert last_parent < first_child
    assert {a[3] for a in collector.applied[first_child:]} == set(after)
    assert min(a[2] for a in collector.applied[first_child:]) > max(
        a[2] for a in collector.applied[:first_child]
    )
    assert_per_user_order(collector.applied)
