"""The catalogue state's side of the catalogue stream: each record is checked the same way on
every replica before it is logged, a rejection made elsewhere takes the item down whatever its
state here, and a catalogue snapshot's files load into an empty state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recserve.amplify import AmplifyConfig
from recserve.catalog import Item
from recserve.profiles import Profiles, ProfilesConfig
from recserve.retrieve import Trending
from recserve.service import catalogue_records as records
from recserve.service.catalogue_snapshots import FILES, write_vectors
from recserve.service.catalogue_state import CatalogueState

DIMS = 8


def fresh(item_capacity: int = 100) -> tuple[CatalogueState, Profiles]:
    state = CatalogueState(DIMS, AmplifyConfig(), Trending())
    return state, Profiles(ProfilesConfig(dims=DIMS, item_capacity=item_capacity))


def items_body(n: int, *, first: int = 0, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    rows = [Item(f"v{i}", "c", 15_000) for i in range(first, first + n)]
    vectors = rng.standard_normal((n, DIMS)).astype(np.float32)
    return records.items_record(1_000, rows, vectors, amplify=True)


def apply(state: CatalogueState, profiles: Profiles, seq: int, kind: int, body: bytes) -> None:
    assert state.check_streamed(kind, body, profiles) is None
    state.apply_streamed(str(seq), kind, body, profiles)


def test_applied_records_move_the_position_and_the_catalogue() -> None:
    state, profiles = fresh()
    apply(state, profiles, 10, records.ITEMS, items_body(3))
    down = records.take_down_record([Item("v1", "c", 1).key])
    apply(state, profiles, 11, records.TAKE_DOWN, down)
    assert state.stream_seq == "11"
    assert sorted(state.catalog.get(f"v{i}") is not None for i in range(3)) == [False, True, True]
    assert state.state()["stream_seq"] == "11"  # with the snapshot: a restart reads on from it


@pytest.mark.parametrize(
    ("kind", "body", "problem"),
    [
        (records.USER_PREFS, records.user_prefs_record(1, None, None), "not a catalogue record"),
        (records.ITEMS, b"\x05\x00", "does not decode"),
        (records.ITEMS, b"\xff\xff\xff\x7f{}", "does not decode"),
        (records.ITEMS, items_body(2)[:-3], "does not decode"),  # vectors cut short
        (records.REVIEW, records.review_record(1, 2, "maybe", ""), "unknown review decision"),
        (records.TAKE_DOWN, records._encode({"keys": "x"}), "does not decode"),
    ],
)
def test_a_bad_record_is_refused_with_its_reason_and_changes_nothing(
    kind: int, body: bytes, problem: str
) -> None:
    state, profiles = fresh()
    assert problem in (state.check_streamed(kind, body, profiles) or "")
    assert len(state.catalog) == 0
    assert state.stream_seq is None


def test_a_record_with_nan_vectors_is_refused() -> None:
    state, profiles = fresh()
    rows = [Item("v0", "c", 15_000)]
    body = records.items_record(1, rows, np.full((1, DIMS), np.nan, np.float32), amplify=True)
    assert "does not decode" in (state.check_streamed(records.ITEMS, body, profiles) or "")


def test_items_past_the_capacity_are_refused_alike_on_every_replica() -> None:
    state, profiles = fresh(item_capacity=16)
    apply(state, profiles, 1, records.ITEMS, items_body(15))
    problem = state.check_streamed(records.ITEMS, items_body(2, first=15), profiles)
    assert problem is not None
    assert "item_capacity" in problem
    assert state.check_streamed(records.ITEMS, items_body(1, first=15), profiles) is None
    assert state.check_streamed(records.ITEMS, items_body(15), profiles) is None  # updates


def test_a_rejection_made_on_another_replica_takes_the_item_down_here() -> None:
    state, profiles = fresh()
    apply(state, profiles, 1, records.ITEMS, items_body(2))
    key = Item("v0", "c", 1).key
    assert state.amplifier.state_of(key) == "testing"  # not pending here
    apply(state, profiles, 2, records.REVIEW, records.review_record(5, key, "reject", "spam"))
    assert state.amplifier.state_of(key) == "rejected"
    assert state.catalog.get("v0") is None
    assert not state.amplifier.is_open(key)
    assert state.amplifier.state(key)["history"][-1]["reason"] == "rejected by review: spam"  # type: ignore[index]
    # Posting it again is refused on every replica.
    assert "rejected" in (state.check_streamed(records.ITEMS, items_body(1), profiles) or "")


def test_an_approval_of_an_item_not_pending_here_changes_nothing() -> None:
    state, profiles = fresh()
    apply(state, profiles, 1, records.ITEMS, items_body(1))
    key = Item("v0", "c", 1).key
    apply(state, profiles, 2, records.REVIEW, records.review_record(5, key, "approve", ""))
    assert state.amplifier.state_of(key) == "testing"
    assert state.stream_seq == "2"


def test_a_catalogue_snapshot_loads_into_an_empty_state(tmp_path: Path) -> None:
    state, profiles = fresh()
    apply(state, profiles, 7, records.ITEMS, items_body(5))
    apply(state, profiles, 8, records.TAKE_DOWN, records.take_down_record([Item("v2", "c", 1).key]))
    image = state.image()
    image.catalog.write(tmp_path / FILES["catalog"])
    image.amplifier.write(tmp_path / FILES["amplifier"])
    image.index.save(tmp_path / FILES["index"])
    keys = np.asarray(state.catalog.keys(), dtype=np.uint64)
    write_vectors(tmp_path / FILES["vectors"], keys, profiles.items(keys).vectors)
    files = {role: tmp_path / name for role, name in FILES.items()}

    copy, copy_profiles = fresh()
    assert copy.bootstrap(files, "8", copy_profiles) == []
    assert copy.stream_seq == "8"
    assert sorted(copy.catalog.keys()) == sorted(state.catalog.keys())
    assert copy.catalog.get("v2") is None
    assert len(copy.catalog.index) == 4
    np.testing.assert_array_equal(copy_profiles.items(keys).vectors, profiles.items(keys).vectors)
    assert copy.amplifier.state_of(Item("v0", "c", 1).key) == "testing"
