"""Shared seeded data for the Python tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from aws_servers import kinesalite_endpoint, moto_endpoint  # noqa: F401  (fixtures)


def clustered(n: int, dims: int, seed: int, clusters: int = 40) -> npt.NDArray[np.float32]:
    """Gaussian clusters: neighbours are meaningful, as with real item embeddings."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dims)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    return (centers[labels] + 0.4 * rng.standard_normal((n, dims))).astype(np.float32)


def brute_force(base: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int,
                metric: str) -> npt.NDArray[np.int64]:
    """Exact top-k row numbers under recserve's distance definitions."""
    if metric == "cosine":
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        dist = 1.0 - q @ b.T
    elif metric == "ip":
        dist = 1.0 - queries @ base.T
    else:
        dist = (queries**2).sum(1)[:, None] + (base**2).sum(1)[None, :] - 2.0 * queries @ base.T
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def recall(found: npt.NDArray[np.uint64], truth: npt.NDArray[np.int64]) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


@pytest.fixture(scope="session")
def items() -> npt.NDArray[np.float32]:
    return clustered(4000, 32, seed=1)


@pytest.fixture(scope="session")
def queries() -> npt.NDArray[np.float32]:
    return clustered(100, 32, seed=2)
