"""Every input has a bound, through a real server: strict numbers, ids of 1 to 256 characters
(in bodies, paths and queries, never echoed back when too long), capped user lists and
embeddings, timestamps no further ahead of the clock than ``max_clock_skew_s``. Each refusal is
422 naming the field, and changes nothing."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_server import DIMS, Server, client, item_batch, serving, watch

LONG = "x" * 257  # one character over the bound
SKEW_MS = 300_000  # the default max_clock_skew_s


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(tmp_path_factory, "input", f"dims = {DIMS}\n", item_batch(50, seed=8))


def fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    return [e["field"] for e in detail] if isinstance(detail, list) else [detail.split(":")[0]]


def events_applied(client: httpx.Client, user: str) -> int:
    response = client.get(f"/v1/users/{user}")
    return 0 if response.status_code == 404 else int(response.json()["events_applied"])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"watch_ms": "100"}, "events.1.watch_ms"),
        ({"watch_ms": True}, "events.1.watch_ms"),
        ({"watch_ms": 100.0}, "events.1.watch_ms"),
        ({"duration_ms": "15000"}, "events.1.duration_ms"),
        ({"ts": True}, "events.1.ts"),
        ({"ts": "1700000000000"}, "events.1.ts"),
        ({"ts": 1.7e12}, "events.1.ts"),
        ({"user_id": 42}, "events.1.user_id"),
        ({"event_id": LONG}, "events.1.event_id"),
        ({"item_id": ""}, "events.1.item_id"),
        ({"session_id": LONG}, "events.1.session_id"),
        ({"session_id": ""}, "events.1.session_id"),
        ({"request_id": LONG}, "events.1.request_id"),
    ],
)
def test_a_wrongly_typed_or_unbounded_event_field_is_422_and_nothing_applies(
    client: httpx.Client, change: dict[str, Any], field: str
) -> None:
    user = f"typed-{field}-{str(next(iter(change.values())))[:20]}"
    bad = {**watch("t1", user, "v2"), **change}
    response = client.post("/v1/events", json={"events": [watch("t0", user, "v1"), bad]})
    assert fields(response) == [field]
    assert LONG not in response.text
    assert events_applied(client, user) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"embedding": ["0.1"] * DIMS}, "items.0.embedding.0"),
        ({"embedding": [True] * DIMS}, "items.0.embedding.0"),
        ({"embedding": [0.5] * 4097}, "items.0.embedding"),
        ({"duration_ms": "15000"}, "items.0.duration_ms"),
        ({"duration_ms": True}, "items.0.duration_ms"),
        ({"created_at": True}, "items.0.created_at"),
        ({"created_at": "2024-01-01"}, "items.0.created_at"),
        ({"id": LONG}, "items.0.id"),
        ({"creator_id": LONG}, "items.0.creator_id"),
        ({"tags": ["t"] * 65}, "items.0.tags"),
    ],
)
def test_a_wrongly_typed_or_unbounded_item_field_is_422_and_nothing_is_stored(
    client: httpx.Client, change: dict[str, Any], field: str
) -> None:
    prefix = f"typed-{zlib.crc32(repr(change).encode())}-"  # an item of its own per case
    item = {**item_batch(1, seed=9, prefix=prefix)[0], **change}
    response = client.post("/v1/items", json={"items": [item]})
    assert fields(response)[0] == field  # the first of them (each bad value is named)
    assert client.get(f"/v1/items/{prefix}0").status_code == 404


def test_amplify_must_be_a_boolean(client: httpx.Client) -> None:
    body = {"items": item_batch(1, seed=10, prefix="amp"), "amplify": "false"}
    assert fields(client.post("/v1/items", json=body)) == ["amplify"]


def test_integers_are_floats_in_an_embedding(client: httpx.Client) -> None:
    item = {**item_batch(1, seed=11, prefix="ints")[0], "embedding": [1, 0, 2, -1] * (DIMS // 4)}
    assert client.post("/v1/items", json={"items": [item]}).status_code == 200
    assert client.get("/v1/items/ints0").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", f"/v1/feed/{LONG}", {}),
        ("GET", f"/v1/feed/{LONG}/explain", {"item_id": "v1"}),
        ("GET", "/v1/feed/u1/explain", {"item_id": LONG}),
        ("GET", "/v1/feed/u1/explain", {"item_id": ""}),
        ("GET", f"/v1/users/{LONG}", {}),
        ("PUT", f"/v1/users/{LONG}", {}),
        ("GET", f"/v1/items/{LONG}", {}),
        ("DELETE", f"/v1/items/{LONG}", {}),
    ],
)
def test_an_id_over_256_characters_in_a_path_or_query_is_422_and_not_echoed(
    client: httpx.Client, method: str, path: str, params: dict[str, str]
) -> None:
    body = {"interests": ["t1"]} if method == "PUT" else None
    response = client.request(method, path, params=params, json=body)
    assert response.status_code == 422, response.text
    assert "xxxxxxxxxx" not in response.text
    assert fields(response)[0] in ("user_id", "item_id")


def test_an_id_of_256_characters_is_taken(client: httpx.Client) -> None:
    user = "u" * 256
    assert client.get(f"/v1/feed/{user}").status_code == 200
    assert client.put(f"/v1/users/{user}", json={"interests": ["t1"]}).status_code == 200
    assert client.get(f"/v1/users/{user}").json()["user_id"] == user


@pytest.mark.parametrize("field", ["interests", "blocked_creators"])
def test_a_user_list_over_its_cap_is_422_naming_it_and_changes_nothing(
    client: httpx.Client, field: str
) -> None:
    user = f"capped-{field}"
    assert client.put(f"/v1/users/{user}", json={field: ["a"]}).status_code == 200
    full = client.put(f"/v1/users/{user}", json={field: [f"c{i}" for i in range(256)]})
    assert full.status_code == 200  # the default cap, 256, is allowed
    over = client.put(f"/v1/users/{user}", json={field: [f"d{i}" for i in range(257)]})
    assert fields(over) == [field]
    assert "at most 256" in over.json()["detail"]
    assert len(client.get(f"/v1/users/{user}").json()[field]) == 256


def test_an_event_ts_ahead_of_the_clock_is_422_and_nothing_applies(client: httpx.Client) -> None:
    user = "future-events"
    ahead = [
        watch("f0", user, "v1", ts=now_ms()),
        watch("f1", user, "v2", ts=now_ms() + 86_400_000),
    ]
    response = client.post("/v1/events", json={"events": ahead})
    assert fields(response) == ["events[1].ts"]
    assert "300 s ahead" in response.json()["detail"]
    assert events_applied(client, user) == 0
    near = [watch("f2", user, "v1", ts=now_ms() + SKEW_MS - 60_000)]  # within the skew
    assert client.post("/v1/events", json={"events": near}).status_code == 202
    assert events_applied(client, user) == 1


def test_an_item_created_ahead_of_the_clock_is_422_and_not_stored(client: httpx.Client) -> None:
    items = item_batch(2, seed=12, prefix="future")
    items[0]["created_at"] = now_ms()
    items[1]["created_at"] = now_ms() + SKEW_MS + 60_000
    response = client.post("/v1/items", json={"items": items})
    assert fields(response) == ["items[1].created_at"]
    assert client.get("/v1/items/future0").status_code == 404
    items[1]["created_at"] = now_ms()
    assert client.post("/v1/items", json={"items": items}).status_code == 200
