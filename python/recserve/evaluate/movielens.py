"""MovieLens-100K as a replay log: its ratings as events, its films as a catalogue.

    catalogue, events = movielens_log("../shared/data/movielens-100k")
    result = replay(events, catalogue)

Inputs (never copied into the repository; GroupLens terms forbid redistribution):
``u.data`` (user, item, rating 1-5, Unix time) and ``u.item`` (release dates, genres) in the
MovieLens directory; the MiniLM vectors of the films, ``ml-100k_items.f32.npy`` (row i = item
i + 1), in ``movielens-minilm-384`` beside it (``vectors`` names another file).

Each rating becomes an impression (the film was shown: what a client posts when it shows an
item, and what the ranker's rate features count) followed by the outcome events of
``recserve.train.movielens`` (the log the ranker is trained on), all at the rating's time, in
the order of ``u.data`` sorted by (time, user, item):

======  ==================================================================
rating  events
======  ==================================================================
5       a full watch and a like         (an engagement)
4       a full watch                    (an engagement)
3       a watch of half the duration
1, 2    a watch of 1.5 s and a skip     (a fast skip: a negative signal)
======  ==================================================================

so "rating >= 4" is exactly the replay's engagement (a completed watch). Films are items
``m<id>``, each its own creator ``c<id>`` (the per-creator cap never binds), tagged with its
genres, ``created_at`` its release date (else its first rating); durations drawn (seeded)
between 15 and 90 s as in the training log; vectors the MiniLM ones reduced by
``recserve.train.movielens.pca`` to ``dims`` (64: the built-in ranker's) and scaled to unit
length. Users are ``u<id>``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from recserve.catalog import Item
from recserve.evaluate.replay import Catalogue, ReplayError
from recserve.service.engine import EventRow
from recserve.train.movielens import VECTORS, _release_dates, pca

__all__ = ["default_vectors", "movielens_log"]

_GENRES = (
    "unknown", "action", "adventure", "animation", "children", "comedy", "crime", "documentary",
    "drama", "fantasy", "film-noir", "horror", "musical", "mystery", "romance", "sci-fi",
    "thriller", "war", "western",
)  # fmt: skip


def default_vectors(movielens_dir: str | os.PathLike[str]) -> Path:
    """The MiniLM vectors beside the MovieLens directory (``../movielens-minilm-384/…``)."""
    return Path(movielens_dir).parent / VECTORS


def _genres(path: Path) -> dict[int, tuple[str, ...]]:
    genres: dict[int, tuple[str, ...]] = {}
    with path.open(encoding="latin-1") as f:
        for line in f:
            fields = line.rstrip("\n").split("|")
            flags = fields[-len(_GENRES) :]
            if len(fields) >= 5 + len(_GENRES):
                genres[int(fields[0])] = tuple(
                    g for g, flag in zip(_GENRES, flags, strict=True) if flag == "1"
                )
    return genres


def movielens_log(
    movielens_dir: str | os.PathLike[str],
    *,
    vectors: str | os.PathLike[str] | None = None,
    dims: int = 64,
    max_ratings: int | None = None,
    seed: int = 0,
) -> tuple[Catalogue, list[EventRow]]:
    """The catalogue and the events (in time order) of MovieLens-100K in ``movielens_dir``
    (the directory holding ``u.data``). ``max_ratings`` keeps the first ratings in time order."""
    root = Path(movielens_dir)
    vectors_path = Path(vectors) if vectors is not None else default_vectors(root)
    for needed in (root / "u.data", root / "u.item", vectors_path):
        if not needed.is_file():
            raise ReplayError(f"{needed}: MovieLens-100K input missing")
    ratings = np.loadtxt(root / "u.data", dtype=np.int64, delimiter="\t", ndmin=2)
    if ratings.shape[1] != 4:
        raise ReplayError(f"{root / 'u.data'}: expected 4 columns, got {ratings.shape[1]}")
    ratings = ratings[np.lexsort((ratings[:, 1], ratings[:, 0], ratings[:, 3]))]
    if max_ratings is not None:
        ratings = ratings[:max_ratings]

    raw = np.load(vectors_path)
    if raw.ndim != 2 or ratings.size and int(ratings[:, 1].max()) > raw.shape[0]:
        raise ReplayError(f"{vectors_path}: expected one row per film, got shape {raw.shape}")
    reduced = pca(raw, dims)
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    durations = np.random.default_rng(seed).integers(15_000, 90_001, raw.shape[0])
    released = _release_dates(root / "u.item")
    genres = _genres(root / "u.item")
    first_rating: dict[int, int] = {}
    for film, ts in zip(ratings[:, 1].tolist(), ratings[:, 3].tolist(), strict=True):
        first_rating.setdefault(film, ts)
    items = [
        Item(
            f"m{film}",
            f"c{film}",
            int(durations[film - 1]),
            genres.get(film, ()),
            round(released.get(film, first_rating.get(film, 0)) * 1000),
        )
        for film in range(1, raw.shape[0] + 1)
    ]

    events: list[EventRow] = []
    for user, film, rating, ts in ratings.tolist():
        duration = int(durations[film - 1])
        if rating >= 4:
            outcomes = [("watch", duration)] + ([("like", None)] if rating == 5 else [])
        elif rating == 3:
            outcomes = [("watch", duration // 2)]
        else:
            outcomes = [("watch", 1500), ("skip", None)]
        for kind, watch_ms in [("impression", None), *outcomes]:
            events.append(
                EventRow(
                    event_id=f"ml{len(events)}",
                    user_id=f"u{user}",
                    item_id=f"m{film}",
                    type=kind,
                    watch_ms=watch_ms,
                    duration_ms=duration if kind == "watch" else None,
                    ts=ts * 1000,
                )
            )
    return Catalogue(items, reduced), events
