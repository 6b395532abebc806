"""Served and served-not-viewed counters: a page appearance is served; no event from its user
within the window makes it served-not-viewed."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from recserve.exposure import ExposureCounts, ExposureLedger

TIMEOUT_MS = 300_000


class FakeSeen:
    """The users' events: (user, item) pairs, as Profiles.seen would answer."""

    def __init__(self) -> None:
        self.pairs: set[tuple[int, int]] = set()
        self.calls = 0

    def __call__(self, user: int, items: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        self.calls += 1
        return np.array([(user, int(i)) in self.pairs for i in items.tolist()], dtype=bool)


def test_every_page_appearance_counts_as_served() -> None:
    ledger, seen = ExposureLedger(TIMEOUT_MS, 1_000), FakeSeen()
    ledger.record(1, [10, 11], 0, seen)
    ledger.record(2, [10], 5, seen)
    ledger.record(1, [10], 9, seen)
    assert ledger.counts(10) == ExposureCounts(served=3, served_not_viewed=0)
    assert ledger.counts(11) == ExposureCounts(1, 0)
    assert ledger.counts(12) == ExposureCounts(0, 0)
    assert ledger.pending() == 4


def test_an_event_within_the_window_makes_it_viewed_and_none_makes_it_not_viewed() -> None:
    ledger, seen = ExposureLedger(TIMEOUT_MS, 1_000), FakeSeen()
    ledger.record(1, [10, 11], 1_000, seen)
    seen.pairs.add((1, 10))  # the user watched 10, never reached 11
    assert ledger.resolve(1_000 + TIMEOUT_MS - 1, seen) == 0  # the window is still open
    assert ledger.counts(11).served_not_viewed == 0
    assert ledger.resolve(1_000 + TIMEOUT_MS, seen) == 2
    assert ledger.counts(10) == ExposureCounts(1, 0)
    assert ledger.counts(11) == ExposureCounts(1, 1)
    assert ledger.pending() == 0


def test_another_users_event_does_not_make_it_viewed() -> None:
    ledger, seen = ExposureLedger(TIMEOUT_MS, 1_000), FakeSeen()
    ledger.record(1, [10], 0, seen)
    seen.pairs.add((2, 10))
    ledger.resolve(TIMEOUT_MS, seen)
    assert ledger.counts(10) == ExposureCounts(1, 1)


def test_past_the_bound_the_oldest_pages_settle_early() -> None:
    ledger, seen = ExposureLedger(TIMEOUT_MS, 4), FakeSeen()
    ledger.record(1, [10, 11], 0, seen)
    ledger.record(2, [12, 13], 1, seen)
    assert ledger.pending() == 4
    assert ledger.early == 0
    ledger.record(3, [14], 2, seen)  # 5 > 4: user 1's page settles now, unviewed
    assert ledger.pending() == 3
    assert ledger.early == 1
    assert ledger.counts(10) == ExposureCounts(1, 1)
    assert ledger.counts(12) == ExposureCounts(1, 0)  # still waiting


def test_pages_are_counted_as_one_array_each_whatever_their_length() -> None:
    ledger, seen = ExposureLedger(TIMEOUT_MS, 1_000), FakeSeen()
    ledger.record(1, np.arange(100, 110, dtype=np.uint64), 0, seen)
    ledger.resolve(TIMEOUT_MS, seen)
    assert seen.calls == 1  # one seen-set read per page
    assert ledger.items() == 10


def test_a_takedown_drops_the_items_counters() -> None:
    ledger, seen = ExposureLedger(TIMEOUT_MS, 1_000), FakeSeen()
    ledger.record(1, [10, 11], 0, seen)
    ledger.drop_item(10)
    ledger.resolve(TIMEOUT_MS, seen)  # its pending entry settles as nothing
    assert ledger.counts(10) == ExposureCounts(0, 0)
    assert ledger.counts(11) == ExposureCounts(1, 1)
    assert ledger.items() == 1


def test_forgetting_a_user_drops_their_pending_pages() -> None:
    ledger, seen = ExposureLedger(TIMEOUT_MS, 1_000), FakeSeen()
    ledger.record(1, [10], 0, seen)
    ledger.record(2, [10, 11], 0, seen)
    ledger.forget_user(2)
    assert ledger.pending() == 1
    ledger.resolve(TIMEOUT_MS, seen)
    assert ledger.counts(10) == ExposureCounts(2, 1)


def test_an_empty_page_counts_nothing() -> None:
    ledger, seen = ExposureLedger(TIMEOUT_MS, 1_000), FakeSeen()
    ledger.record(1, [], 0, seen)
    assert ledger.pending() == 0
    assert ledger.items() == 0


@pytest.mark.parametrize(("timeout_ms", "max_pending"), [(0, 10), (8 * 86_400_000, 10), (1_000, 0)])
def test_out_of_range_settings_are_refused(timeout_ms: int, max_pending: int) -> None:
    with pytest.raises(ValueError, match="must be in"):
        ExposureLedger(timeout_ms, max_pending)
