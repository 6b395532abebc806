"""Progressive amplification through the API: a strongly engaging new item climbs the tiers, a
poor one is stopped with its reason, and both histories read back."""

from __future__ import annotations

import signal

from http_server import DIMS, item_batch, make_server, watch

CONFIG = f"""
dims = {DIMS}
[feed]
explore_slots = 2
[amplification]
tiers = [
  {{ budget = 20, min_completion_rate = 0.4, max_skip_rate = 0.5 }},
  {{ budget = 40, min_completion_rate = 0.4, min_like_rate = 0.1 }},
]
"""


def _show(
    client,
    item: str,
    users: range,
    *,
    complete: bool,
    like: bool,
    tag: str,
    impressions: bool = True,
) -> None:
    events = []
    for u in users:
        user = f"{tag}-{u}"
        if impressions:
            events.append(
                {"event_id": f"{tag}-i-{u}", "user_id": user, "item_id": item, "type": "impression"}
            )
        if complete:
            events.append(watch(f"{tag}-w-{u}", user, item, 1.0))
        else:
            events.append({**watch(f"{tag}-w-{u}", user, item, 0.05), "watch_ms": 500})
        if like:
            events.append(
                {"event_id": f"{tag}-l-{u}", "user_id": user, "item_id": item, "type": "like"}
            )
    assert client.post("/v1/events", json={"events": events}).status_code == 202


def test_engaging_item_is_promoted_and_poor_one_stopped(make_server) -> None:
    server = make_server(CONFIG).start()
    with server.client() as client:
        catalogue = item_batch(200, seed=21)
        client.post("/v1/items", json={"items": catalogue})
        good, poor = "v0", "v1"
        _show(client, good, range(25), complete=True, like=True, tag="g")
        _show(client, poor, range(25), complete=False, like=False, tag="p")

        good_state = client.get(f"/v1/items/{good}").json()["amplification"]
        assert good_state["state"] == "promoted"
        assert good_state["tier"] == 1
        assert [h["state"] for h in good_state["history"]] == ["testing", "promoted"]

        poor_state = client.get(f"/v1/items/{poor}").json()["amplification"]
        assert poor_state["state"] == "stopped"
        reason = poor_state["history"][-1]["reason"]
        assert "completion rate" in reason
        assert "skip rate" in reason

        _show(client, good, range(25, 70), complete=True, like=True, tag="g")
        assert client.get(f"/v1/items/{good}").json()["amplification"]["state"] == "graduated"

        # A stopped item leaves the exploration pool: no explore slot ever shows it.
        for u in range(10):
            page = client.get(f"/v1/feed/fresh-{u}", params={"n": 10}).json()["items"]
            assert poor not in [i["item_id"] for i in page if i["source"] == "explore"]
        metrics = client.get("/metrics").text
        assert 'recserve_amplification_transitions_total{state="promoted"} 1.0' in metrics
        assert 'recserve_amplification_transitions_total{state="stopped"} 1.0' in metrics

    # The tiers survive a restart: they are replayed from the log, not kept in memory only.
    assert server.stop() == 0
    server.start()
    with server.client() as client:
        assert client.get(f"/v1/items/{poor}").json()["amplification"]["state"] == "stopped"
        assert client.get(f"/v1/items/{good}").json()["amplification"]["state"] == "graduated"
    server.stop()


def test_a_client_that_sends_no_impression_events_still_exposes_and_promotes(make_server) -> None:
    server = make_server(CONFIG).start()
    with server.client() as client:
        client.post("/v1/items", json={"items": item_batch(200, seed=22)})
        good, poor = "v0", "v1"
        _show(client, good, range(25), complete=True, like=True, tag="g", impressions=False)
        _show(client, poor, range(25), complete=False, like=False, tag="p", impressions=False)
        good_item = client.get(f"/v1/items/{good}").json()
        assert good_item["stats"]["impressions"] == 25  # each user's first event: one view
        assert good_item["amplification"]["state"] == "promoted"
        assert client.get(f"/v1/items/{poor}").json()["amplification"]["state"] == "stopped"


def test_an_impression_and_a_watch_of_one_view_count_once(make_server) -> None:
    server = make_server(CONFIG).start()
    with server.client() as client:
        client.post("/v1/items", json={"items": item_batch(20, seed=23)})
        events = [
            {"event_id": "a1", "user_id": "a", "item_id": "v2", "type": "impression"},
            watch("a2", "a", "v2", 1.0),
            watch("b1", "b", "v2", 1.0),  # the impression arrives late
            {"event_id": "b2", "user_id": "b", "item_id": "v2", "type": "impression"},
        ]
        assert client.post("/v1/events", json={"events": events}).status_code == 202
        assert client.get("/v1/items/v2").json()["stats"]["impressions"] == 2


def test_new_items_fill_the_exploration_slots(make_server) -> None:
    server = make_server(CONFIG).start()
    with server.client() as client:
        client.post("/v1/items", json={"items": item_batch(200, seed=22)})
        page = client.get("/v1/feed/explorer", params={"n": 10}).json()["items"]
        assert sum(i["source"] == "explore" for i in page) == 2
    server.stop()


def test_a_back_catalogue_skips_amplification_and_one_item_pages_keep_the_exploration_share(
    make_server,
) -> None:
    server = make_server(CONFIG).start()  # default_n 10, explore_slots 2: a share of 1 in 5
    with server.client() as client:
        body = {"items": item_batch(300, seed=23), "amplify": False}
        assert client.post("/v1/items", json=body).json() == {"upserted": 300}
        fresh = item_batch(5, seed=24, prefix="new")
        client.post("/v1/items", json={"items": fresh})
        old = client.get("/v1/items/v0").json()["amplification"]
        assert old["state"] == "graduated"
        assert "established" in old["history"][0]["reason"]
        assert client.get("/v1/items/new0").json()["amplification"]["state"] == "testing"

        sources = []
        for u in range(300):
            page = client.get(f"/v1/feed/one-{u}", params={"n": 1}).json()["items"]
            assert len(page) == 1
            if page[0]["source"] == "explore":
                assert page[0]["item_id"].startswith("new")  # only open-tier items explore
            sources.append(page[0]["source"])
        assert 30 <= sources.count("explore") <= 90  # ~60 of 300, not every page
    assert server.stop() == 0
    server.start()  # the back catalogue's state is replayed from the log
    with server.client() as client:
        assert client.get("/v1/items/v0").json()["amplification"]["state"] == "graduated"
    server.stop()


def test_explore_relevance_keeps_new_items_from_users_they_do_not_suit(make_server) -> None:
    relevant_only = CONFIG.replace("explore_slots = 2", "explore_slots = 2\nexplore_relevance = 1")
    for config, expect_explore in ((CONFIG, True), (relevant_only, False)):
        server = make_server(config).start()
        with server.client() as client:
            catalogue = item_batch(300, seed=25)
            client.post("/v1/items", json={"items": catalogue, "amplify": False})
            # New items pointing away from everything the user watches.
            fresh = item_batch(20, seed=26, prefix="new")
            taste = catalogue[0]["embedding"]
            for item in fresh:
                item["embedding"] = [-x for x in taste]
            client.post("/v1/items", json={"items": fresh})
            events = [watch(f"w{i}", "fan", "v0", 1.0) for i in range(3)]
            client.post("/v1/events", json={"events": events})
            explored = sum(
                item["source"] == "explore"
                for _ in range(5)
                for item in client.get("/v1/feed/fan", params={"n": 10}).json()["items"]
            )
            assert (explored > 0) == expect_explore
        server.stop()


REVIEWED = f"""
dims = {DIMS}
[amplification]
review_before_tier = 1
min_judged = 4
tiers = [{{ budget = 20, min_excess = 0.0 }}, {{ budget = 40, min_excess = 0.0 }}]
"""


def test_the_review_gate_holds_an_item_across_restarts_until_an_admin_decides(
    make_server,
) -> None:
    server = make_server(REVIEWED).start()
    with server.client() as client:
        client.post("/v1/items", json={"items": item_batch(200, seed=27)})
        good, other, poor = "v0", "v1", "v2"
        _show(client, good, range(25), complete=True, like=True, tag="g", impressions=False)
        _show(client, other, range(12), complete=True, like=False, tag="o", impressions=False)
        _show(client, poor, range(25), complete=False, like=False, tag="p", impressions=False)
        state = client.get(f"/v1/items/{good}").json()["amplification"]
        assert (state["state"], state["tier"]) == ("pending_review", 0)
        assert "waits for review before tier 1" in state["history"][-1]["reason"]
        assert client.get(f"/v1/items/{poor}").json()["amplification"]["state"] == "stopped"
        queue = client.get("/v1/review/queue").json()["items"]
        assert [q["id"] for q in queue] == [good, other]  # most-engaged first
        assert queue[0]["impressions"] == 25
        metrics = client.get("/metrics").text
        assert "recserve_review_queue 2.0" in metrics
        # Pending: out of the exploration slots.
        for u in range(10):
            page = client.get(f"/v1/feed/fresh-{u}", params={"n": 10}).json()["items"]
            assert good not in [i["item_id"] for i in page if i["source"] == "explore"]
        # Bad requests change nothing.
        assert (
            client.post(f"/v1/items/{poor}/review", json={"decision": "approve"}).status_code == 409
        )
        assert client.post(f"/v1/items/{good}/review", json={"decision": "ok"}).status_code == 422
        assert client.post("/v1/items/nope/review", json={"decision": "approve"}).status_code == 404
        long = {"decision": "approve", "reason": "x" * 1001}
        assert client.post(f"/v1/items/{good}/review", json=long).status_code == 422

    server.stop(signal.SIGKILL)  # the pending state is replayed from the events in the log
    server.start()
    with server.client() as client:
        assert client.get(f"/v1/items/{good}").json()["amplification"]["state"] == "pending_review"
        body = {"decision": "approve", "reason": "original content"}
        approved = client.post(f"/v1/items/{good}/review", json=body).json()
        assert (approved["amplification"]["state"], approved["amplification"]["tier"]) == (
            "promoted",
            1,
        )
        rejected = client.post(
            f"/v1/items/{other}/review", json={"decision": "reject", "reason": "reupload"}
        )
        assert rejected.json()["amplification"]["state"] == "rejected"
        assert client.get(f"/v1/items/{other}").status_code == 404  # a takedown
        assert client.get("/v1/review/queue").json()["items"] == []

    server.stop(signal.SIGKILL)  # decisions are in the log too
    server.start()
    with server.client() as client:
        history = client.get(f"/v1/items/{good}").json()["amplification"]["history"]
        assert [h["state"] for h in history] == ["testing", "pending_review", "promoted"]
        assert history[-1]["reason"] == "approved by review: original content"
        assert client.get(f"/v1/items/{other}").status_code == 404
        for u in range(10):
            page = client.get(f"/v1/feed/after-{u}", params={"n": 20}).json()["items"]
            assert other not in [i["item_id"] for i in page]
        again = client.post("/v1/items", json={"items": item_batch(2, seed=27)})
        assert again.status_code == 409
        assert "rejected by review" in again.text
    server.stop()
