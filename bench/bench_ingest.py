"""Benchmark ingesting Kinesis records of events: recserve's C++ batch decoder against the same
decoding in plain Python (json, struct, hashlib), alone and followed by the apply to the
profiles, in the same run; and the event-to-profile lag through a local Kinesis server.

    python bench/bench_ingest.py            # 10,000 events per format, median of 15 runs; lag 15 s
    python bench/bench_ingest.py --full     # 100,000 events, median of 25 runs; lag 60 s
    python bench/bench_ingest.py --no-lag   # the in-process tables only

Records are shaped as boto3's ``get_records`` returns them (dicts with ``Data``,
``SequenceNumber``, ``PartitionKey``, ``ApproximateArrivalTimestamp``), built from seeded
events: users and videos drawn from the KuaiRand-Pure tables in ../shared/data when present
(video durations from there too), else ``u123`` / ``v456`` ids; mostly watches. Formats:
compact binary v1, JSON (the API's event shape), and binary user records in KPL aggregates of
about 100 (rates count events, not Kinesis records).

1. **Decode**: both decoders run on the same list, one after the other in each repeat.
2. **Decode + apply** (binary and JSON): each decoder's columns become ``Events`` (sequence
   numbers continuing from the last pass, event keys xor a per-pass constant so that no pass
   repeats an earlier one's keys) applied by ``Profiles.apply`` to one ``Profiles`` per format
   holding every video (dims 64, seeded vectors) and, after a warm-up pass, the batch's users:
   the steady state of a consumer. The C++ decoder, the Python decoder and the apply alone
   (on columns decoded once) take turns pass by pass, on the same profiles.
3. **Lag**: kinesalite (``$KINESALITE_MODULES`` or build/npm/node_modules; moto's Kinesis when
   it is not found, said in the output) and moto's server for DynamoDB (in a child process), on
   127.0.0.1 with free ports. The real scale-out path runs in this process: an ``Engine`` with
   ``events_source = "kinesis"`` and ``state_store = "dynamodb"`` over a 2-shard stream, boto3
   pointed at the servers by ``AWS_ENDPOINT_URL_KINESIS`` / ``AWS_ENDPOINT_URL_DYNAMODB``.
   Events (binary) are put at a steady rate in small PutRecords batches (``Producer``); an
   event's lag runs from just before its PutRecords call to the return of the handler
   (``StreamIngest.handle``: decode, DynamoDB loads, apply, DynamoDB write-back) for the batch
   holding it, the checkpoint after that excluded. Then a backlog of events put at once: how
   fast the path drains it. moto's TransactWriteItems deep-copies the whole table once per
   item of a transaction (seconds per write-back at a few thousand users, and races between
   requests); the benchmark's moto keeps a copy of the item index instead (``--moto-as-is``:
   not), see START_MOTO.

Benchmarks never assert: whether the two decoders agreed is printed, not checked.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402
from recserve.ids import key_of, keys_of  # noqa: E402
from recserve.ingest import kpl  # noqa: E402
from recserve.ingest.records import (  # noqa: E402
    DecodedBatch,
    decode_batch,
    decode_batch_python,
    encode_binary,
    encode_json,
)
from recserve.profiles import ApplyResult, Events, Profiles, ProfilesConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "kuairand-pure-features"
FORMATS = ("binary", "json", "kpl-binary")
APPLY_FORMATS = ("binary", "json")
PER_AGGREGATE = 100
DIMS = 64
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
AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",  # botocore reads this one; AWS_REGION alone is not enough
}
START_KINESALITE = """
const kinesalite = require('kinesalite');
const server = kinesalite({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0,
                           shardLimit: 100});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""
START_MOTO = """
import copy
import sys
from collections import defaultdict

from moto.dynamodb.models.table import Table
from moto.server import ThreadedMotoServer


def rollback_copy(self, memo):
    # moto keeps, for each item of a TransactWriteItems, a deep copy of the whole table to roll
    # back to: O(items x table). A copy of the item index does (a Put replaces an item object,
    # never changes it; recserve's transactions are Puts on hash-key tables).
    clone = copy.copy(self)
    if self.range_key_attr is None:
        clone.items = self.items.copy()
    else:
        clone.items = defaultdict(dict, {k: dict(v) for k, v in list(self.items.items())})
    return clone


if sys.argv[1:] != ["as-is"]:
    Table.__deepcopy__ = rollback_copy
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
server.stop()
"""


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
        sha = subprocess.run(cmd, capture_output=True, check=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "python", "cpp", "src"],
            capture_output=True,
            check=False,
        )
        return sha + ("+modified" if dirty.returncode == 1 else "")
    return "unknown"


# ---- decode + apply -----------------------------------------------------------------------
def video_profiles(seed: int) -> Profiles:
    """Profiles holding every video of the catalogue (ids v0, v1, ...), seeded unit vectors."""
    _, durations = catalogue()
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(durations), DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    profiles = Profiles(ProfilesConfig(dims=DIMS))
    profiles.set_items(keys_of(f"v{i}" for i in range(len(durations))), vectors)
    return profiles


class Applier:
    """Applies decoded batches to one Profiles as a consumer would: sequence numbers go on
    increasing from pass to pass, and each pass's event keys are xor-ed with a constant of its
    own (0 for the first), so no event is stale or a duplicate of an earlier pass's."""

    def __init__(self, profiles: Profiles) -> None:
        self.profiles = profiles
        self.next_seq = 1
        self.passes = 0
        self.short = 0  # passes in which some event was not applied (should stay 0)

    def __call__(self, batch: DecodedBatch) -> ApplyResult:
        n = len(batch)
        salt = np.uint64((self.passes * 0x9E3779B97F4A7C15) & ((1 << 64) - 1))
        events = Events.of(
            users=batch.users,
            items=batch.items,
            types=batch.types,
            watch_ms=batch.watch_ms,
            duration_ms=batch.duration_ms,
            ts_ms=batch.ts_ms,
            seq=np.arange(self.next_seq, self.next_seq + n, dtype=np.uint64),
            event_keys=batch.event_keys ^ salt,
        )
        self.next_seq += n
        self.passes += 1
        result = self.profiles.apply(events)
        self.short += result.applied != n
        return result


def decode_and_apply(
    records: list[Any], repeats: int, seed: int
) -> tuple[float, float, float, int, int]:
    """Median seconds of (C++ decode + apply, Python decode + apply, apply alone), the users
    in the profiles, and the passes that did not apply every event."""
    apply = Applier(video_profiles(seed))
    decoded = decode_batch(records)
    apply(decoded)  # warm-up: the batch's users get their rows
    cpp, python, alone = [], [], []
    for _ in range(repeats):  # interleaved, so a noisy neighbour hurts all three alike
        for decode, times in ((decode_batch, cpp), (decode_batch_python, python), (None, alone)):
            start = time.perf_counter()
            apply(decoded if decode is None else decode(records))
            times.append(time.perf_counter() - start)
    users = apply.profiles.stats()["users"]
    medians = (statistics.median(cpp), statistics.median(python), statistics.median(alone))
    return (*medians, users, apply.short)


# ---- the local AWS servers ----------------------------------------------------------------
def _first_line_port(process: subprocess.Popen[str], what: str) -> int:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        process.kill()
        raise RuntimeError(f"{what} did not start (printed {line!r})")
    return int(line)


@contextlib.contextmanager
def moto_server(log: Path, *, as_is: bool) -> Iterator[str]:
    """moto's ThreadedMotoServer in a child process, so its request handling does not take
    the GIL from the consumer being measured (as a real DynamoDB would not); its log in
    ``log``. Unless ``as_is``, its TransactWriteItems keeps a cheap rollback copy (START_MOTO)."""
    with log.open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", START_MOTO, *(["as-is"] if as_is else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        yield f"http://127.0.0.1:{_first_line_port(process, 'moto')}"
    finally:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def kinesalite_modules() -> Path | None:
    for candidate in (os.environ.get("KINESALITE_MODULES"), REPO / "build/npm/node_modules"):
        if candidate and (Path(candidate) / "kinesalite").is_dir() and shutil.which("node"):
            return Path(candidate)
    return None


@contextlib.contextmanager
def kinesalite_server(modules: Path) -> Iterator[str]:
    process = subprocess.Popen(
        ["node", "-e", START_KINESALITE],
        env={**os.environ, "NODE_PATH": str(modules)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{_first_line_port(process, 'kinesalite')}"
    finally:
        assert process.stdout is not None
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class TimedCalls:
    """A boto3 client whose get_records calls are timed; everything else is the client's."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.seconds: list[float] = []

    def get_records(self, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._client.get_records(**kwargs)
        finally:
            self.seconds.append(time.perf_counter() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def timed(call: Callable[..., Any], seconds: list[float]) -> Callable[..., Any]:
    def timed_call(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    return timed_call


# ---- end to end: event-to-profile lag -----------------------------------------------------
def lag_run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3

    from recserve.catalog import Item
    from recserve.ingest.kinesis import Producer
    from recserve.service.engine import Engine
    from recserve.service.settings import load_settings

    modules = kinesalite_modules()
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as data_dir,
        contextlib.ExitStack() as stack,
    ):
        moto_log = Path(data_dir) / "moto.log"
        dynamodb_url = stack.enter_context(moto_server(moto_log, as_is=args.moto_as_is))
        if modules is not None:
            kinesis_server = "kinesalite"
            kinesis_url = stack.enter_context(kinesalite_server(modules))
        else:
            kinesis_server = "moto (kinesalite not found: set KINESALITE_MODULES)"
            kinesis_url = dynamodb_url
        stack.enter_context(
            environment(
                AWS_CREDENTIALS
                | {
                    "AWS_ENDPOINT_URL_KINESIS": kinesis_url,
                    "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url,
                }
            )
        )
        kinesis = boto3.session.Session().client("kinesis")
        stream = f"bench-events-{uuid.uuid4().hex[:8]}"
        kinesis.create_stream(StreamName=stream, ShardCount=args.shards)
        kinesis.get_waiter("stream_exists").wait(
            StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
        settings = load_settings(
            None,
            data_dir=Path(data_dir) / "engine",
            dims=DIMS,
            events_source="kinesis",
            kinesis_stream=stream,
            state_store="dynamodb",
            dynamodb_table_prefix=f"bench-{uuid.uuid4().hex[:8]}-",
            kinesis={"poll_interval_s": 0.2},
            feed={"precompute": False},
            impression_log=False,
        )
        engine = Engine(settings)
        engine.start()
        stack.callback(engine.close, snapshot=False)
        assert engine.stream is not None
        worker = engine.stream.worker

        # Stamp every event of a batch once the handler (applied, written back) returns.
        applied_at: dict[int, float] = {}
        handler_s: list[float] = []
        batch_events: list[int] = []
        handle = worker.handler

        def timed_handle(shard: str, records: list[dict[str, Any]], first_seq: int) -> Any:
            start = time.perf_counter()
            consumed = handle(shard, records, first_seq)
            done = time.perf_counter()
            keys = decode_batch(records).event_keys.tolist()
            handler_s.append(done - start)
            batch_events.append(len(keys))
            for key in keys:
                applied_at.setdefault(key, done)
            return consumed

        worker.handler = timed_handle
        calls = TimedCalls(worker.kinesis)
        worker.kinesis = calls
        dynamo_s: dict[str, list[float]] = {"fetch": [], "write": []}
        users = engine.stream.users
        assert users is not None
        for name, times in dynamo_s.items():
            setattr(users, name, timed(getattr(users, name), times))

        _, durations = catalogue()
        rng = np.random.default_rng(args.seed)
        vectors = rng.standard_normal((len(durations), DIMS)).astype(np.float32)
        items = [Item(f"v{i}", f"c{i % 1000}", d) for i, d in enumerate(durations)]
        engine.upsert_items(items, vectors)
        deadline = time.monotonic() + 30
        while len(worker.held) < args.shards and time.monotonic() < deadline:
            time.sleep(0.05)

        producer = Producer(kinesis, stream)
        per_put = args.put_batch
        interval = per_put / args.rate
        warm_puts = round(args.warmup_s / interval)
        timed_puts = round(args.lag_s / interval)
        events = make_events((warm_puts + timed_puts) * per_put + args.backlog, args.seed + 1)
        blobs = [(e["user_id"], encode_binary(**e)) for e in events]
        keys = [key_of(e["event_id"]) for e in events]
        sent_at: dict[int, float] = {}
        put_s: list[float] = []
        begin = time.perf_counter()
        for j in range(warm_puts + timed_puts):
            wait = begin + j * interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            start = time.perf_counter()
            producer.put(blobs[j * per_put : (j + 1) * per_put])
            put_s.append(time.perf_counter() - start)
            if j >= warm_puts:
                sent_at.update((k, start) for k in keys[j * per_put : (j + 1) * per_put])
        put_end = time.perf_counter()
        first_timed = begin + warm_puts * interval
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(k not in applied_at for k in sent_at):
            time.sleep(0.05)
        lags = np.array([applied_at[k] - t for k, t in sent_at.items() if k in applied_at])
        last_applied = max((applied_at[k] for k in sent_at if k in applied_at), default=put_end)
        steady_handler = list(handler_s)
        steady_calls = list(calls.seconds)
        steady_sizes = list(batch_events)
        steady_dynamo = {name: list(times) for name, times in dynamo_s.items()}

        # A backlog: events put at once, drained as fast as the path goes.
        backlog = blobs[len(blobs) - args.backlog :] if args.backlog else []
        backlog_keys = keys[len(keys) - args.backlog :] if args.backlog else []
        backlog_rate = backlog_put_s = float("nan")
        drained = 0
        backlog_dynamo_share = float("nan")
        if backlog:
            before = (len(handler_s), len(dynamo_s["fetch"]), len(dynamo_s["write"]))
            start = time.perf_counter()
            producer.put(backlog)
            backlog_put_s = time.perf_counter() - start
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and any(k not in applied_at for k in backlog_keys):
                time.sleep(0.02)
            done = [applied_at[k] for k in backlog_keys if k in applied_at]
            drained = len(done)
            if done:
                backlog_rate = drained / (max(done) - start)
            dynamo = sum(dynamo_s["fetch"][before[1] :]) + sum(dynamo_s["write"][before[2] :])
            backlog_dynamo_share = dynamo / max(sum(handler_s[before[0] :]), 1e-9)
        stats = worker.stats
        throttled, expired = stats.throttled, stats.expired_iterators
        held = len(worker.held)
        stack.close()  # the engine, then the servers: the moto log is complete
        moto_errors = moto_log.read_text().count("Traceback")

    return {
        "kinesis_server": kinesis_server,
        "shards": args.shards,
        "held": held,
        "rate": args.rate,
        "put_batch": per_put,
        "sent": len(sent_at),
        "applied": int(lags.size),
        "offered_per_s": len(sent_at) / max(put_end - first_timed, 1e-9),
        "applied_per_s": int(lags.size) / max(last_applied - first_timed, 1e-9),
        "lag_ms": lags * 1000.0,
        "put_ms": np.array(put_s) * 1000.0,
        "get_records_ms": np.array(steady_calls) * 1000.0,
        "handler_ms": np.array(steady_handler) * 1000.0,
        "dynamodb_load_ms": np.array(steady_dynamo["fetch"]) * 1000.0,
        "dynamodb_write_ms": np.array(steady_dynamo["write"]) * 1000.0,
        "batch_events": np.array(steady_sizes),
        "backlog": len(backlog),
        "backlog_put_s": backlog_put_s,
        "backlog_drained": drained,
        "backlog_per_s": backlog_rate,
        "backlog_dynamodb_share": backlog_dynamo_share,
        "throttled": throttled,
        "expired_iterators": expired,
        "moto_patched": not args.moto_as_is,
        "moto_errors": moto_errors,
    }


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


# ---- main ---------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="100,000 events, 25 repeats, lag 60 s")
    parser.add_argument("--events", type=int, default=None, help="events per format")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (median; >= 15)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-lag", action="store_true", help="skip the local Kinesis part")
    parser.add_argument("--lag-seconds", type=float, default=None, help="timed producing (15 s)")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s put on the stream")
    parser.add_argument("--put-batch", type=int, default=10, help="events per PutRecords")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument(
        "--moto-as-is",
        action="store_true",
        help="moto's TransactWriteItems unpatched (a deep copy of the table per item)",
    )
    parser.add_argument("--backlog", type=int, default=5_000, help="events put at once at the end")
    args = parser.parse_args()
    n = args.events or (100_000 if args.full else 10_000)
    repeats = max(15, args.repeats or (25 if args.full else 15))
    args.lag_s = args.lag_seconds or (60.0 if args.full else 15.0)
    args.warmup_s = 2.0
    source = "KuaiRand-Pure users and videos" if SHARED.exists() else "synthetic ids"
    sha = git_sha()
    print(
        f"# bench_ingest: {cpu_model()}, {os.cpu_count()} cores; git {sha}; "
        f"{n:,} events per format ({source}), median of {repeats}"
    )
    rows = []
    apply_rows = []
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
            "git_sha": sha,
        }
        print(json.dumps(line), flush=True)
        rows.append((fmt, n / cpp, n / python, same))
        if fmt in APPLY_FORMATS:
            cpp_a, python_a, alone, users, short = decode_and_apply(records, repeats, args.seed)
            line = {
                "bench": "ingest_decode_apply",
                "format": fmt,
                "events": n,
                "users": users,
                "repeats": repeats,
                "cpp_decode_apply_s": cpp_a,
                "python_decode_apply_s": python_a,
                "apply_s": alone,
                "passes_short": short,
                "seed": args.seed,
                "git_sha": sha,
            }
            print(json.dumps(line), flush=True)
            apply_rows.append((fmt, n / cpp_a, n / python_a, n / alone, alone / cpp_a, short))

    print("\nDecode only:\n")
    print("| format | recserve C++ records/s | plain Python records/s | ratio | agree |")
    print("|---|---|---|---|---|")
    for fmt, cpp_rate, python_rate, same in rows:
        name = f"{fmt} (events in aggregates of {PER_AGGREGATE})" if fmt.startswith("kpl") else fmt
        print(
            f"| {name} | {cpp_rate:,.0f} | {python_rate:,.0f} | ×{cpp_rate / python_rate:.1f} "
            f"| {'yes' if same else '**no**'} |"
        )
    print(f"\nDecode + apply (Profiles.apply, dims {DIMS}, events/s):\n")
    print(
        "| format | recserve C++ decode + apply | plain Python decode + apply | ratio "
        "| apply alone | apply's share of C++ decode + apply | every event applied |"
    )
    print("|---|---|---|---|---|---|---|")
    for fmt, cpp_rate, python_rate, alone_rate, share, short in apply_rows:
        print(
            f"| {fmt} | {cpp_rate:,.0f} | {python_rate:,.0f} | ×{cpp_rate / python_rate:.1f} "
            f"| {alone_rate:,.0f} | {share:.0%} | {'yes' if not short else f'**no** ({short})'} |"
        )
    if args.no_lag:
        return

    print(
        f"\nEnd to end through a local Kinesis ({args.shards} shards): {args.rate:g} events/s "
        f"in PutRecords of {args.put_batch} for {args.lag_s:g} s after {args.warmup_s:g} s of "
        "warm-up, binary records, Engine with DynamoDB state, poll interval 0.2 s\n",
        flush=True,
    )
    r = lag_run(args)
    lag, handler, calls = r["lag_ms"], r["handler_ms"], r["get_records_ms"]
    line = {
        "bench": "ingest_lag",
        **{k: v for k, v in r.items() if not isinstance(v, np.ndarray)},
        "lag_ms_p50": pct(lag, 50),
        "lag_ms_p99": pct(lag, 99),
        "lag_ms_max": float(lag.max()) if lag.size else float("nan"),
        "put_ms_p50": pct(r["put_ms"], 50),
        "get_records_ms_p50": pct(calls, 50),
        "get_records_calls": int(calls.size),
        "handler_ms_p50": pct(handler, 50),
        "handler_ms_p99": pct(handler, 99),
        "handler_batches": int(handler.size),
        "dynamodb_load_ms_p50": pct(r["dynamodb_load_ms"], 50),
        "dynamodb_write_ms_p50": pct(r["dynamodb_write_ms"], 50),
        "batch_events_p50": pct(r["batch_events"], 50),
        "seed": args.seed,
        "git_sha": sha,
    }
    print(json.dumps(line), flush=True)
    moto = "patched rollback copy" if r["moto_patched"] else "as is"
    print(
        f"Kinesis server: {r['kinesis_server']}; DynamoDB: moto ({moto}; "
        f"{r['moto_errors']} server errors); shards held {r['held']}\n"
    )
    print("| events | lag p50 ms | lag p99 ms | lag max ms | put events/s | applied events/s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {r['applied']:,} of {r['sent']:,} | {pct(lag, 50):.1f} | {pct(lag, 99):.1f} "
        f"| {line['lag_ms_max']:.1f} | {r['offered_per_s']:.1f} | {r['applied_per_s']:.1f} |"
    )
    print("\n| where the time goes (warm-up and timed part) | p50 ms | p99 ms | count |")
    print("|---|---|---|---|")
    for name, values in (
        (f"PutRecords of {args.put_batch} (producer)", r["put_ms"]),
        ("GetRecords call (consumer)", calls),
        ("handler: decode, DynamoDB load, apply, write-back", handler),
        ("… of which DynamoDB load (BatchGetItem, new users)", r["dynamodb_load_ms"]),
        ("… of which DynamoDB write-back (TransactWriteItems)", r["dynamodb_write_ms"]),
    ):
        print(f"| {name} | {pct(values, 50):.1f} | {pct(values, 99):.1f} | {values.size:,} |")
    print(
        f"| events per handled batch | {pct(r['batch_events'], 50):.0f} "
        f"| {pct(r['batch_events'], 99):.0f} | |"
    )
    if r["backlog"]:
        print(
            f"\nBacklog: {r['backlog']:,} events put at once ({r['backlog_put_s']:.2f} s to put), "
            f"{r['backlog_drained']:,} applied at {r['backlog_per_s']:,.0f} events/s "
            "(from the first put to the last apply); DynamoDB calls took "
            f"{r['backlog_dynamodb_share']:.0%} of the handler's time."
        )
    print(
        f"\nGetRecords throttled: {r['throttled']}; expired iterators: {r['expired_iterators']}. "
        "A shard is read at most every 0.2 s (5 GetRecords per second per shard), so an event "
        "waits on average ~100 ms, at most ~200 ms, for the next read of its shard, plus the "
        "GetRecords call and the handler."
    )


if __name__ == "__main__":
    main()
