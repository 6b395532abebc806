"""A seeded synthetic impression log whose every outcome follows a known logistic model.

Items are unit vectors around ``clusters`` centres, each with a hidden quality ``q`` ~ N(0, 1);
each user has a hidden taste ``u`` (unit vector between two centres). A feed request serves
``per_request`` candidates (a third from the user's favourite clusters, the rest uniform).
For a candidate at position ``p`` with affinity ``s = scale * <u, item>``, each outcome has

    P(outcome) = sigmoid(a + b * s + c * q + e * p)        (``OUTCOME_MODEL[outcome]``)

drawn in this order: fast skip (a skip event, or a watch under 3 s; nothing else follows);
otherwise complete (a full watch, then replay with its own probability), or a partial watch
of fraction sigmoid(a + b*s + c*q + N(0, 0.5)) in [0.3, 0.85]; and like, share, comment,
follow independently. The replay reconstructs the user's taste from their engagement (the
user vectors) and the item quality from its counters, so every head is learnable.
A tenth of events carry no ``request_id`` (they join by user, item and time window).

Sessions and returns: a user's next request comes 150-600 s after the last one (the same
session), or, one time in seven, after a long gap that starts a new session. How long depends
on how the session that ends went: with its satisfaction ``m`` (the mean over its viewed
impressions of completed minus fast-skipped, in [-1, 1]), the user comes back within the day
(2-24 h later) with probability ``sigmoid(RETURN_MODEL[0] + RETURN_MODEL[1] * m)``, otherwise
only after 26-72 h. These draws use their own seeded stream, so every outcome is the one the
same seed drew before returns depended on satisfaction; only the times move.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recserve.train.log import Event, Impression, LogWriter, Record, write_catalog

__all__ = ["OUTCOME_MODEL", "RETURN_MODEL", "SyntheticSummary", "write_synthetic_log"]

#: (a, b, c, e): intercept, affinity, item quality and position coefficients per outcome.
OUTCOME_MODEL: dict[str, tuple[float, float, float, float]] = {
    "skip": (-0.8, -1.6, -0.8, 0.05),
    "complete": (-0.6, 1.8, 0.8, 0.0),
    "replay": (-1.5, 1.2, 0.6, 0.0),
    "like": (-2.2, 1.8, 0.6, 0.0),
    "share": (-2.8, 1.4, 1.0, 0.0),
    "comment": (-2.8, 1.0, 0.6, 0.0),
    "follow": (-3.0, 1.4, 0.4, 0.0),
    "watch_frac": (0.0, 1.2, 0.5, 0.0),
}

#: (intercept, slope) of P(back within a day | the ending session's satisfaction).
RETURN_MODEL: tuple[float, float] = (0.4, 3.0)

START_TS = 1_700_000_000.0


@dataclass(frozen=True)
class SyntheticSummary:
    path: Path
    users: int
    items: int
    impressions: int
    events: int


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def write_synthetic_log(
    directory: str | os.PathLike[str],
    *,
    users: int = 300,
    items: int = 1000,
    requests: int = 3000,
    per_request: int = 10,
    dims: int = 64,
    clusters: int = 16,
    affinity_scale: float = 2.5,
    seed: int = 0,
    segment_records: int = 1_000_000,
) -> SyntheticSummary:
    """Write a synthetic log (catalogue and segments) into ``directory``."""
    for name, value in (
        ("users", users),
        ("items", items),
        ("requests", requests),
        ("per_request", per_request),
        ("dims", dims),
        ("clusters", clusters),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if per_request > items:
        raise ValueError(f"per_request ({per_request}) cannot exceed items ({items})")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dims))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    item_cluster = rng.integers(0, clusters, items)
    vectors = centres[item_cluster] + 0.6 * rng.standard_normal((items, dims)) / np.sqrt(dims)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    quality = rng.standard_normal(items)
    duration_ms = rng.integers(10_000, 60_000, items)
    created_at = START_TS - rng.uniform(0, 30 * 86400.0, items)
    item_ids = np.arange(1, items + 1, dtype=np.int64)

    favourites = rng.integers(0, clusters, (users, 2))
    taste = centres[favourites[:, 0]] + 0.5 * centres[favourites[:, 1]]
    taste /= np.linalg.norm(taste, axis=1, keepdims=True)
    by_cluster = [np.flatnonzero(item_cluster == c) for c in range(clusters)]

    request_user = rng.integers(0, users, requests)
    clock = START_TS + rng.uniform(0, 3600.0, users)
    returns = np.random.default_rng([seed, 1])  # the return gaps' own stream (module doc)
    satisfied = np.zeros(users)  # per user, this session: completed minus fast-skipped
    viewed = np.zeros(users)  # ... and impressions
    records: list[Record] = []
    event_count = 0
    for number, user in enumerate(request_user.tolist()):
        long_gap = rng.random() < 0.15
        gap = rng.uniform(2 * 3600.0, 24 * 3600.0) if long_gap else rng.uniform(150, 600)
        if long_gap:
            m = satisfied[user] / max(viewed[user], 1.0)
            if returns.random() >= _sigmoid(RETURN_MODEL[0] + RETURN_MODEL[1] * m):
                gap = returns.uniform(26 * 3600.0, 72 * 3600.0)  # not back within the day
            satisfied[user] = viewed[user] = 0.0
        clock[user] += gap
        t0 = float(clock[user])
        pool = np.concatenate([by_cluster[c] for c in favourites[user]])
        n_fav = min(per_request // 3, len(pool))
        picks = list(rng.choice(pool, n_fav, replace=False)) if n_fav else []
        while len(picks) < per_request:
            extra = int(rng.integers(0, items))
            if extra not in picks:
                picks.append(extra)
        order = rng.permutation(per_request)
        request_id = f"r{number}"
        uid = f"u{user}"
        for position, k in enumerate(order.tolist()):
            item = int(picks[k])
            records.append(
                Impression(
                    t0, request_id, uid, int(item_ids[item]), position, "synthetic", "control"
                )
            )
            s = affinity_scale * float(taste[user] @ vectors[item])
            q = float(quality[item])

            def draw(
                outcome: str,
                noise: float = 0.0,
                *,
                s: float = s,
                q: float = q,
                position: int = position,
            ) -> float:
                a, b, c, e = OUTCOME_MODEL[outcome]
                return _sigmoid(a + b * s + c * q + e * position + noise)

            ts = t0 + 1.0 + 8.0 * position
            outcomes: list[tuple[str, int]] = []
            dur = int(duration_ms[item])
            viewed[user] += 1
            if rng.random() < draw("skip"):
                satisfied[user] -= 1
                if rng.random() < 0.5:
                    outcomes.append(("skip", 0))
                else:
                    outcomes.append(("watch", int(rng.integers(200, 2900))))
            else:
                if rng.random() < draw("complete"):
                    outcomes.append(("watch", dur))
                    satisfied[user] += 1
                    if rng.random() < draw("replay"):
                        outcomes.append(("replay", 0))
                else:
                    frac = draw("watch_frac", float(rng.normal(0.0, 0.5)))
                    watch = int(np.clip(frac, 0.3, 0.85) * dur)
                    outcomes.append(("watch", max(watch, 3000)))
                for outcome in ("like", "share", "comment", "follow"):
                    if rng.random() < draw(outcome):
                        outcomes.append((outcome, 0))
            for step, (kind, watch_ms) in enumerate(outcomes):
                attributed = rng.random() >= 0.1
                records.append(
                    Event(
                        ts=ts + 0.01 * step,
                        event_id=f"e{event_count}",
                        user=uid,
                        item=int(item_ids[item]),
                        type=kind,
                        request_id=request_id if attributed else None,
                        watch_ms=watch_ms if kind == "watch" else 0,
                        duration_ms=dur if kind == "watch" else 0,
                    )
                )
                event_count += 1

    records.sort(key=lambda r: r.ts)
    root = Path(directory)
    write_catalog(root, item_ids, vectors.astype(np.float32), created_at)
    with LogWriter(root, segment_records=segment_records) as writer:
        writer.extend(records)
    return SyntheticSummary(root, users, items, requests * per_request, event_count)
