"""Shard leases in a DynamoDB table: which worker reads which Kinesis shard, and how far.

One item per shard in ``<prefix>leases``::

    shard_id     S   partition key
    owner        S   the worker holding it (absent: free)
    counter      N   bumped by every take, renewal and checkpoint
    checkpoint   S   the last sequence number applied and durable; TRIM_HORIZON before any;
                     SHARD_END once a closed shard is read to its end
    sub_sequence N   the last user record applied within that (KPL) record
    ordinal      N   user records counted in the shard through the checkpoint
    seq_base     N   where the shard's event sequence numbers start (set when first taken)
    parents      L   the parent shards (resharding)

Every write is conditional on the holder's view (``owner`` and ``counter``), so a worker that
lost a lease, however long it was paused, can neither renew it nor checkpoint it: its writes
fail with LeaseLost. A lease is *expired* when its counter has not moved for the lease
duration, by the observer's own clock (no clock is compared across machines).

Event sequence numbers: the n-th user record of a shard gets ``seq_base + n`` (2^62 + n in a
shard without parents: above any the HTTP source gives). Ordinals count
from the shard's first record and checkpoints carry them, so a record read again after a
failover gets the same number, and the per-user high-water mark makes its apply a no-op. A
child shard starts where its parents ended (``max(parent seq_base + ordinal) + 1``), so a
user's numbers keep growing across splits and merges.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from recserve._aws import ensure_table

__all__ = [
    "ROLE_PREFIX",
    "SHARD_END",
    "TRIM_HORIZON",
    "Lease",
    "LeaseLost",
    "LeaseTable",
    "RoleLease",
    "new_worker_id",
]

TRIM_HORIZON = "TRIM_HORIZON"
SHARD_END = "SHARD_END"
ROLE_PREFIX = "role:"  # items of the table that name a role, not a shard


def new_worker_id() -> str:
    """A replica's name in the lease table when configuration gives none: host, pid, random."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LeaseLost(RuntimeError):
    """Another worker holds the lease now: stop reading the shard, write nothing more."""


@dataclass
class Lease:
    shard_id: str
    owner: str | None
    counter: int
    checkpoint: str
    sub_sequence: int
    ordinal: int
    seq_base: int | None
    parents: tuple[str, ...]
    generation: int = 0  # which taking of the lease by this worker (set by the worker)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.checkpoint == SHARD_END

    @property
    def last_seq(self) -> int:
        """The sequence number of the last record counted through the checkpoint."""
        return (self.seq_base or 0) + self.ordinal

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Lease:
        return cls(
            shard_id=item["shard_id"]["S"],
            owner=item["owner"]["S"] if "owner" in item else None,
            counter=int(item["counter"]["N"]),
            checkpoint=item["checkpoint"]["S"],
            sub_sequence=int(item.get("sub_sequence", {"N": "0"})["N"]),
            ordinal=int(item.get("ordinal", {"N": "0"})["N"]),
            seq_base=int(item["seq_base"]["N"]) if "seq_base" in item else None,
            parents=tuple(p["S"] for p in item.get("parents", {"L": []})["L"]),
        )


class LeaseTable:
    def __init__(self, client: Any, table: str, worker_id: str, *, create: bool = True) -> None:
        self.client = client
        self.table = table
        self.worker_id = worker_id
        ensure_table(client, table, "shard_id", "S", create=create)

    def add_shards(self, shards: list[dict[str, Any]]) -> None:
        """Creates a free lease for each ListShards entry that has none."""
        for shard in shards:
            parents = [shard[k] for k in ("ParentShardId", "AdjacentParentShardId") if k in shard]
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item={
                        "shard_id": {"S": shard["ShardId"]},
                        "counter": {"N": "0"},
                        "checkpoint": {"S": TRIM_HORIZON},
                        "sub_sequence": {"N": "0"},
                        "ordinal": {"N": "0"},
                        "parents": {"L": [{"S": p} for p in parents]},
                    },
                    ConditionExpression="attribute_not_exists(shard_id)",
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                pass  # it exists already

    def all(self) -> dict[str, Lease]:
        leases: dict[str, Lease] = {}
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = self.client.scan(**kwargs)
            for item in page.get("Items", []):
                if item["shard_id"]["S"].startswith(ROLE_PREFIX):
                    continue  # a role (RoleLease), not a shard
                lease = Lease.from_item(item)
                leases[lease.shard_id] = lease
            if "LastEvaluatedKey" not in page:
                return leases
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _update(
        self, lease: Lease, sets: dict[str, dict[str, str]], condition: str, values: dict[str, Any]
    ) -> Lease:
        names = {f"#{k}": k for k in sets} | {"#counter": "counter", "#owner": "owner"}
        assignments = [
            f"#{k} = if_not_exists(#{k}, :{k})" if k == "seq_base" else f"#{k} = :{k}"
            for k in sets
        ]
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key={"shard_id": {"S": lease.shard_id}},
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={f":{k}": v for k, v in sets.items()} | values,
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise LeaseLost(f"lease {lease.shard_id} moved on (counter {lease.counter})") from None
        return Lease.from_item(response["Attributes"])

    def take(self, lease: Lease, seq_base: int) -> Lease:
        """Takes a free, expired or stolen lease as seen (its counter must not have moved)."""
        sets = {
            "owner": {"S": self.worker_id},
            "counter": {"N": str(lease.counter + 1)},
            "seq_base": {"N": str(seq_base)},
        }
        return self._update(
            lease, sets, "#counter = :seen", {":seen": {"N": str(lease.counter)}}
        )

    def _held(self, lease: Lease, sets: dict[str, dict[str, str]]) -> None:
        """A conditional write by the holder; bumps the counter (the holder's liveness)."""
        with lease.lock:
            sets = sets | {"counter": {"N": str(lease.counter + 1)}}
            updated = self._update(
                lease,
                sets,
                "#owner = :me AND #counter = :mine",
                {":me": {"S": self.worker_id}, ":mine": {"N": str(lease.counter)}},
            )
            lease.counter = updated.counter

    def renew(self, lease: Lease) -> None:
        self._held(lease, {})

    def checkpoint(self, lease: Lease, sequence: str, sub_sequence: int, ordinal: int) -> None:
        self._held(
            lease,
            {
                "checkpoint": {"S": sequence},
                "sub_sequence": {"N": str(sub_sequence)},
                "ordinal": {"N": str(ordinal)},
            },
        )
        lease.checkpoint, lease.sub_sequence, lease.ordinal = sequence, sub_sequence, ordinal

    def release(self, lease: Lease) -> None:
        """Gives a held lease back (on shutdown), so another worker need not wait it out."""
        with lease.lock:
            try:
                self.client.update_item(
                    TableName=self.table,
                    Key={"shard_id": {"S": lease.shard_id}},
                    UpdateExpression="REMOVE #owner SET #counter = :next",
                    ConditionExpression="#owner = :me AND #counter = :mine",
                    ExpressionAttributeNames={"#owner": "owner", "#counter": "counter"},
                    ExpressionAttributeValues={
                        ":me": {"S": self.worker_id},
                        ":mine": {"N": str(lease.counter)},
                        ":next": {"N": str(lease.counter + 1)},
                    },
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                pass  # not ours any more: nothing to give back


class RoleLease:
    """One replica at a time holds a role (``role:<name>`` in the same table), e.g. writing
    the catalogue's S3 snapshot. ``hold()`` takes or renews it for ``duration_s``: it
    succeeds for the holder, or for anyone once the holder let it run out. Expiry compares
    wall clocks across machines (NTP keeps EC2's within milliseconds), so keep the duration
    long against the skew: it is a few snapshot intervals."""

    def __init__(self, client: Any, table: str, role: str, worker_id: str, duration_s: float):
        self.client = client
        self.table = table
        self.key = ROLE_PREFIX + role
        self.worker_id = worker_id
        self.duration_s = duration_s

    def hold(self, now_s: float | None = None) -> bool:
        now_ms = int((time.time() if now_s is None else now_s) * 1000)
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"shard_id": {"S": self.key}},
                UpdateExpression="SET #owner = :me, #until = :until",
                ConditionExpression="attribute_not_exists(#owner) OR #owner = :me OR #until < :now",
                ExpressionAttributeNames={"#owner": "owner", "#until": "until_ms"},
                ExpressionAttributeValues={
                    ":me": {"S": self.worker_id},
                    ":until": {"N": str(now_ms + int(self.duration_s * 1000))},
                    ":now": {"N": str(now_ms)},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True
