"""Per-stage feed latency from a Prometheus scrape of ``/metrics``: the
``recserve_feed_stage_seconds`` histogram, read the same way for an HTTP server and an
in-process engine (whose registry renders the same text)."""

from __future__ import annotations

import math
import re
from collections import defaultdict

__all__ = ["stage_latency"]

_LINE = re.compile(
    r'^recserve_feed_stage_seconds_(bucket|sum|count)\{(?:le="([^"]+)",)?stage="([^"]+)"'
    r'(?:,le="([^"]+)")?\}\s+(\S+)$'
)


def _quantile(buckets: list[tuple[float, float]], count: float, q: float) -> float:
    """Linear interpolation inside the bucket holding the q-th observation (as PromQL's
    histogram_quantile); the top bucket's lower bound when it falls in +Inf."""
    rank = q * count
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            inside = cumulative - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = upper, cumulative
    return lower


def stage_latency(metrics_text: str) -> dict[str, dict[str, float]]:
    """{stage: {"count", "mean_ms", "p50_ms", "p99_ms"}} for every stage in the scrape."""
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        kind, le_first, stage, le_last, value = match.groups()
        if kind == "bucket":
            buckets[stage].append((float(le_first or le_last), float(value)))
        elif kind == "sum":
            sums[stage] = float(value)
        else:
            counts[stage] = float(value)
    out = {}
    for stage, count in counts.items():
        if not count:
            continue
        ordered = sorted(buckets[stage])
        out[stage] = {
            "count": count,
            "mean_ms": 1e3 * sums.get(stage, 0.0) / count,
            "p50_ms": 1e3 * _quantile(ordered, count, 0.5),
            "p99_ms": 1e3 * _quantile(ordered, count, 0.99),
        }
    return out
