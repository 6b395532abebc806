"""One catalogue across replicas (real processes): items, takedowns and reviews posted to one
replica reach the others through the catalogue stream (kinesalite), and a replica started late
loads the newest S3 snapshot (moto) and reads the stream on from its position."""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from typing import Any

import pytest
from http_server import DIMS, Server, item_batch, make_server  # noqa: F401  (fixture)

from aws_servers import CREDENTIALS, client, new_prefix, new_stream

ITEMS = item_batch(40, seed=3)
USER = "u1"


def config(events: str, catalogue: str, prefix: str, bucket: str) -> str:
    return f"""
dims = {DIMS}
events_source = "kinesis"
kinesis_stream = "{events}"
state_store = "dynamodb"
dynamodb_table_prefix = "{prefix}"
catalog_stream = "{catalogue}"
snapshot_uri = "s3://{bucket}/replicas"
snapshot_interval_s = 1
[catalog]
poll_interval_s = 0.2
[feed]
precompute = false
"""


class Service:
    """Kinesis on kinesalite, DynamoDB and S3 on moto, and replicas started on demand."""

    def __init__(self, moto: str, kinesalite: str, make: Any) -> None:
        kinesis = client("kinesis", kinesalite)
        self.s3 = client("s3", moto)
        self.bucket = f"snapshots-{uuid.uuid4().hex[:8]}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.config = config(
            new_stream(kinesis, 2), new_stream(kinesis, 1), new_prefix(), self.bucket
        )
        self.env = CREDENTIALS | {"AWS_ENDPOINT_URL": moto, "AWS_ENDPOINT_URL_KINESIS": kinesalite}
        self.make = make

    def replica(self, name: str) -> Server:
        server: Server = self.make(self.config, name)
        server.env = self.env | {"RECSERVE_KINESIS__WORKER_ID": name}
        return server.start()

    def pointer(self) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key="replicas/catalogue/latest.json")
        except self.s3.exceptions.NoSuchKey:
            return None
        return dict(json.loads(body["Body"].read()))


@pytest.fixture
def service(moto_endpoint: str, kinesalite_endpoint: str, make_server: Any) -> Service:
    return Service(moto_endpoint, kinesalite_endpoint, make_server)


def metric(server: Server, name: str) -> float:
    with server.client() as http:
        text = http.get("/metrics").text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} is not among the metrics"
    return float(found.group(1))


def feed(server: Server, user: str = USER) -> list[str]:
    with server.client() as http:
        response = http.get(f"/v1/feed/{user}", params={"n": 20})
    assert response.status_code == 200, response.text
    return [entry["item_id"] for entry in response.json()["items"]]


def status_of(server: Server, item_id: str) -> int:
    with server.client() as http:
        return http.get(f"/v1/items/{item_id}").status_code


def until(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition was not met in time"
        time.sleep(0.1)


def test_items_posted_to_one_replica_are_served_by_the_other(service: Service) -> None:
    a, b = service.replica("a"), service.replica("b")
    with a.client() as http:
        assert http.post("/v1/items", json={"items": ITEMS, "amplify": False}).status_code == 200
        assert http.get("/v1/items/v0").status_code == 200  # the writer reads its write
    until(lambda: all(status_of(b, item["id"]) == 200 for item in ITEMS))
    assert set(feed(b)) <= {item["id"] for item in ITEMS}
    assert feed(b)


def test_a_takedown_on_one_replica_leaves_the_others_feeds_within_their_lag(
    service: Service,
) -> None:
    a, b = service.replica("a"), service.replica("b")
    with a.client() as http:
        assert http.post("/v1/items", json={"items": ITEMS, "amplify": False}).status_code == 200
    until(lambda: len(feed(b)) == 20)
    doomed = feed(b)[0]
    with a.client() as http:
        assert http.delete(f"/v1/items/{doomed}").status_code == 204
    taken_down_at = time.monotonic()
    assert doomed not in feed(a)
    # Every change older than B's lag is applied there: once that covers the takedown, B's
    # next feed must be without the item.
    while True:
        lag = metric(b, "recserve_catalog_lag_seconds")
        if time.monotonic() - lag > taken_down_at:
            break
        assert time.monotonic() - taken_down_at < 20, f"B's lag stays at {lag} s"
        time.sleep(0.05)
    assert doomed not in feed(b)
    assert status_of(b, doomed) == 404
    assert metric(b, 'recserve_catalog_records_total{outcome="applied"}') == 2


def test_a_replica_started_late_loads_the_s3_snapshot_and_reads_on_from_it(
    service: Service,
) -> None:
    a = service.replica("a")
    with a.client() as http:
        assert http.post("/v1/items", json={"items": ITEMS[:30]}).status_code == 200
        assert http.delete("/v1/items/v5").status_code == 204
    until(lambda: service.pointer() is not None)  # snapshot_interval_s = 1
    late = service.replica("late")  # nothing is ever posted to it
    with a.client() as http:  # after the snapshot: only the stream has these
        assert http.post("/v1/items", json={"items": ITEMS[30:]}).status_code == 200
    wanted = {item["id"] for item in ITEMS} - {"v5"}
    until(lambda: all(status_of(late, i) == 200 for i in wanted))
    assert status_of(late, "v5") == 404
    assert set(feed(late)) <= wanted
    assert feed(late)
    # It read only what came after the snapshot from the stream (the last post, perhaps the
    # takedown), not the whole stream (3 records).
    applied = metric(late, 'recserve_catalog_records_total{outcome="applied"}')
    assert 1 <= applied <= 2, f"the late replica applied {applied} records"
    with late.client() as http:  # the amplification state came with the catalogue
        state = http.get("/v1/items/v0").json()["amplification"]
    assert state is not None
    assert state["tier"] == 0


def test_a_killed_replica_resumes_after_the_last_record_it_logged(service: Service) -> None:
    a, b = service.replica("a"), service.replica("b")
    with a.client() as http:
        assert http.post("/v1/items", json={"items": ITEMS, "amplify": False}).status_code == 200
        assert http.delete("/v1/items/v1").status_code == 204
    until(lambda: status_of(b, "v1") == 404)
    b.stop(signal.SIGKILL)
    b.start()
    assert status_of(b, "v1") == 404
    assert status_of(b, "v2") == 200
    assert metric(b, 'recserve_catalog_records_total{outcome="applied"}') == 0  # none again
    with a.client() as http:
        assert http.delete("/v1/items/v2").status_code == 204
    until(lambda: status_of(b, "v2") == 404)


def test_a_refused_review_sends_nothing_to_the_other_replicas(
    service: Service,
) -> None:
    a, b = service.replica("a"), service.replica("b")
    with a.client() as http:
        assert http.post("/v1/items", json={"items": ITEMS[:5]}).status_code == 200
        # Not pending review on A: refused, and nothing travels.
        assert http.post("/v1/items/v0/review", json={"decision": "reject"}).status_code == 409
    until(lambda: status_of(b, "v0") == 200)
    assert metric(b, 'recserve_catalog_records_total{outcome="applied"}') == 1


def damage(service: Service, manifest: dict[str, Any], role: str) -> None:
    key = manifest["files"][role]["key"]
    body = bytearray(service.s3.get_object(Bucket=service.bucket, Key=key)["Body"].read())
    body[-1] ^= 0xFF
    service.s3.put_object(Bucket=service.bucket, Key=key, Body=bytes(body))


def late_after_damage(service: Service, writer: Server, role: str) -> Server:
    """Stops the snapshot writer, damages ``role`` of the newest snapshot, and starts a new
    replica, once it serves every item."""
    writer.stop()  # no newer snapshot from here on
    newest = service.pointer()
    assert newest is not None
    damage(service, newest, role)
    late = service.replica("late")
    until(lambda: all(status_of(late, item["id"]) == 200 for item in ITEMS))
    return late


def test_a_damaged_s3_snapshot_is_passed_over_for_the_one_before(service: Service) -> None:
    a = service.replica("a")
    with a.client() as http:
        assert http.post("/v1/items", json={"items": ITEMS[:20]}).status_code == 200
    until(lambda: service.pointer() is not None)
    first = service.pointer()
    assert first is not None
    with a.client() as http:
        assert http.post("/v1/items", json={"items": ITEMS[20:]}).status_code == 200
    until(lambda: (service.pointer() or first)["seq"] != first["seq"])
    late = late_after_damage(service, a, "vectors")
    # The first snapshot, then the second post from the stream.
    assert metric(late, 'recserve_catalog_records_total{outcome="applied"}') == 1
    assert "differs from its snapshot manifest" in late.log.read_text()


def test_with_no_whole_s3_snapshot_the_stream_is_read_from_its_start(service: Service) -> None:
    a = service.replica("a")
    with a.client() as http:
        assert http.post("/v1/items", json={"items": ITEMS}).status_code == 200
    until(lambda: service.pointer() is not None)
    late = late_after_damage(service, a, "index")
    assert metric(late, 'recserve_catalog_records_total{outcome="applied"}') == 1
    assert "no S3 catalogue snapshot was whole" in late.log.read_text()


def test_a_replica_logs_the_events_posted_to_it_for_retraining(service: Service) -> None:
    """In scale-out the stream's owner applies the events; the replica that took them logs them
    beside the pages it served, so its data directory trains (recserve retrain)."""
    a = service.replica("a")
    with a.client() as http:
        assert http.post("/v1/items", json={"items": ITEMS, "amplify": False}).status_code == 200
        page = http.get(f"/v1/feed/{USER}").json()
        event = {
            "event_id": "e1",
            "user_id": USER,
            "item_id": page["items"][0]["item_id"],
            "request_id": page["request_id"],
            "type": "watch",
            "watch_ms": 15_000,
            "duration_ms": 15_000,
        }
        assert http.post("/v1/events", json={"events": [event]}).status_code == 202

    def logged() -> list[dict[str, Any]]:
        lines = []
        for path in sorted((a.data_dir / "impressions").glob("impressions-*.jsonl")):
            lines += [json.loads(line) for line in path.read_text().splitlines()[1:] if line]
        return lines

    until(lambda: any(r["kind"] == "event" for r in logged()))
    events = [r for r in logged() if r["kind"] == "event"]
    assert [(e["event_id"], e["request_id"], e["watch_ms"]) for e in events] == [
        ("e1", page["request_id"], 15_000)
    ]
    served = [r for r in logged() if r["kind"] == "impression"]
    assert page["request_id"] in {r["request_id"] for r in served}
