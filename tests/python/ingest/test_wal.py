"""recserve.ingest.wal: durable appends, group commit, segments, torn tails, corruption."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import recserve
from recserve.ingest.wal import WriteAheadLog


def fill(directory: Path, n: int, **kwargs: int) -> WriteAheadLog:
    wal = WriteAheadLog(directory, **kwargs)
    for i in range(n):
        assert wal.append(1, f"record {i}".encode() * (i % 5 + 1)) == i + 1
    return wal


def test_records_come_back_in_order_after_reopening(tmp_path: Path) -> None:
    fill(tmp_path, 50).close()
    wal = WriteAheadLog(tmp_path)
    records = list(wal.records())
    assert [r.lsn for r in records] == list(range(1, 51))
    assert records[7].body == b"record 7" * 3
    assert list(WriteAheadLog(tmp_path).records(after_lsn=45))[0].lsn == 46
    assert wal.append(2, b"next") == 51
    wal.close()


def test_concurrent_appends_share_fsyncs_and_lose_nothing(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    lsns: list[int] = []
    lock = threading.Lock()

    def producer(k: int) -> None:
        for i in range(100):
            lsn = wal.append(1, f"{k}:{i}".encode())
            with lock:
                lsns.append(lsn)

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wal.close()
    assert sorted(lsns) == list(range(1, 401))
    bodies = {r.body for r in WriteAheadLog(tmp_path).records()}
    assert bodies == {f"{k}:{i}".encode() for k in range(4) for i in range(100)}


def test_segments_rotate_and_old_ones_are_dropped(tmp_path: Path) -> None:
    wal = fill(tmp_path, 200, segment_bytes=1024)
    assert len(wal.segments()) > 3
    wal.drop_through(150)
    wal.close()
    with WriteAheadLog(tmp_path) as reopened:
        assert next(iter(reopened.records(after_lsn=150))).lsn == 151
    with (
        WriteAheadLog(tmp_path) as reopened,
        pytest.raises(recserve.CorruptFileError, match="segments are missing"),
    ):
        list(reopened.records(after_lsn=0))


def test_a_torn_tail_is_cut_at_every_byte_of_the_last_record(tmp_path: Path) -> None:
    source = tmp_path / "source"
    fill(source, 10).close()
    segment = next(source.glob("wal-*.log"))
    data = segment.read_bytes()
    last_record = len(b"record 9" * 5) + 17  # 8-byte record header + kind + lsn + body
    start = len(data) - last_record
    for cut in range(start, len(data)):
        case = tmp_path / f"cut{cut}"
        case.mkdir()
        (case / segment.name).write_bytes(data[:cut])
        wal = WriteAheadLog(case)
        assert [r.lsn for r in wal.records()] == list(range(1, 10)), cut
        assert wal.torn_bytes_cut == cut - start
        assert wal.append(1, b"after") == 10  # appends continue right after the prefix
        wal.close()
        assert [r.lsn for r in WriteAheadLog(case).records()][-1] == 10


def test_a_damaged_record_in_the_middle_is_reported_not_skipped(tmp_path: Path) -> None:
    fill(tmp_path, 20).close()
    segment = next(tmp_path.glob("wal-*.log"))
    data = bytearray(segment.read_bytes())
    data[60] ^= 0xFF  # inside an early record
    segment.write_bytes(bytes(data))
    with pytest.raises(recserve.CorruptFileError, match="corrupt in the middle"):
        WriteAheadLog(tmp_path)


def test_a_missing_middle_segment_is_reported(tmp_path: Path) -> None:
    wal = fill(tmp_path, 100, segment_bytes=512)
    wal.close()
    wal.segments()[1].unlink()
    with pytest.raises(recserve.CorruptFileError, match="a segment is missing"):
        WriteAheadLog(tmp_path)
