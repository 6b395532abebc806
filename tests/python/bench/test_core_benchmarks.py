"""The core calls under pytest-benchmark: ANN search, ranker predict, profiles apply, feed build
and event decode, each on seeded data of a realistic shape, each checking its result.

The suite's pytest configuration passes ``--benchmark-disable``, so the normal test run calls
each function once, as a test; ``--benchmark-enable`` times them (bench/README.md, "Core calls
under pytest-benchmark"). Nothing here asserts on speed.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from conftest import brute_force, clustered, recall
from recserve import ann, simd
from recserve.amplify import Amplifier, AmplifyConfig
from recserve.catalog import Catalog, Item
from recserve.features import Context, ItemStats, UserFeatures, build_features
from recserve.feed import FeedBuilder, FeedConfig, ReferenceFeed, ServedMemory, UserPrefs
from recserve.ids import key_of
from recserve.ingest.records import decode_batch, encode_binary, encode_json
from recserve.profiles import EVENT_TYPES, ApplyResult, Events, Profiles, ProfilesConfig
from recserve.rank import BUILTIN_VERSION, ModelRegistry, Ranker
from recserve.retrieve import Trending

DIMS = 64
NOW_MS = 1_700_000_000_000
ANN_ITEMS, ANN_QUERIES, K, EF = 20_000, 200, 10, 64
CANDIDATES = 200  # feature rows the ranker scores per page
APPLY_BATCH, APPLY_USERS = 1_000, 1_000  # events per apply call; users they come from
FEED_ITEMS, FEED_USERS, PAGE = 5_000, 300, 10
RECORDS = 1_000  # records per get_records batch


@pytest.fixture(autouse=True)
def _record_isa(benchmark: Any) -> None:
    """Figures depend on the kernels: every saved run names the ISA it ran on."""
    benchmark.extra_info["isa"] = simd.active_variant()


def cycling(n: int) -> Iterator[int]:
    return itertools.cycle(range(n))


# ---- ANN search -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnnSetup:
    index: ann.Index
    queries: npt.NDArray[np.float32]
    truth: npt.NDArray[np.int64]


@pytest.fixture(scope="module")
def ann_setup() -> AnnSetup:
    vectors = clustered(ANN_ITEMS + ANN_QUERIES, DIMS, seed=21)
    base, queries = vectors[:ANN_ITEMS], vectors[ANN_ITEMS:]
    index = ann.Index(DIMS, metric="cosine", dtype="int8", seed=0)
    index.add(np.arange(ANN_ITEMS, dtype=np.uint64), base)
    return AnnSetup(index, queries, brute_force(base, queries, K, "cosine"))


def test_ann_search_returns_the_nearest_items_of_one_query(
    benchmark: Any, ann_setup: AnnSetup
) -> None:
    turn = cycling(ANN_QUERIES)

    def search_one() -> tuple[int, ann.SearchResult]:
        q = next(turn)
        return q, ann_setup.index.search(ann_setup.queries[q], k=K, ef=EF)

    q, (ids, distances) = benchmark(search_one)
    assert ids.shape == distances.shape == (K,)
    assert np.all(ids < ANN_ITEMS)  # no MISSING_ID: the index holds far more than k items
    assert np.all(np.diff(distances) >= 0)
    assert len(set(ids.tolist()) & set(ann_setup.truth[q].tolist())) >= K - 2
    found = ann_setup.index.search(ann_setup.queries, k=K, ef=EF).ids
    assert recall(found, ann_setup.truth) >= 0.95


# ---- ranker predict ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ranker() -> Ranker:
    return ModelRegistry(Path(tempfile.gettempdir()), DIMS).get(BUILTIN_VERSION)


def candidate_rows(ranker: Ranker, seed: int) -> npt.NDArray[np.float32]:
    """One page's feature rows: a user with history against 200 candidates with counters."""
    rng = np.random.default_rng(seed)
    items = clustered(CANDIDATES, DIMS, seed)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    long_term = items[:20].mean(axis=0)
    session = items[:3].mean(axis=0)
    impressions = rng.integers(0, 5_000, CANDIDATES)
    stats = ItemStats(
        impressions=impressions,
        complete=rng.binomial(impressions, 0.3),
        replay=rng.binomial(impressions, 0.05),
        like=rng.binomial(impressions, 0.08),
        share=rng.binomial(impressions, 0.01),
        comment=rng.binomial(impressions, 0.01),
        follow=rng.binomial(impressions, 0.005),
        skip=rng.binomial(impressions, 0.4),
        created_at=NOW_MS / 1000 - rng.uniform(60, 30 * 86_400, CANDIDATES),
    )
    user = UserFeatures(long_term, session, events=140, session_length=6, impressions=900,
                        completes=310, skips=350)  # fmt: skip
    context = Context(now=NOW_MS / 1000, position=np.arange(CANDIDATES) % 10)
    return build_features(ranker.spec, user, items, stats, context)


def test_ranker_predict_scores_every_head_of_200_candidates_close_to_the_float_model(
    benchmark: Any, ranker: Ranker
) -> None:
    rows = candidate_rows(ranker, seed=31)
    probs = benchmark(ranker.model.predict, rows)
    assert probs.shape == (CANDIDATES, len(ranker.heads))
    assert probs.dtype == np.float32
    assert np.all(np.isfinite(probs))
    assert np.all((probs >= 0) & (probs <= 1))  # every head of the built-in model is a sigmoid
    reference = ranker.model.dequantized().predict(rows)
    assert float(np.abs(probs - reference).max()) < 0.02


# ---- profiles apply ---------------------------------------------------------------------------
class EventStream:
    """Seeded batches of events on known items; seq numbers rise across batches, so no batch is
    stale however many rounds the benchmark runs."""

    TYPES = np.array([EVENT_TYPES.index(t) for t in ("watch", "watch", "watch", "like", "skip")])

    def __init__(self, item_keys: npt.NDArray[np.uint64], users: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.item_keys = item_keys
        self.users = users
        self.next_seq = 1
        self.ts_ms = NOW_MS

    def batch(self, n: int) -> Events:
        rng = self.rng
        seq = np.arange(self.next_seq, self.next_seq + n, dtype=np.uint64)
        self.next_seq += n
        self.ts_ms += 1_000
        return Events.of(
            users=rng.integers(1, self.users + 1, n).astype(np.uint64),
            items=self.item_keys[rng.integers(0, len(self.item_keys), n)],
            types=rng.choice(self.TYPES, n),
            watch_ms=rng.integers(500, 15_000, n),
            duration_ms=np.full(n, 15_000),
            ts_ms=np.full(n, self.ts_ms),
            seq=seq,
            event_keys=seq,  # unique: no event is a redelivery
        )


def test_profiles_apply_applies_every_event_of_a_1000_event_batch(benchmark: Any) -> None:
    items = 5_000
    keys = np.arange(1, items + 1, dtype=np.uint64)
    profiles = Profiles(ProfilesConfig(dims=DIMS, user_capacity=1 << 14, item_capacity=2 * items))
    profiles.set_items(keys, clustered(items, DIMS, seed=41))
    stream = EventStream(keys, users=APPLY_USERS, seed=42)
    # Users with a history, as in a running service: an apply costs more once a user's recent
    # positives (co-engagement pairs) and seen items have filled up, about 100 events in.
    for _ in range(100):
        profiles.apply(stream.batch(APPLY_BATCH))

    def fresh_batch() -> tuple[tuple[Events], dict[str, Any]]:
        return (stream.batch(APPLY_BATCH),), {}

    result = benchmark.pedantic(profiles.apply, setup=fresh_batch, rounds=200, warmup_rounds=5)
    assert result == ApplyResult(applied=APPLY_BATCH, stale=0, duplicate_keys=0, unknown_items=0)
    users = np.arange(1, APPLY_USERS + 1, dtype=np.uint64)
    applied = profiles.user_state(users)["events_applied"]
    assert int(applied.sum()) == stream.next_seq - 1  # every batch of every round, none lost


# ---- feed build -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeedSetup:
    builder: FeedBuilder
    ranker: Ranker
    live: frozenset[int]


@pytest.fixture(scope="module")
def feed_setup(ranker: Ranker) -> FeedSetup:
    """A catalogue of 5,000 items, 300 users with 20 events each, open items and trending."""
    rng = np.random.default_rng(51)
    vectors = clustered(FEED_ITEMS, DIMS, seed=51)
    items = [
        Item(f"v{i}", f"c{rng.integers(0, FEED_ITEMS // 8)}", 15_000,
             created_at=NOW_MS - i * 60_000)
        for i in range(FEED_ITEMS)
    ]  # fmt: skip
    catalog = Catalog(DIMS, ef_construction=64)
    catalog.upsert(items, vectors)
    keys = np.array([item.key for item in items], dtype=np.uint64)
    profiles = Profiles(ProfilesConfig(dims=DIMS, item_capacity=2 * FEED_ITEMS))
    profiles.set_items(keys, vectors)
    amplifier = Amplifier(AmplifyConfig())
    for key in rng.choice(keys, size=FEED_ITEMS // 50, replace=False).tolist():
        amplifier.enter(key, NOW_MS)
    trending = Trending()
    stream = EventStream(keys, users=FEED_USERS, seed=52)
    for _ in range(20):
        events = stream.batch(FEED_USERS)
        profiles.apply(events)
        trending.add(events.items, events.types, stream.ts_ms / 1000)
    builder = FeedBuilder(FeedConfig(), catalog, profiles, amplifier, trending, UserPrefs(),
                          ServedMemory(200))  # fmt: skip
    # The first page fits the catalogue's regions and the quality lines; the benchmark times
    # the pages after it, as a running service serves them.
    builder.build(FEED_USERS + 1, PAGE, ranker, NOW_MS + 3_600_000)
    return FeedSetup(builder, ranker, frozenset(keys.tolist()))


def test_feed_build_serves_a_full_page_of_distinct_live_items_natively(
    benchmark: Any, feed_setup: FeedSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_python_path(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the page took the Python reference path")

    monkeypatch.setattr(ReferenceFeed, "build", no_python_path)
    users = cycling(FEED_USERS)
    now_ms = NOW_MS + 3_600_000

    def page() -> Any:
        user = next(users) + 1
        return feed_setup.builder.build(user, PAGE, feed_setup.ranker, now_ms, seed=user)

    result = benchmark(page)
    keys = [s.key for s in result.items]
    assert len(keys) == PAGE
    assert len(set(keys)) == PAGE
    assert set(keys) <= feed_setup.live
    assert all(np.isfinite(s.score) for s in result.items)
    assert result.model_version == BUILTIN_VERSION


# ---- event decode -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SentEvent:
    event_id: str
    user_id: str
    item_id: str
    type: str
    watch_ms: int
    ts: int


def sent_events(n: int, seed: int) -> list[SentEvent]:
    rng = np.random.default_rng(seed)
    types = rng.choice(["watch", "watch", "watch", "like", "skip", "share"], n)
    return [
        SentEvent(f"evt-{seed}-{i:07d}", f"user-{rng.integers(0, 50_000)}",
                  f"video-{rng.integers(0, 200_000)}", str(types[i]),
                  int(rng.integers(0, 60_000)), NOW_MS + i)
        for i in range(n)
    ]  # fmt: skip


def as_records(events: list[SentEvent], fmt: str) -> list[dict[str, Any]]:
    """A get_records batch: dicts with bytes Data, as boto3 returns them."""
    encode = encode_json if fmt == "json" else encode_binary
    return [
        {
            "SequenceNumber": f"{49_000_000 + i}",
            "PartitionKey": e.user_id,
            "Data": encode(
                e.event_id,
                e.user_id,
                e.item_id,
                e.type,
                watch_ms=e.watch_ms,
                duration_ms=15_000,
                ts=e.ts,
            ),  # fmt: skip
        }
        for i, e in enumerate(events)
    ]


@pytest.mark.parametrize("fmt", ["json", "binary"])
def test_event_decode_turns_a_1000_record_batch_into_columns(benchmark: Any, fmt: str) -> None:
    events = sent_events(RECORDS, seed=61)
    records = as_records(events, fmt)
    batch = benchmark(decode_batch, records)
    assert len(batch) == RECORDS
    assert batch.bad == []
    np.testing.assert_array_equal(batch.users, [key_of(e.user_id) for e in events])
    np.testing.assert_array_equal(batch.items, [key_of(e.item_id) for e in events])
    np.testing.assert_array_equal(batch.event_keys, [key_of(e.event_id) for e in events])
    np.testing.assert_array_equal(batch.types, [EVENT_TYPES.index(e.type) for e in events])
    np.testing.assert_array_equal(batch.watch_ms, [e.watch_ms for e in events])
    np.testing.assert_array_equal(batch.ts_ms, [e.ts for e in events])
    np.testing.assert_array_equal(batch.record_index, np.arange(RECORDS))
