"""Prometheus metrics of one service instance (its own registry, so apps in one process, as in
tests, do not share counters). Exported at ``GET /metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics"]

_STAGE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


class _ArmRates(Collector):
    """Per-arm completion rate and likes per impression, computed at scrape time."""

    def __init__(self, counts: Callable[[], dict[tuple[str, str], dict[str, float]]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        completion = GaugeMetricFamily(
            "recserve_arm_completion_rate",
            "Completed watches per impression, per experiment arm",
            labels=["experiment", "arm"],
        )
        likes = GaugeMetricFamily(
            "recserve_arm_likes_per_impression",
            "Likes per impression, per experiment arm",
            labels=["experiment", "arm"],
        )
        for (experiment, arm), c in sorted(self._counts().items()):
            impressions = max(c.get("impression", 0.0), 1.0)
            completion.add_metric([experiment, arm], c.get("complete", 0.0) / impressions)
            likes.add_metric([experiment, arm], c.get("like", 0.0) / impressions)
        yield completion
        yield likes


class _StreamGauges(Collector):
    """The Kinesis consumer's figures (scale-out mode), read at scrape time."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats, held, dead = self._read()
        behind = GaugeMetricFamily(
            "recserve_kinesis_millis_behind_latest",
            "How far this replica's reader is behind the tip of each shard",
            labels=["shard"],
        )
        for shard, ms in sorted(stats.behind_ms.items()):
            behind.add_metric([shard], ms)
        yield behind
        for name, help_text, value in (
            ("leases_held", "Shard leases this replica holds", len(held)),
            ("leases_taken", "Shard leases taken (free, expired or stolen)", stats.leases_taken),
            ("leases_lost", "Shard leases lost to another replica", stats.leases_lost),
            ("records", "Kinesis records read and applied", stats.records),
            ("throttled", "GetRecords calls throttled (each backed off)", stats.throttled),
            ("backoff_seconds", "Seconds spent backing off", stats.backoff_s),
            ("expired_iterators", "Iterators renewed after expiring", stats.expired_iterators),
            ("dead_letters", "Undecodable records written to the dead-letter file", dead),
        ):
            yield GaugeMetricFamily(f"recserve_kinesis_{name}", help_text, value=value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.stage_seconds = Histogram(
            "recserve_feed_stage_seconds",
            "Feed assembly time per stage",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.events_applied = Counter(
            "recserve_events_applied", "Distinct events applied", registry=r
        )
        self.events_duplicate = Counter(
            "recserve_events_duplicate", "Redelivered events recognised and skipped", registry=r
        )
        self.events_unknown_items = Counter(
            "recserve_events_unknown_items",
            "Applied events on items not in the catalogue (the user moved, no item row made)",
            registry=r,
        )
        self.precompute = Counter(
            "recserve_precompute_requests",
            "Feed requests by whether a precomputed page served them",
            ["result"],
            registry=r,
        )
        self.amplification = Counter(
            "recserve_amplification_transitions",
            "Amplification transitions (promoted, stopped, graduated, pending_review, rejected)",
            ["state"],
            registry=r,
        )
        self.takedown_seconds = Histogram(
            "recserve_takedown_propagation_seconds",
            "From a takedown request to the item gone from the index, pools and caches",
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.arm_events = Counter(
            "recserve_arm_events",
            "Events per experiment arm and outcome (impression, complete, like)",
            ["experiment", "arm", "outcome"],
            registry=r,
        )
        self.feeds_served = Counter(
            "recserve_feeds_served",
            "Feed pages served, per experiment arm",
            ["experiment", "arm"],
            registry=r,
        )
        self.rejected = Counter(
            "recserve_requests_rejected", "Requests refused under overload", registry=r
        )
        self.inflight_requests = Gauge(
            "recserve_inflight_requests", "API requests admitted and not yet finished", registry=r
        )
        self.inflight_bytes = Gauge(
            "recserve_inflight_bytes",
            "Body bytes those requests declared or sent (the in-flight byte budget's use)",
            registry=r,
        )
        self.body_timeouts = Counter(
            "recserve_body_timeouts", "Requests answered 408: body not whole in time", registry=r
        )
        self.evictions = Gauge(
            "recserve_profile_evictions", "User and item rows evicted by capacity", registry=r
        )
        self.precomputed_pages = Gauge(
            "recserve_precomputed_pages", "Pages computed ahead and not yet served", registry=r
        )
        self.precompute_backlog = Gauge(
            "recserve_precompute_backlog",
            "Users whose next page is queued or being computed",
            registry=r,
        )
        self.review_queue = Gauge(
            "recserve_review_queue", "Items waiting for an admin's review", registry=r
        )
        self.review_oldest_age = Gauge(
            "recserve_review_oldest_age_seconds",
            "How long the oldest item pending review has waited (0: none waits)",
            registry=r,
        )
        self.catalog_lag = Gauge(
            "recserve_catalog_lag_seconds",
            "Age of the oldest catalogue change this replica may not have applied (scale-out)",
            registry=r,
        )
        self.catalog_records = Counter(
            "recserve_catalog_records",
            "Catalogue stream records read: applied, or skipped (bad or refused, on every "
            "replica alike)",
            ["outcome"],
            registry=r,
        )
        self.catalog_snapshots = Counter(
            "recserve_catalog_snapshots",
            "Catalogue snapshots this replica wrote to S3 (published) or failed to",
            ["outcome"],
            registry=r,
        )
        for outcome in ("applied", "skipped"):
            self.catalog_records.labels(outcome)  # at 0 from the start
        self._arm_counts: dict[tuple[str, str], dict[str, float]] = {}
        r.register(_ArmRates(lambda: self._arm_counts))

    def watch_stream(self, read: Callable[[], Any]) -> None:
        """Exports the consumer's figures: ``read()`` gives (stats, held shards, dead letters)."""
        self.registry.register(_StreamGauges(read))

    def count_arm(self, experiment: str, arm: str, outcome: str, n: int = 1) -> None:
        self.arm_events.labels(experiment, arm, outcome).inc(n)
        counts = self._arm_counts.setdefault((experiment, arm), {})
        counts[outcome] = counts.get(outcome, 0.0) + n

    def render(self, refresh: Callable[[], Any] | None = None) -> bytes:
        if refresh is not None:
            refresh()
        return generate_latest(self.registry)
