"""The feed's front door: one native call per page, the reference pipeline for the rest.

    builder = FeedBuilder(config, catalog, profiles, amplifier, trending, users, served)
    result = builder.build(user_key, n=10, ranker=ranker, now_ms=now)   # FeedResult

``build`` reads what lives in Python (the trending list, blocked creators, the quality curve's
periodic refit), then makes one call into the core (``_core.feed.build_page``,
``recserve/feed/pipeline.hpp``), which releases the GIL for the whole page: user signals, every
candidate source (the open-tier sample included), the filters, the feature rows, the int8
ranker, the blend, the creator cap and the explore slots. Its draws (the open-tier sample, the
coin of a fractional explore slot) are functions of the request's seed that the reference
pipeline calls too, so both give the same page for the same state, request and seed (a seeded
test holds them to it).

The reference pipeline (``ReferenceFeed``) still builds what the core does not: an explain
trace, a cold-start page (a user without vectors: onboarding tags, regions, a catalogue sample),
pages with the region rule on (per-candidate Thompson draws), the trending popularity prior, and
pages of a service without a model (``SimilarityRanker``). The ``native`` setting (or argument)
false sends every page there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recserve import _core
from recserve.amplify import Amplifier, core_seed
from recserve.catalog import Catalog
from recserve.feed.config import FeedConfig
from recserve.feed.memory import ServedMemory, UserPrefs
from recserve.feed.reference import SOURCES, FeedResult, ReferenceFeed, Served
from recserve.profiles import Profiles
from recserve.rank import Ranker, SimilarityRanker
from recserve.retrieve import Trending

__all__ = ["FeedBuilder", "core_params"]

_NO_KEYS = np.zeros(0, dtype=np.uint64)
_RANKINGS_KEPT = 16  # models (experiment arms, versions) whose packed form is kept


def core_params(config: FeedConfig) -> Any:
    """The settings the native pipeline reads, as ``_core.feed.Params``."""
    params = _core.feed.Params()
    for name in (
        "candidates", "ef", "related", "related_recency", "related_alpha", "interest_queries",
        "interest_candidates", "session_weight", "max_per_creator", "explore_relevance",
        "popularity_weight", "related_weight", "quality_weight", "quality_prior_views",
        "quality_optimism", "explore_relevance_decay", "promoted_boost", "promoted_boost_views",
    ):  # fmt: skip
        setattr(params, name, getattr(config, name))
    return params


class FeedBuilder(ReferenceFeed):
    def __init__(
        self,
        settings: FeedConfig,
        catalog: Catalog,
        profiles: Profiles,
        amplifier: Amplifier,
        trending: Trending,
        users: UserPrefs,
        served: ServedMemory,
        *,
        native: bool | None = None,
    ) -> None:
        super().__init__(settings, catalog, profiles, amplifier, trending, users, served)
        self.native = settings.native if native is None else native
        self._params = core_params(settings)
        self._rankings: dict[int, tuple[Ranker, Any]] = {}

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
        if trace_key is not None or not self._native_serves(ranker):
            return super().build(user_key, n, ranker, now_ms, seed=seed, trace_key=trace_key)
        assert isinstance(ranker, Ranker)
        s = self.settings
        now_s = now_ms / 1000.0
        trending = self.trending.top(s.trending, now_s) if s.trending else _NO_KEYS
        codes = self._blocked_codes(user_key)
        centroids = None
        if ranker.spec.version >= 2 and s.regions:
            regions = self._refresh_regions()
            if regions is not None and regions.centroids is not None:
                centroids = np.ascontiguousarray(regions.centroids, dtype=np.float32)
        if s.quality_weight > 0:
            self._refit_quality(now_s)
        lines = (*self.quality.complete_line, *self.quality.skip_line)
        direction, keys, scores, sources, _, seconds = _core.feed.build_page(
            self.catalog.index.core,
            self.profiles.core,
            self.catalog.item_columns,
            self.served.core,
            self._params,
            self._ranking(ranker),
            int(user_key),
            int(now_ms),
            int(n),
            core_seed(seed),
            self.amplifier.open_pool if s.explore_slots else None,
            s.explore_pool,
            s.explore_slots * n / s.default_n,
            np.ascontiguousarray(trending, dtype=np.uint64),
            codes,
            centroids,
            lines,
        )
        if not direction:  # cold start: the reference's sources
            return super().build(user_key, n, ranker, now_ms, seed=seed)
        items = [
            Served(key, self._item_id(key), score, SOURCES[source])
            for key, score, source in zip(
                keys.tolist(), scores.tolist(), sources.tolist(), strict=True
            )
        ]
        retrieve, filter_, rank, total = seconds
        return FeedResult(
            items,
            ranker.version,
            {"retrieve": retrieve, "filter": filter_, "rank": rank, "total": total},
        )

    def _native_serves(self, ranker: Ranker | SimilarityRanker) -> bool:
        s = self.settings
        return (
            self.native
            and isinstance(ranker, Ranker)
            and s.region_weight == 0
            and (s.popularity_weight == 0 or s.popularity_from == "completions")
        )

    def _ranking(self, ranker: Ranker) -> Any:
        """The ranker in the core's form, made once per ranker."""
        kept = self._rankings.get(id(ranker))
        if kept is None or kept[0] is not ranker:
            if len(self._rankings) >= _RANKINGS_KEPT:
                self._rankings.clear()
            ranking = _core.feed.Ranking(
                ranker.model.core, ranker.spec.layout(), ranker.head_weights.tolist()
            )
            kept = self._rankings[id(ranker)] = (ranker, ranking)
        return kept[1]
