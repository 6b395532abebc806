"""Benchmark decoding Kinesis records of events: recserve's C++ batch decoder against the same
decoding in plain Python (json, struct, hashlib), in the same run.

    python bench/bench_ingest.py            # 10,000 events per format, median of 15 runs
    python bench/bench_ingest.py --full     # 100,000 events per format, median of 25 runs

Records are shaped as boto3's ``get_records`` returns them (dicts with ``Data``,
``SequenceNumber``, ``PartitionKey``, ``ApproximateArrivalTimestamp``), built from seeded
events: users and videos drawn from the KuaiRand-Pure tables in ../shared/data when present
(video durations from there too), else ``u123`` / ``v456`` ids; mostly watches. Formats:
compact binary v1, JSON (the API's event shape), and binary user records in KPL aggregates of
about 100 (rates count events, not Kinesis records). Both decoders run on the same list, one
after the other in each repeat; one JSON line per format, then a Markdown table.
Benchmarks never assert: whether the two decoders agreed is printed, not checked.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402
from recserve.ingest import kpl  # noqa: E402
from recserve.ingest.records import (  # noqa: E402
    DecodedBatch,
    decode_batch,
    decode_batch_python,
    encode_binary,
    encode_json,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "kuairand-pure-features"
FORMATS = ("binary", "json", "kpl-binary")
PER_AGGREGATE = 100
TYPE_MIX = {
    "watch": 0.69,
    "skip": 0.12,
    "like": 0.08,
    "impression": 0.04,
    "share": 0.02,
    "comment": 0.02,
    "follow": 0.01,
    "replay": 0.01,
    "not_interested": 0.01,
}
START = datetime(2024, 4, 22, tzinfo=UTC)


def catalogue() -> tuple[int, list[int]]:
    """(users, video durations in ms): KuaiRand-Pure's when present, else synthetic."""
    users_csv = SHARED / "user_features_pure.csv"
    videos_csv = SHARED / "video_features_basic_pure.csv"
    if users_csv.exists() and videos_csv.exists():
        with users_csv.open() as file:
            users = sum(1 for _ in file) - 1
        with videos_csv.open() as file:
            durations = [
                int(float(row["video_duration"] or 15000)) or 15000 for row in csv.DictReader(file)
            ]
        return users, durations
    return 27_285, np.random.default_rng(0).integers(5_000, 120_000, 7_583).tolist()


def make_events(n: int, seed: int) -> list[dict[str, Any]]:
    """n seeded events as keyword arguments of encode_binary / encode_json."""
    rng = np.random.default_rng(seed)
    users, durations = catalogue()
    user = rng.integers(0, users, n)
    video = rng.integers(0, len(durations), n)
    types = rng.choice(list(TYPE_MIX), size=n, p=list(TYPE_MIX.values()))
    played = rng.beta(2.0, 2.0, n)  # the fraction of the video watched
    ts = 1_713_744_000_000 + np.cumsum(rng.integers(0, 50, n))
    events = []
    for i in range(n):
        duration = durations[video[i]]
        kind = str(types[i])
        events.append(
            {
                "event_id": rng.bytes(16).hex(),
                "user_id": f"u{user[i]}",
                "item_id": f"v{video[i]}",
                "type": kind,
                "watch_ms": int(played[i] * duration) if kind in ("watch", "skip") else None,
                "duration_ms": duration if kind in ("watch", "skip") else None,
                "ts": int(ts[i]),
            }
        )
    return events


def make_records(n: int, fmt: str, seed: int) -> list[dict[str, Any]]:
    """n events as a get_records batch: fmt "binary" or "json" (one event per record), or
    "kpl-binary" / "kpl-json" (events in KPL aggregates of about 100, so n / 100 records)."""
    events = make_events(n, seed)
    encode = encode_json if fmt.endswith("json") else encode_binary
    blobs = [(e["user_id"], encode(**e)) for e in events]
    if fmt.startswith("kpl-"):
        groups = [blobs[i : i + PER_AGGREGATE] for i in range(0, n, PER_AGGREGATE)]
        blobs = [(group[0][0], kpl.aggregate(group)) for group in groups]
    elif fmt not in ("binary", "json"):
        raise ValueError(f"unknown format {fmt!r}: binary, json, kpl-binary or kpl-json")
    return [
        {
            "Data": data,
            "SequenceNumber": str(49_650_000_000_000_000_000_000_000_000_000_000_000_000_000 + i),
            "PartitionKey": key,
            "ApproximateArrivalTimestamp": START + timedelta(milliseconds=50 * i),
        }
        for i, (key, data) in enumerate(blobs)
    ]


def agree(a: DecodedBatch, b: DecodedBatch) -> bool:
    names = (
        "event_keys",
        "users",
        "items",
        "types",
        "watch_ms",
        "duration_ms",
        "ts_ms",
        "record_index",
        "sub_sequence",
    )
    return a.bad == b.bad and all(np.array_equal(getattr(a, c), getattr(b, c)) for c in names)


def median_seconds(
    decode: Callable[[list[Any]], DecodedBatch], records: list[Any], repeats: int
) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode(records)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def git_sha() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        cmd = ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]
        return subprocess.run(cmd, capture_output=True, check=True, text=True).stdout.strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="100,000 events, 25 repeats")
    parser.add_argument("--events", type=int, default=None, help="events per format")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (median; >= 15)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = args.events or (100_000 if args.full else 10_000)
    repeats = max(15, args.repeats or (25 if args.full else 15))
    source = "KuaiRand-Pure users and videos" if SHARED.exists() else "synthetic ids"
    print(
        f"# bench_ingest: {cpu_model()}, {os.cpu_count()} cores; git {git_sha()}; "
        f"{n:,} events per format ({source}), median of {repeats}"
    )
    rows = []
    for fmt in FORMATS:
        records = make_records(n, fmt, args.seed)
        same = agree(decode_batch(records), decode_batch_python(records))  # and a warm-up
        cpp = median_seconds(decode_batch, records, repeats)
        python = median_seconds(decode_batch_python, records, repeats)
        line = {
            "bench": "ingest_decode",
            "format": fmt,
            "events": n,
            "records": len(records),
            "bytes": sum(len(r["Data"]) for r in records),
            "repeats": repeats,
            "cpp_s": cpp,
            "python_s": python,
            "agree": same,
            "seed": args.seed,
            "git_sha": git_sha(),
        }
        print(json.dumps(line), flush=True)
        rows.append((fmt, n / cpp, n / python, same))
    print("\n| format | recserve C++ records/s | plain Python records/s | ratio | agree |")
    print("|---|---|---|---|---|")
    for fmt, cpp_rate, python_rate, same in rows:
        name = f"{fmt} (events in aggregates of {PER_AGGREGATE})" if fmt.startswith("kpl") else fmt
        print(
            f"| {name} | {cpp_rate:,.0f} | {python_rate:,.0f} | ×{cpp_rate / python_rate:.1f} "
            f"| {'yes' if same else '**no**'} |"
        )


if __name__ == "__main__":
    main()
