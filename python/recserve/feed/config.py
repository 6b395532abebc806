"""The feed's settings: the ``[feed]`` section of the service's configuration (every field's
description is its documentation), read by the reference pipeline and the native one alike."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recserve.affinity import AffinityQuery

__all__ = ["FeedConfig"]


class FeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_n: int = Field(
        default=10, ge=1, description="items per page when the request gives no n"
    )
    max_n: int = Field(default=100, ge=1, description="the largest n a request may ask for")
    candidates: int = Field(default=200, ge=1, description="ANN candidates per request")
    ef: int = Field(default=128, ge=1, description="ANN search breadth (>= candidates is used)")
    explore_slots: int = Field(
        default=2, ge=0, description="slots per page for items in open tiers"
    )
    explore_pool: int = Field(default=16, ge=1, description="open-tier items sampled per request")
    explore_relevance: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="an open-tier item explores only if it scores at least this quantile of the "
        "user's regular candidates (0: always)",
    )
    explore_relevance_decay: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="the relevance gate loosens tier by tier: tier t's quantile is "
        "explore_relevance times this to the power t (audiences grow with the tier)",
    )
    promoted_boost: float = Field(
        default=0.1,
        ge=0.0,
        le=10.0,
        description="a promoted item (an open tier above 0) competes for regular slots too, "
        "its score raised by this times v / (v + its impressions), v = promoted_boost_views "
        "(0: promoted items only explore)",
    )
    promoted_boost_views: float = Field(
        default=50.0, gt=0.0, le=1e9, description="the impressions that halve the boost"
    )
    trending: int = Field(default=32, ge=0, description="trending candidates per request")
    popularity_weight: float = Field(
        default=0.0,
        ge=0.0,
        description="adds this times log(1 + the item's completed views) to the ranker's score "
        "(a popularity prior; 0: off)",
    )
    popularity_from: Literal["completions", "trending"] = Field(
        default="completions",
        description="the prior's count: completed views (all time) or the trending score "
        "(decayed with trending_half_life_s)",
    )
    related: int = Field(
        default=100,
        ge=0,
        le=1000,
        description="co-engagement candidates per request, from the user's recent positives "
        "(0: off)",
    )
    related_weight: float = Field(
        default=0.0,
        ge=0.0,
        description="adds this times the item's co-engagement score (0: the ranker alone weighs "
        "it, as a version-2 feature)",
    )
    related_recency: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="a recent positive's weight in the co-engagement query: this ** its age "
        "(0 = newest)",
    )
    related_alpha: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="co-engagement normalisation: w(i, j) / (n_i^(1 - alpha) n_j^alpha); "
        "0.5 is cosine, higher favours less popular items",
    )
    interest_queries: int = Field(
        default=2,
        ge=0,
        le=16,
        description="extra ANN queries per request, one from each of the user's latest positives",
    )
    interest_candidates: int = Field(
        default=32, ge=1, le=1000, description="candidates per interest query"
    )
    regions: int = Field(
        default=16,
        ge=0,
        le=256,
        description="k-means regions of the catalogue for new users' pages and the per-slot "
        "Thompson rule (0: off)",
    )
    region_weight: float = Field(
        default=0.0,
        ge=0.0,
        description="adds this times the request's Thompson draw for the item's region",
    )
    region_prior_hits: float = Field(default=1.0, gt=0.0, description="Beta prior a per region")
    region_prior_misses: float = Field(default=1.0, gt=0.0, description="Beta prior b per region")
    region_window: int = Field(
        default=50, ge=1, le=1000, description="the user's latest items the region draws count"
    )
    quality_weight: float = Field(
        default=0.3,
        ge=0.0,
        description="adds this times the item's learned quality lift (and bonus)",
    )
    quality_prior_views: float = Field(
        default=10.0, gt=0.0, description="views' worth of shrinkage toward no lift"
    )
    quality_optimism: float = Field(
        default=0.05, ge=0.0, description="UCB bonus: this / sqrt(1 + views)"
    )
    quality_refit_s: float = Field(
        default=10.0, gt=0.0, description="the catalogue's outcome curve is refitted this often"
    )
    max_per_creator: int = Field(default=2, ge=1, description="a creator's items per page, at most")
    session_weight: float = Field(default=0.5, ge=0.0, le=1.0, description="session share of query")
    served_memory: int = Field(
        default=500, ge=0, description="items recently served to a user that are not served again"
    )
    native: bool = Field(
        default=True,
        description="assemble pages in the core, one GIL-free call each (false: every page "
        "through the Python reference pipeline, which gives the same pages, slower)",
    )
    precompute: bool = Field(
        default=True, description="compute a user's next page after their events"
    )
    trending_half_life_s: float = Field(default=3600.0, gt=0)

    def affinity_query(self) -> AffinityQuery:
        """How this feed asks for co-engagement and regions (the training replay must ask
        alike)."""
        return AffinityQuery(self.related, self.related_recency, self.related_alpha, self.regions)

    @model_validator(mode="after")
    def _n_in_range(self) -> FeedConfig:
        if self.default_n > self.max_n:
            raise ValueError(f"default_n {self.default_n} exceeds max_n {self.max_n}")
        return self
