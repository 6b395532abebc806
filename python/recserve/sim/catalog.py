"""A catalogue that looks like a short-video app's, with the truth hidden behind it.

Each item has a hidden position in a latent space of topics (``latent``, unit rows) and a hidden
``quality``; what the engine sees is an embedding made from the latent position by a fixed
random projection plus noise, as a content model would give, and the item's creator,
duration and tags. With the KuaiRand-Pure video table (``../shared/data``), durations, authors
and tags are real and an item's topic is its first tag; without it a synthetic catalogue of
the same shape is drawn (``topics`` topics, 40 by default). Everything follows from the seed.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SimCatalog", "find_kuairand"]

KUAIRAND_VIDEOS = "video_features_basic_pure.csv"


def find_kuairand() -> Path | None:
    """The KuaiRand-Pure feature tables: ``$RECSERVE_KUAIRAND_DIR``, else
    ``../shared/data/kuairand-pure-features`` from the working directory, else None."""
    candidates = [
        os.environ.get("RECSERVE_KUAIRAND_DIR"),
        Path.cwd().parent / "shared/data/kuairand-pure-features",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / KUAIRAND_VIDEOS).is_file():
            return Path(candidate)
    return None


def _unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12))


@dataclass(frozen=True)
class _Meta:
    creators: list[str]
    durations_ms: npt.NDArray[np.int64]
    tags: list[list[str]]


def _kuairand_meta(directory: Path, n: int, rng: np.random.Generator) -> _Meta:
    rows = []
    with (directory / KUAIRAND_VIDEOS).open(newline="") as f:
        for row in csv.DictReader(f):
            duration = row["video_duration"]
            if duration and float(duration) > 0 and row["tag"]:
                rows.append(row)
    chosen = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    picked = [rows[i] for i in sorted(chosen.tolist())]
    return _Meta(
        creators=[f"a{row['author_id']}" for row in picked],
        durations_ms=np.array(
            [min(int(float(row["video_duration"])), 300_000) for row in picked], dtype=np.int64
        ),
        tags=[[f"t{t}" for t in row["tag"].split(",") if t] for row in picked],
    )


def _synthetic_meta(n: int, topics: int, rng: np.random.Generator) -> _Meta:
    # Short-video durations: mostly 7-60 s, a long tail to a few minutes (log-normal).
    durations = np.clip(np.exp(rng.normal(np.log(20_000), 0.7, n)), 3_000, 300_000)
    first = rng.integers(0, topics, n)
    second = rng.integers(0, topics, n)
    return _Meta(
        creators=[f"c{c}" for c in rng.zipf(1.6, n) % max(n // 8, 1)],
        durations_ms=durations.astype(np.int64),
        tags=[
            [f"t{a}"] + ([f"t{b}"] if b != a else []) for a, b in zip(first, second, strict=True)
        ],
    )


class SimCatalog:
    def __init__(
        self,
        n: int = 5_000,
        *,
        dims: int = 32,
        latent_dims: int = 16,
        noise: float = 0.35,
        seed: int = 0,
        kuairand: Path | None = None,
        topics: int = 40,
    ) -> None:
        """``topics``: how many hidden topics a synthetic catalogue draws (with ``kuairand``
        the topics are the videos' first tags, and this is ignored)."""
        self.rng = np.random.default_rng(seed)
        self.dims, self.latent_dims, self.noise = dims, latent_dims, noise
        meta = (
            _kuairand_meta(kuairand, n, self.rng)
            if kuairand is not None
            else _synthetic_meta(n, topics, self.rng)
        )
        self.source = "KuaiRand-Pure videos" if kuairand is not None else "synthetic"
        names = sorted({tags[0] for tags in meta.tags})
        self._topic_centres = {t: _unit(self.rng.standard_normal(latent_dims)) for t in names}
        self.projection = self.rng.standard_normal((latent_dims, dims)) / np.sqrt(latent_dims)
        self.creators = list(meta.creators)
        self.durations_ms = meta.durations_ms
        self.tags = [list(t) for t in meta.tags]
        self.latent = self._latent_of([tags[0] for tags in meta.tags])
        self.quality = self.rng.standard_normal(len(self.creators))
        self.embeddings = self._embed(self.latent)
        # swipes of the population before an item arrived; -1: the catalogue at the start
        self.created_step = np.full(len(self.creators), -1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.creators)

    def _latent_of(self, topics: list[str]) -> npt.NDArray[np.float64]:
        centres = np.array([self._topic_centres[t] for t in topics])
        spread = 0.45 / np.sqrt(self.latent_dims)  # a noise vector of norm ~0.45
        return _unit(centres + spread * self.rng.standard_normal(centres.shape))

    def _embed(self, latent: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        seen = latent @ self.projection
        seen += (
            self.noise
            * self.rng.standard_normal(seen.shape)
            * np.linalg.norm(seen, axis=1, keepdims=True)
            / np.sqrt(self.dims)
        )
        return _unit(seen).astype(np.float32)

    def id_of(self, index: int) -> str:
        return f"v{index}"

    def add_new(self, k: int, step: int) -> npt.NDArray[np.int64]:
        """k new items (hidden quality drawn afresh) arriving after ``step`` swipes of the
        population; their indices."""
        start = len(self)
        parents = self.rng.integers(0, start, k)  # new videos land in existing topics
        topics = [self.tags[p][0] for p in parents.tolist()]
        latent = self._latent_of(topics)
        self.latent = np.vstack([self.latent, latent])
        self.quality = np.concatenate([self.quality, self.rng.standard_normal(k)])
        self.embeddings = np.vstack([self.embeddings, self._embed(latent)])
        self.creators += [f"new{start + i}" for i in range(k)]
        self.durations_ms = np.concatenate([self.durations_ms, self.durations_ms[parents]])
        self.tags += [list(self.tags[p]) for p in parents.tolist()]
        self.created_step = np.concatenate([self.created_step, np.full(k, step)])
        return np.arange(start, start + k)

    def items(self, indices: Any, created_at: int) -> list[dict[str, Any]]:
        """The API's item bodies (``POST /v1/items``) of these items."""
        return [
            {
                "id": self.id_of(i),
                "embedding": self.embeddings[i].tolist(),
                "creator_id": self.creators[i],
                "duration_ms": int(self.durations_ms[i]),
                "tags": self.tags[i][:8],
                "created_at": created_at,
            }
            for i in np.asarray(indices).tolist()
        ]
