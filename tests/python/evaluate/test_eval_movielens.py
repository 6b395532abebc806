"""recserve.evaluate.movielens: MovieLens as a replay log (100K and latest-small; the tests on
the real data need ../shared/data and skip without it, the others write tiny fixtures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recserve.evaluate.movielens import default_vectors, movielens_format, movielens_log
from recserve.evaluate.peers import ALSFoldIn, CoOccurrence
from recserve.evaluate.replay import ReplayError, replay, replay_peers

#: ../shared/data/movielens-100k beside the repository root (this file is tests/python/…/).
MOVIELENS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "movielens-100k"


@pytest.fixture
def movielens() -> Path:
    if not (MOVIELENS / "u.data").exists() or not default_vectors(MOVIELENS).exists():
        pytest.skip(f"MovieLens-100K and its MiniLM vectors not found beside {MOVIELENS}")
    return MOVIELENS


def test_ratings_become_events_and_high_ratings_engagements(movielens: Path) -> None:
    catalogue, events = movielens_log(movielens, max_ratings=500)
    assert len(catalogue.items) == 1682
    assert catalogue.dims == 64
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    impressions = [e for e in events if e.type == "impression"]
    assert len(impressions) == 500  # one per rating, before its outcome
    full = sum(1 for e in events if e.type == "watch" and e.watch_ms == e.duration_ms)
    likes = sum(1 for e in events if e.type == "like")
    assert 0 < likes < full < 500

    result = replay(events, catalogue, split=0.5)
    assert result.candidates == sum(
        1 for e in events if e.type == "watch" and e.watch_ms == e.duration_ms
        and (e.ts or 0) >= result.split_ms
    )  # fmt: skip
    assert result.seen_dropped == 0


# ---- MovieLens-latest-small (ratings.csv) ---------------------------------------------------
LATEST = MOVIELENS.parent / "movielens-latest-small"
MOVIES = (
    "movieId,title,genres\r\n"
    "1,Toy Story (1995),Adventure|Animation\r\n"
    '2,"Heat, The (1995)",Action|Crime\r\n'
    "5,Untitled,(no genres listed)\r\n"
    "7,Series (2006\u20132007),Drama\r\n"
)
RATINGS = (
    "userId,movieId,rating,timestamp\r\n"
    "2,1,5.0,1000\r\n"
    "1,2,4.5,900\r\n"
    "1,5,3.5,950\r\n"
    "2,7,2.5,1100\r\n"
    "1,1,0.5,1200\r\n"
    "3,2,3.0,1000\r\n"
)
FILMS = [1, 2, 5, 7]


def write_latest(root: Path, *, permuted: bool, ratings: str = RATINGS) -> Path:
    """A tiny latest-small directory and its vectors beside it (``permuted``: the vector
    rows in another order than movies.csv, given by the texts file)."""
    data = root / "ml-small"
    data.mkdir(parents=True)
    (data / "movies.csv").write_bytes(MOVIES.encode())
    (data / "ratings.csv").write_bytes(ratings.encode())
    vectors = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    folder = root / "movielens-minilm-384"
    folder.mkdir()
    name = "ml-latest-small_movies"
    if permuted:
        order = [3, 0, 2, 1]  # vector file row j holds film FILMS[order[j]]
        np.save(folder / f"{name}.f32.npy", vectors[order])
        lines = ["row\tmovieId\ttext"]
        lines += [f"{j}\t{FILMS[i]}\tfilm {FILMS[i]}" for j, i in enumerate(order)]
        (folder / f"{name}_texts.tsv").write_text("\n".join(lines) + "\n")
    else:
        np.save(folder / f"{name}.f32.npy", vectors)
    return data


def test_latest_small_ratings_become_events(tmp_path: Path) -> None:
    data = write_latest(tmp_path, permuted=False)
    assert movielens_format(data) == "latest"
    assert default_vectors(data).name == "ml-latest-small_movies.f32.npy"
    catalogue, events = movielens_log(data, dims=2)
    assert [item.id for item in catalogue.items] == ["m1", "m2", "m5", "m7"]
    assert [item.tags for item in catalogue.items] == [
        ("adventure", "animation"), ("action", "crime"), (), ("drama",),
    ]  # fmt: skip
    day = 86_400_000
    assert catalogue.items[0].created_at == 9131 * day  # 1995-01-01
    assert catalogue.items[2].created_at == 950_000  # no year: its first rating
    assert catalogue.items[3].created_at == 13149 * day  # 2006-01-01
    by_rating = [(e.user_id, e.item_id, e.ts, e.type, e.watch_ms == e.duration_ms) for e in events]
    assert by_rating == [
        ("u1", "m2", 900_000, "impression", True), ("u1", "m2", 900_000, "watch", True),  # 4.5
        ("u1", "m5", 950_000, "impression", True), ("u1", "m5", 950_000, "watch", False),  # 3.5
        ("u2", "m1", 1_000_000, "impression", True), ("u2", "m1", 1_000_000, "watch", True),
        ("u2", "m1", 1_000_000, "like", True),  # 5
        ("u3", "m2", 1_000_000, "impression", True), ("u3", "m2", 1_000_000, "watch", False),
        ("u2", "m7", 1_100_000, "impression", True), ("u2", "m7", 1_100_000, "watch", False),
        ("u2", "m7", 1_100_000, "skip", True),  # 2.5: a fast skip
        ("u1", "m1", 1_200_000, "impression", True), ("u1", "m1", 1_200_000, "watch", False),
        ("u1", "m1", 1_200_000, "skip", True),  # 0.5
    ]  # fmt: skip
    watches = {(e.user_id, e.item_id): e for e in events if e.type == "watch"}
    assert watches["u1", "m5"].watch_ms == (watches["u1", "m5"].duration_ms or 0) // 2
    assert watches["u2", "m7"].watch_ms == 1500
    assert movielens_log(data, dims=2, max_ratings=2)[1] == events[:4]


def test_latest_small_vectors_follow_the_texts_file(tmp_path: Path) -> None:
    plain = movielens_log(write_latest(tmp_path / "a", permuted=False), dims=3)[0]
    mapped = movielens_log(write_latest(tmp_path / "b", permuted=True), dims=3)[0]
    np.testing.assert_allclose(mapped.vectors, plain.vectors, atol=1e-5)
    assert not np.allclose(plain.vectors[0], plain.vectors[1])


def test_latest_small_bad_input_is_named(tmp_path: Path) -> None:
    data = write_latest(tmp_path / "a", permuted=False, ratings=RATINGS + "4,99,4.0,1300\r\n")
    with pytest.raises(ReplayError, match="movieId 99 is not in movies.csv"):
        movielens_log(data, dims=2)
    data = write_latest(tmp_path / "b", permuted=False, ratings=RATINGS + "4,1,4.0\r\n")
    with pytest.raises(ReplayError, match=r"ratings.csv:8: expected 4 fields"):
        movielens_log(data, dims=2)
    data = write_latest(tmp_path / "c", permuted=False, ratings=RATINGS + "4,1,7.0,1300\r\n")
    with pytest.raises(ReplayError, match="0.5 to 5"):
        movielens_log(data, dims=2)
    data = write_latest(tmp_path / "d", permuted=False)
    np.save(default_vectors(data), np.zeros((3, 6), dtype=np.float32))
    with pytest.raises(ReplayError, match=r"one row per film of movies.csv \(4\)"):
        movielens_log(data, dims=2)
    with pytest.raises(ReplayError, match="MovieLens input missing"):
        movielens_format(tmp_path)


def test_latest_small_ratings_and_the_peers_on_them() -> None:
    if not (LATEST / "ratings.csv").exists() or not default_vectors(LATEST).exists():
        pytest.skip(f"MovieLens-latest-small and its MiniLM vectors not found at {LATEST}")
    catalogue, events = movielens_log(LATEST)
    assert len(catalogue.items) == 9742
    assert catalogue.dims == 64
    assert sum(1 for e in events if e.type == "impression") == 100_836  # one per rating
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    head = events[: 3 * 4000]  # the first ratings: the peers alone, as the tuning runs them
    n = len(catalogue.items)
    plan, scores = replay_peers(
        head, catalogue, itemcf={"itemcf": CoOccurrence(n)}, als={"als": ALSFoldIn(n)}, split=0.5
    )
    assert scores["itemcf"].evaluated == scores["als"].evaluated == len(plan.after_split) > 0
