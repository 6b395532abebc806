"""recserve.service.snapshot_files: a restart loads the catalogue, amplification and ANN index
saved with the snapshot instead of rebuilding them, replays the log after it as before, and
rebuilds (or falls back to the older snapshot) when a file is damaged; a SIGKILL in the middle
of a snapshot costs nothing."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from http_server import DIMS as HTTP_DIMS
from http_server import item_batch, make_server

from recserve import ann
from recserve.catalog import Item
from recserve.ids import key_of, keys_of
from recserve.ingest.event_row import EventRow
from recserve.service.engine import Engine
from recserve.service.settings import Settings
from recserve.store.embedded import _read_state, _write_state

DIMS = 64  # the built-in ranker's: the feeds compared are ranked by it
T0 = 1_000_000_000_000
NOW = T0 + 10_000_000
USERS = [f"u{i}" for i in range(12)]
SETTINGS: dict[str, Any] = {
    "dims": DIMS,
    "impression_log": False,
    "clock": "events",
    "index_threads": 1,
    "feed": {"trending": 0, "precompute": False},
    "amplification": {"tiers": [{"budget": 4, "min_completion_rate": 0.3}, {"budget": 30}]},
}


@contextmanager
def engine(path: Path) -> Iterator[Engine]:
    """A started engine; closed at the end without a snapshot (as a crash would leave it)."""
    e = Engine(Settings(data_dir=path, **SETTINGS))
    e.start()
    try:
        yield e
    finally:
        if not e.draining:
            e.close(snapshot=False)


def make_items(prefix: str, n: int, seed: int) -> tuple[list[Item], np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, DIMS))
    cluster = rng.integers(0, 8, n)
    vectors = (centres[cluster] + 0.3 * rng.standard_normal((n, DIMS))).astype(np.float32)
    items = [
        Item(
            f"{prefix}{i}",
            f"c{i % 30}",
            10_000 + 100 * i,
            (f"t{cluster[i]}",) + (("extra",) if i % 7 == 0 else ()),
            T0 + i,
            f"media/{prefix}{i}.mp4" if i % 2 else None,
        )
        for i in range(n)
    ]
    return items, vectors


def watch(e: Engine, user: str, item: str, fraction: float, n: int) -> None:
    e.post_events(
        [
            EventRow(
                f"{user}-{item}-{n}", user, item, "watch", int(20_000 * fraction), 20_000, T0 + n
            )
        ]
    )


def fill(e: Engine) -> None:
    """A back catalogue, new items that amplification judges, events, preferences, takedowns."""
    items, vectors = make_items("v", 300, seed=1)
    e.upsert_items(items, vectors, amplify=False)
    new, new_vectors = make_items("n", 20, seed=2)
    e.upsert_items(new, new_vectors)
    for n, user in enumerate(USERS):
        for j in range(6):
            watch(e, user, f"n{j}", 1.0 if j % 2 else 0.05, 100 * n + j)
            watch(e, user, f"v{(7 * n + j) % 300}", 0.8, 100 * n + 50 + j)
    e.set_user("u1", ["t3"], ["c4"])
    e.take_down("v5")
    e.take_down("n19")


def later_changes(e: Engine) -> None:
    """Records after a snapshot: new items, a vector changed, takedowns, a re-post, events."""
    items, vectors = make_items("w", 40, seed=3)
    e.upsert_items(items, vectors)
    moved, moved_vectors = make_items("v", 4, seed=4)  # v0..v3 get other vectors
    e.upsert_items(moved, moved_vectors, amplify=False)
    e.take_down("v10")
    e.take_down("w3")
    back, back_vectors = make_items("v", 6, seed=1)  # v5, taken down before, posted again
    e.upsert_items(back[5:6], back_vectors[5:6], amplify=False)
    for n, user in enumerate(USERS[:4]):
        watch(e, user, "w1", 1.0, 5000 + n)


def ids_ever(e: Engine) -> list[str]:
    return (
        [f"v{i}" for i in range(300)] + [f"n{i}" for i in range(20)] + [f"w{i}" for i in range(40)]
    )


def observe(e: Engine) -> dict[str, Any]:
    """What a restart must bring back exactly (the index aside: see ``search``)."""
    assert e.state is not None
    catalog, ids = e.state.catalog, ids_ever(e)
    return {
        "items": [
            (i.id, i.creator_id, i.duration_ms, i.tags, i.created_at, i.media_key)
            for i in (catalog.by_key(k) for k in catalog.keys().tolist())
            if i is not None
        ],
        "rows": catalog.rows(keys_of(ids)).tolist(),
        "columns": [  # live, created_at and creator code of the live
            np.where(live, column, 0).tolist()
            for live in [catalog.columns(catalog.rows(keys_of(ids)))[0]]
            for column in catalog.columns(catalog.rows(keys_of(ids)))
        ],
        "tags": {t: sorted(catalog.tagged([t]).tolist()) for t in ("t1", "t3", "extra")},
        "amplification": {i: e.state.amplifier.state(key_of(i)) for i in ids},
        "open": sorted(e.state.amplifier.open_items().tolist()),
        "users": e.state.users.state(),
    }


def search(e: Engine, queries: np.ndarray) -> list[tuple[list[int], list[float]]]:
    assert e.state is not None
    found = [e.state.catalog.search(q, k=10) for q in queries]
    return [(keys.tolist(), distances.tolist()) for keys, distances in found]


def feeds(e: Engine) -> list[list[tuple[int, float, str]]]:
    assert e.builder is not None
    return [
        [
            (s.key, s.score, s.source)
            for s in e.builder.build(key_of(u), 10, e.ranker, NOW, seed=1).items
        ]
        for u in USERS
    ]


def assert_every_live_item_findable(e: Engine) -> None:
    """Each live item is the nearest to its own vector; nothing taken down is returned."""
    assert e.state is not None
    assert e.store is not None
    catalog = e.state.catalog
    assert len(catalog.index) == len(catalog)
    live = catalog.keys()
    vectors = e.store.profiles.items(live).vectors
    for key, vector in zip(live.tolist(), vectors, strict=True):
        assert catalog.search(vector, k=1)[0].tolist() == [key]
    gone = [k for k in keys_of(ids_ever(e)).tolist() if catalog.by_key(k) is None]
    everything = catalog.search(np.ones(DIMS, dtype=np.float32), k=len(ids_ever(e)), ef=1000)[0]
    assert not set(gone) & set(everything.tolist())
    assert len(everything) == len(catalog)


def snapshot_file(path: Path, role: str, which: int = -1) -> Path:
    """The ``role`` file of the newest (or ``which``) snapshot."""
    ext = {"catalog": "bin", "amplifier": "bin", "index": "rsi"}[role]
    return sorted((path / "state" / "snapshots").glob(f"{role}-*.{ext}"))[which]


def damage(path: Path, how: str) -> None:
    if how == "flip a byte":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 2 // 3])
    else:
        path.unlink()


QUERIES = np.random.default_rng(9).standard_normal((20, DIMS)).astype(np.float32)


def test_a_restart_loads_the_saved_files_and_serves_exactly_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine(tmp_path) as e:
        fill(e)
        before = observe(e), search(e, QUERIES), feeds(e)
        e.close()  # the final snapshot
    assert before[0]["amplification"]["n1"]["state"] == "promoted"  # the test judges something
    assert before[0]["amplification"]["n0"]["state"] == "stopped"

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("the index was rebuilt")

    monkeypatch.setattr(ann.Index, "add", no_rebuild)
    with engine(tmp_path) as e:
        assert e.store is not None
        assert e.store.recovery.files == {
            "catalog": "loaded",
            "amplifier": "loaded",
            "index": "loaded",
        }
        assert e.store.recovery.problems == []
        assert e.store.recovery.records_replayed == 0
        assert (observe(e), search(e, QUERIES), feeds(e)) == before


@pytest.mark.parametrize("index_saved", ["with the snapshot", "after later records"])
def test_items_and_takedowns_after_the_snapshot_are_replayed_onto_the_loaded_index(
    tmp_path: Path, index_saved: str
) -> None:
    with engine(tmp_path) as e:
        fill(e)
        e.snapshot()
        later_changes(e)
        if index_saved == "after later records":
            # As when applies went on while the snapshot's index was being saved: the file
            # already holds records the replay applies again.
            assert e.state is not None
            e.state.catalog.index.save(snapshot_file(tmp_path, "index"))
        before = observe(e)
    with engine(tmp_path) as e:
        assert e.store is not None
        assert e.store.recovery.files["index"] == "loaded"
        assert e.store.recovery.problems == []
        assert e.store.recovery.records_replayed > 0
        assert observe(e) == before
        assert e.item("w1")["id"] == "w1"
        assert e.item("v5")["id"] == "v5"
        assert e.state is not None
        for gone in ("v10", "w3", "n19"):
            assert e.state.catalog.get(gone) is None
        assert_every_live_item_findable(e)


@pytest.mark.parametrize("how", ["flip a byte", "truncate", "delete"])
def test_a_damaged_index_file_is_reported_and_the_index_rebuilt(tmp_path: Path, how: str) -> None:
    with engine(tmp_path) as e:
        fill(e)
        before = observe(e)
        e.close()
    index_file = snapshot_file(tmp_path, "index")
    damage(index_file, how)
    with engine(tmp_path) as e:
        assert e.store is not None
        assert e.store.recovery.files == {
            "catalog": "loaded",
            "amplifier": "loaded",
            "index": "rebuilt",
        }
        assert len(e.store.recovery.problems) == 1
        assert "index" in e.store.recovery.problems[0]
        assert observe(e) == before
        assert_every_live_item_findable(e)


@pytest.mark.parametrize("how", ["flip a byte", "truncate", "delete"])
@pytest.mark.parametrize("role", ["catalog", "amplifier"])
def test_a_damaged_catalogue_file_falls_back_to_the_older_snapshot_and_its_log(
    tmp_path: Path, role: str, how: str
) -> None:
    with engine(tmp_path) as e:
        fill(e)
        e.snapshot()
        later_changes(e)
        before = observe(e)
        e.close()
    snapshots = sorted((tmp_path / "state" / "snapshots").glob("profiles-*.snap"))
    older, newest = (int(p.stem.split("-")[1]) for p in snapshots)
    damaged = snapshot_file(tmp_path, role)
    damage(damaged, how)
    with engine(tmp_path) as e:
        assert e.store is not None
        assert e.store.recovery.snapshot_lsn == older < newest
        assert len(e.store.recovery.problems) == 1
        assert damaged.name in e.store.recovery.problems[0]
        assert e.store.recovery.files == {
            "catalog": "loaded",
            "amplifier": "loaded",
            "index": "loaded",
        }
        assert observe(e) == before
        assert_every_live_item_findable(e)


def test_a_snapshot_from_before_the_files_loads_its_json_and_rebuilds_the_index(
    tmp_path: Path,
) -> None:
    with engine(tmp_path) as e:
        fill(e)
        before = observe(e)
        assert e.state is not None
        old_extension_state = {
            "catalog": e.state.catalog.state(),
            "amplifier": e.state.amplifier.to_dict(),
            "users": e.state.users.state(),
        }
        e.close()
    # What the previous version wrote: the catalogue and amplification in the state file.
    snapshots = tmp_path / "state" / "snapshots"
    [state_path] = snapshots.glob("state-*.json")
    state = _read_state(state_path)
    del state["files"]
    state["extension"] = old_extension_state
    _write_state(state_path, state)
    for role in ("catalog", "amplifier", "index"):
        snapshot_file(tmp_path, role).unlink()
    with engine(tmp_path) as e:
        assert e.store is not None
        assert e.store.recovery.files == {"index": "rebuilt"}
        assert "older version" in e.store.recovery.problems[0]
        internal = ("rows", "columns")  # the JSON path numbers rows again: live items first
        after = observe(e)
        assert {k: v for k, v in after.items() if k not in internal} == {
            k: v for k, v in before.items() if k not in internal
        }
        assert_every_live_item_findable(e)
        e.close()  # and its snapshot is written the new way
    assert snapshot_file(tmp_path, "index").exists()


# ---- SIGKILL during snapshots, over HTTP --------------------------------------------------------
def test_kill_9_in_the_middle_of_snapshots_never_breaks_a_restart(make_server: Any) -> None:
    """Snapshots every 20 ms while items are posted; killed at random moments, some inside a
    snapshot (files half written); every restart comes back with every acknowledged item and
    no recovery problem, and the leftovers go with the next snapshot."""
    server = make_server(f"dims = {HTTP_DIMS}\nsnapshot_interval_s = 0.02\n")
    rng = random.Random(20261207)
    snapshots = server.data_dir / "state" / "snapshots"
    acknowledged: list[str] = []
    cut_short = 0
    server.start()
    for round_number in range(6):
        with server.client() as client:
            if round_number == 0:
                body = {"items": item_batch(3000, seed=70), "amplify": False}
                assert client.post("/v1/items", json=body).status_code == 200
            for batch in range(rng.randint(2, 8)):
                prefix = f"r{round_number}b{batch}-"
                body = {"items": item_batch(25, seed=round_number * 100 + batch, prefix=prefix)}
                assert client.post("/v1/items", json=body).status_code == 200
                acknowledged.append(f"{prefix}24")
            taken = f"r{round_number}b0-3"
            assert client.delete(f"/v1/items/{taken}").status_code in (200, 204)
        if round_number % 2:  # aimed: as soon as a snapshot is seen under way
            deadline = time.monotonic() + 5
            while not _under_way(snapshots) and time.monotonic() < deadline:
                time.sleep(0.0005)
        else:
            time.sleep(rng.uniform(0.0, 0.1))
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        cut_short += _under_way(snapshots)
        server.start()
        with server.client() as client:
            for item in acknowledged:
                assert client.get(f"/v1/items/{item}").status_code == 200, (round_number, item)
            assert client.get(f"/v1/items/{taken}").status_code == 404
        assert "recovery:" not in server.log.read_text(), round_number
    assert server.stop() == 0  # SIGTERM: a last snapshot, which removes the older leftovers
    names = {p.name for p in snapshots.iterdir()}
    complete = sorted(int(name.split(".")[0][-20:]) for name in names if name.endswith(".snap"))
    assert len(complete) == 2
    whole = {
        f"{role}-{lsn:020d}.{ext}"
        for lsn in complete
        for role, ext in (("profiles", "snap"), ("state", "json"), ("catalog", "bin"),
                          ("amplifier", "bin"), ("index", "rsi"))
    }  # fmt: skip
    assert whole <= names
    # Beside them at most what a periodic snapshot still under way at the exit wrote.
    left = names - whole
    assert all(int(name.split(".")[0][-20:]) >= complete[-1] for name in left), (complete, left)
    assert cut_short >= 1, "no kill landed inside a snapshot (3 of 6 were aimed there)"


def _under_way(snapshots: Path) -> bool:
    """A snapshot has begun writing and not finished: a temporary file, or files of an lsn
    without its profiles file (written last)."""
    try:
        names = [p.name for p in snapshots.iterdir()]
    except FileNotFoundError:
        return False
    lsns = {name.split(".")[0].rpartition("-")[2] for name in names}
    complete = {name.split(".")[0].rpartition("-")[2] for name in names if name.endswith(".snap")}
    return lsns != complete or any(name.endswith(".tmp") for name in names)
