"""Scale-out: recserve replicas (real processes) reading one Kinesis stream with DynamoDB
leases and user state, on moto's server. A replica is killed (-9) or paused (SIGSTOP) mid-
stream; the users' final state in DynamoDB must equal a serial replay of every record."""

from __future__ import annotations

import base64
import json
import signal
import time
from typing import Any

import numpy as np
from http_server import DIMS, item_batch, make_server  # noqa: F401  (fixture)

from aws_servers import aws_env, client, new_prefix, new_stream
from recserve.ids import key_of, keys_of
from recserve.ingest import kpl
from recserve.ingest.kinesis import ROOT_SEQ_BASE, Producer
from recserve.ingest.leases import LeaseTable
from recserve.ingest.records import encode_binary, encode_json
from recserve.profiles import Events, Profiles, ProfilesConfig
from recserve.store.dynamodb import DynamoUsers

LEASE_S, RENEW_S = 3.0, 0.5
ITEMS = item_batch(60, seed=7)


def config(stream: str, prefix: str) -> str:
    return f"""
dims = {DIMS}
events_source = "kinesis"
kinesis_stream = "{stream}"
state_store = "dynamodb"
dynamodb_table_prefix = "{prefix}"
[kinesis]
lease_duration_s = {LEASE_S}
renew_interval_s = {RENEW_S}
[feed]
precompute = false
"""


def events(round_: int, users: int = 24, per_user: int = 6) -> list[dict[str, Any]]:
    rng = np.random.default_rng(round_)
    return [
        {
            "event_id": f"r{round_}-{u}-{i}",
            "user_id": f"u{u}",
            "item_id": f"v{int(rng.integers(0, len(ITEMS)))}",
            "type": "watch",
            "watch_ms": int(rng.integers(0, 15_000)),
            "duration_ms": 15_000,
            "ts": 1_700_000_000_000 + round_ * 10_000 + i,
        }
        for i in range(per_user)
        for u in range(users)
    ]


class Cluster:
    def __init__(self, endpoint: str, make_server: Any) -> None:
        self.kinesis = client("kinesis", endpoint)
        self.dynamodb = client("dynamodb", endpoint)
        self.stream, self.prefix = new_stream(self.kinesis, 4), new_prefix()
        self.replicas = []
        for name in ("a", "b"):
            server = make_server(config(self.stream, self.prefix), name)
            server.env = aws_env(endpoint) | {"RECSERVE_KINESIS__WORKER_ID": name}
            self.replicas.append(server.start())
            with server.client() as http:  # each replica holds the catalogue
                assert http.post("/v1/items", json={"items": ITEMS}).status_code == 200
        self.producer = Producer(self.kinesis, self.stream)
        # (shard, sequence number, sub-sequence, event or None for an undecodable record)
        self.sent: list[tuple[str, str, int, dict[str, Any] | None]] = []

    def leases(self) -> dict[str, Any]:
        return LeaseTable(self.dynamodb, f"{self.prefix}leases", "observer").all()

    def owners(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for lease in self.leases().values():
            if lease.owner:
                counts[lease.owner] = counts.get(lease.owner, 0) + 1
        return counts

    def put(self, batch: list[dict[str, Any]]) -> None:
        placed = self.producer.put([(e["user_id"], encode_binary(**e)) for e in batch])
        self.sent += [(shard, seq, 0, e) for (shard, seq), e in zip(placed, batch, strict=True)]

    def put_aggregate(self, batch: list[dict[str, Any]]) -> None:
        """One KPL-aggregated record of one user's events (JSON inside)."""
        user = batch[0]["user_id"]
        blob = kpl.aggregate([(user, encode_json(**e)) for e in batch])
        [(shard, seq)] = self.producer.put([(user, blob)])
        self.sent += [(shard, seq, i, e) for i, e in enumerate(batch)]

    def put_garbage(self, user: str) -> tuple[str, str]:
        [(shard, seq)] = self.producer.put([(user, b"\x00 not an event")])
        self.sent.append((shard, seq, 0, None))
        return shard, seq

    def wait_applied(self, timeout: float = 60.0) -> None:
        """Until every shard's checkpoint has passed the last record put on it."""
        last: dict[str, int] = {}
        for shard, seq, _, _ in self.sent:
            last[shard] = max(last.get(shard, 0), int(seq))
        wait_for(
            lambda: all(
                lease.checkpoint.isdigit() and int(lease.checkpoint) >= last.get(shard, 0)
                for shard, lease in self.leases().items()
                if shard in last
            ),
            timeout,
            lambda: (last, self.leases()),
        )

    def assert_state_is_a_serial_replay(self) -> None:
        """Replays every record alone, in stream order, with the stream's sequence numbers,
        and compares each user with what the replicas left in DynamoDB."""
        config = ProfilesConfig(dims=DIMS, user_capacity=4096, item_capacity=4096)
        replay, stored = Profiles(config), Profiles(config)
        vectors = np.array([item["embedding"] for item in ITEMS], dtype=np.float32)
        replay.set_items(keys_of(item["id"] for item in ITEMS), vectors)
        for shard in sorted({s for s, _, _, _ in self.sent}):
            # The n-th user record of a shard has seq 2^62 + n, undecodable ones included.
            ordered = sorted((int(seq), sub, e) for s, seq, sub, e in self.sent if s == shard)
            rows = [
                (ROOT_SEQ_BASE + n, e)
                for n, (_, _, e) in enumerate(ordered, start=1)
                if e is not None
            ]
            replay.apply(
                Events.of(
                    users=keys_of(e["user_id"] for _, e in rows),
                    items=keys_of(e["item_id"] for _, e in rows),
                    types=["watch"] * len(rows),
                    watch_ms=[e["watch_ms"] for _, e in rows],
                    duration_ms=[e["duration_ms"] for _, e in rows],
                    ts_ms=[e["ts"] for _, e in rows],
                    seq=np.array([seq for seq, _ in rows], dtype=np.uint64),
                    event_keys=keys_of(e["event_id"] for _, e in rows),
                )
            )
        events = [e for _, _, _, e in self.sent if e is not None]
        users = np.array(sorted({key_of(e["user_id"]) for e in events}), np.uint64)
        DynamoUsers(self.dynamodb, f"{self.prefix}users", DIMS).fetch(stored, users)
        a, b = replay.user_vectors(users, now_ms=0), stored.user_vectors(users, now_ms=0)
        np.testing.assert_array_equal(a.long_term, b.long_term)
        np.testing.assert_array_equal(a.session, b.session)
        for name, column in replay.user_state(users).items():
            np.testing.assert_array_equal(column, stored.user_state(users)[name], err_msg=name)
        assert replay.user_state(users)["events_applied"].sum() == len(events)


def wait_for(condition: Any, timeout: float = 60.0, state: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; {state() if state else ''}")
        time.sleep(0.1)


def test_killed_replica_its_shards_move_and_nothing_is_lost(
    moto_endpoint: str,
    make_server: Any,  # noqa: F811
) -> None:
    cluster = Cluster(moto_endpoint, make_server)
    a, b = cluster.replicas
    wait_for(lambda: cluster.owners() == {"a": 2, "b": 2}, state=cluster.owners)
    cluster.put(events(1))
    cluster.put_aggregate(events(5, users=1, per_user=4))  # u0's next 4 events, KPL-aggregated
    shard, seq = cluster.put_garbage("u1")  # its neighbours are applied, the shard goes on
    cluster.wait_applied()
    cluster.put(events(2))  # in flight when a dies
    a.stop(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: cluster.owners() == {"b": 4}, state=cluster.owners)
    assert time.monotonic() - killed <= LEASE_S + 2 * RENEW_S + 2.0  # +2: one lease round
    cluster.put(events(3))
    cluster.wait_applied()
    cluster.assert_state_is_a_serial_replay()
    with b.client() as http:  # b serves every user now, and takes events over HTTP
        page = http.get("/v1/feed/u1")
        assert page.status_code == 200
        assert len(page.json()["items"]) == 10
        applied = http.get("/v1/users/u1").json()["events_applied"]
        assert applied == 3 * 6
        posted = http.post("/v1/events", json={"events": [
            {"event_id": "late", "user_id": "u1", "item_id": "v3", "type": "like"}
        ]})
        assert posted.status_code == 202
        wait_for(lambda: http.get("/v1/users/u1").json()["events_applied"] == applied + 1)
        metrics = http.get("/metrics").text
    assert "recserve_kinesis_leases_held 4.0" in metrics
    dead = [
        json.loads(line)
        for replica in (a, b)
        if (replica.data_dir / "dead-letter.jsonl").exists()
        for line in (replica.data_dir / "dead-letter.jsonl").read_text().splitlines()
    ]
    assert {(d["shard"], d["sequence_number"]) for d in dead} == {(shard, seq)}
    assert dead[0]["reason"].startswith("undecodable")
    assert base64.b64decode(dead[0]["data"]) == b"\x00 not an event"


def test_a_paused_replica_drops_its_shards_and_overwrites_nothing(
    moto_endpoint: str,
    make_server: Any,  # noqa: F811
) -> None:
    cluster = Cluster(moto_endpoint, make_server)
    a, b = cluster.replicas
    wait_for(lambda: cluster.owners() == {"a": 2, "b": 2}, state=cluster.owners)
    cluster.put(events(1))
    cluster.wait_applied()
    assert a.process is not None
    a.process.send_signal(signal.SIGSTOP)
    cluster.put(events(2))  # a holds half of these when it stops
    wait_for(lambda: cluster.owners() == {"b": 4}, state=cluster.owners)
    cluster.put(events(3))
    cluster.wait_applied()
    a.process.send_signal(signal.SIGCONT)  # it wakes up believing it holds two shards
    time.sleep(2 * RENEW_S + 1.0)
    cluster.put(events(4))
    cluster.wait_applied()
    cluster.assert_state_is_a_serial_replay()
    with a.client() as http:
        metrics = http.get("/metrics").text
    lost = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("recserve_kinesis_leases_lost ")
    )
    assert lost >= 2, metrics  # both of the shards it held when it stopped


def test_events_the_stream_refuses_get_503_and_are_not_acknowledged(
    moto_endpoint: str,
    make_server: Any,  # noqa: F811
) -> None:
    kinesis = client("kinesis", moto_endpoint)
    stream, prefix = new_stream(kinesis, 1), new_prefix()
    server = make_server(config(stream, prefix), "solo")
    server.env = aws_env(moto_endpoint)
    server.start()
    kinesis.delete_stream(StreamName=stream)
    with server.client() as http:
        response = http.post("/v1/events", json={"events": [
            {"event_id": "e1", "user_id": "u1", "item_id": "v1", "type": "like"}
        ]})
    assert response.status_code == 503
    assert "did not take the events" in response.json()["detail"]
    assert response.headers["retry-after"] == "1"
