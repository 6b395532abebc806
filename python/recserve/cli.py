"""The ``recserve`` command.

``recserve info``  which kernels this machine runs.
``recserve demo``  the retrieval stage of the feed loop on a real catalogue: builds the int8
                   index over MovieLens titles embedded with MiniLM (from ../shared/data when
                   present, else a seeded synthetic catalogue), checks its recall against
                   brute force, and serves "more like this" pages that never repeat a seen item.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from recserve import __version__, ann, simd

__all__ = ["main"]

_MINILM = Path("movielens-minilm-384")


def _default_data_dir() -> Path:
    return Path.cwd().parent / "shared" / "data"


def _load_catalog(data_dir: Path, seed: int) -> tuple[npt.NDArray[np.float32], list[str], str]:
    vectors_path = data_dir / _MINILM / "ml-latest-small_movies.f32.npy"
    texts_path = data_dir / _MINILM / "ml-latest-small_movies_texts.tsv"
    if vectors_path.exists() and texts_path.exists():
        vectors = np.load(vectors_path).astype(np.float32)
        with texts_path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))[1:]
        titles = [row[2].split(". Genres:")[0] for row in rows]
        return vectors, titles, f"MovieLens latest-small, MiniLM 384-d ({vectors_path})"
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((50, 64)).astype(np.float32)
    labels = rng.integers(0, 50, 5000)
    vectors = centers[labels] + 0.35 * rng.standard_normal((5000, 64)).astype(np.float32)
    titles = [f"item {i} (cluster {c})" for i, c in enumerate(labels)]
    return vectors, titles, "synthetic clustered catalogue, 5,000 x 64 (no ../shared/data found)"


def _recall(found: npt.NDArray[np.uint64], truth: npt.NDArray[np.int64]) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def demo(data_dir: Path, queries: int, seed: int) -> None:
    vectors, titles, source = _load_catalog(data_dir, seed)
    n, dims = vectors.shape
    print(f"recserve {__version__} · kernels: {simd.active_variant()} · catalogue: {source}")

    index = ann.Index(dims=dims, metric="cosine", dtype="int8", M=16, ef_construction=128)
    start = time.perf_counter()
    index.add(np.arange(n), vectors, threads=0)
    build_s = time.perf_counter() - start
    stats = index.stats()
    print(f"built an int8 HNSW index of {n:,} items in {build_s:.2f} s, "
          f"{stats['memory_bytes'] / 2**20:.1f} MiB ({stats['levels']} levels)")

    rng = np.random.default_rng(seed)
    picks = rng.choice(n, size=min(queries, n), replace=False)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    truth = np.argsort(-(unit[picks] @ unit.T), axis=1)[:, :10]
    print("\n  ef   recall@10   median latency (one query per call)")
    for ef in (16, 32, 64, 128):
        found = index.search(vectors[picks], k=10, ef=ef).ids
        latencies = []
        for row in picks[:200]:
            t0 = time.perf_counter_ns()
            index.search(vectors[row], k=10, ef=ef)
            latencies.append(time.perf_counter_ns() - t0)
        print(f"{ef:5d}   {_recall(found, truth):9.3f}   {np.median(latencies) / 1000:8.1f} µs")

    seed_item = int(picks[0])
    seen: list[int] = [seed_item]
    print(f"\nthree pages of 'more like {titles[seed_item]}', never repeating a seen item:")
    for page in range(3):
        result = index.search(vectors[seed_item], k=5, ef=64, exclude=seen)
        names = [titles[int(i)] for i in result.ids if int(i) != ann.MISSING_ID]
        print(f"  page {page + 1}: " + " · ".join(names))
        seen.extend(int(i) for i in result.ids)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recserve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"recserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="show the SIMD kernels this machine runs")
    demo_parser = commands.add_parser("demo", help="build and query an index on a real catalogue")
    demo_parser.add_argument("--data-dir", type=Path, default=_default_data_dir(),
                             help="the shared data directory (default: ../shared/data)")
    demo_parser.add_argument("--queries", type=int, default=500)
    demo_parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "info":
        print(f"recserve {__version__}")
        print(f"active ISA: {simd.active_isa()} ({simd.active_variant()})")
        print(f"available:  {', '.join(simd.available_isas())}")
    else:
        demo(args.data_dir, args.queries, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
