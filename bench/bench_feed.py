"""Benchmark the feed service: assembly in process, and GET /v1/feed over HTTP against a bare
FastAPI endpoint that returns a list of the same size, in the same run.

    python bench/bench_feed.py             # 100k and 1M items in process; HTTP over 100k
    python bench/bench_feed.py --quick     # 20k and 100k in process; HTTP over 20k

Measures:
  * in process: ``FeedBuilder.build`` for n=10 from 200 ANN candidates (plus co-engagement,
    interest, exploration and trending candidates), dims 64, the built-in int8 ranker, over
    100k and 1M items; users with 30 events each (so the ANN path runs), 1 % of items in open
    amplification tiers. The native pipeline (one core call per page) and the reference
    pipeline in Python (``native=False``) on the same builder, one after the other: median and
    p99 per stage (retrieve, filter, rank, total, as each pipeline times itself) and of the
    whole ``build()`` call (Python included). Then pages per second with one and two threads
    calling ``build()`` at once, each pipeline.
  * over HTTP (uvicorn, one process each, on 127.0.0.1): recserve's GET /v1/feed/{user}?n=10
    against a bare FastAPI endpoint returning 10 items of the same shape. Closed loop: 64
    connections, each sending its next request when the last answer arrives; throughput.
    Open loop: requests sent on a fixed schedule at half the bare endpoint's throughput,
    latency counted from the scheduled time (so queueing counts); median and p99.
  * events: POST /v1/events with batches of 500, one batch per second (durable: fsync'd WAL,
    applied) for 10 s: latency median and p99; and back to back on one connection: batches/s.

Items: clustered synthetic vectors (seeded); creators, durations and tags drawn from the real
KuaiRand-Pure video table in ../shared/data when present. The load generator is an asyncio
client on raw sockets (HTTP/1.1 keep-alive) in this process; the servers run in their own
processes on the same 2-core machine, so all three share the CPU. Prints Markdown tables.
Benchmarks never assert.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402
from recserve.amplify import Amplifier  # noqa: E402
from recserve.catalog import Catalog, Item  # noqa: E402
from recserve.feed import (  # noqa: E402
    FeedBuilder,
    FeedConfig,  # noqa: E402
    ServedMemory,
    UserPrefs,
)
from recserve.profiles import EVENT_TYPES, Events, Profiles, ProfilesConfig  # noqa: E402
from recserve.rank import BUILTIN_VERSION, ModelRegistry  # noqa: E402
from recserve.retrieve import Trending  # noqa: E402
from recserve.simd import active_variant as simd_isa  # noqa: E402

DIMS = 64
STAGES = ("retrieve", "filter", "rank")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "kuairand-pure-features"
BARE_APP = """
from fastapi import FastAPI
app = FastAPI()
ITEMS = [
    {"item_id": f"v{i}", "score": 0.5, "source": "ann", "url": f"/media/v{i}"} for i in range(10)
]

@app.get("/v1/feed/{user_id}")
async def feed(user_id: str, n: int = 10):
    return {"request_id": "r", "user_id": user_id, "model_version": "bare", "experiment": None,
            "items": ITEMS[:n]}
"""


def kuairand_metadata() -> tuple[list[str], list[int], list[str]] | None:
    path = SHARED / "video_features_basic_pure.csv"
    if not path.exists():
        return None
    authors, durations, tags = [], [], []
    with path.open() as file:
        for row in csv.DictReader(file):
            authors.append(row["author_id"])
            durations.append(int(float(row["video_duration"] or 15000)) or 15000)
            tags.append(row["tag"] or "0")
    return authors, durations, tags


def make_items(n: int, seed: int) -> tuple[list[Item], np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((256, DIMS)).astype(np.float32)
    vectors = centres[rng.integers(0, 256, n)] + 0.5 * rng.standard_normal((n, DIMS))
    meta = kuairand_metadata()
    items = []
    for i in range(n):
        if meta is not None:
            j = i % len(meta[0])
            # A real video's author, duration and tags; its copies get distinct creators.
            creator, duration, tag = f"{meta[0][j]}-{i // len(meta[0])}", meta[1][j], meta[2][j]
        else:
            creator, duration, tag = f"c{i % 50_000}", 15_000, str(i % 40)
        items.append(Item(f"v{i}", creator, duration, tuple(tag.split(","))))
    return items, vectors.astype(np.float32)


def percentiles(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values)
    return float(np.median(array)), float(np.percentile(array, 99))


# ---- in process ---------------------------------------------------------------------------
def make_world(n_items: int, seed: int) -> tuple[FeedBuilder, object, int, int, float]:
    """A builder over n_items, 2,000 users with 30 events each, 1 % of items open: (builder,
    ranker, users, now_ms, index build seconds)."""
    items, vectors = make_items(n_items, seed)
    catalog = Catalog(DIMS, ef_construction=100)
    started = time.perf_counter()
    catalog.upsert(items, vectors)
    build_s = time.perf_counter() - started
    profiles = Profiles(ProfilesConfig(dims=DIMS, item_capacity=2 * n_items, user_capacity=1 << 16))
    keys = np.array([item.key for item in items], dtype=np.uint64)
    profiles.set_items(keys, vectors)
    rng = np.random.default_rng(seed)
    users = 2_000
    per_user = 30
    now_ms = int(time.time() * 1000)
    event_items = keys[rng.integers(0, n_items, users * per_user)]
    types = rng.choice([EVENT_TYPES.index("watch"), EVENT_TYPES.index("like")], users * per_user)
    profiles.apply(
        Events.of(
            users=np.repeat(np.arange(1, users + 1, dtype=np.uint64), per_user),
            items=event_items,
            types=types,
            watch_ms=rng.integers(1000, 15_000, users * per_user),
            duration_ms=np.full(users * per_user, 15_000),
            ts_ms=np.full(users * per_user, now_ms),
            seq=np.tile(np.arange(1, per_user + 1, dtype=np.uint64), users),
        )
    )
    amplifier = Amplifier()
    for key in rng.choice(keys, size=n_items // 100, replace=False).tolist():
        amplifier.enter(key, now_ms)
    trending = Trending()
    trending.add(event_items, types.astype(np.uint8), now_ms / 1000)
    ranker = ModelRegistry(Path(tempfile.gettempdir()), DIMS).get(BUILTIN_VERSION)
    builder = FeedBuilder(
        FeedConfig(), catalog, profiles, amplifier, trending, UserPrefs(), ServedMemory(500)
    )
    return builder, ranker, users, now_ms, build_s


def in_process(
    builder: FeedBuilder, ranker: object, users: int, now_ms: int, requests: int
) -> dict[str, tuple[float, float]]:
    """Per-stage medians and p99 (ms) as the pipeline times itself, and ``call``: the wall time
    of the whole build() call, Python included (what a caller pays)."""
    stages: dict[str, list[float]] = {}
    for r in range(requests + 100):
        started = time.perf_counter()
        result = builder.build(1 + r % users, 10, ranker, now_ms, seed=r)  # type: ignore[arg-type]
        call = time.perf_counter() - started
        if r >= 100:  # warm-up
            for stage, seconds in {**result.timings, "call": call}.items():
                stages.setdefault(stage, []).append(seconds * 1e3)
    return {stage: percentiles(ms) for stage, ms in stages.items()}


def pages_per_second(
    builder: FeedBuilder, ranker: object, users: int, now_ms: int, threads: int, seconds: float
) -> float:
    """Pages built by `threads` threads in `seconds`, each thread its own users, per second."""
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def work(t: int) -> None:
        r = t
        while time.perf_counter() < stop:
            builder.build(1 + r % users, 10, ranker, now_ms, seed=r)  # type: ignore[arg-type]
            r += threads
            counts[t] += 1

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts) / seconds


# ---- over HTTP ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url_port: int, path: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", url_port), timeout=1) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
                if b" 200 " in sock.recv(4096).split(b"\r\n", 1)[0] + b" ":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no server on port {url_port}")


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode()


async def closed_loop(port: int, paths: list[str], connections: int, seconds: float) -> float:
    done = 0
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal done, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        while time.perf_counter() < stop:
            status = await _request(reader, writer, _get(paths[i % len(paths)]))
            i += connections
            done += status == 200
            errors += status != 200
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    if errors:
        print(f"  ({errors} non-200 answers in the closed loop)")
    return done / (time.perf_counter() - started)


async def open_loop(port: int, paths: list[str], rate: float, seconds: float) -> list[float]:
    """Requests on a fixed schedule; latency from the scheduled time, in ms."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    start = time.perf_counter() + 0.05
    total = int(rate * seconds)

    async def one(i: int, due: float) -> None:
        connection = await pool.get()
        try:
            await _request(*connection, _get(paths[i % len(paths)]))
        finally:
            pool.put_nowait(connection)
        latencies.append((time.perf_counter() - due) * 1e3)

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return latencies


async def post_events(port: int, seconds: int, batch: int) -> tuple[list[float], float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    counter = 0

    def body() -> bytes:
        nonlocal counter
        events = []
        for i in range(batch):
            counter += 1
            events.append(
                {
                    "event_id": f"b{counter}",
                    "user_id": f"u{counter % 997}",
                    "item_id": f"v{i}",
                    "type": "watch",
                    "watch_ms": 5000,
                    "duration_ms": 15000,
                }
            )
        data = json.dumps({"events": events}).encode()
        return (
            b"POST /v1/events HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(data)}\r\n\r\n".encode()
            + data
        )

    latencies = []
    for _ in range(seconds):  # one batch a second
        raw = body()
        t0 = time.perf_counter()
        await _request(reader, writer, raw)
        latencies.append((time.perf_counter() - t0) * 1e3)
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))
    bodies = [body() for _ in range(20)]
    t0 = time.perf_counter()
    for raw in bodies:  # back to back
        await _request(reader, writer, raw)
    rate = len(bodies) / (time.perf_counter() - t0)
    writer.close()
    return latencies, rate


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env or dict(os.environ)
    )


def load(port: int, n_items: int, seed: int) -> float:
    """Posts the catalogue; returns the seconds it took."""
    items, vectors = make_items(n_items, seed)
    started = time.perf_counter()
    for lo in range(0, n_items, 5_000):
        payload = {
            "items": [
                {
                    "id": it.id,
                    "embedding": vectors[lo + j].round(5).tolist(),
                    "creator_id": it.creator_id,
                    "duration_ms": it.duration_ms,
                    "tags": list(it.tags),
                }
                for j, it in enumerate(items[lo : lo + 5_000])
            ]
        }
        data = json.dumps(payload).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            reader = sock.makefile("rb")
            sock.sendall(
                b"POST /v1/items HTTP/1.1\r\nhost: b\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
                + data
            )
            reader.read()
    return time.perf_counter() - started


def serve(work: Path, port: int, feed_threads: int, native: bool) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSERVE_")}
    env["RECSERVE_FEED__PRECOMPUTE"] = "false"  # measure assembly per request, not cache hits
    env["RECSERVE_FEED__NATIVE"] = str(native).lower()
    env["RECSERVE_FEED_THREADS"] = str(feed_threads)
    data = work / f"data-{feed_threads}-{native}"
    command = [sys.executable, "-m", "recserve", "serve", "--data-dir", str(data), "--port",
               str(port), "--dims", str(DIMS), "--log-level", "warning"]  # fmt: skip
    return start(command, env)


def http(n_items: int, seed: int, seconds: float, feed_threads: list[int]) -> None:
    """The bare endpoint, then recserve with the reference pipeline (the Python one: what every
    page cost before the native one) and with the native one once per feed_threads value, a fresh
    server each."""
    work = Path(tempfile.mkdtemp(prefix="bench-feed-"))
    (work / "bare_app.py").write_text(BARE_APP)
    bare = free_port()
    bare_server = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--app-dir",
            str(work),
            "--host",
            "127.0.0.1",
            "--port",
            str(bare),
            "--log-level",
            "warning",
        ]
    )
    paths = [f"/v1/feed/u{u}?n=10" for u in range(997)]  # users with events: ANN path
    try:
        wait_ready(bare, "/v1/feed/x")
        asyncio.run(closed_loop(bare, paths, 8, 2.0))  # warm-up
        bare_rps = asyncio.run(closed_loop(bare, paths, 64, seconds))
        rate = bare_rps / 2
        bare_p50, bare_p99 = percentiles(asyncio.run(open_loop(bare, paths, rate, seconds)))
        rows = []
        events_table = None
        load_s = 0.0
        for threads, native in [(0, False)] + [(t, True) for t in feed_threads]:
            ours = free_port()
            server = serve(work, ours, threads, native)
            try:
                wait_ready(ours, "/readyz")
                load_s = load(ours, n_items, seed)
                latencies_events, events_rate = asyncio.run(post_events(ours, 10, 500))
                if events_table is None:
                    events_table = (percentiles(latencies_events), events_rate)
                asyncio.run(closed_loop(ours, paths, 8, 2.0))  # warm-up
                rps = asyncio.run(closed_loop(ours, paths, 64, seconds))
                p50, p99 = percentiles(asyncio.run(open_loop(ours, paths, rate, seconds)))
                own50, own99 = percentiles(asyncio.run(open_loop(ours, paths, rps / 2, seconds)))
                rows.append((threads, native, rps, p50, p99, own50, own99))
            finally:
                server.terminate()
                server.wait(timeout=60)
        print(f"\n### Over HTTP, {n_items:,} items (loaded in {load_s:.0f} s)\n")
        print(f"open loop at {rate:,.0f} requests/s (half the bare endpoint's closed-loop rate); "
              "recserve also at half its own closed-loop rate\n")
        print("| endpoint | closed loop req/s (64 conn) | × bare | open loop p50 ms | p99 ms "
              "| at half its own rate: p50 / p99 ms |")
        print("|---|---|---|---|---|---|")
        print(f"| bare FastAPI endpoint | {bare_rps:,.0f} | ×1.00 | {bare_p50:.2f} "
              f"| {bare_p99:.2f} | |")
        for threads, native, rps, p50, p99, own50, own99 in rows:
            pipeline = "native" if native else "reference pipeline (native = false)"
            print(f"| recserve GET /v1/feed, {pipeline}, feed_threads {threads} | {rps:,.0f} "
                  f"| ×{rps / bare_rps:.2f} | {p50:.2f} | {p99:.2f} | {own50:.2f} / {own99:.2f} |")
        if events_table is not None:
            (p50, p99), events_rate = events_table
            print("\n| POST /v1/events, 500 per batch | median ms | p99 ms | back-to-back "
                  "batches/s |")
            print("|---|---|---|---|")
            print(
                f"| one batch a second, 10 s | {p50:.1f} | {p99:.1f} | {events_rate:.1f} "
                f"({events_rate * 500:,.0f} events/s) |"
            )
    finally:
        bare_server.terminate()
        bare_server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--thread-seconds", type=float, default=3.0)
    parser.add_argument(
        "--feed-threads", type=int, nargs="+", default=[0, 2],
        help="the service's feed_threads values to measure over HTTP, a server each",
    )  # fmt: skip
    parser.add_argument(
        "--in-process", action="store_true", help="feed assembly in process only (no HTTP)"
    )
    parser.add_argument("--http-only", action="store_true", help="over HTTP only")
    args = parser.parse_args()
    sizes = (20_000, 100_000) if args.quick else (100_000, 1_000_000)
    if args.http_only:
        print(f"# bench_feed: {cpu_model()}, {os.cpu_count()} cores, ISA {simd_isa()}")
        http(sizes[0], args.seed, args.seconds, args.feed_threads)
        return
    print(f"# bench_feed: {cpu_model()}, {os.cpu_count()} cores, ISA {simd_isa()}; dims {DIMS}, "
          "n=10, 200 candidates")
    print("\n### Feed assembly in process (ms per request)\n")
    print("native: FeedBuilder.build, one core call per page; reference: the same builder with "
          "native=False (the pipeline in Python). `call` is the wall time of build(), Python "
          "included.\n")
    print("| items | pipeline | retrieve p50/p99 | filter p50/p99 | rank p50/p99 | total p50/p99 "
          "| call p50 | call p99 |")
    print("|---|---|---|---|---|---|---|---|")
    worlds = []
    for n in sizes:
        builder, ranker, users, now_ms, _ = make_world(n, args.seed)
        worlds.append((n, builder, ranker, users, now_ms))
        for native in (True, False):
            builder.native = native
            r = in_process(builder, ranker, users, now_ms, args.requests)
            stages = " | ".join(f"{r[k][0]:.3f} / {r[k][1]:.3f}" for k in (*STAGES, "total"))
            print(f"| {n:,} | {'native' if native else 'reference'} | {stages} "
                  f"| {r['call'][0]:.3f} | {r['call'][1]:.3f} |", flush=True)
    print("\n### Pages per second in process, by feed threads\n")
    print("| items | pipeline | 1 thread | 2 threads | 2 threads / 1 |")
    print("|---|---|---|---|---|")
    for n, builder, ranker, users, now_ms in worlds:
        for native in (True, False):
            builder.native = native
            one = pages_per_second(builder, ranker, users, now_ms, 1, args.thread_seconds)
            two = pages_per_second(builder, ranker, users, now_ms, 2, args.thread_seconds)
            print(f"| {n:,} | {'native' if native else 'reference'} | {one:,.0f} | {two:,.0f} "
                  f"| {two / one:.2f} |", flush=True)
    del worlds
    if not args.in_process:
        http(sizes[0], args.seed, args.seconds, args.feed_threads)


if __name__ == "__main__":
    main()
