"""Replay an impression log in time order into training rows, with no look-ahead.

The replay keeps what the live service keeps (user long-term and session vectors, user
activity counts, item counters) and walks the joined log (``recserve.train.labels.join``)
record by record. At an impression it snapshots that state, so the row built for it is the
row the feed would have built at serve time; then it counts the impression. At an event it
updates the state. Events later than an impression never reach its row.

**User-vector update (provisional).** Until the shared update rule of issue 4 lands (the
same code online and in replay), the replay uses this engagement-weighted EMA::

    w    = weight(event)                         (UpdateRule.weights; see below)
    step = min(rate * |w|, 1)
    v    = (1 - step) * v + sign(w) * step * item_vector

with ``rate = long_rate`` (0.05) for the long-term vector and ``session_rate`` (0.3) for the
session vector. The weight of a watch is its completion ratio min(watch/duration, 1), or
``fast_skip_weight`` (-0.5) under ``fast_skip_ms``; replay 1.0, share 1.0, like 0.8,
follow 0.8, comment 0.6, skip -0.5, not_interested -1.0. A user's session (session vector
and session length) restarts after ``session_gap_s`` (30 min) without impressions or events.

Item counters count each outcome at most once per impression (``event_outcomes``), at the
time of the event that shows it; unattributed events move user vectors but count nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from recserve.features import OUTCOMES, Context, FeatureSpec, ItemStats, UserFeatures
from recserve.features import build_features as _build_features
from recserve.train.labels import FAST_SKIP_MS, HEADS, event_outcomes, join
from recserve.train.log import Event, Impression, ImpressionLog

__all__ = ["Dataset", "UpdateRule", "replay"]

DEFAULT_WEIGHTS: dict[str, float] = {
    "replay": 1.0,
    "share": 1.0,
    "like": 0.8,
    "follow": 0.8,
    "comment": 0.6,
    "skip": -0.5,
    "not_interested": -1.0,
}


@dataclass(frozen=True)
class UpdateRule:
    """The provisional user-vector update (see the module docstring)."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    long_rate: float = 0.05
    session_rate: float = 0.3
    session_gap_s: float = 1800.0
    fast_skip_ms: int = FAST_SKIP_MS
    fast_skip_weight: float = -0.5

    def weight(self, event: Event) -> float:
        if event.type == "watch":
            if event.watch_ms < self.fast_skip_ms:
                return self.fast_skip_weight
            return min(event.watch_ms / event.duration_ms, 1.0) if event.duration_ms else 0.0
        return float(self.weights.get(event.type, 0.0))


@dataclass(frozen=True)
class Dataset:
    """One raw (not normalised) feature row and one label row per impression, in time order."""

    rows: npt.NDArray[np.float32]
    labels: npt.NDArray[np.float32]
    ts: npt.NDArray[np.float64]
    item: npt.NDArray[np.int64]
    user: list[str]
    request_id: list[str]
    spec: FeatureSpec
    heads: tuple[str, ...] = HEADS
    events: int = 0
    duplicates: int = 0
    unattributed: int = 0

    def __len__(self) -> int:
        return int(self.rows.shape[0])


class _User:
    __slots__ = (
        "completes",
        "events",
        "impressions",
        "last_ts",
        "long",
        "session",
        "session_length",
        "skips",
    )

    def __init__(self, dims: int) -> None:
        self.long = np.zeros(dims, dtype=np.float32)
        self.session = np.zeros(dims, dtype=np.float32)
        self.events = self.session_length = self.impressions = self.completes = self.skips = 0
        self.last_ts = -np.inf


def _move(
    vector: npt.NDArray[np.float32], item: npt.NDArray[np.float32], weight: float, rate: float
) -> None:
    step = min(rate * abs(weight), 1.0)
    vector *= 1.0 - step
    vector += np.float32(np.sign(weight) * step) * item


def replay(
    log: ImpressionLog,
    *,
    spec: FeatureSpec | None = None,
    rule: UpdateRule | None = None,
    window_s: float = 3600.0,
) -> Dataset:
    """Rows and labels for every impression of the log, each as of its serve time."""
    catalog = log.catalog
    spec = spec if spec is not None else FeatureSpec(dims=catalog.dims)
    rule = rule if rule is not None else UpdateRule()
    if spec.dims != catalog.dims:
        raise ValueError(
            f"the feature spec has dims {spec.dims} but the log's catalogue has {catalog.dims}"
        )
    joined = join(log.records, window_s=window_s, fast_skip_ms=rule.fast_skip_ms)
    n, d = len(joined.impressions), catalog.dims
    row_of = {int(item): row for row, item in enumerate(catalog.item)}
    vectors = catalog.vector

    users: dict[str, _User] = {}
    item_impressions = np.zeros(len(catalog.item), dtype=np.int64)
    item_counts = np.zeros((len(OUTCOMES), len(catalog.item)), dtype=np.int64)
    counted = np.zeros((n, len(OUTCOMES)), dtype=bool)
    outcome_index = {name: k for k, name in enumerate(OUTCOMES)}

    long_at = np.zeros((n, d), dtype=np.float32)
    session_at = np.zeros((n, d), dtype=np.float32)
    user_at = np.zeros(
        (n, 5), dtype=np.int64
    )  # events, session length, impressions, completes, skips
    item_at = np.zeros((n, 1 + len(OUTCOMES)), dtype=np.int64)
    item_rows = np.zeros(n, dtype=np.int64)
    events = 0

    for record, number in zip(joined.timeline, joined.impression_of.tolist(), strict=True):
        try:
            row = row_of[record.item]
        except KeyError:
            raise ValueError(
                f"{type(record).__name__.lower()} of user {record.user!r} at ts {record.ts} "
                f"refers to item {record.item}, which is not in the log's catalogue"
            ) from None
        user = users.get(record.user)
        if user is None:
            user = users[record.user] = _User(d)
        if record.ts - user.last_ts > rule.session_gap_s:
            user.session[:] = 0.0
            user.session_length = 0
        user.last_ts = max(user.last_ts, record.ts)

        if isinstance(record, Impression):
            long_at[number] = user.long
            session_at[number] = user.session
            user_at[number] = (
                user.events,
                user.session_length,
                user.impressions,
                user.completes,
                user.skips,
            )
            item_at[number, 0] = item_impressions[row]
            item_at[number, 1:] = item_counts[:, row]
            item_rows[number] = row
            item_impressions[row] += 1
            user.impressions += 1
            user.session_length += 1
            continue

        events += 1
        user.events += 1
        weight = rule.weight(record)
        if weight:
            _move(user.long, vectors[row], weight, rule.long_rate)
            _move(user.session, vectors[row], weight, rule.session_rate)
        if number < 0:
            continue
        for outcome in event_outcomes(record, fast_skip_ms=rule.fast_skip_ms):
            k = outcome_index[outcome]
            if not counted[number, k]:
                counted[number, k] = True
                item_counts[k, row] += 1
                user.completes += outcome == "complete"
                user.skips += outcome == "skip"

    ts = np.array([imp.ts for imp in joined.impressions], dtype=np.float64)
    positions = np.array([imp.position for imp in joined.impressions], dtype=np.int64)
    stats = ItemStats(
        impressions=item_at[:, 0],
        **{name: item_at[:, 1 + k] for k, name in enumerate(OUTCOMES)},
        created_at=catalog.created_at[item_rows],
    )
    user_features = UserFeatures(
        long_term=long_at,
        session=session_at,
        events=user_at[:, 0],
        session_length=user_at[:, 1],
        impressions=user_at[:, 2],
        completes=user_at[:, 3],
        skips=user_at[:, 4],
    )
    rows = _build_features(
        spec,
        user_features,
        vectors[item_rows],
        stats,
        Context(now=ts, position=positions),
        normalize=False,
    )
    return Dataset(
        rows=rows,
        labels=joined.labels,
        ts=ts,
        item=catalog.item[item_rows],
        user=[imp.user for imp in joined.impressions],
        request_id=[imp.request_id for imp in joined.impressions],
        spec=spec,
        events=events,
        duplicates=joined.duplicates,
        unattributed=joined.unattributed,
    )
