"""Benchmark recserve.ann against hnswlib, FAISS and USearch on the same data, in one run.

    python bench/bench_ann.py                 # small sizes, a couple of minutes on 2 cores
    python bench/bench_ann.py --full          # 200k synthetic + full GloVe 6B 50d
    python bench/bench_ann.py --engines hnswlib,recserve --datasets glove --json-out r.jsonl

Prints one JSON line per (data set, engine, measurement) on stdout, progress on stderr and a
Markdown table per data set at the end. bench/README.md says what each column means.
Benchmarks never assert: a failing measurement is reported and the run goes on.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import functools
import gc
import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO

# Before numpy and faiss load their OpenMP/BLAS runtimes: every query is timed on one thread,
# so no runtime may keep worker threads spinning. Builds and inserts ask for --threads.
os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

import datasets  # noqa: E402  (bench/datasets.py: python puts the script's folder first)
from machine import cpu_model  # noqa: E402  (bench/machine.py)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
MISSING = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
TARGETS = (0.90, 0.95, 0.99)
DEFAULT_EFS = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
DATASET_NAMES = ("synthetic", "glove")


@dataclass(frozen=True)
class Sizes:
    synthetic_n: int
    glove_n: int | None  # None: all 399,000 base rows and the provided ground truth
    n_insert: int
    queries: int


SMALL = Sizes(synthetic_n=20_000, glove_n=50_000, n_insert=2_000, queries=500)
FULL = Sizes(synthetic_n=200_000, glove_n=None, n_insert=10_000, queries=1_000)


@dataclass(frozen=True)
class Config:
    k: int = 10
    M: int = 16
    ef_construction: int = 128
    threads: int = 2
    repeats: int = 3
    efs: tuple[int, ...] = DEFAULT_EFS
    seed: int = 0
    remove_fraction: float = 0.10
    exclude_fraction: float = 0.30

    def params(self, **extra: Any) -> dict[str, Any]:
        base = {"k": self.k, "M": self.M, "ef_construction": self.ef_construction}
        return {**base, "threads": self.threads, **extra}


# --------------------------------------------------------------------------- engines


@contextlib.contextmanager
def omp_threads(n: int) -> Iterator[None]:
    """FAISS builds on n OpenMP threads, then goes back to one for the timed queries."""
    import faiss

    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(1)


def pad(ids: np.ndarray, k: int) -> np.ndarray:
    """k ids as uint64, with MISSING where the engine returned fewer."""
    ids = np.asarray(ids, dtype=np.uint64).reshape(-1)
    if len(ids) >= k:
        return ids[:k]
    out = np.full(k, MISSING, dtype=np.uint64)
    out[: len(ids)] = ids
    return out


class Engine(abc.ABC):
    """One ANN library behind the calls this benchmark makes; an instance holds one index.

    All engines get L2-normalised float32 vectors and uint64 ids and return uint64 ids;
    `search` takes one query, as a feed request does, and runs on one thread.
    """

    name: ClassVar[str]
    module: ClassVar[str]  # imported to decide whether the engine is available
    dist: ClassVar[str]  # the distribution whose version is recorded
    memory_source: ClassVar[str]  # how memory_bytes is obtained (recorded with the value)
    can_remove: ClassVar[bool] = True
    can_exclude: ClassVar[bool] = True

    def __init__(self, dims: int, cfg: Config) -> None:
        self.dims = dims
        self.cfg = cfg

    @classmethod
    def version(cls) -> str:
        try:
            return importlib.metadata.version(cls.dist)
        except importlib.metadata.PackageNotFoundError:
            return str(getattr(importlib.import_module(cls.module), "__version__", "unknown"))

    def params(self) -> dict[str, Any]:
        """Engine-specific parameters recorded in every JSON line."""
        return {}

    @abc.abstractmethod
    def build(self, ids: np.ndarray, vectors: np.ndarray, capacity: int, threads: int) -> None:
        """Index `vectors` under `ids`; `capacity` is the size after all later inserts."""

    @abc.abstractmethod
    def insert(self, ids: np.ndarray, vectors: np.ndarray, threads: int) -> None: ...

    @abc.abstractmethod
    def memory_bytes(self) -> int: ...

    @abc.abstractmethod
    def search(self, query: np.ndarray, k: int, ef: int) -> np.ndarray: ...

    def prepare_exclusion(self, excluded: np.ndarray) -> Any:
        """Turn the uint64 ids a request may not see into what `search_excluding` takes."""
        raise NotImplementedError

    def search_excluding(self, query: np.ndarray, k: int, ef: int, prepared: Any) -> np.ndarray:
        raise NotImplementedError

    def remove(self, ids: np.ndarray) -> None:
        raise NotImplementedError


class Hnswlib(Engine):
    name = "hnswlib"
    module = "hnswlib"
    dist = "hnswlib"
    memory_source = "index_file_size(): vectors + links + labels, without the label map"

    def __init__(self, dims: int, cfg: Config) -> None:
        super().__init__(dims, cfg)
        self.index: Any = None
        self._ef = -1
        self._id_bound = 0

    def params(self) -> dict[str, Any]:
        return {"space": "ip"}

    def build(self, ids: np.ndarray, vectors: np.ndarray, capacity: int, threads: int) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=self.dims)
        self.index.init_index(
            max_elements=capacity,
            M=self.cfg.M,
            ef_construction=self.cfg.ef_construction,
            random_seed=self.cfg.seed,
        )
        self.insert(ids, vectors, threads)

    def insert(self, ids: np.ndarray, vectors: np.ndarray, threads: int) -> None:
        self.index.add_items(vectors, ids, num_threads=threads)
        self._id_bound = max(self._id_bound, int(ids.max()) + 1)

    def memory_bytes(self) -> int:
        return int(self.index.index_file_size())

    def search(self, query: np.ndarray, k: int, ef: int) -> np.ndarray:
        return self._knn(query, k, ef, None)

    def prepare_exclusion(self, excluded: np.ndarray) -> Any:
        # The cheapest filter callable measured: bytes.__getitem__ maps a label to 0 or 1
        # without running Python bytecode (a lambda over a set is ~2x slower per call).
        allowed = np.ones(self._id_bound, dtype=np.uint8)
        allowed[excluded] = 0
        return allowed.tobytes().__getitem__

    def search_excluding(self, query: np.ndarray, k: int, ef: int, prepared: Any) -> np.ndarray:
        return self._knn(query, k, ef, prepared)

    def remove(self, ids: np.ndarray) -> None:
        for label in ids.tolist():
            self.index.mark_deleted(label)

    def _knn(self, query: np.ndarray, k: int, ef: int, keep: Any) -> np.ndarray:
        if ef != self._ef:
            self.index.set_ef(ef)
            self._ef = ef
        try:
            labels, _ = self.index.knn_query(query, k=k, num_threads=1, filter=keep)
        except RuntimeError:  # hnswlib raises when it finds fewer than k results
            return np.full(k, MISSING, dtype=np.uint64)
        return labels[0]


class FaissHnsw(Engine):
    """FAISS numbers vectors 0..n-1 in insertion order; the adapter maps them to our ids."""

    module = "faiss"
    dist = "faiss-cpu"
    memory_source = "len(faiss.serialize_index(index))"
    can_remove = False  # IndexHNSW::remove_ids is not implemented

    def __init__(self, dims: int, cfg: Config) -> None:
        super().__init__(dims, cfg)
        self.index: Any = None
        self._ids = np.empty(0, dtype=np.uint64)  # faiss label -> our id
        self._labels = np.empty(0, dtype=np.int64)  # our id -> faiss label
        self._params: dict[int, Any] = {}

    @abc.abstractmethod
    def _new_index(self, faiss: Any) -> Any: ...

    def build(self, ids: np.ndarray, vectors: np.ndarray, capacity: int, threads: int) -> None:
        import faiss

        self.index = self._new_index(faiss)
        self.index.hnsw.efConstruction = self.cfg.ef_construction
        with omp_threads(threads):
            if not self.index.is_trained:
                self.index.train(vectors)
        self.insert(ids, vectors, threads)

    def insert(self, ids: np.ndarray, vectors: np.ndarray, threads: int) -> None:
        with omp_threads(threads):
            self.index.add(vectors)
        self._ids = np.concatenate([self._ids, ids])
        self._labels = np.full(int(self._ids.max()) + 1, -1, dtype=np.int64)
        self._labels[self._ids] = np.arange(len(self._ids))

    def memory_bytes(self) -> int:
        import faiss

        return int(faiss.serialize_index(self.index).size)

    def search(self, query: np.ndarray, k: int, ef: int) -> np.ndarray:
        params = self._params.get(ef)
        if params is None:
            import faiss

            params = self._params[ef] = faiss.SearchParametersHNSW(efSearch=ef)
        return self._search(query, k, params)

    def prepare_exclusion(self, excluded: np.ndarray) -> Any:
        import faiss

        allowed = np.ones(len(self._ids), dtype=bool)
        allowed[self._labels[excluded]] = False
        return faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))

    def search_excluding(self, query: np.ndarray, k: int, ef: int, prepared: Any) -> np.ndarray:
        import faiss

        return self._search(query, k, faiss.SearchParametersHNSW(sel=prepared, efSearch=ef))

    def _search(self, query: np.ndarray, k: int, params: Any) -> np.ndarray:
        _, labels = self.index.search(query[None, :], k, params=params)
        labels = labels[0]
        return np.where(labels >= 0, self._ids[labels], MISSING)


class FaissHnswFlat(FaissHnsw):
    name = "faiss-hnsw-flat"

    def params(self) -> dict[str, Any]:
        return {"index": "IndexHNSWFlat", "metric": "METRIC_INNER_PRODUCT"}

    def _new_index(self, faiss: Any) -> Any:
        return faiss.IndexHNSWFlat(self.dims, self.cfg.M, faiss.METRIC_INNER_PRODUCT)


class FaissHnswSq8(FaissHnsw):
    name = "faiss-hnsw-sq8"

    def params(self) -> dict[str, Any]:
        return {"index": "IndexHNSWSQ", "qtype": "QT_8bit", "metric": "METRIC_INNER_PRODUCT"}

    def _new_index(self, faiss: Any) -> Any:
        qtype = faiss.ScalarQuantizer.QT_8bit
        return faiss.IndexHNSWSQ(self.dims, qtype, self.cfg.M, faiss.METRIC_INNER_PRODUCT)


class Usearch(Engine):
    module = "usearch.index"
    dist = "usearch"
    memory_source = "index.memory_usage"
    can_exclude = False  # the Python binding has no filter/predicate on search
    dtype: ClassVar[str]

    def __init__(self, dims: int, cfg: Config) -> None:
        super().__init__(dims, cfg)
        self.index: Any = None
        self._ef = -1

    def params(self) -> dict[str, Any]:
        return {"metric": "cos", "dtype": self.dtype}

    def build(self, ids: np.ndarray, vectors: np.ndarray, capacity: int, threads: int) -> None:
        from usearch.index import Index

        self.index = Index(
            ndim=self.dims,
            metric="cos",
            dtype=self.dtype,
            connectivity=self.cfg.M,
            expansion_add=self.cfg.ef_construction,
        )
        self.insert(ids, vectors, threads)

    def insert(self, ids: np.ndarray, vectors: np.ndarray, threads: int) -> None:
        self.index.add(ids, vectors, threads=threads)

    def memory_bytes(self) -> int:
        return int(self.index.memory_usage)

    def search(self, query: np.ndarray, k: int, ef: int) -> np.ndarray:
        if ef != self._ef:
            self.index.expansion_search = ef
            self._ef = ef
        return pad(self.index.search(query, k, threads=1).keys, k)

    def remove(self, ids: np.ndarray) -> None:
        self.index.remove(ids)


class UsearchF32(Usearch):
    name = "usearch-f32"
    dtype = "f32"


class UsearchI8(Usearch):
    name = "usearch-i8"
    dtype = "i8"


class Recserve(Engine):
    module = "recserve.ann"
    dist = "recserve"
    memory_source = 'index.stats()["memory_bytes"]'
    dtype: ClassVar[str]
    rerank: ClassVar[bool] = False

    def __init__(self, dims: int, cfg: Config) -> None:
        super().__init__(dims, cfg)
        self.index: Any = None

    def params(self) -> dict[str, Any]:
        return {"metric": "cosine", "dtype": self.dtype, "rerank": self.rerank}

    def build(self, ids: np.ndarray, vectors: np.ndarray, capacity: int, threads: int) -> None:
        import recserve.ann

        self.index = recserve.ann.Index(
            dims=self.dims,
            metric="cosine",
            dtype=self.dtype,
            M=self.cfg.M,
            ef_construction=self.cfg.ef_construction,
            rerank=self.rerank,
            seed=self.cfg.seed,
        )
        self.insert(ids, vectors, threads)

    def insert(self, ids: np.ndarray, vectors: np.ndarray, threads: int) -> None:
        self.index.add(ids, vectors, threads=threads)

    def memory_bytes(self) -> int:
        return int(self.index.stats()["memory_bytes"])

    def search(self, query: np.ndarray, k: int, ef: int) -> np.ndarray:
        ids, _ = self.index.search(query, k=k, ef=ef)
        return pad(ids, k)

    def prepare_exclusion(self, excluded: np.ndarray) -> Any:
        return excluded  # recserve takes the uint64 ids as they come with the request

    def search_excluding(self, query: np.ndarray, k: int, ef: int, prepared: Any) -> np.ndarray:
        ids, _ = self.index.search(query, k=k, ef=ef, exclude=prepared)
        return pad(ids, k)

    def remove(self, ids: np.ndarray) -> None:
        self.index.remove(ids)
        self.index.compact()  # also runs in the background; run it now for a fixed state


class RecserveI8(Recserve):
    name = "recserve-i8"
    dtype = "int8"


class RecserveI8Rerank(Recserve):
    name = "recserve-i8-rerank"
    dtype = "int8"
    rerank = True


class RecserveF32(Recserve):
    name = "recserve-f32"
    dtype = "float32"


ENGINES: tuple[type[Engine], ...] = (
    Hnswlib,
    FaissHnswFlat,
    FaissHnswSq8,
    UsearchF32,
    UsearchI8,
    RecserveI8,
    RecserveI8Rerank,
    RecserveF32,
)


def select_engines(spec: str | None) -> tuple[list[type[Engine]], list[tuple[str, str]]]:
    """Engines named in `spec` (a name or a family such as "faiss"; all when None) that
    import, and (name, reason) for those that do not."""
    wanted = None if spec is None else [w.strip() for w in spec.split(",") if w.strip()]
    chosen = [
        e
        for e in ENGINES
        if wanted is None or any(e.name == w or e.name.startswith(w + "-") for w in wanted)
    ]
    available, skipped = [], []
    for engine in chosen:
        try:
            importlib.import_module(engine.module)
        except Exception as exc:  # an engine that cannot load is skipped, not fatal
            skipped.append((engine.name, f"{type(exc).__name__}: {exc}"))
        else:
            available.append(engine)
    return available, skipped


# --------------------------------------------------------------------------- workload


@dataclass
class Workload:
    """A data set plus the seeded removal and exclusion sets and their exact neighbours."""

    data: datasets.Dataset
    excluded: list[np.ndarray]  # per query, the uint32 rows it may not return
    exclude_gt: np.ndarray  # uint64 [q, k]: exact top-k over the rows each query may see
    removed: np.ndarray  # uint64 ids removed in the removal measurement
    remove_gt: np.ndarray  # uint64 [q, k]: exact top-k over the rows left after removal

    def excluded_rows(self, query: int) -> np.ndarray:
        return self.excluded[query]

    def excluded_ids(self, query: int) -> np.ndarray:
        return self.data.ids[self.excluded[query]]


def make_workload(data: datasets.Dataset, cfg: Config) -> Workload:
    n, k = len(data.ids), cfg.k
    rng = np.random.default_rng([cfg.seed, 1])
    excluded = [
        np.flatnonzero(rng.random(n) < cfg.exclude_fraction).astype(np.uint32)
        for _ in range(len(data.queries))
    ]
    removed = rng.choice(data.ids, size=int(n * cfg.remove_fraction), replace=False)
    keep = ~np.isin(data.ids, removed)
    work = Workload(data, excluded, np.empty(0), removed, np.empty(0))
    work.exclude_gt = datasets.exact_topk(
        data.queries, data.vectors, data.ids, k, excluded=work.excluded_rows
    )
    work.remove_gt = datasets.exact_topk(data.queries, data.vectors[keep], data.ids[keep], k)
    return work


def load_dataset(name: str, sizes: Sizes, data_dir: Path, cfg: Config) -> datasets.Dataset:
    if name == "synthetic":
        return datasets.synthetic_clusters(
            sizes.synthetic_n, sizes.n_insert, sizes.queries, cfg.k, seed=cfg.seed
        )
    return datasets.glove(data_dir, sizes.glove_n, sizes.n_insert, sizes.queries, cfg.k, cfg.seed)


# --------------------------------------------------------------------------- measurements


def now_ns() -> int:
    return time.perf_counter_ns()


def recall_at_k(found: np.ndarray, gt: np.ndarray) -> float:
    hits = (found[:, :, None] == gt[:, None, :]).any(axis=2).sum()
    return float(hits / gt.size)


def qps(latency_ns: np.ndarray) -> float:
    """Queries per second from [repeats, queries] latencies: median over repeats."""
    return float(1e9 / np.median(latency_ns.mean(axis=1)))


def p50_us(latency_ns: np.ndarray) -> float:
    return float(np.median(latency_ns) / 1e3)


def time_queries(
    search: Callable[[np.ndarray], np.ndarray], queries: Sequence[np.ndarray], k: int, repeats: int
) -> tuple[np.ndarray, np.ndarray]:
    """Results of the first pass and [repeats, queries] latencies, one query per call."""
    found = np.empty((len(queries), k), dtype=np.uint64)
    latency = np.empty((repeats, len(queries)), dtype=np.int64)
    for rep in range(repeats):
        for i, query in enumerate(queries):
            start = now_ns()
            ids = search(query)
            latency[rep, i] = now_ns() - start
            if rep == 0:
                found[i] = ids
    return found, latency


@dataclass(frozen=True)
class SweepPoint:
    ef: int
    recall: float
    qps: float
    p50_us: float


def smallest_ef_reaching(points: Sequence[SweepPoint], target: float) -> SweepPoint | None:
    return next((p for p in points if p.recall >= target), None)


@dataclass
class Row:
    """One engine's line in the table; None where not measured or not supported."""

    engine: str
    build_s: float | None = None
    memory_bytes: int | None = None
    at_target: dict[float, SweepPoint | None] = field(default_factory=dict)
    inserts_per_s: float | None = None
    recall_removed: float | None = None
    exclude_recall: float | None = None
    exclude_p50_us: float | None = None
    exclude_ratio: float | None = None
    notes: list[str] = field(default_factory=list)


class Recorder:
    """Prints each record as one JSON line (and appends it to --json-out as it goes)."""

    def __init__(self, common: dict[str, Any], out: TextIO | None) -> None:
        self.common = common
        self.out = out

    def bind(self, **fields: Any) -> Recorder:
        """A recorder that adds `fields` to every record and writes to the same file."""
        return Recorder({**self.common, **fields}, self.out)

    def emit(self, **fields: Any) -> None:
        line = json.dumps({**self.common, **fields})
        print(line, flush=True)
        if self.out is not None:
            print(line, file=self.out, flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class EngineBench:
    """Runs every measurement for one engine on one workload, in an order where each step
    leaves the index as the next one expects: build, insert, sweep, exclusion, removal."""

    def __init__(self, engine_cls: type[Engine], work: Workload, cfg: Config, rec: Recorder):
        self.work, self.data, self.cfg = work, work.data, cfg
        self.engine = engine_cls(work.data.dims, cfg)
        self.queries = list(work.data.queries)
        self.row = Row(engine_cls.name)
        self.emit = rec.bind(engine=engine_cls.name, engine_version=engine_cls.version()).emit

    def params(self, **extra: Any) -> dict[str, Any]:
        return self.cfg.params(**self.engine.params(), **extra)

    def run(self) -> Row:
        try:
            self.build()
            self.insert()
            ef = self.sweep()
        except Exception as exc:  # report and go on with the next engine
            self.row.notes.append(f"{type(exc).__name__}: {exc}")
            self.emit(measure="error", params=self.params(), error=repr(exc))
            return self.row
        self.guarded("exclude", self.engine.can_exclude, self.exclusion, ef)
        self.guarded("remove", self.engine.can_remove, self.removal, ef)
        return self.row

    def guarded(self, measure: str, supported: bool, step: Callable[[int], None], ef: int) -> None:
        if not supported:
            self.emit(measure=measure, params=self.params(ef=ef), supported=False)
            return
        try:
            step(ef)
        except Exception as exc:  # report and go on: benchmarks never stop on one failure
            self.row.notes.append(f"{measure}: {type(exc).__name__}: {exc}")
            self.emit(measure=measure, params=self.params(ef=ef), error=repr(exc))

    def build(self) -> None:
        data, n_build = self.data, self.data.n_build
        start, cpu_start = now_ns(), time.process_time_ns()
        self.engine.build(
            data.ids[:n_build], data.vectors[:n_build], len(data.ids), self.cfg.threads
        )
        seconds = (now_ns() - start) / 1e9
        cpu_seconds = (time.process_time_ns() - cpu_start) / 1e9
        memory = self.engine.memory_bytes()
        self.row.build_s, self.row.memory_bytes = seconds, memory
        self.emit(
            measure="build",
            params=self.params(vectors=n_build),
            build_s=seconds,
            build_cpu_s=cpu_seconds,
            memory_bytes=memory,
            memory_source=self.engine.memory_source,
            bytes_per_vector=memory / n_build,
        )
        log(f"  {self.row.engine}: build {seconds:.1f} s, {memory / 2**20:.1f} MB")

    def insert(self) -> None:
        data, n_build = self.data, self.data.n_build
        start, cpu_start = now_ns(), time.process_time_ns()
        self.engine.insert(data.ids[n_build:], data.vectors[n_build:], self.cfg.threads)
        seconds = (now_ns() - start) / 1e9
        cpu_seconds = (time.process_time_ns() - cpu_start) / 1e9
        self.row.inserts_per_s = data.n_insert / seconds
        self.emit(
            measure="insert",
            params=self.params(vectors=data.n_insert, into=n_build),
            insert_s=seconds,
            insert_cpu_s=cpu_seconds,
            inserts_per_s=self.row.inserts_per_s,
        )

    def sweep(self) -> int:
        """Recall and single-query QPS per ef, up to the first ef reaching the top target.
        Returns the ef of recall 0.95 (or the largest ef swept) for the later steps."""
        cfg, points = self.cfg, []
        for query in self.queries[:100]:  # warm caches and lazy allocations
            self.engine.search(query, cfg.k, cfg.efs[0])
        for ef in cfg.efs:
            search = functools.partial(self.engine.search, k=cfg.k, ef=ef)
            found, latency = time_queries(search, self.queries, cfg.k, cfg.repeats)
            point = SweepPoint(ef, recall_at_k(found, self.data.gt), qps(latency), p50_us(latency))
            points.append(point)
            self.emit(
                measure="search",
                params=self.params(ef=ef, queries=len(self.queries), repeats=cfg.repeats),
                recall=point.recall,
                qps=point.qps,
                p50_us=point.p50_us,
                p99_us=float(np.percentile(latency, 99) / 1e3),
            )
            if point.recall >= max(TARGETS):
                break
        self.row.at_target = {t: smallest_ef_reaching(points, t) for t in TARGETS}
        at_95 = self.row.at_target[0.95]
        return at_95.ef if at_95 is not None else points[-1].ef

    def exclusion(self, ef: int) -> None:
        """Each query excludes its own fixed 30 % of the ids; timed against plain searches
        at the same ef, alternating passes so that machine noise hits both alike."""
        cfg, engine, work = self.cfg, self.engine, self.work
        shape = (cfg.repeats, len(self.queries))
        plain, prepare, search = (np.empty(shape, dtype=np.int64) for _ in range(3))
        found = np.empty((len(self.queries), cfg.k), dtype=np.uint64)
        leaked = 0
        for rep in range(cfg.repeats):
            for i, query in enumerate(self.queries):
                work.excluded_ids(i)  # untimed, as below, so both passes see the same churn
                start = now_ns()
                engine.search(query, cfg.k, ef)
                plain[rep, i] = now_ns() - start
            for i, query in enumerate(self.queries):
                excluded = work.excluded_ids(i)
                start = now_ns()
                prepared = engine.prepare_exclusion(excluded)
                mid = now_ns()
                ids = engine.search_excluding(query, cfg.k, ef, prepared)
                end = now_ns()
                prepare[rep, i], search[rep, i] = mid - start, end - mid
                if rep == 0:
                    found[i] = ids
                    leaked += int(np.isin(ids, excluded).sum())
        total = prepare + search
        row = self.row
        row.exclude_recall = recall_at_k(found, work.exclude_gt)
        row.exclude_p50_us = p50_us(total)
        row.exclude_ratio = row.exclude_p50_us / p50_us(plain)
        self.emit(
            measure="exclude",
            params=self.params(ef=ef, excluded_fraction=cfg.exclude_fraction),
            recall=row.exclude_recall,
            p50_us=row.exclude_p50_us,
            p50_us_prepare=p50_us(prepare),
            p50_us_search=p50_us(search),
            p50_us_unfiltered=p50_us(plain),
            latency_ratio=row.exclude_ratio,
            excluded_ids_returned=leaked,
        )

    def removal(self, ef: int) -> None:
        """Remove a seeded 10 % of the ids, then search at the ef of recall 0.95."""
        cfg, work = self.cfg, self.work
        start = now_ns()
        self.engine.remove(work.removed)
        seconds = (now_ns() - start) / 1e9
        search = functools.partial(self.engine.search, k=cfg.k, ef=ef)
        found, latency = time_queries(search, self.queries, cfg.k, repeats=1)
        self.row.recall_removed = recall_at_k(found, work.remove_gt)
        self.emit(
            measure="remove",
            params=self.params(ef=ef, removed=len(work.removed)),
            remove_s=seconds,
            recall=self.row.recall_removed,
            p50_us=p50_us(latency),
            removed_ids_returned=int(np.isin(found, work.removed).sum()),
        )


# --------------------------------------------------------------------------- table


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def ratio(value: float | None, base: float | None) -> str:
    return "—" if value is None or not base else f"×{value / base:.2f}"


def qps_cell(point: SweepPoint | None) -> str:
    return "—" if point is None else f"{point.qps:,.0f} (ef {point.ef})"


def exclude_cell(row: Row) -> str:
    if row.exclude_recall is None:
        return "—"
    return f"{row.exclude_recall:.3f} / {row.exclude_p50_us:,.0f} µs (×{row.exclude_ratio:.1f})"


def render_table(data: datasets.Dataset, rows: Sequence[Row]) -> str:
    base = next((r for r in rows if r.engine == Hnswlib.name), None)

    def vs_base(get: Callable[[Row], float | None], row: Row) -> str:
        return ratio(get(row), get(base) if base is not None else None)

    def qps95(r: Row) -> float | None:
        point = r.at_target.get(0.95)
        return point.qps if point is not None else None

    def memory_mb(r: Row) -> float | None:
        return None if r.memory_bytes is None else r.memory_bytes / 2**20

    header = [
        "engine", "build s", "memory MB", "QPS@0.90", "QPS@0.95", "QPS@0.99", "inserts/s",
        "recall, 10% removed", "30% excluded: recall / p50 (× unfiltered)",
        "build ×hnswlib", "memory ×hnswlib", "QPS@0.95 ×hnswlib", "inserts ×hnswlib",
    ]  # fmt: skip
    lines = [
        f"### {data.name}: {len(data.ids):,} × {data.dims} ({data.source}), "
        f"{len(data.queries):,} queries",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in rows:
        cells = [
            r.engine,
            fmt(r.build_s, ".1f"),
            fmt(memory_mb(r), ".1f"),
            *(qps_cell(r.at_target.get(t)) for t in TARGETS),
            fmt(r.inserts_per_s, ",.0f"),
            fmt(r.recall_removed, ".3f"),
            exclude_cell(r),
            vs_base(lambda x: x.build_s, r),
            vs_base(memory_mb, r),
            vs_base(qps95, r),
            vs_base(lambda x: x.inserts_per_s, r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"- {r.engine}: {note}" for r in rows for note in r.notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def recserve_isa() -> str:
    try:
        import recserve.simd

        return str(recserve.simd.active_isa())
    except ImportError:
        return "unavailable"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--full", action="store_true", help="200k synthetic and the full GloVe")
    p.add_argument("--datasets", default=",".join(DATASET_NAMES), help="comma-separated")
    p.add_argument(
        "--engines",
        default=None,
        help="comma-separated names or families (hnswlib, faiss, usearch, recserve); "
        "default: every engine that imports",
    )
    p.add_argument("--list-engines", action="store_true", help="list engines and exit")
    p.add_argument("--threads", type=int, default=2, help="threads for builds and inserts")
    p.add_argument("--repeats", type=int, default=3, help="timed passes; medians reported")
    p.add_argument("--queries", type=int, default=None, help="override the number of queries")
    p.add_argument("--efs", default=",".join(map(str, DEFAULT_EFS)), help="ef values to sweep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--json-out", type=Path, default=None, help="also write the JSON lines here")
    return p.parse_args(argv)


def list_engines() -> None:
    available, skipped = select_engines(None)
    for engine in available:
        print(f"{engine.name:20} available ({engine.dist} {engine.version()})")
    for name, reason in skipped:
        print(f"{name:20} skipped: {reason}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_engines:
        list_engines()
        return 0
    cfg = Config(
        threads=args.threads,
        repeats=args.repeats,
        efs=tuple(sorted(int(e) for e in args.efs.split(","))),
        seed=args.seed,
    )
    sizes = FULL if args.full else SMALL
    if args.queries is not None:
        sizes = Sizes(sizes.synthetic_n, sizes.glove_n, sizes.n_insert, args.queries)
    engines, skipped = select_engines(args.engines)
    common = {
        "bench": "ann",
        "git_sha": git_sha(),
        "isa": recserve_isa(),
        "cpu": cpu_model(),
        "full": args.full,
    }
    tables, start = [], now_ns()
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(args.json_out.open("w")) if args.json_out else None
        rec = Recorder(common, out)
        for name, reason in skipped:
            log(f"skipping {name}: {reason}")
            rec.emit(engine=name, measure="skipped", reason=reason)
        for name in (d.strip() for d in args.datasets.split(",")):
            tables.append(bench_dataset(name, sizes, args.data_dir, cfg, engines, rec))
    log(f"total {(now_ns() - start) / 1e9:.0f} s")
    if skipped:
        tables.append(f"Skipped (import failed): {', '.join(name for name, _ in skipped)}")
    print("\n\n".join(tables))
    return 0


def bench_dataset(
    name: str,
    sizes: Sizes,
    data_dir: Path,
    cfg: Config,
    engines: Sequence[type[Engine]],
    rec: Recorder,
) -> str:
    if name not in DATASET_NAMES:
        raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(DATASET_NAMES)}")
    start = now_ns()
    data = load_dataset(name, sizes, data_dir, cfg)
    work = make_workload(data, cfg)
    seconds = (now_ns() - start) / 1e9
    log(f"[{data.name}] {len(data.ids):,} x {data.dims}, ground truth etc. in {seconds:.1f} s")
    rec = rec.bind(dataset=data.name, n=len(data.ids), dims=data.dims)
    rec.emit(measure="dataset", source=data.source, queries=len(data.queries), prepare_s=seconds)
    rows = []
    for engine_cls in engines:
        start = now_ns()
        rows.append(EngineBench(engine_cls, work, cfg, rec).run())
        log(f"  {engine_cls.name}: done in {(now_ns() - start) / 1e9:.1f} s")
        gc.collect()
    return render_table(data, rows)


if __name__ == "__main__":
    sys.exit(main())
