"""An impression log built from MovieLens-100K, to train and test the ranker on real behaviour.

Inputs (never copied into the repository; GroupLens terms forbid redistribution), under the
shared data directory (``../shared/data`` next to the repository):

- ``movielens-100k/u.data``: user, item, rating 1-5, Unix time (TSV); ``u.item``: release dates
- ``movielens-minilm-384/ml-100k_items.f32.npy``: float32 [1682, 384], row i = item i + 1

The ratings are taken in time order, one "request" per run of a user's ratings: a request
starts at a rating and holds the user's next ratings, up to ``per_request``, made within
``request_window_s`` of it; its impressions are served at its first rating's time, at
positions 0, 1, …. Each rating becomes the events that follow its impression, one second
after the rating:

======  ==================================================================
rating  events
======  ==================================================================
5       a full watch and a like         (complete, like)
4       a full watch                    (complete)
3       a watch of half the duration    (watch_frac 0.5)
1, 2    a skip after 1.5 s              (fast skip)
======  ==================================================================

Item durations are drawn (seeded) between 15 and 90 s; ``created_at`` is the release date in
``u.item`` (or the item's first rating when it has none). Item vectors are the MiniLM vectors
reduced to ``dims`` by PCA (centred, exact SVD, each component's sign fixed so that its
largest-magnitude loading is positive), then scaled to unit length. Replay, share, comment
and follow never happen here: their heads have one class and no AUC.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from recserve.train.log import Event, Impression, LogWriter, Record, write_catalog

__all__ = ["MovieLensSummary", "default_data_dir", "pca", "write_movielens_log"]

RATINGS = Path("movielens-100k") / "u.data"
ITEMS = Path("movielens-100k") / "u.item"
VECTORS = Path("movielens-minilm-384") / "ml-100k_items.f32.npy"


@dataclass(frozen=True)
class MovieLensSummary:
    path: Path
    users: int
    items: int
    impressions: int
    events: int
    first_ts: float
    last_ts: float


def default_data_dir() -> Path:
    """``$RECSERVE_DATA_DIR``, else ``../shared/data`` from the working directory (as the
    ``recserve demo`` command looks for it)."""
    env = os.environ.get("RECSERVE_DATA_DIR")
    return Path(env) if env else Path.cwd().parent / "shared" / "data"


def pca(vectors: npt.ArrayLike, dims: int) -> npt.NDArray[np.float32]:
    """Project rows on their top ``dims`` principal components (deterministic signs)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or not 1 <= dims <= min(x.shape):
        raise ValueError(f"cannot reduce an array of shape {x.shape} to {dims} dimensions")
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:dims]
    signs = np.sign(components[np.arange(dims), np.abs(components).argmax(axis=1)])
    projected: npt.NDArray[np.float64] = centred @ (components * signs[:, None]).T
    return projected.astype(np.float32)


def _release_dates(path: Path) -> dict[int, float]:
    dates: dict[int, float] = {}
    with path.open(encoding="latin-1") as f:
        for line in f:
            fields = line.rstrip("\n").split("|")
            if len(fields) < 3 or not fields[2]:
                continue
            when = dt.datetime.strptime(fields[2], "%d-%b-%Y").replace(tzinfo=dt.UTC)
            dates[int(fields[0])] = when.timestamp()
    return dates


def write_movielens_log(
    directory: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    dims: int = 64,
    per_request: int = 10,
    request_window_s: float = 1800.0,
    max_ratings: int | None = None,
    seed: int = 0,
) -> MovieLensSummary:
    """Write the MovieLens-100K log (catalogue and segments) into ``directory``.

    ``max_ratings`` keeps only the first ratings in time order (for quick tests).
    """
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    for needed in (RATINGS, ITEMS, VECTORS):
        if not (data / needed).exists():
            raise FileNotFoundError(f"{data / needed}: MovieLens-100K input missing")
    ratings = np.loadtxt(data / RATINGS, dtype=np.int64, delimiter="\t", ndmin=2)
    if ratings.shape[1] != 4:
        raise ValueError(f"{data / RATINGS}: expected 4 columns, got {ratings.shape[1]}")
    order = np.lexsort((ratings[:, 1], ratings[:, 0], ratings[:, 3]))  # by time, user, item
    ratings = ratings[order]
    if max_ratings is not None:
        ratings = ratings[:max_ratings]

    raw = np.load(data / VECTORS)
    vectors = pca(raw, dims)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    item_ids = np.arange(1, raw.shape[0] + 1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    duration_ms = rng.integers(15_000, 90_001, len(item_ids))
    released = _release_dates(data / ITEMS)
    first_rating: dict[int, float] = {}
    for item, ts in zip(ratings[:, 1].tolist(), ratings[:, 3].tolist(), strict=True):
        first_rating.setdefault(item, float(ts))
    created_at = np.array(
        [released.get(int(i), first_rating.get(int(i), 0.0)) for i in item_ids], dtype=np.float64
    )

    records: list[Record] = []
    open_request: dict[int, tuple[str, float, int]] = {}  # user -> (request id, t0, size)
    events = 0
    for user, item, rating, ts in ratings.tolist():
        request = open_request.get(user)
        if request is None or request[2] >= per_request or ts - request[1] > request_window_s:
            request = (f"ml{len(records)}", float(ts), 0)
        request_id, t0, position = request
        open_request[user] = (request_id, t0, position + 1)
        uid = f"u{user}"
        records.append(Impression(t0, request_id, uid, item, position, "movielens", "control"))
        dur = int(duration_ms[item - 1])
        event_ts = float(ts) + 1.0 + 0.001 * position
        if rating >= 4:
            outcomes = [("watch", dur)] + ([("like", 0)] if rating == 5 else [])
        elif rating == 3:
            outcomes = [("watch", dur // 2)]
        else:
            outcomes = [("watch", 1500), ("skip", 0)]
        for step, (kind, watch_ms) in enumerate(outcomes):
            records.append(
                Event(
                    ts=event_ts + 0.0001 * step,
                    event_id=f"ml-e{events}",
                    user=uid,
                    item=item,
                    type=kind,
                    request_id=request_id,
                    watch_ms=watch_ms,
                    duration_ms=dur if kind == "watch" else 0,
                )
            )
            events += 1

    records.sort(key=lambda r: r.ts)
    root = Path(directory)
    write_catalog(root, item_ids, vectors, created_at)
    with LogWriter(root) as writer:
        writer.extend(records)
    return MovieLensSummary(
        root,
        users=len(open_request),
        items=len(item_ids),
        impressions=len(ratings),
        events=events,
        first_ts=float(ratings[0, 3]) if len(ratings) else 0.0,
        last_ts=float(ratings[-1, 3]) if len(ratings) else 0.0,
    )
