"""User state in DynamoDB (moto's server on 127.0.0.1): versioned conditional writes, reads
on a cache miss, and the table's creation."""

from __future__ import annotations

import numpy as np
import pytest

from aws_servers import client, new_prefix
from recserve.profiles import Events, Profiles, ProfilesConfig
from recserve.store.dynamodb import DynamoUsers

DIMS = 8


def profiles() -> Profiles:
    p = Profiles(ProfilesConfig(dims=DIMS, user_capacity=1024, item_capacity=1024))
    rng = np.random.default_rng(0)
    p.set_items(np.arange(50), rng.standard_normal((50, DIMS)).astype(np.float32))
    return p


def watches(users: int, n: int, first_seq: int, seed: int) -> Events:
    rng = np.random.default_rng(seed)
    return Events.of(
        users=rng.integers(0, users, n),
        items=rng.integers(0, 50, n),
        types=["watch"] * n,
        watch_ms=rng.integers(0, 10_000, n),
        duration_ms=[10_000] * n,
        ts_ms=np.arange(n) * 100,
        seq=np.arange(first_seq, first_seq + n),
    )


def test_written_users_load_into_another_replica_unchanged(moto_endpoint: str) -> None:
    table = f"{new_prefix()}users"
    here, there = profiles(), profiles()
    store = DynamoUsers(client("dynamodb", moto_endpoint), table, DIMS)
    here.apply(watches(300, 2000, 1, seed=1))  # 300 users: several write and read batches
    result = store.write(here, range(300))
    assert (result.written, result.unchanged, result.superseded) == (300, [], [])
    assert store.fetch(there, range(300)) == 300
    users = np.arange(300)
    a, b = here.user_vectors(users, now_ms=0), there.user_vectors(users, now_ms=0)
    np.testing.assert_array_equal(a.long_term, b.long_term)
    np.testing.assert_array_equal(a.session, b.session)
    assert store.fetch(there, range(300)) == 0  # nothing newer than the cache


def test_an_older_image_never_overwrites_a_newer_one(moto_endpoint: str) -> None:
    table = f"{new_prefix()}users"
    store = DynamoUsers(client("dynamodb", moto_endpoint), table, DIMS)
    ahead, behind = profiles(), profiles()
    ahead.apply(watches(5, 100, 1, seed=2))
    behind.apply(watches(5, 60, 1, seed=2))  # the same events, fewer of them
    assert store.write(ahead, range(5)).written == 5
    refused = store.write(behind, range(5))
    assert (refused.written, sorted(refused.superseded)) == (0, [0, 1, 2, 3, 4])
    fresh = profiles()
    store.fetch(fresh, range(5))
    np.testing.assert_array_equal(
        fresh.user_state(range(5))["high_water_seq"], ahead.user_state(range(5))["high_water_seq"]
    )
    again = store.write(ahead, range(5))  # the same version: refused, but nothing is lost
    assert (again.written, again.unchanged, again.superseded) == (0, [0, 1, 2, 3, 4], [])


def test_a_missing_table_is_an_error_when_creating_tables_is_off(moto_endpoint: str) -> None:
    with pytest.raises(RuntimeError, match="does not exist and creating tables is off"):
        DynamoUsers(client("dynamodb", moto_endpoint), f"{new_prefix()}users", DIMS, create=False)


def test_users_stored_with_other_dims_are_refused(moto_endpoint: str) -> None:
    table = f"{new_prefix()}users"
    p = profiles()
    p.apply(watches(3, 10, 1, seed=3))
    DynamoUsers(client("dynamodb", moto_endpoint), table, DIMS).write(p, range(3))
    other = Profiles(ProfilesConfig(dims=4))
    with pytest.raises(ValueError, match="stored with dims 8"):
        DynamoUsers(client("dynamodb", moto_endpoint), table, 4).fetch(other, range(3))
