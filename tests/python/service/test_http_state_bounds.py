"""What the service's own state does at its bounds, over HTTP against a real server: item and
user capacities, the first items fixing the dims, and erasure. Each case ends with a restart
that must come back ready with everything acknowledged."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from http_server import DIMS, Server, item_batch, make_server, watch

from recserve.ids import key_of

SMALL = "item_capacity = 64\nuser_capacity = 16\nsnapshot_interval_s = 3600\n"


def _restart(server: Server) -> None:
    assert server.stop() == 0
    server.start()


def test_events_on_unknown_items_make_no_item_rows_and_the_restart_comes_back(
    make_server,
) -> None:
    server = make_server(SMALL).start()
    with server.client() as client:
        assert client.post("/v1/items", json={"items": item_batch(60, seed=1)}).status_code == 200
        events = [watch(f"e{i}", "u1", f"nowhere-{i}") for i in range(500)]
        body = client.post("/v1/events", json={"events": events}).json()
        assert body["unknown_items"] == 500
        assert body["applied"] == 500
        assert client.get("/v1/users/u1").json()["events_applied"] == 500
        before = client.post("/v1/events", json={"events": [watch("k", "u1", "v0")]}).json()
        assert before["unknown_items"] == 0
        metrics = client.get("/metrics").text
        assert "recserve_events_unknown_items_total 500.0" in metrics
    _restart(server)
    with server.client() as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/v1/items/v0").status_code == 200
        assert client.get("/v1/users/u1").json()["events_applied"] == 501
        assert len(client.get("/v1/feed/u1").json()["items"]) > 0


def test_items_past_item_capacity_are_refused_whole_naming_the_setting(make_server) -> None:
    server = make_server(SMALL).start()
    with server.client() as client:
        assert client.post("/v1/items", json={"items": item_batch(60, seed=1)}).status_code == 200
        over = client.post("/v1/items", json={"items": item_batch(10, seed=2, prefix="w")})
        assert over.status_code == 409
        assert "item_capacity" in over.json()["detail"]
        assert client.get("/v1/items/w0").status_code == 404  # nothing of the batch
        again = client.post("/v1/items", json={"items": item_batch(60, seed=1)})
        assert again.status_code == 200  # updates need no room
        assert client.delete("/v1/items/v0").status_code == 204  # a takedown makes room
        fits = client.post("/v1/items", json={"items": item_batch(1, seed=3, prefix="x")})
        assert fits.status_code == 200
    _restart(server)
    with server.client() as client:
        assert client.get("/v1/items/v59").status_code == 200
        assert client.get("/v1/items/x0").status_code == 200


def test_users_past_user_capacity_are_kept_on_disk_exactly(make_server) -> None:
    server = make_server(SMALL).start()
    users = [f"user-{i}" for i in range(100)]
    with server.client() as client:
        assert client.post("/v1/items", json={"items": item_batch(60, seed=1)}).status_code == 200
        for round_number in range(3):
            events = [watch(f"{u}-{round_number}", u, f"v{i % 60}") for i, u in enumerate(users)]
            assert client.post("/v1/events", json={"events": events}).status_code == 202
        applied = [client.get(f"/v1/users/{u}").json()["events_applied"] for u in users]
        assert applied == [3] * 100
    assert (server.data_dir / "state" / "users.sqlite").exists()
    _restart(server)
    with server.client() as client:
        applied = [client.get(f"/v1/users/{u}").json()["events_applied"] for u in users]
        assert applied == [3] * 100
        assert len(client.get(f"/v1/feed/{users[0]}").json()["items"]) > 0


def test_a_refused_first_batch_does_not_fix_the_dims(make_server) -> None:
    server = make_server().start()
    wide = item_batch(1, seed=1)[0] | {"embedding": [0.5] * 40_000}
    nan = item_batch(2, seed=1)
    nan[1]["embedding"] = [0.5] * (DIMS - 1) + [None]
    with server.client() as client:
        assert client.post("/v1/items", json={"items": [wide]}).status_code == 422
        assert client.post("/v1/items", json={"items": nan}).status_code == 422
        zero = item_batch(1, seed=1)[0] | {"embedding": [0.0] * DIMS}
        assert client.post("/v1/items", json={"items": [zero]}).status_code == 422
    assert not (server.data_dir / "recserve.json").exists()
    _restart(server)
    with server.client() as client:
        assert client.post("/v1/items", json={"items": item_batch(5, seed=1)}).status_code == 200
    assert json.loads((server.data_dir / "recserve.json").read_text())["dims"] == DIMS


def _files_holding(directory: Path, needles: list[bytes]) -> list[str]:
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and any(needle in path.read_bytes() for needle in needles)
    )


def test_an_erased_user_is_gone_from_the_api_at_once_and_from_disk_within_the_delay(
    make_server,
) -> None:
    server = make_server(SMALL + "erasure_delay_s = 1\n").start()
    erased, kept = "erase-me-4f1c", "keep-me-4f1c"
    needles = [erased.encode(), struct.pack("<Q", key_of(erased))]
    with server.client() as client:
        assert client.post("/v1/items", json={"items": item_batch(60, seed=1)}).status_code == 200
        for round_number in range(3):
            events = [watch(f"{u}-{round_number}", u, f"v{round_number}") for u in (erased, kept)]
            assert client.post("/v1/events", json={"events": events}).status_code == 202
            assert client.get(f"/v1/feed/{erased}").status_code == 200
            assert client.put(f"/v1/users/{erased}", json={"interests": ["t1"]}).status_code == 200
            for u in range(30):  # others push the erased user out to the user file and back
                events = [watch(f"o{round_number}-{u}", f"other-{u}", "v1")]
                assert client.post("/v1/events", json={"events": events}).status_code == 202
        deadline = time.monotonic() + 15  # until the flush thread has written the log too
        while not _files_holding(server.data_dir / "impressions", needles[:1]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert _files_holding(server.data_dir, needles)  # before: the WAL, the log, ...
        assert client.delete(f"/v1/users/{erased}").status_code == 204
        assert client.get(f"/v1/users/{erased}").status_code == 404
        feed = client.get(f"/v1/feed/{erased}").json()  # a stranger's feed: no history
        assert feed["items"]
        client.delete(f"/v1/users/{erased}")  # the feed above logged impressions again
        deadline = time.monotonic() + 15
        while _files_holding(server.data_dir, needles) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert _files_holding(server.data_dir, needles) == []
        assert client.get(f"/v1/users/{kept}").json()["events_applied"] == 3
    _restart(server)
    with server.client() as client:
        assert client.get(f"/v1/users/{erased}").status_code == 404
        assert client.get(f"/v1/users/{kept}").json()["events_applied"] == 3
