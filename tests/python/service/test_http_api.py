"""The HTTP API's contract through a real server: status codes, bodies, errors that change
nothing."""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_server import DIMS, Server, client, item_batch, serving, watch

CONFIG = f"""
dims = {DIMS}
max_body_bytes = 200000
max_inflight = 2
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(tmp_path_factory, "api", CONFIG, item_batch(300, seed=1))


def events_applied(client: httpx.Client, user: str) -> int:
    response = client.get(f"/v1/users/{user}")
    return 0 if response.status_code == 404 else int(response.json()["events_applied"])


def test_openapi_lists_every_resource(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/items",
        "/v1/items/{item_id}",
        "/v1/events",
        "/v1/feed/{user_id}",
        "/v1/feed/{user_id}/explain",
        "/v1/users/{user_id}",
        "/v1/models",
        "/v1/models/{version}/activate",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths


def test_posted_item_reads_back_with_stats_and_amplification(client: httpx.Client) -> None:
    item = {**item_batch(1, seed=2, prefix="readback")[0], "tags": ["cats"], "media_key": "m/1.mp4"}
    assert client.post("/v1/items", json={"items": [item]}).json() == {"upserted": 1}
    body = client.get("/v1/items/readback0").json()
    assert body["creator_id"] == item["creator_id"]
    assert body["tags"] == ["cats"]
    assert body["url"] == "/media/m/1.mp4"
    assert body["stats"]["impressions"] == 0
    assert body["stats"]["completion_rate"] == 0.0
    assert body["amplification"]["state"] == "testing"
    assert body["amplification"]["tier"] == 0
    assert body["amplification"]["history"][0]["reason"] == "new item"


def test_reposting_an_item_updates_it(client: httpx.Client) -> None:
    item = item_batch(1, seed=3, prefix="repost")[0]
    client.post("/v1/items", json={"items": [item]})
    client.post("/v1/items", json={"items": [{**item, "creator_id": "someone-else"}]})
    assert client.get("/v1/items/repost0").json()["creator_id"] == "someone-else"


def test_unknown_item_and_user_are_404(client: httpx.Client) -> None:
    assert client.get("/v1/items/no-such-item").status_code == 404
    assert client.delete("/v1/items/no-such-item").status_code == 404
    assert client.get("/v1/users/no-such-user").status_code == 404
    assert client.get("/v1/feed/u1/explain", params={"item_id": "nope"}).status_code == 404


def test_feed_of_an_unknown_user_is_a_cold_start_feed(client: httpx.Client) -> None:
    body = client.get("/v1/feed/never-seen-before", params={"n": 10}).json()
    assert len(body["items"]) == 10
    assert {i["source"] for i in body["items"]} <= {"cold_start", "explore"}
    assert body["request_id"]
    assert body["user_id"] == "never-seen-before"


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/events", content=b'{"events": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "wink"}, "events.1.type"),
        ({"watch_ms": -5}, "events.1.watch_ms"),
        ({"surprise": 1}, "events.1.surprise"),
        ({"user_id": ""}, "events.1.user_id"),
        ({"ts": "yesterday"}, "events.1.ts"),
    ],
)
def test_a_batch_with_one_invalid_event_is_rejected_whole(
    client: httpx.Client, change: dict[str, Any], field: str
) -> None:
    user = f"strict-{field}-{next(iter(change))}"
    good = watch("g0", user, "v1")
    bad = {**watch("g1", user, "v2"), **change}
    response = client.post("/v1/events", json={"events": [good, bad]})
    assert response.status_code == 422
    assert any(error["field"] == field for error in response.json()["detail"])
    assert events_applied(client, user) == 0  # the good event before it did not apply either


def test_a_watch_without_watch_ms_names_index_and_field(client: httpx.Client) -> None:
    event = {"event_id": "w", "user_id": "nowatch", "item_id": "v1", "type": "watch"}
    response = client.post("/v1/events", json={"events": [watch("ok", "nowatch", "v2"), event]})
    assert response.status_code == 422
    assert response.json()["detail"] == "events[1].watch_ms: required for a watch"
    assert events_applied(client, "nowatch") == 0


def test_nan_and_wrong_dims_in_embeddings_are_422_and_change_nothing(client: httpx.Client) -> None:
    item = item_batch(1, seed=4, prefix="broken")[0]
    # The right length, so NaN alone is what is wrong (json.dumps writes NaN as JSON never has).
    embedding = [math.nan, *item["embedding"][1:]]
    assert len(embedding) == DIMS
    nan = client.post(
        "/v1/items",
        content=json.dumps({"items": [{**item, "embedding": embedding}]}).encode(),
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422
    short = client.post("/v1/items", json={"items": [{**item, "embedding": [1.0, 2.0]}]})
    assert short.status_code == 422
    assert "shape" in short.json()["detail"]
    assert client.get("/v1/items/broken0").status_code == 404


def test_body_over_the_limit_is_413(client: httpx.Client) -> None:
    items = item_batch(1000, seed=5, prefix="big")  # ~300 kB of JSON
    response = client.post("/v1/items", json={"items": items})
    assert response.status_code == 413
    assert client.get("/v1/items/big0").status_code == 404


def test_chunked_body_over_the_limit_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"events": ['
        for i in range(5000):
            yield (
                b"," if i else b""
            ) + b'{"event_id": "%d", "user_id": "chunky", "item_id": "v1", "type": "like"}' % i
        yield b"]}"

    response = client.post(
        "/v1/events", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert events_applied(client, "chunky") == 0


def test_n_out_of_range_is_422(client: httpx.Client) -> None:
    assert client.get("/v1/feed/u1", params={"n": 0}).status_code == 422
    assert client.get("/v1/feed/u1", params={"n": 101}).status_code == 422


def test_overload_is_503_with_retry_after(server: Server, client: httpx.Client) -> None:
    # Two requests held open (their bodies never finish) fill max_inflight = 2.
    held = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n{"
        )
        held.append(sock)
    try:
        deadline = time.monotonic() + 10
        while True:
            response = client.get("/v1/feed/u1")
            if response.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert client.get("/readyz").status_code == 200  # health is never refused
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while client.get("/v1/feed/u1").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_duplicate_delivery_is_accepted_but_not_counted(client: httpx.Client) -> None:
    events = [watch("dup-1", "dupuser", "v3"), {**watch("dup-2", "dupuser", "v4"), "type": "like"}]
    first = client.post("/v1/events", json={"events": events})
    assert first.status_code == 202
    assert first.json()["accepted"] == 2
    again = client.post("/v1/events", json={"events": events})
    assert again.status_code == 202
    assert again.json()["duplicates"] == 2
    assert events_applied(client, "dupuser") == 2


def test_user_onboarding_and_summary(client: httpx.Client) -> None:
    put = client.put("/v1/users/newbie", json={"interests": ["t3"], "blocked_creators": ["c1"]})
    assert put.status_code == 200
    body = client.get("/v1/users/newbie").json()
    assert body["interests"] == ["t3"]
    assert body["blocked_creators"] == ["c1"]
    assert body["events_applied"] == 0
    assert client.put("/v1/users/newbie", json={"hobbies": ["x"]}).status_code == 422


def test_metrics_are_prometheus_text(client: httpx.Client) -> None:
    client.get("/v1/feed/metrics-user")
    text = client.get("/metrics").text
    for name in (
        "recserve_feed_stage_seconds_bucket",
        "recserve_events_applied_total",
        "recserve_precompute_requests_total",
        "recserve_takedown_propagation_seconds",
        "recserve_amplification_transitions",
        "recserve_profile_evictions",
    ):
        assert name in text
    assert 'stage="retrieve"' in text
    assert 'stage="rank"' in text
