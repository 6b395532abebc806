"""Replay an impression log in time order into training rows, with no look-ahead.

The replay keeps what the live service keeps (user long-term and session vectors, user
activity counts, item counters) and walks the joined log (``recserve.train.labels.join``)
record by record. At an impression it snapshots that state, so the row built for it is the
row the feed would have built at serve time; then it counts the impression. At an event it
updates the state. Events later than an impression never reach its row.

**User vectors** move by the same code as online: each event goes through
``recserve.profiles.Profiles.apply`` with the declared :class:`recserve.profiles.UpdateRule`
(weights, completion curve, fast skip, learning rates, session decay and timeout), and an
impression reads the user's vectors as the feed would at its serve time (the session decayed to
that moment). A user's session length (impressions in the session) restarts after
``rule.session_timeout_seconds`` without impressions or events.

Item counters count each outcome at most once per impression (``event_outcomes``), at the
time of the event that shows it; unattributed events move user vectors but count nothing.

**Served-not-viewed** impressions (no event of the user joined them, ``labels.join``) get a
row, marked ``viewed`` False, with all-zero labels: the trainer leaves them out, since the
user never reached the item. They count in no counter (item or user impressions), as online,
where an item's impressions are the users who had an event on it, and get no sampled
negatives.

**Items**: every impression's item must be in the catalogue (ValueError). An event on an item
the catalogue lacks (the service accepts events on items it does not know) is applied as online:
it counts in the user's events and moves no vector.

**Sampled negatives** (``negatives`` per impression, off by default). A log of what users chose
(MovieLens ratings: every impression is an item the user picked) has no item a user passed
over, so a ranker trained on it learns taste among chosen items but never that most users
choose popular ones. With ``negatives = k``, each viewed impression also gets k rows for catalogue
items the user has not been shown so far, drawn (seeded) uniformly or in proportion to
impressions so far + 1 (``negative_sampling``), each as of the same serve time (the user's
state, the item's counters then) and labelled as an impression with no event: a fast skip,
nothing else (a pass over the item, so ``viewed``). They are rows only: they count in no
counter (nothing was served).

**The return head** (``labels.join``) uses the rule's session timeout to split sessions. Its
label is unknown (``label_mask`` False in its column) where censored by the log's end, and on
sampled negatives (the user's return says nothing about an item never served).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from recserve.affinity import Affinity, AffinityQuery, affinity, related_score_of
from recserve.features import OUTCOMES, Context, FeatureSpec, ItemStats, UserFeatures
from recserve.features import build_features as _build_features
from recserve.profiles import EVENT_TYPES, Events, Profiles, ProfilesConfig, UpdateRule
from recserve.regions import spherical_kmeans
from recserve.train.labels import HEADS, RETURN_WINDOW_S, event_outcomes, join
from recserve.train.log import Event, Impression, ImpressionLog

__all__ = ["Dataset", "replay"]


@dataclass(frozen=True)
class Dataset:
    """One raw (not normalised) feature row and one label row per impression (then per sampled
    negative, if any: ``negative`` marks those rows), in time order."""

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
    negative: npt.NDArray[np.bool_] | None = None  # None: no sampled negatives
    # False: served, never reached (no event joined it): no label, the trainer skips the row.
    # None: every row viewed.
    viewed: npt.NDArray[np.bool_] | None = None
    # bool [rows, heads]: False where a head's label is unknown (``return`` censored by the
    # log's end); the trainer leaves those out of that head's loss and AUC. None: all known.
    label_mask: npt.NDArray[np.bool_] | None = None

    def __len__(self) -> int:
        return int(self.rows.shape[0])


class _User:
    __slots__ = (
        "completes",
        "events",
        "id",
        "impressions",
        "last_ts",
        "session_length",
        "shown",
        "skips",
    )

    def __init__(self, number: int) -> None:
        self.id = number  # the user's id in the profiles
        self.events = self.session_length = self.impressions = self.completes = self.skips = 0
        self.last_ts = -np.inf
        self.shown: set[int] = set()  # catalogue rows of the items shown so far


class _Negatives:
    """Draws catalogue rows a user has not been shown (see the module doc)."""

    def __init__(self, k: int, sampling: str, items: int, seed: int) -> None:
        if k < 0:
            raise ValueError(f"negatives must be >= 0, got {k}")
        if sampling not in ("uniform", "popularity"):
            raise ValueError(
                f"negative_sampling must be 'uniform' or 'popularity', got {sampling!r}"
            )
        self.k, self.popular, self.items = k, sampling == "popularity", items
        self.rng = np.random.default_rng(seed)
        self.uniform = np.ones(items)  # the weights of uniform sampling, made once

    def draw(self, shown: set[int], impressions: npt.NDArray[np.int64]) -> list[int]:
        """Up to k distinct rows not in ``shown`` (fewer only when fewer are left)."""
        weights = impressions + 1.0 if self.popular else self.uniform
        if 2 * len(shown) < self.items:  # most rows are free: draw and drop the shown ones
            rows = self.rng.choice(self.items, size=2 * self.k, p=weights / weights.sum())
            out = [row for row in dict.fromkeys(rows.tolist()) if row not in shown][: self.k]
            if len(out) == self.k:
                return out
        free = np.setdiff1d(np.arange(self.items), np.fromiter(shown, np.int64, len(shown)))
        if not len(free):
            return []  # the user has been shown the whole catalogue
        w = weights[free]
        rows = self.rng.choice(free, size=min(self.k, len(free)), replace=False, p=w / w.sum())
        return [int(row) for row in rows.tolist()]


class _PendingEvents:
    """Events gathered between impressions, applied as one batch before the next one."""

    def __init__(self, profiles: Profiles) -> None:
        self.profiles = profiles
        self.rows: list[tuple[int, int, int, int, int, int, int]] = []
        self.seq = 0

    def add(self, user: int, item: int, event: Event) -> None:
        try:
            code = EVENT_TYPES.index(event.type)
        except ValueError:
            raise ValueError(f"event {event.event_id!r} has unknown type {event.type!r}") from None
        self.seq += 1
        self.rows.append(
            (user, item, code, event.watch_ms, event.duration_ms, round(event.ts * 1000), self.seq)
        )

    def flush(self) -> None:
        if not self.rows:
            return
        columns = list(zip(*self.rows, strict=True))
        self.rows = []
        self.profiles.apply(
            Events.of(
                users=columns[0],
                items=columns[1],
                types=columns[2],
                watch_ms=columns[3],
                duration_ms=columns[4],
                ts_ms=columns[5],
                seq=columns[6],
            )
        )


def _affinity_now(
    profiles: Profiles,
    user: int,
    keys: npt.NDArray[np.integer[Any]],
    vectors: npt.NDArray[np.float32],
    row_of: dict[int, int],
    rows: list[int],
    now_ms: int,
    query: AffinityQuery,
    centroids: npt.NDArray[np.float32] | None,
) -> npt.NDArray[np.float32]:
    """The affinity features of these catalogue rows for the user now, as the feed reads them:
    [len(rows), 3] (related, positive similarity, hours since a positive in the region)."""
    related_keys, related_scores = profiles.related(
        user, now_ms, query.related, query.recency, query.alpha
    )
    positive_keys, positive_ts, _ = profiles.recent_positives(user)
    known = np.array([k in row_of for k in positive_keys.tolist()], dtype=bool)
    positive_rows = [row_of[k] for k in positive_keys[known].tolist()]
    a = affinity(
        related_score_of(keys[rows].astype(np.uint64), related_keys, related_scores),
        vectors[rows],
        vectors[positive_rows],
        positive_ts[known],
        now_ms,
        centroids,
    )
    return np.stack([a.related, a.positive_similarity, a.region_positive_hours], axis=1)


def replay(
    log: ImpressionLog,
    *,
    spec: FeatureSpec | None = None,
    rule: UpdateRule | None = None,
    window_s: float = 3600.0,
    negatives: int = 0,
    negative_sampling: Literal["uniform", "popularity"] = "uniform",
    seed: int = 0,
    query: AffinityQuery | None = None,
    profiles_config: dict[str, Any] | None = None,
    return_window_s: float = RETURN_WINDOW_S,
) -> Dataset:
    """Rows and labels for every impression of the log, each as of its serve time; with
    ``negatives``, that many sampled negatives per impression too (see the module doc).
    ``query`` is how the feed asks for the affinity features (a version-2 spec's last columns),
    ``profiles_config`` more ProfilesConfig fields (the service's co-engagement options);
    ``return_window_s`` the ``return`` head's window (``recserve.train.labels``)."""
    catalog = log.catalog
    spec = spec if spec is not None else FeatureSpec(dims=catalog.dims)
    rule = rule if rule is not None else UpdateRule()
    if spec.dims != catalog.dims:
        raise ValueError(
            f"the feature spec has dims {spec.dims} but the log's catalogue has {catalog.dims}"
        )
    fast_skip_ms = round(rule.fast_skip_seconds * 1000)
    joined = join(
        log.records,
        window_s=window_s,
        fast_skip_ms=fast_skip_ms,
        session_timeout_s=rule.session_timeout_seconds,
        return_window_s=return_window_s,
    )
    n, d = len(joined.impressions), catalog.dims
    keys = catalog.keys  # the ids as the records carry them (0 to 2^64 - 1)
    row_of = {key: row for row, key in enumerate(keys.tolist())}
    vectors = catalog.vector
    distinct_users = len({record.user for record in joined.timeline})
    profiles = Profiles(
        ProfilesConfig(
            dims=d,
            user_capacity=2 * distinct_users + 1024,  # room to spare in every shard: no evictions
            item_capacity=2 * len(catalog.item) + 1024,
            rule=rule,
            **(profiles_config or {}),
        )
    )
    query = query if query is not None else AffinityQuery()
    centroids = spherical_kmeans(vectors, query.regions, seed=0) if query.regions else None
    with_affinity = spec.version >= 2
    affinity_at: list[npt.NDArray[np.float32]] = []  # per impression, then its negatives: [m, 3]
    profiles.set_items(keys, vectors)
    pending = _PendingEvents(profiles)
    sampler = _Negatives(negatives, negative_sampling, len(catalog.item), seed)
    # per negative: (its impression's number, catalogue row, counters [1 + outcomes] then)
    negative_of: list[int] = []
    negative_rows: list[int] = []
    negative_stats: list[npt.NDArray[np.int64]] = []

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
        row = row_of.get(record.item, -1)
        if row < 0 and isinstance(record, Impression):
            raise ValueError(
                f"{type(record).__name__.lower()} of user {record.user!r} at ts {record.ts} "
                f"refers to item {record.item}, which is not in the log's catalogue"
            )
        user = users.get(record.user)
        if user is None:
            user = users[record.user] = _User(len(users))
        if record.ts - user.last_ts > rule.session_timeout_seconds:
            user.session_length = 0
        user.last_ts = max(user.last_ts, record.ts)

        if isinstance(record, Impression):
            pending.flush()
            vectors_now = profiles.user_vectors([user.id], now_ms=round(record.ts * 1000))
            long_at[number] = vectors_now.long_term[0]
            session_at[number] = vectors_now.session[0]
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
            drawn: list[int] = []
            if sampler.k and joined.viewed[number]:  # passed over beside what the user met
                user.shown.add(row)
                drawn = sampler.draw(user.shown, item_impressions)
                negative_of += [number] * len(drawn)
                negative_rows += drawn
                negative_stats.append(
                    np.concatenate([item_impressions[None, drawn], item_counts[:, drawn]]).T
                )
            if with_affinity:
                rows_now = [row, *drawn]
                affinity_at.append(
                    _affinity_now(
                        profiles,
                        user.id,
                        keys,
                        vectors,
                        row_of,
                        rows_now,
                        round(record.ts * 1000),
                        query,
                        centroids,
                    )
                )
            if joined.viewed[number]:  # a served item never reached was no impression
                item_impressions[row] += 1
                user.impressions += 1
            user.session_length += 1
            continue

        events += 1
        user.events += 1
        pending.add(user.id, int(record.item), record)
        if number < 0 or row < 0:  # unattributed, or an item never in the catalogue
            continue
        for outcome in event_outcomes(record, fast_skip_ms=fast_skip_ms):
            k = outcome_index[outcome]
            if not counted[number, k]:
                counted[number, k] = True
                item_counts[k, row] += 1
                user.completes += outcome == "complete"
                user.skips += outcome == "skip"

    ts = np.array([imp.ts for imp in joined.impressions], dtype=np.float64)
    positions = np.array([imp.position for imp in joined.impressions], dtype=np.int64)
    labels = joined.labels
    viewed = joined.viewed
    return_known = joined.return_known
    negative = None
    if sampler.k:
        # Each negative right after its impression: rows stay in time order.
        source = np.concatenate([np.arange(n), np.asarray(negative_of, dtype=np.int64)])
        order = np.argsort(source, kind="stable")
        source = source[order]
        negative = order >= n
        item_rows = np.concatenate([item_rows, np.asarray(negative_rows, dtype=np.int64)])[order]
        item_at = np.concatenate(
            [item_at, *negative_stats, np.zeros((0, item_at.shape[1]), np.int64)]
        )[order]
        long_at, session_at, user_at = long_at[source], session_at[source], user_at[source]
        ts, positions = ts[source], positions[source]
        no_event = np.zeros(len(HEADS), dtype=np.float32)
        no_event[HEADS.index("skip")] = 1.0  # watched 0 ms: a fast skip (labels.join)
        labels = np.where(negative[:, None], no_event, labels[source]).astype(np.float32)
        viewed = negative | viewed[source]
        return_known = ~negative & return_known[source]
    else:
        source = np.arange(n)
        order = np.arange(n)
    found = None
    if with_affinity and affinity_at:
        # affinity_at is impression by impression, each followed by its negatives; rows are
        # impressions first, then negatives: put both in the rows' time order.
        flat = np.concatenate(affinity_at)
        firsts = np.cumsum([0] + [len(a) for a in affinity_at[:-1]]).astype(np.int64)
        by_row = np.concatenate([flat[firsts], np.delete(flat, firsts, axis=0)])
        found = Affinity(*by_row[order].T)
    impressions = joined.impressions
    label_mask = np.ones((len(labels), len(HEADS)), dtype=bool)
    label_mask[:, HEADS.index("return")] = return_known
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
        affinity=found,
        normalize=False,
    )
    return Dataset(
        rows=rows,
        labels=labels,
        ts=ts,
        item=catalog.item[item_rows],
        user=[impressions[i].user for i in source.tolist()],
        request_id=[impressions[i].request_id for i in source.tolist()],
        spec=spec,
        events=events,
        duplicates=joined.duplicates,
        unattributed=joined.unattributed,
        negative=negative,
        viewed=None if viewed.all() else viewed,
        label_mask=None if label_mask.all() else label_mask,
    )
