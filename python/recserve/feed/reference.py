"""Feed assembly: candidates → filters → ranker → blend → exploration slots and creator diversity.

    feed = ReferenceFeed(settings.feed, catalog, profiles, amplifier, trending, users, served)
    result = feed.build(key_of("u42"), n=10, ranker=ranker, now_ms=now)   # FeedResult

This is the reference implementation; ``recserve.feed.FeedBuilder`` runs the same stages in one
native call (``recserve/feed/pipeline.hpp``) wherever it can, and agrees with it page for page.

Candidates come from six sources, each labelled on the served item:

- ``ann``: the nearest items to the user's query (long-term and session vectors blended);
- ``related``: items co-engaged with the user's recent positives (``Profiles.related``: the
  online item-to-item index of the C++ core, queried with recency weights);
- ``interest``: the nearest items to each of the user's latest positives
  (``interest_queries``), so two interests are not blurred into one averaged query;
- ``explore``: a sample of items in open amplification tiers, which compete for the reserved
  exploration slots (``explore_slots`` per page) among themselves;
- ``trending``: the current top of ``recserve.retrieve.Trending``, a fallback when the user's
  own candidates run short;
- ``cold_start``: for a user without a direction yet: items with their onboarding interests,
  then (with the region rule on) items near each region's centroid (``recserve.regions``),
  trending, and a random sample of the catalogue (so the start spans the catalogue and the
  first events locate the user).

Filters drop what the user has seen (``Profiles.seen``), what was served to them recently,
what was taken down, and what their blocked creators made. The ranker scores the rest, and the
blend adds, each with its weight (0: off): a popularity prior (log(1 + completed views, or the
trending score)), the co-engagement score, the item's learned quality (``recserve.quality``) and
the request's Thompson draw for the item's region (``recserve.regions``). The page takes the
best, at most ``max_per_creator`` items of one creator, with the exploration slots spread
through it. ``trace_key`` asks for an account of one item's way through all of this (the
explain endpoint), the blend's terms included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve import _core
from recserve.affinity import Affinity, affinity, related_score_of
from recserve.amplify import Amplifier, core_seed
from recserve.catalog import Catalog
from recserve.features import Context, ItemStats, UserFeatures, build_features
from recserve.feed.config import FeedConfig
from recserve.feed.memory import ServedMemory, UserPrefs
from recserve.profiles import ItemState, Profiles
from recserve.quality import ItemQuality
from recserve.rank import Ranker, SimilarityRanker
from recserve.regions import Regions, thompson
from recserve.retrieve import Trending, query_vector

__all__ = ["SOURCES", "FeedResult", "ReferenceFeed", "Served"]

SOURCES = ("ann", "explore", "trending", "cold_start", "related", "interest")
ANN, EXPLORE, TRENDING, COLD_START, RELATED, INTEREST = range(6)
U64 = npt.NDArray[np.uint64]
F32 = npt.NDArray[np.float32]
_QUALITY_SAMPLE = 4096  # items the quality curve is refitted on


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


@dataclass(frozen=True)
class _UserSignals:
    """What one request knows of the user, read once."""

    long_term: F32
    session: F32
    query: F32 | None  # the blended ANN query; None: no direction yet
    recent: U64  # met lately, or served lately: excluded from retrieval
    positive_ts: npt.NDArray[np.int64]  # when each was last a positive (ms)
    positive_vectors: F32  # their item vectors (zeros for an item without one)
    related_keys: U64  # co-engagement candidates and their scores
    related_scores: F32
    region_posterior: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]  # Beta (a, b)


@dataclass
class _Pool:
    keys: U64
    sources: npt.NDArray[np.int8]
    distances: npt.NDArray[np.float32]  # NaN where not retrieved by ANN
    live: npt.NDArray[np.bool_]  # in the catalogue (not taken down)
    created_s: npt.NDArray[np.float64]
    creators: npt.NDArray[np.int64]  # catalogue creator codes
    dropped: dict[int, str] = field(default_factory=dict)  # trace: why an item left
    terms: dict[str, F32] = field(default_factory=dict)  # what the blend added, per term
    tiers: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))  # -1: none

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


class ReferenceFeed:
    """The feed in Python, stage by stage: the reference the native pipeline agrees with, and
    the path for what only Python does (explain traces, cold-start pages, region draws)."""

    def __init__(
        self,
        settings: FeedConfig,
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
        self.regions = Regions(settings.regions, seed=0)
        self.quality = ItemQuality(settings.quality_prior_views, settings.quality_optimism)
        self._quality_at = -np.inf

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
        now_s = now_ms / 1000.0
        rng = np.random.default_rng(seed)
        user = self._signals(user_key, now_ms, rng)

        pool = self._candidates(user_key, user, rng, now_s, seed)
        retrieved = time.perf_counter()
        pool = self._filter(user_key, pool, user.recent, trace_key)
        filtered = time.perf_counter()

        probs, scores = self._rank(user_key, pool, user, ranker, now_s, rng)
        ranked = time.perf_counter()
        chosen, cap_dropped = self._assemble(pool, scores, n, self._explore_slots(n, seed))
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
                trace_key, user_key, user, pool, probs, scores, chosen, cap_dropped, ranker
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

    # ---- what the user just did -------------------------------------------------------------
    def _signals(self, user_key: int, now_ms: int, rng: np.random.Generator) -> _UserSignals:
        s = self.settings
        vectors = self.profiles.user_vectors([user_key], now_ms=now_ms)
        long_term, session = vectors.long_term[0], vectors.session[0]
        met = self.profiles.recent_items(user_key)
        recent = np.concatenate([met, self.served.recent(user_key)])
        positives, positive_ts, _ = self.profiles.recent_positives(user_key)
        if s.related:
            related_keys, related_scores = self.profiles.related(
                user_key, now_ms, s.related, s.related_recency, s.related_alpha
            )
        else:
            related_keys, related_scores = np.zeros(0, np.uint64), np.zeros(0, np.float32)
        window = met[: s.region_window] if s.region_weight > 0 else met[:0]
        known_vectors = self.profiles.items(np.concatenate([window, positives])).vectors
        positive_vectors = known_vectors[len(window) :]
        posterior = (np.zeros(0), np.zeros(0))
        if s.region_weight > 0 and self._refresh_regions() is not None:
            regions = self.regions.assign(known_vectors)
            window_positive = np.isin(window, positives)
            posterior = self.regions.posteriors(
                regions[: len(window)],
                regions[: len(window)][window_positive],
                (s.region_prior_hits, s.region_prior_misses),
            )
        return _UserSignals(
            long_term=long_term,
            session=session,
            query=query_vector(long_term, session, s.session_weight),
            recent=recent,
            positive_ts=positive_ts,
            positive_vectors=positive_vectors,
            related_keys=related_keys,
            related_scores=related_scores,
            region_posterior=posterior,
        )

    def _refresh_regions(self) -> Regions | None:
        """The catalogue's regions, refitted first if the catalogue has moved (see regions.py);
        None without any."""
        if self.regions.stale(len(self.catalog)):
            self.regions.refresh(self.catalog.keys(), lambda k: self.profiles.items(k).vectors)
        return self.regions if self.regions.centroids is not None else None

    # ---- candidates -------------------------------------------------------------------------
    def _candidates(
        self,
        user_key: int,
        user: _UserSignals,
        rng: np.random.Generator,
        now_s: float,
        seed: int,
    ) -> _Pool:
        s = self.settings
        query = user.query
        parts: list[tuple[U64, int, npt.NDArray[np.float32] | None]] = []
        if query is not None and len(self.catalog):
            keys, distances = self._search(user_key, query, s.candidates, max(s.ef, s.candidates))
            parts.append((keys, ANN, distances))
        if len(user.related_keys):
            parts.append((user.related_keys, RELATED, None))
        # Beside the blended query, one per recent positive: two interests are not averaged away.
        for vector in user.positive_vectors[: s.interest_queries]:
            if float(np.linalg.norm(vector)) > 1e-12:
                keys, distances = self._search(
                    user_key, vector, s.interest_candidates, s.interest_candidates
                )
                parts.append((keys, INTEREST, distances))
        if s.explore_slots and self.amplifier.open_count:
            parts.append((self.amplifier.sample_open(s.explore_pool, seed), EXPLORE, None))
        if query is None:
            interests = self.users.interests(user_key)
            tagged = self.catalog.tagged(interests) if interests else np.zeros(0, np.uint64)
            if len(tagged) > s.candidates:
                tagged = rng.choice(tagged, size=s.candidates, replace=False)
            parts.append((tagged, COLD_START, None))
            if len(tagged) < s.candidates // 4:  # too few to fill pages: regions, popular, random
                regions = self._refresh_regions() if s.region_weight > 0 else None
                if regions is not None:
                    parts.append((regions.sample_central(s.candidates, rng), COLD_START, None))
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
        # An item found by several sources keeps the first: ANN, co-engagement, interests, ...
        keys_u, first = np.unique(keys.astype(np.uint64), return_index=True)
        src, dist = sources[first], distances[first]
        live, created, creators = self.catalog.item_columns.lookup(keys_u)
        return _Pool(keys_u, src.astype(np.int8), dist.astype(np.float32), live, created, creators)

    def _search(self, user_key: int, query: F32, k: int, ef: int) -> tuple[U64, F32]:
        """One ANN query as the native pipeline asks it (``_core.feed.search``): items met or
        served lately, seen items and blocked creators' items rejected inside the graph walk."""
        keys, distances = _core.feed.search(
            self.catalog.index.core,
            self.profiles.core,
            self.catalog.item_columns,
            self.served.core,
            int(user_key),
            np.ascontiguousarray(query, dtype=np.float32),
            int(k),
            int(ef),
            self._blocked_codes(user_key),
        )
        return keys, distances

    def _blocked_codes(self, user_key: int) -> npt.NDArray[np.int64]:
        blocked = self.users.blocked(user_key)
        if not blocked:
            return np.zeros(0, dtype=np.int64)
        return self.catalog.creator_codes(sorted(blocked))

    # ---- filters ----------------------------------------------------------------------------
    def _filter(self, user_key: int, pool: _Pool, recent: U64, trace_key: int | None) -> _Pool:
        keys = pool.keys
        live = pool.live
        reasons: list[tuple[npt.NDArray[np.bool_], str]] = [(~live, "taken down or unknown")]
        if len(keys):
            reasons.append((self.profiles.seen(user_key, keys) & live, "seen by the user"))
        if len(recent):
            reasons.append((np.isin(keys, recent) & live, "served to the user recently"))
        codes = self._blocked_codes(user_key)
        if len(codes):
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
        user: _UserSignals,
        ranker: Ranker | SimilarityRanker,
        now_s: float,
        rng: np.random.Generator,
    ) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.float32]]:
        n = len(pool.keys)
        if n == 0:
            return None, np.zeros(0, np.float32)
        state = self.profiles.items(pool.keys)
        pool.tiers = self.amplifier.open_tiers(pool.keys)
        related = related_score_of(pool.keys, user.related_keys, user.related_scores)
        blend = self._blend_terms(pool, user, state, related, now_s, rng)
        pool.terms = blend
        extra = np.sum(list(blend.values()), axis=0).astype(np.float32)
        query = user.query
        if isinstance(ranker, SimilarityRanker):
            if query is None:
                return None, extra
            return None, (state.vectors @ query + extra).astype(np.float32)
        st = state.stats
        counts = self.profiles.user_state([user_key])
        rows = build_features(
            ranker.spec,
            UserFeatures(
                long_term=user.long_term,
                session=user.session,
                events=int(counts["events_applied"][0]),
                session_length=self.served.session_length(user_key, now_s),
                impressions=int(counts["impressions"][0]),
                completes=int(counts["completions"][0]),
                skips=int(counts["fast_skips"][0]),
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
            affinity=self._affinity(related, user, state, now_s, ranker.spec.version),
        )
        probs, scores = ranker.score(rows)
        return probs, (scores + extra).astype(np.float32)

    def _affinity(
        self, related: F32, user: _UserSignals, state: ItemState, now_s: float, version: int
    ) -> Affinity | None:
        """The version-2 feature columns (None for a model of layout 1, which has none)."""
        if version < 2:
            return None
        regions = self._refresh_regions() if self.settings.regions else None
        return affinity(
            related,
            state.vectors,
            user.positive_vectors,
            user.positive_ts,
            now_s * 1000.0,
            None if regions is None else regions.centroids,
        )

    def _blend_terms(
        self,
        pool: _Pool,
        user: _UserSignals,
        state: ItemState,
        related: F32,
        now_s: float,
        rng: np.random.Generator,
    ) -> dict[str, npt.NDArray[np.float32]]:
        """What the page adds to the ranker's score, per term (each 0 when its weight is):

        - ``popularity``: weight * log(1 + the item's completed views, or its trending score);
        - ``related``: weight * the co-engagement score from the user's recent positives;
        - ``quality``: weight * (the item's quality lift + its optimism bonus), quality.py;
        - ``promoted``: for an item in an open tier above 0, boost * v / (v + its impressions):
          a promoted item competes for regular slots, less as evidence accumulates;
        - ``region``: weight * a Thompson draw from the item's region's posterior, regions.py.
        """
        s = self.settings
        st = state.stats
        n = len(pool.keys)
        terms: dict[str, npt.NDArray[np.float32]] = {}
        if s.popularity_weight > 0:
            if s.popularity_from == "trending":
                counts = np.maximum(self.trending.scores(pool.keys, now_s), 0.0)
            else:
                counts = st["completions"].astype(np.float64)
            terms["popularity"] = (s.popularity_weight * np.log1p(counts)).astype(np.float32)
        if s.related_weight > 0 and len(user.related_keys):
            terms["related"] = (s.related_weight * related).astype(np.float32)
        if s.quality_weight > 0:
            self._refit_quality(now_s)
            lift, bonus = self.quality.posterior(st)
            terms["quality"] = (s.quality_weight * (lift + bonus)).astype(np.float32)
        if s.promoted_boost > 0 and (pool.tiers >= 1).any():
            views = s.promoted_boost_views
            boost = s.promoted_boost * views / (views + st["impressions"].astype(np.float64))
            terms["promoted"] = np.where(pool.tiers >= 1, boost, 0.0).astype(np.float32)
        if s.region_weight > 0 and len(user.region_posterior[0]):
            draw = thompson(self.regions.assign(state.vectors), user.region_posterior, rng)
            terms["region"] = s.region_weight * draw
        if not terms:
            terms["none"] = np.zeros(n, np.float32)
        return terms

    def _refit_quality(self, now_s: float) -> None:
        """Refits the catalogue's completion and skip curves on a sample of items, at most
        every ``quality_refit_s`` (cheap: a few thousand items' counters)."""
        if now_s - self._quality_at < self.settings.quality_refit_s:
            return
        self._quality_at = now_s
        keys = self.catalog.keys()
        if len(keys) > _QUALITY_SAMPLE:
            keys = np.random.default_rng(len(keys)).choice(keys, _QUALITY_SAMPLE, replace=False)
        self.quality.refit(self.profiles.items(keys).stats)

    def _item_id(self, key: int) -> str:
        item = self.catalog.by_key(key)
        return item.id if item is not None else ""

    # ---- page -------------------------------------------------------------------------------
    def _explore_slots(self, n: int, seed: int) -> int:
        """Exploration keeps its share of the feed whatever the page size: ``explore_slots``
        per ``default_n`` items, a fractional slot taken with that probability (a client that
        fetches one item per swipe explores 2 swipes in 10, not every swipe); the coin is drawn
        from the request's seed, as the native feed draws it."""
        s = self.settings
        share = s.explore_slots * n / s.default_n
        return int(_core.feed.explore_slots(share, n, core_seed(seed)))

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
        tiers = pool.tiers.tolist()  # set by _rank for every non-empty pool
        regular = [i for i in order if sources[i] != EXPLORE]
        # A new item is tested on users it may interest: it takes a slot only if it scores at
        # least a quantile of this user's regular candidates, a quantile that shrinks by
        # explore_relevance_decay a tier, so audiences grow with the tier.
        bars: dict[int, float] = {}

        def bar(tier: int) -> float:
            if not regular or s.explore_relevance <= 0:
                return -np.inf
            t = max(tier, 0)
            if t not in bars:
                q = s.explore_relevance * s.explore_relevance_decay**t
                bars[t] = float(np.quantile(scores[regular], q))
            return bars[t]

        explore = take(
            [i for i in order if sources[i] == EXPLORE and scores[i] >= bar(tiers[i])],
            explore_slots,
        )
        # Regular slots: every candidate but the sample's untested items (a promoted item
        # competes for them too), less what took an explore slot.
        taken = set(explore)
        main = take(
            [i for i in order if (sources[i] != EXPLORE or tiers[i] >= 1) and i not in taken],
            n - len(explore),
        )
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
        user: _UserSignals,
        pool: _Pool,
        probs: npt.NDArray[np.float32] | None,
        scores: npt.NDArray[np.float32],
        chosen: list[int],
        capped: set[int],
        ranker: Ranker | SimilarityRanker,
    ) -> dict[str, Any]:
        recent, query = user.recent, user.query
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
                out["reason"] = (
                    "not among the candidates (not near enough, not co-engaged with the user's "
                    "recent positives, not open, not trending)"
                )
            return out
        i = int(at[0])
        distance = float(pool.distances[i])
        out.update(
            retrieved=True,
            source=SOURCES[int(pool.sources[i])],
            distance=None if np.isnan(distance) else distance,
            filtered=None,
            score=float(scores[i]),
            blend_terms={k: float(t[i]) for k, t in pool.terms.items() if k != "none"},
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
