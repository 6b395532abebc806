"""recserve.train.log: the impression-log format, its writer and its reader."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recserve.train.log import (
    Event,
    Impression,
    LogWriter,
    Record,
    as_item_ids,
    iter_records,
    read_catalog,
    read_log,
    write_catalog,
)

WriteLog = Callable[[Path, list[Record]], Path]

RECORDS: list[Record] = [
    Impression(10.0, "r1", "alice", 1, 0, "m1", "control"),
    Impression(10.0, "r1", "alice", 2, 1, "m1", "control"),
    Event(12.5, "e1", "alice", 1, "watch", "r1", watch_ms=9000, duration_ms=10000),
    Event(13.0, "e2", "alice", 1, "like", "r1"),
    Event(14.0, "e3", "alice", 2, "skip"),
]


def _segments(path: Path) -> list[Path]:
    return sorted(path.glob("impressions-*.jsonl"))


def test_records_round_trip_through_writer_and_reader(tmp_path: Path, write_log: WriteLog) -> None:
    write_log(tmp_path, RECORDS)
    log = read_log(tmp_path)
    assert log.records == RECORDS
    assert log.report.records == len(RECORDS)
    assert log.report.skipped == []
    header = json.loads(_segments(tmp_path)[0].read_text().splitlines()[0])
    assert header["format"] == "recserve.impressions"
    assert header["version"] == 2


def test_each_writer_appends_new_segments_and_rolls_over(
    tmp_path: Path, write_log: WriteLog
) -> None:
    write_log(tmp_path, RECORDS[:2])
    with LogWriter(tmp_path, segment_records=2) as writer:
        writer.extend(RECORDS[2:])
    names = [p.name for p in _segments(tmp_path)]
    assert names == [
        "impressions-000001.jsonl",
        "impressions-000002.jsonl",
        "impressions-000003.jsonl",
    ]
    assert list(iter_records(tmp_path)) == RECORDS


def test_flush_makes_records_readable_while_the_writer_is_open(tmp_path: Path) -> None:
    write_catalog(tmp_path, [1], np.ones((1, 4)), [0.0])
    writer = LogWriter(tmp_path)
    writer.append(RECORDS[0])
    writer.flush()
    assert read_log(tmp_path).records == RECORDS[:1]
    writer.close()


def test_truncated_last_line_is_skipped_and_reported(
    tmp_path: Path, write_log: WriteLog, caplog: pytest.LogCaptureFixture
) -> None:
    write_log(tmp_path, RECORDS)
    segment = _segments(tmp_path)[0]
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 20])  # a crash in the middle of the last append
    with caplog.at_level(logging.WARNING, logger="recserve.train.log"):
        log = read_log(tmp_path)
    assert log.records == RECORDS[:-1]
    assert len(log.report.skipped) == 1
    assert f"{segment}:6: truncated last line skipped" in log.report.skipped[0]
    assert "truncated last line" in caplog.text


def test_corrupt_middle_line_raises_naming_file_and_line(
    tmp_path: Path, write_log: WriteLog
) -> None:
    write_log(tmp_path, RECORDS)
    segment = _segments(tmp_path)[0]
    lines = segment.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:30] + "\n"
    segment.write_text("".join(lines))
    with pytest.raises(ValueError, match=rf"{segment}:3: not valid JSON"):
        read_log(tmp_path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {
                "kind": "impression",
                "ts": 1.0,
                "request_id": "r",
                "user": "u",
                "item": -1,
                "position": 0,
            },
            "field 'item' must be an integer >= 0",
        ),
        (
            {"kind": "event", "ts": 1.0, "event_id": "e", "user": "u", "item": 1, "type": "wave"},
            "field 'type': 'wave' is not one of",
        ),
        (
            {
                "kind": "event",
                "ts": 1.0,
                "event_id": "e",
                "user": "u",
                "item": 1,
                "type": "watch",
                "watch_ms": 10,
            },
            "field 'duration_ms'",
        ),
        (
            {
                "kind": "impression",
                "ts": "soon",
                "request_id": "r",
                "user": "u",
                "item": 1,
                "position": 0,
            },
            "field 'ts' must be a finite number",
        ),
        ({"kind": "click"}, "field 'kind'"),
    ],
)
def test_schema_violation_raises_naming_the_field(
    tmp_path: Path, write_log: WriteLog, record: dict[str, object], message: str
) -> None:
    write_log(tmp_path, RECORDS[:1])
    segment = _segments(tmp_path)[0]
    with segment.open("a") as f:
        f.write(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=rf"{segment}:3: {message}"):
        read_log(tmp_path)


def test_unknown_version_is_refused(tmp_path: Path, write_log: WriteLog) -> None:
    write_log(tmp_path, RECORDS)
    segment = _segments(tmp_path)[0]
    text = segment.read_text().replace('"version": 2', '"version": 3', 1)
    segment.write_text(text)
    with pytest.raises(ValueError, match=r"impression-log version 3 is not supported"):
        read_log(tmp_path)


def test_version_1_segments_are_still_read(tmp_path: Path, write_log: WriteLog) -> None:
    write_log(tmp_path, RECORDS)
    segment = _segments(tmp_path)[0]
    segment.write_text(segment.read_text().replace('"version": 2', '"version": 1', 1))
    assert read_log(tmp_path).records == RECORDS


def test_a_clients_impression_event_round_trips(tmp_path: Path, write_log: WriteLog) -> None:
    viewed = Event(5.0, "e-i", "u1", 1, "impression", request_id="r1")
    write_log(tmp_path, [viewed])
    assert read_log(tmp_path).records == [viewed]


def test_catalog_round_trips_and_refuses_bad_arrays(tmp_path: Path) -> None:
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_catalog(tmp_path, [5, 7, 9], vectors, [1.0, 2.0, 3.0])
    catalog = read_catalog(tmp_path)
    np.testing.assert_array_equal(catalog.vector, vectors)
    np.testing.assert_array_equal(catalog.rows([9, 5]), [2, 0])
    with pytest.raises(ValueError, match="item 6 is not in the log's catalogue"):
        catalog.rows([5, 6])
    with pytest.raises(ValueError, match="unique"):
        write_catalog(tmp_path, [1, 1, 2], vectors, [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        write_catalog(tmp_path, [1, 2, 3], vectors * np.nan, [0.0, 0.0, 0.0])


HIGH = (1 << 64) - 2  # the largest key recserve.ids.key_of gives
MID = 1 << 63


def test_64_bit_ids_round_trip_through_records_and_catalogue(tmp_path: Path) -> None:
    """Keys of 2^63 and more: the catalogue stores their int64 view, records the key itself,
    and the two meet whatever form the ids come in."""
    vectors = np.ones((3, 2), dtype=np.float32)
    write_catalog(tmp_path, [HIGH, 5, MID], vectors, [0.0, 0.0, 0.0])  # Python ints
    catalog = read_catalog(tmp_path)
    assert catalog.item.dtype == np.int64
    assert catalog.keys.tolist() == [HIGH, 5, MID]
    assert catalog.item.tolist() == [HIGH - (1 << 64), 5, MID - (1 << 64)]
    np.testing.assert_array_equal(catalog.rows([MID, HIGH, 5]), [2, 0, 1])
    np.testing.assert_array_equal(catalog.rows(np.array([HIGH], dtype=np.uint64)), [0])
    np.testing.assert_array_equal(catalog.rows(catalog.item), [0, 1, 2])
    with pytest.raises(ValueError, match=f"item {HIGH - 1} is not in the log's catalogue"):
        catalog.rows([HIGH - 1])
    write_catalog(tmp_path, np.array([HIGH, 5], dtype=np.uint64), vectors[:2], [0.0, 0.0])
    assert read_catalog(tmp_path).keys.tolist() == [HIGH, 5]

    records: list[Record] = [
        Impression(1.0, "r1", "u", HIGH, 0),
        Event(2.0, "e1", "u", HIGH, "like", "r1"),
    ]
    with LogWriter(tmp_path) as writer:
        writer.extend(records)
    assert read_log(tmp_path).records == records


def test_ids_beyond_64_bits_or_not_integers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a 64-bit id"):
        as_item_ids([1 << 64])
    with pytest.raises(ValueError, match="must be integers"):
        as_item_ids([1.0])
    with pytest.raises(ValueError, match="must be integers"):
        write_catalog(tmp_path, np.array([1.0]), np.ones((1, 2)), [0.0])
    path = tmp_path / "impressions-000001.jsonl"
    header = {"format": "recserve.impressions", "version": 2, "segment": 1, "created_at": 0}
    record = {"kind": "impression", "ts": 1.0, "request_id": "r", "user": "u",
              "item": 1 << 64, "position": 0}  # fmt: skip
    path.write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=r":2: field 'item' must be a 64-bit id"):
        list(iter_records(tmp_path))


def test_missing_directory_or_catalog_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such log directory"):
        read_log(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no catalogue"):
        read_log(tmp_path)
