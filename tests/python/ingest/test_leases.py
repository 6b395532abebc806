"""Roles in the lease table (moto's DynamoDB): one holder at a time, handed over only once the
holder lets it run out, and never mistaken for a shard."""

from __future__ import annotations

from typing import Any

import pytest

from aws_servers import client, new_prefix
from recserve.ingest.leases import LeaseTable, RoleLease


@pytest.fixture
def table(moto_endpoint: str) -> tuple[Any, str]:
    dynamodb = client("dynamodb", moto_endpoint)
    name = f"{new_prefix()}leases"
    LeaseTable(dynamodb, name, "setup")  # creates it
    return dynamodb, name


def test_one_replica_holds_a_role_until_it_lets_it_run_out(table: tuple[Any, str]) -> None:
    dynamodb, name = table
    a = RoleLease(dynamodb, name, "snapshot", "a", duration_s=10)
    b = RoleLease(dynamodb, name, "snapshot", "b", duration_s=10)
    assert a.hold(now_s=1000)
    assert not b.hold(now_s=1005)  # a holds it until 1010
    assert a.hold(now_s=1008)  # renewed: until 1018
    assert not b.hold(now_s=1015)
    assert b.hold(now_s=1019)  # a let it run out
    assert not a.hold(now_s=1020)


def test_a_role_is_not_read_as_a_shard_lease(table: tuple[Any, str]) -> None:
    dynamodb, name = table
    leases = LeaseTable(dynamodb, name, "w")
    leases.add_shards([{"ShardId": "shardId-000000000000"}])
    assert RoleLease(dynamodb, name, "snapshot", "a", duration_s=10).hold()
    assert list(leases.all()) == ["shardId-000000000000"]
