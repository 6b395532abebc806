"""MovieLens (100K, or latest-small) as a replay log: its ratings as events, its films as a
catalogue.

    catalogue, events = movielens_log("../shared/data/movielens-100k")
    result = replay(events, catalogue)

The format is told from the directory: ``u.data`` is MovieLens-100K, ``ratings.csv``
MovieLens-latest-small (or any MovieLens in the same CSV format). Inputs (never copied into
the repository; GroupLens terms restrict redistribution):

- **100K**: ``u.data`` (user, item, rating 1-5, Unix time) and ``u.item`` (release dates,
  genres); the MiniLM vectors of the films, ``ml-100k_items.f32.npy`` (row i = item i + 1), in
  ``movielens-minilm-384`` beside the directory.
- **latest-small**: ``ratings.csv`` (``userId,movieId,rating,timestamp``, ratings 0.5-5 in half
  stars; CRLF or LF line endings) and ``movies.csv`` (``movieId,title,genres``, genres
  pipe-separated, quoted titles); the vectors ``ml-latest-small_movies.f32.npy`` beside it,
  row i for line i of ``movies.csv``, which ``ml-latest-small_movies_texts.tsv`` (``row``,
  ``movieId``, text) confirms: a vector file that does not match the films is an error.
  Every film of ``movies.csv`` is in the catalogue, in its order.

``vectors`` names another vector file (rows as above).

Each rating becomes an impression (the film was shown: what a client posts when it shows an
item, and what the ranker's rate features count) followed by the outcome events of
``recserve.train.movielens`` (the log the ranker is trained on), all at the rating's time, in
the order of ``u.data`` sorted by (time, user, item):

=============  ===========================================================
rating         events
=============  ===========================================================
5              a full watch and a like         (an engagement)
4, 4.5         a full watch                    (an engagement)
3, 3.5         a watch of half the duration
below 3        a watch of 1.5 s and a skip     (a fast skip: a negative signal)
=============  ===========================================================

so "rating >= 4" is exactly the replay's engagement (a completed watch), on both scales. The
half stars of latest-small fall to the whole star below them (4.5 is a full watch without a
like, 3.5 a half watch, 2.5 a fast skip). Films are items ``m<id>``, each its own creator
``c<id>`` (the per-creator cap never binds), tagged with its genres (lower case;
latest-small's "(no genres listed)" is none), ``created_at`` its release date (100K; for
latest-small, 1 January of the year in the title), else its first rating; durations drawn
(seeded) between 15 and 90 s as in the training log; vectors the MiniLM ones reduced by
``recserve.train.movielens.pca`` to ``dims`` (64: the built-in ranker's) and scaled to unit
length. Users are ``u<id>``.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve.catalog import Item
from recserve.evaluate.inputs import Catalogue, ReplayError
from recserve.ingest.event_row import EventRow
from recserve.train.movielens import VECTORS, _release_dates, pca

__all__ = ["default_vectors", "movielens_format", "movielens_log"]

_GENRES = (
    "unknown", "action", "adventure", "animation", "children", "comedy", "crime", "documentary",
    "drama", "fantasy", "film-noir", "horror", "musical", "mystery", "romance", "sci-fi",
    "thriller", "war", "western",
)  # fmt: skip
#: latest-small's vectors, beside the MovieLens directory
LATEST_VECTORS = Path("movielens-minilm-384") / "ml-latest-small_movies.f32.npy"
_RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]
_MOVIES_HEADER = ["movieId", "title", "genres"]
_YEAR = re.compile(r"\((\d{4})(?:[-\u2013]\d{4})?\)\s*$")  # "Title (1995)", "(2006-2007)"


def movielens_format(movielens_dir: str | os.PathLike[str]) -> str:
    """``"100k"`` for a directory with ``u.data``, ``"latest"`` for one with ``ratings.csv``."""
    root = Path(movielens_dir)
    if (root / "u.data").is_file():
        return "100k"
    if (root / "ratings.csv").is_file():
        return "latest"
    raise ReplayError(
        f"{root}: MovieLens input missing (no u.data for MovieLens-100K, "
        "no ratings.csv for MovieLens-latest-small)"
    )


def default_vectors(movielens_dir: str | os.PathLike[str]) -> Path:
    """The MiniLM vectors beside the MovieLens directory (``../movielens-minilm-384/…``, the
    file for its format; a directory of neither format gets 100K's)."""
    root = Path(movielens_dir)
    latest = not (root / "u.data").is_file() and (root / "ratings.csv").is_file()
    return root.parent / (LATEST_VECTORS if latest else VECTORS)


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


class _Films:
    """A MovieLens catalogue before it becomes items: per film (row), its id, genres, release
    time (s, or None) and raw vector; the ratings as (user, row, rating, time s) in time
    order (ties by user, then film id)."""

    def __init__(
        self,
        ids: list[int],
        genres: list[tuple[str, ...]],
        released: list[float | None],
        raw: npt.NDArray[np.float32],
        ratings: npt.NDArray[Any],
    ) -> None:
        self.ids, self.genres, self.released, self.raw = ids, genres, released, raw
        self.ratings = ratings


def _sorted(ratings: npt.NDArray[Any], film_ids: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    return ratings[np.lexsort((film_ids, ratings[:, 0], ratings[:, 3]))]


def _load_100k(root: Path, vectors_path: Path) -> _Films:
    for needed in (root / "u.item", vectors_path):
        if not needed.is_file():
            raise ReplayError(f"{needed}: MovieLens-100K input missing")
    ratings = np.loadtxt(root / "u.data", dtype=np.int64, delimiter="\t", ndmin=2)
    if ratings.shape[1] != 4:
        raise ReplayError(f"{root / 'u.data'}: expected 4 columns, got {ratings.shape[1]}")
    ratings = _sorted(ratings, ratings[:, 1]).astype(np.float64)
    raw = np.load(vectors_path)
    if raw.ndim != 2 or ratings.size and int(ratings[:, 1].max()) > raw.shape[0]:
        raise ReplayError(f"{vectors_path}: expected one row per film, got shape {raw.shape}")
    ratings[:, 1] -= 1  # item i is row i - 1
    released = _release_dates(root / "u.item")
    genres = _genres(root / "u.item")
    films = range(1, raw.shape[0] + 1)
    return _Films(
        list(films), [genres.get(f, ()) for f in films], [released.get(f) for f in films], raw,
        ratings,
    )  # fmt: skip


def _csv_rows(path: Path, header: list[str]) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows or [h.strip() for h in rows[0]] != header:
        raise ReplayError(f"{path}: expected the header {','.join(header)}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ReplayError(f"{path}:{number}: expected {len(header)} fields, got {len(row)}")
    return rows[1:]


def _load_latest(root: Path, vectors_path: Path) -> _Films:
    for needed in (root / "movies.csv", vectors_path):
        if not needed.is_file():
            raise ReplayError(f"{needed}: MovieLens-latest-small input missing")
    ids: list[int] = []
    genres: list[tuple[str, ...]] = []
    released: list[float | None] = []
    for number, (movie, title, names) in enumerate(
        _csv_rows(root / "movies.csv", _MOVIES_HEADER), start=2
    ):
        try:
            ids.append(int(movie))
        except ValueError:
            raise ReplayError(f"{root / 'movies.csv'}:{number}: movieId: {movie!r}") from None
        genres.append(
            tuple(g.strip().lower() for g in names.split("|") if g and not g.startswith("("))
        )
        year = _YEAR.search(title)
        released.append(
            dt.datetime(int(year.group(1)), 1, 1, tzinfo=dt.UTC).timestamp() if year else None
        )
    row_of = {film: i for i, film in enumerate(ids)}
    if len(row_of) != len(ids):
        raise ReplayError(f"{root / 'movies.csv'}: a movieId appears twice")

    table = _csv_rows(root / "ratings.csv", _RATINGS_HEADER)
    try:
        values = np.array(table, dtype=np.float64).reshape(len(table), 4)
    except ValueError as error:
        raise ReplayError(f"{root / 'ratings.csv'}: {error}") from None
    films = values[:, 1].astype(np.int64)
    unknown = sorted(set(films.tolist()) - row_of.keys())
    if unknown:
        raise ReplayError(f"{root / 'ratings.csv'}: movieId {unknown[0]} is not in movies.csv")
    if not np.isfinite(values).all() or ((values[:, 2] < 0.5) | (values[:, 2] > 5)).any():
        raise ReplayError(f"{root / 'ratings.csv'}: ratings must be finite, 0.5 to 5")
    ratings = _sorted(values, films)
    ratings[:, 1] = [row_of[int(f)] for f in ratings[:, 1].tolist()]

    raw = np.load(vectors_path)
    order = _vector_rows(vectors_path, ids)
    if raw.ndim != 2 or len(order) != len(ids) or max(order, default=0) >= raw.shape[0]:
        raise ReplayError(
            f"{vectors_path}: expected one row per film of movies.csv ({len(ids)}), "
            f"got shape {raw.shape}"
        )
    return _Films(ids, genres, released, raw[order], ratings)


def _vector_rows(vectors_path: Path, ids: list[int]) -> list[int]:
    """The vector row of each film: from the ``…_texts.tsv`` beside the vectors (``row``,
    ``movieId``, text), else row i for the i-th film."""
    texts = vectors_path.with_name(vectors_path.name.removesuffix(".f32.npy") + "_texts.tsv")
    if not texts.is_file():
        return list(range(len(ids)))
    row_of: dict[int, int] = {}
    with texts.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if header[:2] != ["row", "movieId"]:
            raise ReplayError(f"{texts}: expected the header row, movieId, text")
        for line in f:
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) >= 2:
                row_of[int(fields[1])] = int(fields[0])
    missing = [film for film in ids if film not in row_of]
    if missing:
        raise ReplayError(f"{texts}: no vector row for movieId {missing[0]}")
    return [row_of[film] for film in ids]


def movielens_log(
    movielens_dir: str | os.PathLike[str],
    *,
    vectors: str | os.PathLike[str] | None = None,
    dims: int = 64,
    max_ratings: int | None = None,
    seed: int = 0,
) -> tuple[Catalogue, list[EventRow]]:
    """The catalogue and the events (in time order) of the MovieLens directory
    ``movielens_dir`` (100K or latest-small, told by its files). ``max_ratings`` keeps the
    first ratings in time order."""
    root = Path(movielens_dir)
    vectors_path = Path(vectors) if vectors is not None else default_vectors(root)
    if movielens_format(root) == "100k":
        films = _load_100k(root, vectors_path)
    else:
        films = _load_latest(root, vectors_path)
    ratings = films.ratings if max_ratings is None else films.ratings[:max_ratings]
    raw = films.raw
    if dims > min(raw.shape):
        raise ReplayError(f"--dims {dims}: at most {min(raw.shape)} for {raw.shape[0]} films")
    reduced = pca(raw, dims)
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    durations = np.random.default_rng(seed).integers(15_000, 90_001, size=int(raw.shape[0]))
    first_rating: dict[int, float] = {}
    for row, ts in zip(
        ratings[:, 1].astype(np.int64).tolist(), ratings[:, 3].tolist(), strict=True
    ):
        first_rating.setdefault(row, ts)
    items = []
    for row, film in enumerate(films.ids):
        released = films.released[row]
        created = released if released is not None else first_rating.get(row, 0.0)
        items.append(
            Item(
                f"m{film}",
                f"c{film}",
                int(durations[row]),
                films.genres[row],
                round(created * 1000),
            )
        )

    events: list[EventRow] = []
    for user_f, row_f, rating, ts_f in ratings.tolist():
        user, row, ts = int(user_f), int(row_f), int(ts_f)
        film = films.ids[row]
        duration = int(durations[row])
        outcomes: list[tuple[str, int | None]]
        if rating >= 4:
            outcomes = [("watch", duration)] + ([("like", None)] if rating == 5 else [])
        elif rating >= 3:
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
