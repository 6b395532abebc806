"""A/B experiments: the split is stable per user, follows the weights, and every impression
carries its arm in the response, the impression log and the per-arm metrics."""

from __future__ import annotations

import json

from http_server import DIMS, item_batch, make_server, watch

CONFIG = f"""
dims = {DIMS}
[[experiments]]
name = "blend-test"
arms = [
  {{ name = "control", weight = 3 }},
  {{ name = "treatment", weight = 1 }},
]
"""


def test_split_is_stable_weighted_and_logged(make_server) -> None:
    server = make_server(CONFIG).start()
    with server.client() as client:
        client.post("/v1/items", json={"items": item_batch(300, seed=31)})
        arms = {}
        for u in range(200):
            first = client.get(f"/v1/feed/ab-{u}").json()["experiment"]
            again = client.get(f"/v1/feed/ab-{u}").json()["experiment"]
            assert first == again  # stable per user
            arms[f"ab-{u}"] = first
        treated = sum(a == "blend-test:treatment" for a in arms.values())
        assert 30 <= treated <= 70  # 1 in 4 of 200 users, with room for chance
        assert set(arms.values()) == {"blend-test:control", "blend-test:treatment"}

        page = client.get("/v1/feed/ab-0").json()
        events = [
            {
                "event_id": f"ab-imp-{i}",
                "user_id": "ab-0",
                "item_id": it["item_id"],
                "type": "impression",
                "request_id": page["request_id"],
            }
            for i, it in enumerate(page["items"])
        ] + [watch("ab-w", "ab-0", page["items"][0]["item_id"], 1.0, request_id=page["request_id"])]
        client.post("/v1/events", json={"events": events})
        metrics = client.get("/metrics").text
        arm = arms["ab-0"].split(":")[1]
        assert f'recserve_arm_completion_rate{{arm="{arm}",experiment="blend-test"}} 0.1' in metrics
        assert f'recserve_feeds_served_total{{arm="{arm}",experiment="blend-test"}}' in metrics
    assert server.stop() == 0

    logged = [
        json.loads(line)
        for path in sorted((server.data_dir / "impressions").glob("impressions-*.jsonl"))
        for line in path.read_text().splitlines()[1:]
    ]
    impressions = [r for r in logged if r["kind"] == "impression"]
    assert len(impressions) >= 4000
    for record in impressions:
        assert record["arm"] == arms[record["user"]]
        assert record["model_version"] == "similarity"
    mine = [r for r in impressions if r["request_id"] == page["request_id"]]
    assert [r["position"] for r in mine] == list(range(len(page["items"])))
    assert any(r["kind"] == "event" and r.get("request_id") == page["request_id"] for r in logged)
