"""The catalogue stream on kinesalite: records put by concurrent writers reach every reader in
one order, a record that does not decode is skipped, and the lag falls once caught up."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import numpy as np
import pytest

from aws_servers import client, new_stream
from recserve.catalog import Item
from recserve.service import catalogue_records
from recserve.service.catalogue_stream import CatalogueStream, split_items

DIMS = 8


def items(n: int, seed: int = 0) -> tuple[list[Item], np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = [Item(f"v{i}", f"c{i % 3}", 15_000, ("t",), 0, None) for i in range(n)]
    return rows, rng.standard_normal((n, DIMS)).astype(np.float32)


class Reader:
    """A CatalogueStream that records what it applied, refusing bodies that say b"bad"."""

    def __init__(self, kinesis: Any, stream: str, position: str | None = None) -> None:
        self.seen: list[tuple[str, int, bytes]] = []
        self.stream = CatalogueStream(kinesis, stream, position, self.apply, poll_interval_s=0.2)

    def apply(self, seq: str, kind: int, body: bytes) -> bool:
        if body == b"bad":
            return False
        self.seen.append((seq, kind, body))
        return True


@pytest.fixture
def kinesis(kinesalite_endpoint: str) -> Any:
    return client("kinesis", kinesalite_endpoint)


def test_split_items_keeps_each_record_under_the_limit_and_the_order() -> None:
    rows, vectors = items(50)
    bodies = split_items(7, rows, vectors, True, max_bytes=2_000)
    assert len(bodies) > 1
    assert all(len(b) + 1 <= 2_000 for b in bodies)
    decoded = [catalogue_records.decode(catalogue_records.ITEMS, b, DIMS) for b in bodies]
    assert [i.id for r in decoded for i in r.items] == [i.id for i in rows]  # type: ignore[union-attr]
    np.testing.assert_array_equal(np.concatenate([r.vectors for r in decoded]), vectors)  # type: ignore[union-attr]


def test_an_item_larger_than_a_record_is_refused_by_name() -> None:
    rows, vectors = items(1)
    with pytest.raises(ValueError, match="item 'v0'"):
        split_items(7, rows, vectors, True, max_bytes=40)


def test_a_stream_of_two_shards_is_refused(kinesis: Any) -> None:
    with pytest.raises(RuntimeError, match="exactly one shard"):
        Reader(kinesis, new_stream(kinesis, 2))


def test_concurrent_writers_records_reach_every_reader_in_one_order(kinesis: Any) -> None:
    stream = new_stream(kinesis, 1)
    readers = [Reader(kinesis, stream) for _ in range(2)]
    for reader in readers:
        reader.stream.start()

    def write(name: str) -> None:
        for i in range(10):
            record = catalogue_records.take_down_record([hash((name, i)) & (2**63 - 1)])
            seq = readers[0].stream.put([(catalogue_records.TAKE_DOWN, record)])
            assert readers[0].stream.wait_applied(seq, 20)

    writers = [threading.Thread(target=write, args=(n,)) for n in "ab"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert all(r.stream.wait_applied(readers[0].seen[-1][0], 20) for r in readers)
    for reader in readers:
        reader.stream.stop()
    assert len(readers[0].seen) == 20
    assert readers[0].seen == readers[1].seen
    assert [int(s) for s, _, _ in readers[0].seen] == sorted(int(s) for s, _, _ in readers[0].seen)


def test_a_record_refused_by_apply_is_skipped_and_the_next_applied(kinesis: Any) -> None:
    stream = new_stream(kinesis, 1)
    reader = Reader(kinesis, stream)
    reader.stream.start()
    reader.stream.put([(catalogue_records.TAKE_DOWN, b"bad")])
    good = catalogue_records.take_down_record([1])
    seq = reader.stream.put([(catalogue_records.TAKE_DOWN, good)])
    assert reader.stream.wait_applied(seq, 20)
    reader.stream.stop()
    assert [body for _, _, body in reader.seen] == [good]
    assert (reader.stream.applied, reader.stream.skipped) == (1, 1)


def test_a_reader_starting_at_a_position_reads_only_what_follows(kinesis: Any) -> None:
    stream = new_stream(kinesis, 1)
    writer = Reader(kinesis, stream)
    bodies = [catalogue_records.take_down_record([k]) for k in range(3)]
    seqs = [writer.stream.put([(catalogue_records.TAKE_DOWN, b)]) for b in bodies]
    reader = Reader(kinesis, stream, position=seqs[0])
    reader.stream.start()
    assert reader.stream.wait_applied(seqs[-1], 20)
    reader.stream.stop()
    assert [body for _, _, body in reader.seen] == bodies[1:]


def test_the_lag_falls_below_the_poll_interval_once_caught_up(kinesis: Any) -> None:
    stream = new_stream(kinesis, 1)
    reader = Reader(kinesis, stream)
    time.sleep(0.5)  # unread: a fresh reader is as stale as its age
    assert reader.stream.lag_s() >= 0.5
    reader.stream.start()
    deadline = time.monotonic() + 20
    while reader.stream.lag_s() > 0.5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reader.stream.stop()


def test_a_stream_that_does_not_exist_fails_at_start_by_name(kinesis: Any) -> None:
    name = f"missing-{uuid.uuid4().hex[:6]}"
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException, match=name):
        Reader(kinesis, name)
