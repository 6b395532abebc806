"""Benchmark recserve's user state against what a Python developer would write instead.

    python bench/bench_embed.py            # 200,000 ids x 64 dims; 2,000,000 events
    python bench/bench_embed.py --quick    # 20,000 ids; 200,000 events

Measures, in one run:
  * event applies per second through the update rules (recserve.profiles), single writer,
    dims 64, batches of 4,096 events, with one concurrent reader thread reading 200 users'
    vectors in a loop; against a per-event Python loop applying the same rule to a numpy
    matrix behind a threading.Lock (dicts from id to row, counters, seen-sets and high-water
    marks in dicts), which also checks that both compute the same vectors;
  * embed.Table set throughput (rows/s) in batches of 256 with the same kind of reader;
  * embed.Table get latency for 1 and for 200 ids (median and p99 µs, no writer running),
    against a dict from id to a numpy row and a locked numpy matrix.
Prints Markdown tables with ratios. Benchmarks never assert.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import numpy as np

from recserve import embed
from recserve.profiles import EVENT_TYPES, Events, Profiles, ProfilesConfig, UpdateRule

DIMS = 64
BATCH = 256


class DictTable:
    """A dict of numpy rows: the simplest thing that works (the GIL is the lock)."""

    def __init__(self) -> None:
        self.rows: dict[int, np.ndarray] = {}

    def set(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        for i, v in zip(ids.tolist(), vectors, strict=True):
            self.rows[i] = v.copy()

    def get(self, ids: np.ndarray) -> np.ndarray:
        zero = np.zeros(DIMS, np.float32)
        return np.stack([self.rows.get(i, zero) for i in ids.tolist()])


class LockedMatrix:
    """A preallocated matrix, an id -> row dict, one threading.Lock for readers and writers."""

    def __init__(self, capacity: int) -> None:
        self.matrix = np.zeros((capacity, DIMS), np.float32)
        self.where: dict[int, int] = {}
        self.lock = threading.Lock()

    def set(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self.lock:
            rows = [self.where.setdefault(i, len(self.where)) for i in ids.tolist()]
            self.matrix[rows] = vectors

    def get(self, ids: np.ndarray) -> np.ndarray:
        with self.lock:
            rows = [self.where.get(i, -1) for i in ids.tolist()]
            out = self.matrix[rows]
        out[np.asarray(rows) < 0] = 0
        return out


class Recserve:
    def __init__(self, capacity: int) -> None:
        self.table = embed.Table(dims=DIMS, capacity=capacity)

    def set(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.table.set(ids, vectors)

    def get(self, ids: np.ndarray) -> np.ndarray:
        return self.table.get(ids).vectors


def set_rate(engine: object, ids: np.ndarray, vectors: np.ndarray, reader_ids: np.ndarray) -> float:
    """Rows per second written while one reader thread reads."""
    stop = threading.Event()
    get: Callable[[np.ndarray], np.ndarray] = engine.get  # type: ignore[attr-defined]

    def read() -> None:
        i = 0
        while not stop.is_set():
            get(reader_ids[i % len(reader_ids)])
            i += 1

    reader = threading.Thread(target=read)
    reader.start()
    start = time.perf_counter()
    for b in range(0, len(ids), BATCH):
        engine.set(ids[b : b + BATCH], vectors[b : b + BATCH])  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - start
    stop.set()
    reader.join()
    return len(ids) / elapsed


def get_latency(engine: object, queries: np.ndarray) -> tuple[float, float]:
    times = []
    for q in queries:
        t = time.perf_counter_ns()
        engine.get(q)  # type: ignore[attr-defined]
        times.append(time.perf_counter_ns() - t)
    arr = np.array(times[len(times) // 10 :]) / 1000  # the first tenth is warm-up
    return float(np.median(arr)), float(np.percentile(arr, 99))


class PythonProfiles:
    """The same update rule, one event at a time, as a Python developer would write it."""

    def __init__(self, rule: UpdateRule, users: int, items: int) -> None:
        self.rule = rule
        self.weights = [rule.weights[t] for t in EVENT_TYPES]
        self.curve = rule.completion_curve
        self.user_rows: dict[int, int] = {}
        self.long = np.zeros((users, DIMS), np.float32)
        self.session = np.zeros((users, DIMS), np.float32)
        self.item_rows: dict[int, int] = {}
        self.items = np.zeros((items, DIMS), np.float32)
        self.stats: dict[int, dict[str, int]] = {}
        self.seen: dict[int, set[int]] = {}
        self.high_water: dict[int, int] = {}
        self.last_ms: dict[int, int] = {}
        self.lock = threading.Lock()

    def set_items(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self.lock:
            for i, v in zip(ids.tolist(), vectors, strict=True):
                self.items[self.item_rows.setdefault(i, len(self.item_rows))] = v

    def weight(self, kind: int, watch: int, duration: int) -> float:
        r = self.rule
        if (
            kind in (1, 7)
            and watch < r.fast_skip_seconds * 1000
            and (duration == 0 or watch / duration < r.completion_threshold)
        ):
            return r.fast_skip_weight
        if kind != 1:
            return self.weights[kind]
        ratio = min(watch / duration, r.completion_cap)
        for (x0, y0), (x1, y1) in zip(self.curve, self.curve[1:], strict=False):
            if ratio <= x1:
                return self.weights[1] * (y0 + (ratio - x0) / (x1 - x0) * (y1 - y0))
        return self.weights[1] * self.curve[-1][1]

    def apply(self, e: Events) -> None:
        r = self.rule
        with self.lock:
            for user, item, kind, watch, duration, ts, seq in zip(
                e.users.tolist(),
                e.items.tolist(),
                e.types.tolist(),
                e.watch_ms.tolist(),
                e.duration_ms.tolist(),
                e.ts_ms.tolist(),
                e.seq.tolist(),
                strict=True,
            ):
                if seq <= self.high_water.get(user, 0):
                    continue
                self.high_water[user] = seq
                row = self.user_rows.setdefault(user, len(self.user_rows))
                last = self.last_ms.get(user)
                if last is not None and ts > last:
                    dt = (ts - last) / 1000
                    self.session[row] *= (
                        0.0
                        if dt > r.session_timeout_seconds
                        else 2 ** (-dt / r.session_half_life_seconds)
                    )
                self.last_ms[user] = ts if last is None else max(ts, last)
                w = self.weight(kind, watch, duration)
                item_row = self.item_rows.get(item)
                if item_row is not None and w != 0:
                    x = self.items[item_row]
                    for vectors, lr in ((self.long, r.lr_long), (self.session, r.lr_session)):
                        a = min(1.0, lr * abs(w))
                        vectors[row] = (1 - a) * vectors[row] + (a if w > 0 else -a) * x
                counters = self.stats.setdefault(item, {})
                name = EVENT_TYPES[kind]
                counters[name] = counters.get(name, 0) + 1
                if kind == 1:
                    counters["watch_ms"] = counters.get("watch_ms", 0) + watch
                self.seen.setdefault(user, set()).add(item)

    def get(self, users: np.ndarray) -> np.ndarray:
        with self.lock:
            rows = [self.user_rows.get(u, -1) for u in users.tolist()]
            return self.long[rows]


def event_batches(n: int, users: int, items: int, seed: int) -> list[Events]:
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n, 4096):
        m = min(4096, n - start)
        out.append(
            Events.of(
                users=rng.integers(0, users, m),
                items=rng.integers(0, items, m),
                types=rng.choice(
                    len(EVENT_TYPES), m, p=[0.3, 0.4, 0.05, 0.08, 0.02, 0.02, 0.01, 0.1, 0.02]
                ),
                watch_ms=rng.integers(0, 30_000, m),
                duration_ms=rng.integers(5_000, 30_000, m),
                ts_ms=start * 100 + np.arange(m) * 100,
                seq=np.arange(start + 1, start + m + 1),
            )
        )
    return out


def apply_rate(
    apply: Callable[[Events], object],
    read: Callable[[np.ndarray], object],
    batches: list[Events],
    reader_ids: np.ndarray,
) -> tuple[float, int]:
    """Events per second applied while one reader thread reads; and how many reads it made."""
    stop = threading.Event()
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            read(reader_ids[reads % len(reader_ids)])
            reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    start = time.perf_counter()
    for batch in batches:
        apply(batch)
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    return sum(len(b) for b in batches) / elapsed, reads


def bench_apply(n_ids: int, n_events: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    item_vectors = rng.standard_normal((n_ids, DIMS)).astype(np.float32)
    item_vectors /= np.linalg.norm(item_vectors, axis=1, keepdims=True)
    item_ids = np.arange(n_ids, dtype=np.uint64)
    reader_ids = rng.integers(0, n_ids, (512, 200)).astype(np.uint64)
    batches = event_batches(n_events, n_ids, n_ids, seed)
    loop_batches = batches[
        : max(1, len(batches) // 20)
    ]  # the loop is slow: a twentieth of the events

    profiles = Profiles(ProfilesConfig(dims=DIMS, user_capacity=2 * n_ids, item_capacity=2 * n_ids))
    profiles.set_items(item_ids, item_vectors)
    python = PythonProfiles(profiles.config.rule, n_ids, n_ids)
    python.set_items(item_ids, item_vectors)
    ours, our_reads = apply_rate(
        profiles.apply, lambda u: profiles.user_vectors(u, now_ms=0), batches, reader_ids
    )
    theirs, their_reads = apply_rate(python.apply, python.get, loop_batches, reader_ids)

    # Same rule, same answers: compare long-term vectors after the loop's events alone.
    check = Profiles(profiles.config)
    check.set_items(item_ids, item_vectors)
    for batch in loop_batches:
        check.apply(batch)
    touched = np.array(sorted(python.user_rows), dtype=np.uint64)
    rows = [python.user_rows[u] for u in touched.tolist()]
    diff = float(np.abs(check.user_vectors(touched, now_ms=0).long_term - python.long[rows]).max())

    print(
        f"# Event applies: {n_ids:,} users and items x {DIMS} float32, batches of 4,096 events, "
        "one writer, one reader thread reading 200 users' vectors in a loop\n"
    )
    print("| engine | events | applies/s | × Python loop | reader reads during the run |")
    print("|---|---|---|---|---|")
    for name, events, rate, reads in (
        ("recserve profiles.apply", sum(map(len, batches)), ours, our_reads),
        ("Python loop + numpy + Lock", sum(map(len, loop_batches)), theirs, their_reads),
    ):
        print(f"| {name} | {events:,} | {rate:,.0f} | ×{rate / theirs:.1f} | {reads:,} |")
    print(f"\nmax |long-term recserve - Python loop| over {len(touched):,} users: {diff:.2e}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--events", type=int, default=2_000_000)
    args = parser.parse_args()
    n = 20_000 if args.quick else args.ids
    bench_apply(n, args.events // 10 if args.quick else args.events, args.seed)
    rng = np.random.default_rng(args.seed)
    ids = rng.choice(2**62, n, replace=False).astype(np.uint64)
    vectors = rng.standard_normal((n, DIMS)).astype(np.float32)
    reader_ids = rng.choice(ids, (512, 200))
    one = rng.choice(ids, (5000, 1))
    two_hundred = rng.choice(ids, (2000, 200))

    engines = {
        "recserve embed.Table": Recserve(n),
        "numpy matrix + Lock": LockedMatrix(n),
        "dict of numpy rows": DictTable(),
    }
    rows = {}
    for name, engine in engines.items():
        rate = set_rate(engine, ids, vectors, reader_ids)
        lat1 = get_latency(engine, one)
        lat200 = get_latency(engine, two_hundred)
        rows[name] = (rate, lat1, lat200)

    base = rows["recserve embed.Table"]
    print(
        f"# embed.Table benchmark: {n:,} ids x {DIMS} float32, set in batches of {BATCH} "
        "with one reader thread; get without a writer\n"
    )
    print(
        "| engine | set rows/s | × recserve | get 1 id median / p99 µs | "
        "get 200 ids median / p99 µs | × recserve (200) |"
    )
    print("|---|---|---|---|---|---|")
    for name, (rate, lat1, lat200) in rows.items():
        print(
            f"| {name} | {rate:,.0f} | ×{rate / base[0]:.2f} | {lat1[0]:.1f} / {lat1[1]:.1f} | "
            f"{lat200[0]:.1f} / {lat200[1]:.1f} | ×{lat200[0] / base[2][0]:.2f} |"
        )


if __name__ == "__main__":
    main()
