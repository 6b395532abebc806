"""User state in DynamoDB, with the process's own profiles table as the cache in front of it
(the role DAX plays): a feed never waits for DynamoDB on a hit.

One item per user in ``<prefix>users``::

    user      N   the user's 64-bit key (partition key)
    vectors   B   float32 long-term | session vectors, 2 x dims
    state     B   counters, seen-set and event key window (``Profiles.export_users``)
    dims      N   dtype  S "float32"
    version   N   the user's high-water sequence number: it only grows
    updated_ms N

Writes are conditional on the version (``attribute_not_exists(version) OR version < :v``), so
an older image never overwrites a newer one and a replica that lost its shard writes nothing.
BatchWriteItem cannot carry conditions, so writes go as TransactWriteItems of up to 25 puts
each; a put refused by its condition is reported (``superseded``) and the others are sent again.
Reads are BatchGetItem of up to 100 keys, retrying UnprocessedKeys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recserve._aws import backoff, ensure_table
from recserve.profiles import Profiles

__all__ = ["DynamoUsers", "WriteResult"]

log = logging.getLogger(__name__)

WRITE_BATCH = 25
READ_BATCH = 100
_RETRIES = 8


@dataclass(frozen=True)
class WriteResult:
    written: int
    unchanged: list[int]  # stored at this very version already (the same events, applied)
    superseded: list[int]  # stored at a newer version: someone else applied more


class DynamoUsers:
    def __init__(self, client: Any, table: str, dims: int, *, create: bool = True) -> None:
        self.client = client
        self.table = table
        self.dims = dims
        ensure_table(client, table, "user", "N", create=create)

    # ---- reads -------------------------------------------------------------------------------
    def fetch(self, profiles: Profiles, users: Iterable[int]) -> int:
        """Loads the stored state of these users into ``profiles`` where it is newer than the
        cached one; returns how many were loaded."""
        found = self._read(dict.fromkeys(int(u) for u in users))
        if not found:
            return 0
        for u, item in found.items():
            if int(item["dims"]["N"]) != self.dims or item["dtype"]["S"] != "float32":
                raise ValueError(
                    f"user {u} is stored with dims {item['dims']['N']} {item['dtype']['S']}; "
                    f"this service has dims {self.dims} float32"
                )
        # The import keeps a cached row that has applied as much or more (checked in C++
        # under the writer lock), so an image read while this process applied stays behind.
        return profiles.import_users(
            np.array(list(found), dtype=np.uint64),
            [item["vectors"]["B"] for item in found.values()],
            [item["state"]["B"] for item in found.values()],
        )

    def _read(self, users: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The stored items of these users (absent ones left out), BatchGetItem of 100."""
        wanted = list(users)
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), READ_BATCH):
            keys = [{"user": {"N": str(u)}} for u in wanted[start : start + READ_BATCH]]
            for item in self._batch_get(keys):
                found[int(item["user"]["N"])] = item
        return found

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        for attempt in range(_RETRIES):
            response = self.client.batch_get_item(RequestItems=request)
            items.extend(response.get("Responses", {}).get(self.table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
            time.sleep(backoff(attempt))
        raise RuntimeError(f"DynamoDB left keys of {self.table} unprocessed after {_RETRIES} tries")

    # ---- writes ------------------------------------------------------------------------------
    def write(self, profiles: Profiles, users: Iterable[int]) -> WriteResult:
        """Stores these users' current state, each only if newer than what is stored."""
        wanted = np.array(list(dict.fromkeys(int(u) for u in users)), dtype=np.uint64)
        if not len(wanted):
            return WriteResult(0, [], [])
        images = profiles.export_users(wanted)
        versions = profiles.user_state(wanted)["high_water_seq"].tolist()
        now = str(time.time_ns() // 1_000_000)
        puts = [
            (
                int(u),
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {
                            "user": {"N": str(int(u))},
                            "vectors": {"B": image[0]},
                            "state": {"B": image[1]},
                            "dims": {"N": str(self.dims)},
                            "dtype": {"S": "float32"},
                            "version": {"N": str(version)},
                            "updated_ms": {"N": now},
                        },
                        "ConditionExpression": "attribute_not_exists(#v) OR #v < :v",
                        "ExpressionAttributeNames": {"#v": "version"},
                        "ExpressionAttributeValues": {":v": {"N": str(version)}},
                    }
                },
            )
            for u, image, version in zip(wanted.tolist(), images, versions, strict=True)
            if image is not None
        ]
        written, refused = 0, []
        for start in range(0, len(puts), WRITE_BATCH):
            done, not_newer = self._transact(puts[start : start + WRITE_BATCH])
            written += done
            refused += not_newer
        if not refused:
            return WriteResult(written, [], [])
        ours = dict(zip(wanted.tolist(), versions, strict=True))
        stored = {u: int(item["version"]["N"]) for u, item in self._read(refused).items()}
        unchanged = [u for u in refused if stored.get(u) == ours[u]]
        return WriteResult(written, unchanged, [u for u in refused if stored.get(u) != ours[u]])

    def _transact(self, puts: list[tuple[int, dict[str, Any]]]) -> tuple[int, list[int]]:
        refused: list[int] = []
        for attempt in range(_RETRIES):
            if not puts:
                return 0, refused
            try:
                self.client.transact_write_items(TransactItems=[p for _, p in puts])
                return len(puts), refused
            except self.client.exceptions.TransactionCanceledException as error:
                reasons = error.response.get("CancellationReasons", [])
                failed = {
                    i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"
                }
                if failed:  # drop the refused puts, send the rest again at once
                    refused += [u for i, (u, _) in enumerate(puts) if i in failed]
                    puts = [p for i, p in enumerate(puts) if i not in failed]
                    continue
                time.sleep(backoff(attempt))  # a conflict or throttling: try all again
            except (
                self.client.exceptions.ProvisionedThroughputExceededException,
                self.client.exceptions.RequestLimitExceeded,
                self.client.exceptions.TransactionConflictException,
            ):
                time.sleep(backoff(attempt))
        raise RuntimeError(f"DynamoDB refused a write to {self.table} {_RETRIES} times")
