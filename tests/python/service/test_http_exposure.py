"""Exposure through the API: an item served and watched is viewed; one served and left alone
past ``exposure.view_timeout_s`` is served-not-viewed, and GET /v1/items/{id} says so."""

from __future__ import annotations

from http_server import DIMS, item_batch, make_server, watch

T0 = 1_000_000_000_000  # the events' clock: time is what the inputs say
CONFIG = f"""
dims = {DIMS}
clock = "events"
[exposure]
view_timeout_s = 60
"""


def _exposure(client, item: str) -> dict[str, int]:
    response = client.get(f"/v1/items/{item}")
    assert response.status_code == 200
    return response.json()["exposure"]


def test_a_watched_item_is_viewed_and_an_untouched_one_is_served_not_viewed(make_server) -> None:
    server = make_server(CONFIG).start()
    with server.client() as client:
        items = [{**item, "created_at": T0} for item in item_batch(100, seed=5)]
        assert client.post("/v1/items", json={"items": items, "amplify": False}).status_code == 200
        page = client.get("/v1/feed/u1", params={"n": 5}).json()["items"]
        watched, untouched = page[0]["item_id"], page[1]["item_id"]
        event = watch("e1", "u1", watched, 0.5, ts=T0 + 1_000)
        assert client.post("/v1/events", json={"events": [event]}).status_code == 202

        # Within the window nothing is settled yet.
        assert _exposure(client, untouched) == {
            "impressions": 0,
            "served": 1,
            "served_not_viewed": 0,
        }
        # Another user's event moves the events' clock past the window.
        other = next(i["id"] for i in items if i["id"] not in {p["item_id"] for p in page})
        later = watch("e2", "u2", other, 1.0, ts=T0 + 61_000)
        assert client.post("/v1/events", json={"events": [later]}).status_code == 202

        assert _exposure(client, watched) == {
            "impressions": 1,
            "served": 1,
            "served_not_viewed": 0,
        }
        assert _exposure(client, untouched) == {
            "impressions": 0,
            "served": 1,
            "served_not_viewed": 1,
        }
        never_served = _exposure(client, other)
        assert never_served == {"impressions": 1, "served": 0, "served_not_viewed": 0}
        # The existing fields are still there.
        body = client.get(f"/v1/items/{untouched}").json()
        assert {"stats", "amplification", "creator_id"} <= set(body)
