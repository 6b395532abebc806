"""A service's data directory is a training set: the engine keeps impressions/catalog.npz
current at every snapshot (items taken down since included, 64-bit keys intact), and
``recserve train --data-dir`` trains a servable model on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from recserve import cli
from recserve.catalog import Item
from recserve.ids import key_of
from recserve.ingest.event_row import EventRow
from recserve.rank import ModelRegistry
from recserve.service.engine import Engine
from recserve.service.settings import Settings
from recserve.train.labels import HEADS, join
from recserve.train.log import Impression, read_catalog, read_log

DIMS = 8
T0 = 1_700_000_000_000


@contextmanager
def engine(data_dir: Path, **settings: object) -> Iterator[Engine]:
    e = Engine(Settings(data_dir=data_dir, dims=DIMS, clock="events", **settings))
    e.start()
    try:
        yield e
    finally:
        e.close()


def items(ids: list[str], seed: int) -> tuple[list[Item], np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = [Item(i, f"c{k % 7}", 30_000, created_at=T0 + k) for k, i in enumerate(ids)]
    return batch, rng.standard_normal((len(ids), DIMS)).astype(np.float32)


def catalogue(data_dir: Path) -> dict[int, tuple[np.ndarray, float]]:
    c = read_catalog(data_dir / "impressions")
    return {
        k: (v, t) for k, v, t in zip(c.keys.tolist(), c.vector, c.created_at.tolist(), strict=True)
    }


def test_snapshots_keep_every_item_the_log_can_name(tmp_path: Path) -> None:
    ids = [f"v{i}" for i in range(12)]
    batch, vectors = items(ids, 1)
    assert any(key_of(i) >= 1 << 63 for i in ids)  # the int64 view would be negative
    with engine(tmp_path) as e:
        e.upsert_items(batch, vectors, amplify=False)
        e.snapshot()
        first = catalogue(tmp_path)
        assert set(first) == {key_of(i) for i in ids}
        np.testing.assert_array_equal(first[key_of("v3")][0], vectors[3])
        assert first[key_of("v3")][1] == (T0 + 3) / 1000  # seconds, as the feed reads it
        mtime = (tmp_path / "impressions" / "catalog.npz").stat().st_mtime_ns
        e.snapshot()  # nothing changed: not rewritten
        assert (tmp_path / "impressions" / "catalog.npz").stat().st_mtime_ns == mtime
        updated = vectors[:1] + 1.0
        e.upsert_items(batch[:1], updated, amplify=False)  # an update: the newest vector
        e.take_down("v5")  # posted, then gone between snapshots: its row stays
        e.upsert_items(*items(["w0"], 2), amplify=False)
        e.take_down("w0")
    after = catalogue(tmp_path)  # close wrote it with the final snapshot
    assert set(after) == {key_of(i) for i in [*ids, "w0"]}
    np.testing.assert_array_equal(after[key_of("v0")][0], updated[0])
    np.testing.assert_array_equal(after[key_of("v5")][0], vectors[5])

    with engine(tmp_path) as e:  # a restart: rows of items gone come from the last file
        e.take_down("v6")
        e.snapshot()
        assert set(catalogue(tmp_path)) == {key_of(i) for i in [*ids, "w0"]}


def test_a_takedown_after_the_last_write_survives_a_crash(tmp_path: Path) -> None:
    batch, vectors = items(["a", "b"], 3)
    e = Engine(Settings(data_dir=tmp_path, dims=DIMS, clock="events"))
    e.start()
    e.upsert_items(batch[:1], vectors[:1], amplify=False)
    e.snapshot()
    e.upsert_items(batch[1:], vectors[1:], amplify=False)
    e.take_down("b")  # posted and gone since the last write
    e.close(snapshot=False)  # as a crash: no final snapshot, no catalogue write
    assert set(catalogue(tmp_path)) == {key_of("a")}
    with engine(tmp_path) as e:  # recovery replays the takedown from the WAL
        assert e.state is not None
        assert e.state.catalog.get("b") is None
    np.testing.assert_array_equal(catalogue(tmp_path)[key_of("b")][0], vectors[1])


def test_an_erasure_rewrites_the_log_and_leaves_the_catalogue(tmp_path: Path) -> None:
    """The catalogue holds items only: an erasure has nothing to remove from it."""
    with engine(tmp_path) as e:
        e.upsert_items(*items(["a", "b"], 7), amplify=False)
        e.feed("gone", n=2)
        e.feed("kept", n=2)
        e.snapshot()
        path = tmp_path / "impressions" / "catalog.npz"
        before = path.read_bytes()
        e.erase_user("gone")
        e._complete_erasures()
        assert path.read_bytes() == before
        assert {r.user for r in read_log(tmp_path / "impressions").records} == {"kept"}


def test_no_catalogue_without_the_impression_log(tmp_path: Path) -> None:
    with engine(tmp_path, impression_log=False) as e:
        e.upsert_items(*items(["a"], 4), amplify=False)
        e.snapshot()
    assert not (tmp_path / "impressions" / "catalog.npz").exists()


def test_an_unreadable_catalogue_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "impressions").mkdir()
    (tmp_path / "impressions" / "catalog.npz").write_bytes(b"not a zip")
    with engine(tmp_path) as e:
        e.upsert_items(*items(["a"], 5), amplify=False)
    assert set(catalogue(tmp_path)) == {key_of("a")}
    assert (tmp_path / "impressions" / "catalog.npz.unreadable").read_bytes() == b"not a zip"


def drive(e: Engine, users: int, rounds: int, seed: int) -> None:
    """Feeds and what users did with them: most of each page watched (long or short), some
    liked, the last slots never reached (no event)."""
    rng = np.random.default_rng(seed)
    ts = T0 + 1_000
    n = 0
    for _ in range(rounds):
        for u in range(users):
            user = f"u{u}"
            page = e.feed(user, n=6)
            rows = []
            for position, served in enumerate(page["items"][:4]):
                ts += 1_000
                n += 1
                watch = int(rng.choice([1_000, 12_000, 29_500]))
                rows.append(
                    EventRow(f"e{n}", user, served["item_id"], "watch", watch, 30_000, ts,
                             request_id=page["request_id"] if position % 2 else None)
                )  # fmt: skip
                if rng.random() < 0.3:
                    n += 1
                    rows.append(EventRow(f"e{n}", user, served["item_id"], "like", ts=ts))
            n += 1
            rows.append(EventRow(f"e{n}", user, "never-posted", "like", ts=ts))  # unknown item
            e.post_events(rows)


def test_a_data_dir_trains_a_servable_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    ids = [f"v{i}" for i in range(40)]
    high = [i for i in ids if key_of(i) >= 1 << 63]
    assert high
    with engine(data) as e:
        e.upsert_items(*items(ids, 6), amplify=False)
        drive(e, users=24, rounds=8, seed=6)
        e.take_down(high[0])  # its records stay in the log: so does its row

    log = read_log(data / "impressions")
    joined = join(log.records)
    served = [imp.item for imp in joined.impressions]
    assert any(key >= 1 << 63 for key in served)
    assert all(isinstance(r, Impression) or r.type in ("watch", "like") for r in log.records)
    # Version 2 labels: an item with an event was viewed; a slot never reached trains no head.
    by_position = {p: joined.viewed[[imp.position == p for imp in joined.impressions]]
                   for p in range(6)}  # fmt: skip
    assert by_position[0].all()
    assert not by_position[5].any()
    assert not joined.labels[~joined.viewed].any()
    complete = joined.labels[joined.viewed, HEADS.index("complete")]
    assert 0 < complete.mean() < 1

    out = tmp_path / "models" / "m1.rsm"
    argv = ["train", "--data-dir", str(data), "--out", str(out), "--epochs", "2"]
    assert cli.main([*argv, "--hidden", "32,16", "--batch-size", "64", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "trained" in printed
    ranker = ModelRegistry(out.parent, DIMS).get("m1")
    metrics = ranker.model.metadata["training"]["heldout_metrics"]
    for head in ("complete", "skip", "watch_frac"):
        assert np.isfinite(metrics["fp32"][head]["auc"])
        assert np.isfinite(metrics["int8"][head]["auc"])
    training = ranker.model.metadata["training"]
    assert training["not_viewed_impressions"] > 0
    assert json.dumps(training["log"]).endswith('impressions"')
