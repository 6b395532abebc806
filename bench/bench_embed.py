"""Benchmark recserve.embed.Table against what a Python developer would write instead.

    python bench/bench_embed.py            # 200,000 ids x 64 dims
    python bench/bench_embed.py --quick    # 20,000 ids

Measures, in one run, on the same ids and vectors:
  * set throughput (rows/s) in batches of 256, single writer, with one concurrent reader
    thread calling get(200 ids) in a loop (the feed reading while events apply);
  * get latency for 1 and for 200 ids (median and p99 µs, no writer running).
Peers: a dict from id to a numpy row, and a preallocated numpy matrix plus an id->row dict
behind a threading.Lock (readers take the lock too). Prints a Markdown table with ratios.
Benchmarks never assert.

This is the table alone: the issue's headline (event applies per second through the update
rules) needs the per-event update rules, which are not built yet.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import numpy as np

from recserve import embed

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
        engine.set(ids[b:b + BATCH], vectors[b:b + BATCH])  # type: ignore[attr-defined]
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
    arr = np.array(times[len(times) // 10:]) / 1000  # the first tenth is warm-up
    return float(np.median(arr)), float(np.percentile(arr, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = 20_000 if args.quick else args.ids
    rng = np.random.default_rng(args.seed)
    ids = rng.choice(2**62, n, replace=False).astype(np.uint64)
    vectors = rng.standard_normal((n, DIMS)).astype(np.float32)
    reader_ids = rng.choice(ids, (512, 200))
    one = rng.choice(ids, (5000, 1))
    two_hundred = rng.choice(ids, (2000, 200))

    engines = {"recserve embed.Table": Recserve(n), "numpy matrix + Lock": LockedMatrix(n),
               "dict of numpy rows": DictTable()}
    rows = {}
    for name, engine in engines.items():
        rate = set_rate(engine, ids, vectors, reader_ids)
        lat1 = get_latency(engine, one)
        lat200 = get_latency(engine, two_hundred)
        rows[name] = (rate, lat1, lat200)

    base = rows["recserve embed.Table"]
    print(f"# embed.Table benchmark: {n:,} ids x {DIMS} float32, set in batches of {BATCH} "
          "with one reader thread; get without a writer\n")
    print("| engine | set rows/s | × recserve | get 1 id median / p99 µs | "
          "get 200 ids median / p99 µs | × recserve (200) |")
    print("|---|---|---|---|---|---|")
    for name, (rate, lat1, lat200) in rows.items():
        print(f"| {name} | {rate:,.0f} | ×{rate / base[0]:.2f} | {lat1[0]:.1f} / {lat1[1]:.1f} | "
              f"{lat200[0]:.1f} / {lat200[1]:.1f} | ×{lat200[0] / base[2][0]:.2f} |")


if __name__ == "__main__":
    main()
