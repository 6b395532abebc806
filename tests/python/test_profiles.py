"""recserve.profiles: the declared rule, event batches, apply, reads, snapshots."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import recserve
from recserve.profiles import EVENT_TYPES, ITEM_STATS, Events, Profiles, ProfilesConfig, UpdateRule

DIMS = 8


def make(**overrides: object) -> Profiles:
    p = Profiles(
        ProfilesConfig.from_dict(
            {"dims": DIMS, "user_capacity": 4096, "item_capacity": 4096, **overrides}
        )
    )
    rng = np.random.default_rng(0)
    p.set_items(np.arange(100), rng.standard_normal((100, DIMS)).astype(np.float32))
    return p


def events(n: int, seed: int, users: int = 20, start_seq: int = 1) -> Events:
    rng = np.random.default_rng(seed)
    return Events.of(
        users=rng.integers(0, users, n),
        items=rng.integers(0, 120, n),
        types=rng.integers(0, len(EVENT_TYPES), n),
        watch_ms=rng.integers(0, 30000, n),
        duration_ms=rng.integers(1000, 30000, n),
        ts_ms=np.arange(n) * 1000,
        seq=np.arange(start_seq, start_seq + n),
    )


def test_rule_from_dict_merges_weights_and_rejects_unknown_settings() -> None:
    rule = UpdateRule.from_dict({"weights": {"like": 2.0}, "lr_long": 0.1})
    assert rule.weights["like"] == 2.0
    assert rule.weights["watch"] == 1.0
    assert UpdateRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(ValueError, match="unknown UpdateRule setting"):
        UpdateRule.from_dict({"learning_rate": 1})
    with pytest.raises(ValueError, match="unknown event type"):
        UpdateRule.from_dict({"weights": {"bookmark": 1}})
    with pytest.raises(ValueError, match="curve x must increase"):
        Profiles(ProfilesConfig(dims=4, rule=UpdateRule(completion_curve=((0, 0), (0, 1), (1, 1)))))


def test_events_of_names_the_bad_field() -> None:
    ok = {
        "users": [1, 2],
        "items": [3, 4],
        "types": ["watch", "like"],
        "watch_ms": [5, 0],
        "duration_ms": [10, 0],
        "ts_ms": [0, 0],
        "seq": [1, 2],
    }
    assert len(Events.of(**ok)) == 2
    with pytest.raises(ValueError, match="unknown event type 'swipe' at event 1"):
        Events.of(**{**ok, "types": ["watch", "swipe"]})
    with pytest.raises(ValueError, match="watch_ms contains NaN"):
        Events.of(**{**ok, "watch_ms": [np.nan, 1.0]})
    with pytest.raises(ValueError, match="items must have 2 values"):
        Events.of(**{**ok, "items": [3]})
    with pytest.raises(ValueError, match="duration_ms must be in"):
        Events.of(**{**ok, "duration_ms": [-1, 0]})
    with pytest.raises(ValueError, match="users must be non-negative"):
        Events.of(**{**ok, "users": [-1, 2]})


def test_apply_rejects_a_bad_batch_whole() -> None:
    p = make()
    bad = Events.of(
        users=[1, 2],
        items=[1, 1],
        types=["like", "watch"],
        duration_ms=[0, 0],
        ts_ms=[0, 0],
        seq=[1, 1],
    )
    with pytest.raises(ValueError, match=r"a watch needs duration_ms > 0 \(event 1\)"):
        p.apply(bad)
    assert not p.user_state([1])["found"][0]
    assert p.items([1]).stats["likes"][0] == 0
    with pytest.raises(ValueError, match="NaN"):
        p.set_items([5], np.full((1, DIMS), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="columns"):
        p.set_items([5], np.zeros((1, DIMS + 1), dtype=np.float32))


def test_a_liked_item_pulls_both_vectors_and_the_session_moves_faster() -> None:
    p = make()
    item = p.items([7]).vectors[0]
    p.apply(
        Events.of(users=[1] * 5, items=[7] * 5, types=["like"] * 5, ts_ms=[0] * 5, seq=range(1, 6))
    )
    long_term, session, found = p.user_vectors([1], now_ms=0)
    assert found[0]
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(long_term[0], item) == pytest.approx(1.0, abs=1e-5)
    assert np.linalg.norm(session[0]) > 5 * np.linalg.norm(long_term[0])


def test_user_state_counts_impressions_completions_and_fast_skips() -> None:
    p = make()
    p.apply(
        Events.of(
            users=[7, 7, 7, 7],
            items=[1, 1, 2, 2],
            types=["impression", "watch", "impression", "skip"],
            watch_ms=[0, 10_000, 0, 800],
            duration_ms=[0, 10_000, 0, 0],
            ts_ms=[1, 2, 3, 4],
            seq=[1, 2, 3, 4],
        )
    )
    state = p.user_state([7])
    assert state["impressions"][0] == 2
    assert state["completions"][0] == 1
    assert state["fast_skips"][0] == 1


def test_replayed_batches_change_nothing() -> None:
    p = make()
    batch = events(2000, seed=1)
    first = p.apply(batch)
    users = np.arange(20)
    before = p.user_vectors(users, now_ms=0), p.items(np.arange(120)).stats
    again = p.apply(batch)
    assert (first.applied, again.applied, again.stale) == (2000, 0, 2000)
    after = p.user_vectors(users, now_ms=0), p.items(np.arange(120)).stats
    np.testing.assert_array_equal(before[0].long_term, after[0].long_term)
    np.testing.assert_array_equal(before[0].session, after[0].session)
    for name in ITEM_STATS:
        np.testing.assert_array_equal(before[1][name], after[1][name])
    assert p.user_state(users)["events_applied"].sum() == 2000
    assert p.stats()["stale"] == 2000


def test_event_keys_catch_a_redelivery_with_a_new_sequence_number() -> None:
    p = make()
    e = Events.of(users=[1], items=[2], types=["share"], ts_ms=[0], seq=[1], event_keys=[99])
    p.apply(e)
    r = p.apply(
        Events.of(users=[1], items=[2], types=["share"], ts_ms=[0], seq=[2], event_keys=[99])
    )
    assert r.duplicate_keys == 1
    assert p.items([2]).stats["shares"][0] == 1


def test_seen_set_and_recent_items() -> None:
    p = make(seen={"recent": 16, "filter_bits": 1024, "filter_items": 64})
    p.apply(
        Events.of(
            users=[3] * 50,
            items=np.arange(50),
            types=["impression"] * 50,
            ts_ms=[0] * 50,
            seq=np.arange(1, 51),
        )
    )
    assert p.seen(3, np.arange(50)).all()
    assert not p.seen(4, [1]).any()
    assert list(p.recent_items(3)[:3]) == [49, 48, 47]
    assert len(p.recent_items(3)) == 16


def test_snapshot_round_trips_and_damage_raises(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = make()
    p.apply(events(3000, seed=2))
    path = tmp_path / "p.snap"
    p.snapshot(41).write(str(path))
    q, lsn = Profiles.load(str(path), p.config)
    assert lsn == 41
    users = np.arange(20)
    np.testing.assert_array_equal(
        p.user_vectors(users, 0).session, q.user_vectors(users, 0).session
    )
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(recserve.CorruptFileError, match="checksum"):
        Profiles.load(str(path), p.config)


def test_exported_users_continue_in_another_process_as_if_never_moved() -> None:
    users = np.arange(20)
    here, there = make(), make()
    here.apply(events(1500, seed=3))
    images = here.export_users(users)
    assert all(image is not None for image in images)
    there.import_users(users, [i[0] for i in images], [i[1] for i in images])  # type: ignore[index]
    later = events(1500, seed=4, start_seq=1501)
    for p in (here, there):
        p.apply(events(1500, seed=3))  # a redelivery: stale in both
        p.apply(later)
    a, b = here.user_vectors(users, now_ms=0), there.user_vectors(users, now_ms=0)
    np.testing.assert_array_equal(a.long_term, b.long_term)
    np.testing.assert_array_equal(a.session, b.session)
    for name, column in here.user_state(users).items():
        np.testing.assert_array_equal(column, there.user_state(users)[name])
    for user in users.tolist():
        np.testing.assert_array_equal(here.recent_items(user), there.recent_items(user))
    assert here.export_users([999]) == [None]
    older = make()
    older.apply(events(100, seed=3))
    stale = older.export_users(users)
    assert there.import_users(users, [i[0] for i in stale], [i[1] for i in stale]) == 0  # type: ignore[index]
    np.testing.assert_array_equal(there.user_vectors(users, now_ms=0).session, b.session)


def test_a_damaged_user_image_is_refused_and_imports_nothing() -> None:
    p = make()
    p.apply(events(200, seed=5))
    vectors, state = p.export_users([1])[0]  # type: ignore[misc]
    fresh = make()
    bad = [
        (vectors[:-4], state, "bytes of vectors"),
        (vectors, state[:-3], "truncated"),
        (vectors, state + b"x", "extra bytes"),
        (np.full(2 * DIMS, np.nan, np.float32).tobytes(), state, "non-finite"),
        (vectors, b"\x03" + state[1:], "version"),  # 1 and 2 are known
    ]
    for v, s, reason in bad:
        with pytest.raises(ValueError, match=reason):
            fresh.import_users([1, 2], [vectors, v], [state, s])
        assert not fresh.user_state([1, 2])["found"].any()
    with pytest.raises(ValueError, match="one vectors and one state"):
        fresh.import_users([1, 2], [vectors], [state])


def test_readers_never_see_torn_vectors_while_events_apply() -> None:
    p = Profiles(ProfilesConfig(dims=32, user_capacity=1024, item_capacity=1024))
    p.set_items(np.arange(64), np.repeat(np.arange(64, dtype=np.float32)[:, None], 32, axis=1))
    stop = threading.Event()
    torn: list[int] = []

    def read() -> None:
        while not stop.is_set():
            lt, ss, _ = p.user_vectors(np.arange(16), now_ms=0)
            torn.extend(
                np.flatnonzero((lt != lt[:, :1]).any(1) | (ss != ss[:, :1]).any(1)).tolist()
            )

    reader = threading.Thread(target=read)
    reader.start()
    for b in range(50):
        rng = np.random.default_rng(b)
        p.apply(
            Events.of(
                users=rng.integers(0, 16, 500),
                items=rng.integers(0, 64, 500),
                types=["like"] * 500,
                ts_ms=[0] * 500,
                seq=np.arange(b * 500 + 1, b * 500 + 501),
            )
        )
    stop.set()
    reader.join()
    assert torn == []


def positives(p: Profiles, stream: list[tuple[int, int, str, int]]) -> None:
    """Applies (user, item, type, ts) events with completed watches, one sequence per user."""
    seq: dict[int, int] = {}
    users, items, types, ts, seqs = [], [], [], [], []
    for user, item, kind, t in stream:
        seq[user] = seq.get(user, 0) + 1
        users.append(user)
        items.append(item)
        types.append(kind)
        ts.append(t)
        seqs.append(seq[user])
    n = len(users)
    p.apply(
        Events.of(
            users=users,
            items=items,
            types=types,
            watch_ms=[10_000] * n,
            duration_ms=[10_000] * n,
            ts_ms=ts,
            seq=seqs,
        )
    )


def test_related_items_come_from_co_engagement_with_the_users_own_left_out() -> None:
    p = make()
    positives(
        p,
        [
            (1, 10, "watch", 1000),
            (1, 11, "watch", 2000),  # 10-11
            (2, 10, "watch", 1000),
            (2, 12, "watch", 2000),  # 10-12
            (3, 10, "like", 1000),
            (4, 10, "watch", 1000),  # n(10) = 4
            (4, 10, "like", 1500),  # the same item again: no double count
        ],
    )
    keys, scores = p.related(4, now_ms=5000, k=10)
    assert keys.dtype == np.uint64
    assert scores.dtype == np.float32
    assert keys.tolist() == [11, 12]  # equal scores: by key
    np.testing.assert_allclose(scores, [0.5, 0.5])  # 1 / sqrt(4 * 1)
    keys, scores = p.related(1, now_ms=5000, k=10, recency_decay=0.5, alpha=0.0)
    assert keys.tolist() == [12]  # 10 and 11 are user 1's own
    np.testing.assert_allclose(scores, [0.5 * 1 / 4])  # second newest; w / n(10)
    assert p.related(99, now_ms=0, k=5)[0].size == 0
    items, ts, weights = p.recent_positives(4)
    assert items.tolist() == [10]
    assert ts.dtype == np.int64
    assert ts.tolist() == [1500]
    assert weights.tolist() == [1.0]
    assert p.recent_positives(99).items.size == 0
    assert p.stats()["co_engagement_items"] == 3
    assert p.stats()["co_engagement_edges"] == 4


@pytest.mark.parametrize(
    ("k", "decay", "alpha", "match"),
    [
        (0, 0.8, 0.5, "k must be in"),
        (-3, 0.8, 0.5, "k must be in"),
        (1 << 40, 0.8, 0.5, "k must be in"),
        (5, float("nan"), 0.5, "recency_decay"),
        (5, 1.5, 0.5, "recency_decay"),
        (5, 0.8, -0.1, "alpha"),
        (5, 0.8, 1.01, "alpha"),
        (5, 0.8, float("nan"), "alpha"),
    ],
)
def test_related_refuses_bad_arguments(k: int, decay: float, alpha: float, match: str) -> None:
    p = make()
    positives(p, [(1, 10, "watch", 0), (1, 11, "watch", 1)])
    with pytest.raises(ValueError, match=match):
        p.related(1, now_ms=0, k=k, recency_decay=decay, alpha=alpha)
    with pytest.raises(TypeError):
        p.related(1, now_ms=0, k=2.5)  # type: ignore[arg-type]


def test_co_engagement_options_are_checked_and_zero_neighbours_turns_it_off() -> None:
    with pytest.raises(ValueError, match="history"):
        make(co_engagement={"history": 0})
    with pytest.raises(ValueError, match="neighbours"):
        make(co_engagement={"neighbours": 5000})
    with pytest.raises(ValueError, match="positive_weight"):
        make(co_engagement={"positive_weight": 0.0})
    with pytest.raises(ValueError, match="unknown CoEngagementOptions setting"):
        make(co_engagement={"size": 3})
    off = make(co_engagement={"neighbours": 0})
    positives(off, [(1, 10, "watch", 0), (1, 11, "watch", 1), (2, 10, "watch", 0)])
    assert off.related(2, now_ms=0, k=5)[0].size == 0
    assert off.recent_positives(1).items.size == 0


def test_match_sum_is_the_viewers_cosine_before_the_watch_as_a_float() -> None:
    p = Profiles(ProfilesConfig(dims=4))
    p.set_items([1, 2], np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0]], dtype=np.float32))
    positives(p, [(7, 1, "watch", 1000), (7, 2, "watch", 1000)])
    match = p.items([1, 2]).stats["match_sum"]
    assert match.dtype == np.float64
    np.testing.assert_allclose(match, [0.0, 0.6], atol=1e-6)  # no vectors yet; then q = 2 e1
    assert "match_sum" in ITEM_STATS
    impression = p.items([1, 2]).stats["impression_match_sum"]
    assert impression.dtype == np.float64
    np.testing.assert_allclose(impression, match, atol=1e-6)  # each met once, by a watch


def test_recent_positives_and_related_survive_snapshot_and_user_images(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = make(co_engagement={"neighbours": 8, "half_life_seconds": 600.0})
    p.apply(events(3000, seed=9))
    users = range(20)
    before = [(p.related(u, 0, 20), p.recent_positives(u)) for u in users]
    assert sum(len(r[0][0]) for r in before) > 0
    p.snapshot(3).write(str(tmp_path / "p.snap"))
    q, _ = Profiles.load(str(tmp_path / "p.snap"), p.config)
    moved = make(co_engagement={"neighbours": 8, "half_life_seconds": 600.0})
    images = p.export_users(list(users))
    moved.import_users(list(users), [i[0] for i in images], [i[1] for i in images])  # type: ignore[index]
    for u, (related, recent) in zip(users, before, strict=True):
        for other in (q, moved):
            mine = other.recent_positives(u)
            for a, b in zip(recent, mine, strict=True):
                np.testing.assert_array_equal(a, b)
        again = q.related(u, 0, 20)
        np.testing.assert_array_equal(related[0], again[0])
        np.testing.assert_array_equal(related[1], again[1])
