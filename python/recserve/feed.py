"""Feed assembly: candidates → filters → ranker → blend → exploration slots and creator diversity.

    builder = FeedBuilder(settings.feed, catalog, profiles, amplifier, trending, users, served)
    result = builder.build("u42", n=10, ranker=ranker, now_ms=now)   # FeedResult

Candidates come from four sources, each labelled on the served item:

- ``ann``: the nearest items to the user's query (long-term and session vectors blended);
- ``explore``: a sample of items in open amplification tiers, which compete for the reserved
  exploration slots (``explore_slots`` per page) among themselves;
- ``trending``: the current top of ``recserve.retrieve.Trending``, a fallback when the user's
  own candidates run short;
- ``cold_start``: for a user without a direction yet: items with their onboarding interests,
  then trending, then a random sample of the catalogue (so the start is diverse and the first
  events have something to react to).

Filters drop what the user has seen (``Profiles.seen``), what was served to them recently,
what was taken down, and what their blocked creators made. The ranker scores the rest (plus
``popularity_weight`` * log(1 + the item's completed views), a popularity prior, off by
default: its scale depends on the ranker's, so it is chosen per model on held-out data); the page
takes the best, at most ``max_per_creator`` items of one creator, with the exploration slots
spread through it. ``trace_key`` asks for an account of one item's way through all of this (the
explain endpoint).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve.amplify import Amplifier
from recserve.catalog import Catalog
from recserve.features import Context, ItemStats, UserFeatures, build_features
from recserve.profiles import Profiles
from recserve.rank import Ranker, SimilarityRanker
from recserve.retrieve import Trending, query_vector
from recserve.service.settings import FeedSettings

__all__ = ["FeedBuilder", "FeedResult", "Served", "ServedMemory", "UserPrefs"]

SOURCES = ("ann", "explore", "trending", "cold_start")
ANN, EXPLORE, TRENDING, COLD_START = range(4)
U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Served:
    key: int
    item_id: str
    score: float
    source: str


@dataclass
class FeedResult:
    items: list[Served]
    model_version: str
    timings: dict[str, float]  # seconds per stage: retrieve, filter, rank, total
    trace: dict[str, Any] | None = None


class UserPrefs:
    """Onboarding interests and blocked creators per user (made durable by the service)."""

    def __init__(self) -> None:
        self._interests: dict[int, tuple[str, ...]] = {}
        self._blocked: dict[int, frozenset[str]] = {}
        self.version = 0  # bumped by every change: a page computed before it may be stale

    def set(
        self, user: int, interests: Sequence[str] | None, blocked: Sequence[str] | None
    ) -> None:
        self.version += 1
        if interests is not None:
            self._interests[user] = tuple(interests)
        if blocked is not None:
            self._blocked[user] = frozenset(blocked)

    def interests(self, user: int) -> tuple[str, ...]:
        return self._interests.get(user, ())

    def blocked(self, user: int) -> frozenset[str]:
        return self._blocked.get(user, frozenset())

    def known(self, user: int) -> bool:
        return user in self._interests or user in self._blocked

    def forget(self, user: int) -> None:
        self.version += 1
        self._interests.pop(user, None)
        self._blocked.pop(user, None)

    def state(self) -> dict[str, Any]:
        users = set(self._interests) | set(self._blocked)
        return {str(u): [list(self.interests(u)), sorted(self.blocked(u))] for u in sorted(users)}

    def restore(self, state: dict[str, Any]) -> None:
        for user, (interests, blocked) in state.items():
            self.set(int(user), interests, blocked)


class ServedMemory:
    """Per user, the items served lately (not served again) and impressions this session;
    bounded in users (least recently served forgotten first). Not durable: it is a cache."""

    def __init__(self, per_user: int, users: int = 200_000, session_timeout_s: float = 1800.0):
        self.per_user = per_user
        self.users = users
        self.session_timeout_s = session_timeout_s
        self._lock = threading.Lock()
        # user -> (recent keys, [session impressions, last served at, pages served])
        self._memory: OrderedDict[int, tuple[deque[int], list[float]]] = OrderedDict()

    def recent(self, user: int) -> U64:
        with self._lock:
            entry = self._memory.get(user)
            if entry is None:
                return np.zeros(0, dtype=np.uint64)
            return np.fromiter(entry[0], dtype=np.uint64, count=len(entry[0]))

    def forget(self, user: int) -> None:
        with self._lock:
            self._memory.pop(user, None)

    def version(self, user: int) -> int:
        """Pages served to the user so far (within memory): a page computed at an older
        version may hold items served since."""
        with self._lock:
            entry = self._memory.get(user)
            return 0 if entry is None else int(entry[1][2])

    def session_length(self, user: int, now_s: float) -> int:
        with self._lock:
            entry = self._memory.get(user)
            if entry is None or now_s - entry[1][1] > self.session_timeout_s:
                return 0
            return int(entry[1][0])

    def add(self, user: int, keys: Sequence[int], now_s: float) -> None:
        with self._lock:
            entry = self._memory.get(user)
            if entry is None:
                entry = self._memory[user] = (deque(maxlen=max(self.per_user, 1)), [0.0, now_s, 0])
                while len(self._memory) > self.users:
                    self._memory.popitem(last=False)
            else:
                self._memory.move_to_end(user)
            if self.per_user:
                entry[0].extend(keys)
            session = entry[1]
            if now_s - session[1] > self.session_timeout_s:
                session[0] = 0.0
            session[0] += len(keys)
            session[1] = now_s
            session[2] += 1


@dataclass
class _Pool:
    keys: U64
    sources: npt.NDArray[np.int8]
    distances: npt.NDArray[np.float32]  # NaN where not retrieved by ANN
    live: npt.NDArray[np.bool_]  # in the catalogue (not taken down)
    created_s: npt.NDArray[np.float64]
    creators: npt.NDArray[np.int64]  # catalogue creator codes
    dropped: dict[int, str] = field(default_factory=dict)  # trace: why an item left

    def subset(self, keep: npt.NDArray[np.bool_], dropped: dict[int, str]) -> _Pool:
        return _Pool(
            self.keys[keep],
            self.sources[keep],
            self.distances[keep],
            self.live[keep],
            self.created_s[keep],
            self.creators[keep],
            dropped,
        )


class FeedBuilder:
    def __init__(
        self,
        settings: FeedSettings,
        catalog: Catalog,
        profiles: Profiles,
        amplifier: Amplifier,
        trending: Trending,
        users: UserPrefs,
        served: ServedMemory,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.profiles = profiles
        self.amplifier = amplifier
        self.trending = trending
        self.users = users
        self.served = served

    def build(
        self,
        user_key: int,
        n: int,
        ranker: Ranker | SimilarityRanker,
        now_ms: int,
        *,
        seed: int = 0,
        trace_key: int | None = None,
    ) -> FeedResult:
        started = time.perf_counter()
        s = self.settings
        now_s = now_ms / 1000.0
        rng = np.random.default_rng(seed)
        vectors = self.profiles.user_vectors([user_key], now_ms=now_ms)
        long_term, session = vectors.long_term[0], vectors.session[0]
        query = query_vector(long_term, session, s.session_weight)
        recent = np.concatenate(
            [self.profiles.recent_items(user_key), self.served.recent(user_key)]
        )

        pool = self._candidates(user_key, query, recent, rng, now_s)
        retrieved = time.perf_counter()
        pool = self._filter(user_key, pool, recent, trace_key)
        filtered = time.perf_counter()

        probs, scores = self._rank(user_key, pool, query, long_term, session, ranker, now_s)
        ranked = time.perf_counter()
        chosen, cap_dropped = self._assemble(pool, scores, n, self._explore_slots(n, rng))
        finished = time.perf_counter()

        items = [
            Served(
                int(pool.keys[i]),
                self._item_id(int(pool.keys[i])),
                float(scores[i]),
                SOURCES[int(pool.sources[i])],
            )
            for i in chosen
        ]
        trace = None
        if trace_key is not None:
            trace = self._trace(
                trace_key, user_key, recent, pool, probs, scores, chosen, cap_dropped, ranker, query
            )
        return FeedResult(
            items,
            ranker.version,
            {
                "retrieve": retrieved - started,
                "filter": filtered - retrieved,
                "rank": ranked - filtered,
                "total": finished - started,
            },
            trace,
        )

    # ---- candidates -------------------------------------------------------------------------
    def _candidates(
        self, user_key: int, query: Any, recent: U64, rng: np.random.Generator, now_s: float
    ) -> _Pool:
        s = self.settings
        parts: list[tuple[U64, int, npt.NDArray[np.float32] | None]] = []
        if query is not None and len(self.catalog):
            keys, distances = self.catalog.search(
                query, k=s.candidates, ef=max(s.ef, s.candidates), exclude=recent
            )
            parts.append((keys, ANN, distances))
        if s.explore_slots and self.amplifier.open_count:
            parts.append((self.amplifier.sample_open(s.explore_pool, rng), EXPLORE, None))
        if query is None:
            interests = self.users.interests(user_key)
            tagged = self.catalog.tagged(interests) if interests else np.zeros(0, np.uint64)
            if len(tagged) > s.candidates:
                tagged = rng.choice(tagged, size=s.candidates, replace=False)
            parts.append((tagged, COLD_START, None))
            if len(tagged) < s.candidates // 4:  # too few to fill pages: popular and random too
                parts.append((self.trending.top(s.candidates, now_s), COLD_START, None))
                everything = self.catalog.keys()
                size = min(s.candidates, len(everything))
                parts.append((rng.choice(everything, size=size, replace=False), COLD_START, None))
        elif s.trending:
            parts.append((self.trending.top(s.trending, now_s), TRENDING, None))

        keys = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.uint64)
        sources = (
            np.concatenate([np.full(len(p[0]), p[1], np.int8) for p in parts])
            if parts
            else np.zeros(0, np.int8)
        )
        distances = (
            np.concatenate(
                [
                    p[2] if p[2] is not None else np.full(len(p[0]), np.nan, np.float32)
                    for p in parts
                ]
            )
            if parts
            else np.zeros(0, np.float32)
        )
        # An item found by several sources keeps the first: ANN, then the exploration sample.
        keys_u, first = np.unique(keys.astype(np.uint64), return_index=True)
        src, dist = sources[first], distances[first]
        live, created, creators = self.catalog.columns(self.catalog.rows(keys_u))
        return _Pool(keys_u, src.astype(np.int8), dist.astype(np.float32), live, created, creators)

    # ---- filters ----------------------------------------------------------------------------
    def _filter(self, user_key: int, pool: _Pool, recent: U64, trace_key: int | None) -> _Pool:
        keys = pool.keys
        live = pool.live
        reasons: list[tuple[npt.NDArray[np.bool_], str]] = [(~live, "taken down or unknown")]
        if len(keys):
            reasons.append((self.profiles.seen(user_key, keys) & live, "seen by the user"))
        if len(recent):
            reasons.append((np.isin(keys, recent) & live, "served to the user recently"))
        blocked = self.users.blocked(user_key)
        if blocked:
            codes = self.catalog.creator_codes(sorted(blocked))
            reasons.append((np.isin(pool.creators, codes), "creator blocked by the user"))
        keep = np.ones(len(keys), dtype=bool)
        for mask, _ in reasons:
            keep &= ~mask
        dropped: dict[int, str] = {}
        if trace_key is not None:
            at = np.flatnonzero(keys == np.uint64(trace_key))
            if len(at):
                why = [reason for mask, reason in reasons if mask[at[0]]]
                if why:
                    dropped[trace_key] = "; ".join(why)
        return pool.subset(keep, dropped)

    # ---- ranking ----------------------------------------------------------------------------
    def _rank(
        self,
        user_key: int,
        pool: _Pool,
        query: Any,
        long_term: npt.NDArray[np.float32],
        session: npt.NDArray[np.float32],
        ranker: Ranker | SimilarityRanker,
        now_s: float,
    ) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.float32]]:
        n = len(pool.keys)
        if n == 0:
            return None, np.zeros(0, np.float32)
        state = self.profiles.items(pool.keys)
        st = state.stats
        # The popularity prior: weight * log(1 + completed views), the item's engaged users
        # (one completion per engaged user when users rarely watch an item twice).
        prior = self.settings.popularity_weight * np.log1p(st["completions"].astype(np.float32))
        if isinstance(ranker, SimilarityRanker):
            if query is None:
                return None, prior.astype(np.float32)
            return None, (state.vectors @ query + prior).astype(np.float32)
        user = self.profiles.user_state([user_key])
        rows = build_features(
            ranker.spec,
            UserFeatures(
                long_term=long_term,
                session=session,
                events=int(user["events_applied"][0]),
                session_length=self.served.session_length(user_key, now_s),
                impressions=int(user["impressions"][0]),
                completes=int(user["completions"][0]),
                skips=int(user["fast_skips"][0]),
            ),
            state.vectors,
            ItemStats(
                impressions=st["impressions"],
                complete=st["completions"],
                replay=st["replays"],
                like=st["likes"],
                share=st["shares"],
                comment=st["comments"],
                follow=st["follows"],
                skip=st["fast_skips"],
                created_at=pool.created_s,
            ),
            Context(now=now_s, position=0),
        )
        probs, scores = ranker.score(rows)
        return probs, (scores + prior).astype(np.float32)

    def _item_id(self, key: int) -> str:
        item = self.catalog.by_key(key)
        return item.id if item is not None else ""

    # ---- page -------------------------------------------------------------------------------
    def _explore_slots(self, n: int, rng: np.random.Generator) -> int:
        """Exploration keeps its share of the feed whatever the page size: ``explore_slots``
        per ``default_n`` items, a fractional slot taken with that probability (a client that
        fetches one item per swipe explores 2 swipes in 10, not every swipe)."""
        s = self.settings
        share = s.explore_slots * n / s.default_n
        whole = int(share)
        return min(whole + int(rng.random() < share - whole), n)

    def _assemble(
        self, pool: _Pool, scores: npt.NDArray[np.float32], n: int, explore_slots: int
    ) -> tuple[list[int], set[int]]:
        """Indices into the pool, in page order; and those left out by the creator cap."""
        s = self.settings
        order = np.argsort(-scores, kind="stable").tolist()
        per_creator: dict[int, int] = {}
        capped: set[int] = set()
        creators = pool.creators.tolist()

        def take(candidates: list[int], limit: int) -> list[int]:
            out: list[int] = []
            for i in candidates:
                if len(out) >= limit:
                    break
                creator = creators[i]
                if per_creator.get(creator, 0) >= s.max_per_creator:
                    capped.add(i)
                    continue
                per_creator[creator] = per_creator.get(creator, 0) + 1
                out.append(i)
            return out

        sources = pool.sources.tolist()
        regular = [i for i in order if sources[i] != EXPLORE]
        # A new item is tested on users it may interest: it takes a slot only if it scores at
        # least the given quantile of this user's regular candidates.
        bar = (
            float(np.quantile(scores[regular], s.explore_relevance))
            if regular and s.explore_relevance > 0
            else -np.inf
        )
        explore = take(
            [i for i in order if sources[i] == EXPLORE and scores[i] >= bar], explore_slots
        )
        main = take(regular, n - len(explore))
        if len(main) + len(explore) < n:  # not enough regular candidates: more exploration
            picked = set(explore)
            more = [i for i in order if sources[i] == EXPLORE and i not in picked]
            explore += take(more, n - len(main) - len(explore))
        page = list(main)
        total = len(main) + len(explore)
        for j, i in enumerate(explore):  # spread through the page, not bunched at the end
            page.insert(min((j + 1) * total // (len(explore) + 1), len(page)), i)
        return page, capped

    # ---- explain ----------------------------------------------------------------------------
    def _trace(
        self,
        key: int,
        user_key: int,
        recent: U64,
        pool: _Pool,
        probs: npt.NDArray[np.float32] | None,
        scores: npt.NDArray[np.float32],
        chosen: list[int],
        capped: set[int],
        ranker: Ranker | SimilarityRanker,
        query: Any,
    ) -> dict[str, Any]:
        item = self.catalog.by_key(key)
        out: dict[str, Any] = {
            "in_catalog": item is not None,
            "amplification": self.amplifier.state(key),
            "model_version": ranker.version,
            "blend_weights": dict(ranker.blend),
        }
        at = np.flatnonzero(pool.keys == np.uint64(key))
        if key in pool.dropped:
            out.update(served=False, filtered=pool.dropped[key])
            return out
        if not len(at):
            filtered = None
            if np.isin(np.uint64(key), recent):
                filtered = "served to the user recently"
            elif self.profiles.seen(user_key, [key])[0]:
                filtered = "seen by the user"
            out.update(served=False, filtered=filtered, retrieved=False)
            if item is not None and query is not None:
                vector = self.profiles.items([key]).vectors[0]
                norm = float(np.linalg.norm(vector) * np.linalg.norm(query))
                if norm > 0:
                    out["distance"] = 1.0 - float(vector @ query) / norm
            if filtered is None:
                out["reason"] = "not among the candidates (not near enough, not open, not trending)"
            return out
        i = int(at[0])
        distance = float(pool.distances[i])
        out.update(
            retrieved=True,
            source=SOURCES[int(pool.sources[i])],
            distance=None if np.isnan(distance) else distance,
            filtered=None,
            score=float(scores[i]),
            rank=int(np.sum(scores > scores[i])),
            candidates=len(pool.keys),
            served=i in chosen,
        )
        if probs is not None:
            out["probabilities"] = {
                h: float(p) for h, p in zip(ranker.heads, probs[i], strict=True)
            }
        if i in chosen:
            out["position"] = chosen.index(i)
        elif i in capped:
            out["reason"] = f"creator already has {self.settings.max_per_creator} items on the page"
        else:
            out["reason"] = "scored below the page"
        return out
