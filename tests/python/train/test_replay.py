"""recserve.train.replay: rows as of serve time, state updates, item counters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recserve.features import FeatureSpec
from recserve.profiles import Events, Profiles, ProfilesConfig, UpdateRule
from recserve.train.log import (
    Event,
    Impression,
    ImpressionLog,
    LogWriter,
    Record,
    read_log,
    write_catalog,
)
from recserve.train.replay import replay

WriteLog = Callable[[Path, list[Record]], Path]


def test_rows_do_not_see_events_after_serve_time(synthetic_log: Path) -> None:
    """Cutting the log at time T changes no row of an impression served before T."""
    log = read_log(synthetic_log)
    full = replay(log)
    cut = float(np.median(full.ts))
    early = ImpressionLog([r for r in log.records if r.ts < cut], log.catalog, log.report)
    partial = replay(early)
    before = full.ts < cut
    assert 0 < len(partial) == int(before.sum()) < len(full)
    np.testing.assert_array_equal(partial.rows, full.rows[before])


def test_a_later_like_reaches_the_next_impression_only(tmp_path: Path, write_log: WriteLog) -> None:
    records: list[Record] = [
        Impression(0.0, "r1", "u", 1, 0),
        Event(5.0, "e1", "u", 1, "watch", "r1", watch_ms=10000, duration_ms=10000),
        Event(6.0, "e2", "u", 1, "like", "r1"),
        Impression(60.0, "r2", "u", 1, 0),
    ]
    data = replay(read_log(write_log(tmp_path, records)))
    spec = data.spec
    first, second = data.rows
    prior_like = spec.priors["like"][0]
    assert first[spec.slice("item_like_rate")][0] == pytest.approx(prior_like)
    assert first[spec.slice("item_log_impressions")][0] == 0.0
    np.testing.assert_array_equal(first[spec.slice("user_long")], 0.0)
    mean, strength = spec.priors["like"]
    assert second[spec.slice("item_like_rate")][0] == pytest.approx(
        (1 + mean * strength) / (1 + strength)
    )
    assert second[spec.slice("item_log_impressions")][0] == pytest.approx(np.log1p(1))
    assert second[spec.slice("user_log_events")][0] == pytest.approx(np.log1p(2))
    assert second[spec.slice("dot_long_item")][0] > 0  # the user moved towards item 1


def test_user_vectors_move_by_the_shared_update_rule(tmp_path: Path, write_log: WriteLog) -> None:
    rule = UpdateRule(lr_long=0.1)
    records: list[Record] = [
        Event(0.0, "e1", "u", 2, "watch", watch_ms=6500, duration_ms=10000),  # ratio 0.65
        Event(1.0, "e2", "u", 3, "not_interested"),
        Impression(2.0, "r", "u", 1, 0),
    ]
    data = replay(read_log(write_log(tmp_path, records)), rule=rule)
    item2 = np.eye(4, dtype=np.float32)[1] + 0.1
    item3 = np.eye(4, dtype=np.float32)[2] + 0.1
    # The default completion curve passes (0.3, 0) and (1, 1): 0.65 -> 0.5.
    expected = np.zeros(4)
    for item, weight in ((item2, 0.5), (item3, rule.weights["not_interested"])):
        step = rule.lr_long * abs(weight)
        expected = (1 - step) * expected + np.sign(weight) * step * item
    np.testing.assert_allclose(data.rows[0, data.spec.slice("user_long")], expected, rtol=1e-5)
    # ... and exactly what the online path computes from the same events.
    online = Profiles(ProfilesConfig(dims=4, rule=rule))
    online.set_items([2, 3], np.stack([item2, item3]))
    online.apply(
        Events.of(
            users=[0, 0],
            items=[2, 3],
            types=["watch", "not_interested"],
            watch_ms=[6500, 0],
            duration_ms=[10000, 0],
            ts_ms=[0, 1000],
            seq=[1, 2],
        )
    )
    np.testing.assert_array_equal(
        data.rows[0, data.spec.slice("user_long")],
        online.user_vectors([0], now_ms=2000).long_term[0],
    )


def test_each_outcome_counts_once_per_impression(tmp_path: Path, write_log: WriteLog) -> None:
    records: list[Record] = [
        Impression(0.0, "r1", "u", 1, 0),
        Event(1.0, "e1", "u", 1, "like", "r1"),
        Event(2.0, "e2", "u", 1, "like", "r1"),  # a second like of the same impression
        Event(2.5, "e3", "u", 1, "like"),  # joins r1 by window: still the same impression
        Impression(10.0, "r2", "v", 1, 0),
    ]
    data = replay(read_log(write_log(tmp_path, records)))
    mean, strength = data.spec.priors["like"]
    assert data.rows[1, data.spec.slice("item_like_rate")][0] == pytest.approx(
        (1 + mean * strength) / (1 + strength)
    )


def test_session_restarts_after_a_gap(tmp_path: Path, write_log: WriteLog) -> None:
    records: list[Record] = [
        Impression(0.0, "r1", "u", 1, 0),
        Event(1.0, "e1", "u", 2, "like"),
        Impression(100.0, "r2", "u", 1, 0),
        Impression(100.0 + 3 * 3600, "r3", "u", 1, 0),
    ]
    data = replay(read_log(write_log(tmp_path, records)))
    spec = data.spec
    session_length = data.rows[:, spec.slice("user_log_session_length")][:, 0]
    np.testing.assert_allclose(session_length, np.log1p([0, 1, 0]))
    assert np.abs(data.rows[1, spec.slice("user_session")]).sum() > 0
    np.testing.assert_array_equal(data.rows[2, spec.slice("user_session")], 0.0)
    assert np.abs(data.rows[2, spec.slice("user_long")]).sum() > 0  # long-term survives


def test_item_missing_from_the_catalogue_is_an_error(tmp_path: Path, write_log: WriteLog) -> None:
    records: list[Record] = [Impression(0.0, "r1", "u", 99, 0)]
    with pytest.raises(ValueError, match="item 99, which is not in the log's catalogue"):
        replay(read_log(write_log(tmp_path, records)))


def test_items_with_64_bit_keys_join_and_count(tmp_path: Path) -> None:
    """Keys of 2^63 and more (half of recserve.ids.key_of's) join their events, count in the
    item's counters and reach the affinity features like any other."""
    high, low = (1 << 64) - 2, 7
    write_catalog(tmp_path, [high, low], np.eye(2, 4, dtype=np.float32) + 0.1, [0.0, 0.0])
    records: list[Record] = [
        Impression(0.0, "r1", "u", high, 0),
        Event(1.0, "e1", "u", high, "like", "r1"),
        Event(2.0, "e2", "u", high, "watch", watch_ms=9_500, duration_ms=10_000),
        Impression(60.0, "r2", "v", high, 0),
        Event(61.0, "e3", "v", high, "skip", "r2"),
        Impression(120.0, "r3", "u", low, 0),
        Event(121.0, "e4", "u", low, "impression", "r3"),
    ]
    with LogWriter(tmp_path) as writer:
        writer.extend(records)
    data = replay(read_log(tmp_path))
    assert data.item.view(np.uint64).tolist() == [high, high, low]
    assert data.unattributed == 0
    heads = list(data.heads)
    assert data.labels[0, heads.index("like")] == 1.0
    assert data.labels[0, heads.index("complete")] == 1.0
    assert data.labels[1, heads.index("skip")] == 1.0
    likes = data.rows[:, data.spec.slice("item_like_rate")][:, 0]
    assert likes[1] > likes[0]  # the first like of the item counted before the second serve
    # u's positives (the like and the completion of the high key) are found by their key:
    # the third row's similarity to them is that of the two catalogue vectors.
    similarity = data.rows[:, data.spec.slice("positive_similarity")][:, 0]
    assert similarity[2] > 0


def test_an_event_on_an_item_never_in_the_catalogue_counts_as_online(
    tmp_path: Path, write_log: WriteLog
) -> None:
    """The service accepts events on items it does not know: the user's events count them,
    nothing else moves."""
    records: list[Record] = [
        Event(0.0, "e0", "u", 99, "like"),
        Impression(1.0, "r1", "u", 1, 0),
        Event(2.0, "e1", "u", 1, "like", "r1"),
    ]
    data = replay(read_log(write_log(tmp_path, records)))
    assert len(data) == 1
    assert data.events == 2
    assert data.unattributed == 1
    events = data.rows[0, data.spec.slice("user_log_events")][0]
    assert events == pytest.approx(np.log1p(1))
    np.testing.assert_array_equal(data.rows[0, data.spec.slice("user_long")], 0.0)


def test_spec_dims_must_match_the_catalogue(tmp_path: Path, write_log: WriteLog) -> None:
    log = read_log(write_log(tmp_path, [Impression(0.0, "r1", "u", 1, 0)]))
    with pytest.raises(ValueError, match="dims 64 but the log's catalogue has 4"):
        replay(log, spec=FeatureSpec(dims=64))


def test_sampled_negatives_are_unshown_items_labelled_as_a_fast_skip(synthetic_log: Path) -> None:
    log = read_log(synthetic_log)
    plain = replay(log)
    data = replay(log, negatives=3, seed=5)
    assert data.negative is not None
    assert plain.negative is None
    negative = data.negative
    assert plain.viewed is not None  # a few impressions of the log were never reached
    viewed = int(plain.viewed.sum())
    assert int(negative.sum()) == 3 * viewed  # only a viewed impression gets negatives
    assert len(data) == len(plain) + 3 * viewed
    # The impression rows are those without negatives: negatives count in no counter.
    # (to float rounding: the affinity's dot products run in batches of another shape)
    np.testing.assert_allclose(data.rows[~negative], plain.rows, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(data.labels[~negative], plain.labels)
    assert np.all(np.diff(data.ts) >= 0)  # still in time order
    skip = list(data.heads).index("skip")
    expected = np.zeros(len(data.heads), np.float32)
    expected[skip] = 1.0
    np.testing.assert_array_equal(
        data.labels[negative], np.broadcast_to(expected, (3 * viewed, len(expected)))
    )
    # A negative is never an item the user had been shown by then (its own impression included).
    shown: dict[str, set[int]] = {}
    for user, item, is_negative in zip(
        data.user, data.item.tolist(), negative.tolist(), strict=True
    ):
        if is_negative:
            assert item not in shown.get(user, set())
        else:
            shown.setdefault(user, set()).add(item)
    again = replay(log, negatives=3, seed=5)
    np.testing.assert_array_equal(again.rows, data.rows)  # seeded
    popular = replay(log, negatives=3, negative_sampling="popularity", seed=5)
    assert popular.negative is not None
    assert int(popular.negative.sum()) == 3 * viewed


def test_negatives_need_a_count_and_a_known_sampling(synthetic_log: Path) -> None:
    log = read_log(synthetic_log)
    with pytest.raises(ValueError, match="negatives must be >= 0"):
        replay(log, negatives=-1)
    with pytest.raises(ValueError, match="negative_sampling"):
        replay(log, negatives=1, negative_sampling="often")  # type: ignore[arg-type]


def test_a_user_shown_the_whole_catalogue_gets_no_negative(
    tmp_path: Path, write_log: WriteLog
) -> None:
    records: list[Record] = []
    for i in range(1, 5):  # each served and viewed
        records += [
            Impression(float(i), f"r{i}", "u", i, 0),
            Event(i + 0.5, f"e{i}", "u", i, "impression"),
        ]
    data = replay(read_log(write_log(tmp_path, records)), negatives=2)
    assert data.negative is not None
    assert data.negative.tolist() == [False, True, True, False, True, True, False, True, False]


def test_affinity_columns_follow_earlier_co_engagement(tmp_path: Path, write_log: WriteLog) -> None:
    """User a completes items 1 and 2 (a pair); later user b completes 1 and is shown 2: the
    row reads 2's co-engagement with b's positive, its similarity and the positive's age."""
    full = {"watch_ms": 10000, "duration_ms": 10000}
    records: list[Record] = [
        Event(0.0, "e1", "a", 1, "watch", **full),
        Event(1.0, "e2", "a", 2, "watch", **full),
        Event(10.0, "e3", "b", 1, "watch", **full),
        Impression(10.0 + 7200, "r1", "b", 2, 0),
        Impression(10.0 + 7200, "r2", "b", 3, 1),
    ]
    data = replay(read_log(write_log(tmp_path, records)))
    spec = data.spec
    related = data.rows[:, spec.slice("related_score")][:, 0]
    assert related[0] > 0  # 2 was co-engaged with 1
    assert related[1] == 0  # 3 never was
    similarity = data.rows[:, spec.slice("positive_similarity")][:, 0]
    vectors = np.eye(4, dtype=np.float32) + 0.1
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert similarity[0] == pytest.approx(float(unit[1] @ unit[0]), rel=1e-5)
    hours = data.rows[:, spec.slice("log_hours_since_region_positive")][:, 0]
    # the regions of a 4-item catalogue are its items: only item 1's region had a positive
    assert hours[0] == pytest.approx(np.log1p(720.0))
    version_1 = replay(read_log(tmp_path), spec=FeatureSpec(dims=4, version=1))
    assert version_1.rows.shape[1] == 3 * 4 + 16


def test_a_served_item_never_viewed_trains_nothing_and_counts_no_impression(
    tmp_path: Path, write_log: WriteLog
) -> None:
    records: list[Record] = [
        Impression(0.0, "r1", "u", 1, 0),
        Impression(0.0, "r1", "u", 2, 1),  # never reached
        Event(1.0, "e1", "u", 1, "watch", "r1", watch_ms=5000, duration_ms=10000),
        Impression(10.0, "r2", "v", 2, 0),
        Event(11.0, "e2", "v", 2, "like", "r2"),
    ]
    data = replay(read_log(write_log(tmp_path, records)))
    assert data.viewed is not None
    assert data.viewed.tolist() == [True, False, True]
    assert not data.labels[1].any()  # not a 0 ms view: no fast skip
    # The later impression of item 2 reads no earlier impression of it.
    impressions = data.rows[:, data.spec.slice("item_log_impressions")][:, 0]
    assert impressions[2] == 0.0
