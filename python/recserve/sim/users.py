"""Simulated users: a long-term taste, a session mood that drifts, and watch behaviour driven
by their true affinity for an item and its hidden quality.

A user's interest is ``unit(taste_weight * taste + (1 - taste_weight) * mood)``; the mood
takes a small random step after every swipe. For an item at latent position ``z`` with
quality ``q``, the affinity is ``s = sharpness * (<interest, z> - centre)`` and

    P(fast skip)     = sigmoid(-0.6 - 2.4 s - 1.2 q)       watched 0.5-2.5 s, a skip
    watched fraction = sigmoid(-0.4 + 2.2 s + 1.0 q + N(0, 0.35))   a completion above 0.9
    P(replay | completed) = sigmoid(-1.8 + 1.2 s + 0.5 q)
    P(like)   = sigmoid(-2.6 + 2.0 s + 0.7 q)   P(share) = sigmoid(-3.6 + 1.6 s + 1.0 q)
    P(follow) = sigmoid(-3.8 + 1.6 s + 0.3 q)                (not after a fast skip)

``expected_completion`` is the same model's mean watched fraction (no noise, a fast skip as
~0.05): the oracle's measure of how good an item is for the user right now. Quality weighs
about half as much as a unit of affinity: a great video keeps some viewers outside its topic
(a random audience completes the best third of items about twice as often as the worst).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from recserve.sim.catalog import SimCatalog

__all__ = ["Reaction", "SimUser", "make_users"]


def _sigmoid(x: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64))))


def _unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return x / max(float(np.linalg.norm(x)), 1e-12)


@dataclass(frozen=True)
class Reaction:
    """What a user did with one served item: events as (type, watch_ms) and the completion
    (watched fraction, capped at 1) the demo scores."""

    events: list[tuple[str, int | None]]
    completion: float


@dataclass
class SimUser:
    user_id: str
    taste: npt.NDArray[np.float64]
    mood: npt.NDArray[np.float64]
    rng: np.random.Generator = field(repr=False)
    taste_weight: float = 0.2
    sharpness: float = 4.0
    centre: float = 0.4  # the cosine at which a user is indifferent
    drift: float = 0.08

    def interest(self) -> npt.NDArray[np.float64]:
        return _unit(self.taste_weight * self.taste + (1 - self.taste_weight) * self.mood)

    def affinity(
        self, catalog: SimCatalog, items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        return np.asarray(self.sharpness * (catalog.latent[items] @ self.interest() - self.centre))

    def expected_completion(
        self, catalog: SimCatalog, items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        s, q = self.affinity(catalog, items), catalog.quality[items]
        skip = _sigmoid(-0.6 - 2.4 * s - 1.2 * q)
        return np.asarray(skip * 0.05 + (1 - skip) * _sigmoid(-0.4 + 2.2 * s + 1.0 * q))

    def react(self, catalog: SimCatalog, item: int) -> Reaction:
        """The user's swipe on one item; the mood drifts afterwards."""
        rng = self.rng
        s = float(self.affinity(catalog, np.array([item]))[0])
        q = float(catalog.quality[item])
        duration = int(catalog.durations_ms[item])
        events: list[tuple[str, int | None]] = [("impression", None)]
        if rng.random() < _sigmoid(-0.6 - 2.4 * s - 1.2 * q):
            watched = int(rng.uniform(500, 2_500))
            events.append(("skip", min(watched, duration)))
            completion = min(watched / duration, 1.0)
        else:
            fraction = float(_sigmoid(-0.4 + 2.2 * s + 1.0 * q + rng.normal(0, 0.35)))
            if fraction > 0.9:
                fraction = 1.0
            events.append(("watch", int(fraction * duration)))
            completion = fraction
            if fraction == 1.0 and rng.random() < _sigmoid(-1.8 + 1.2 * s + 0.5 * q):
                events.append(("replay", None))
            for kind, a, b, c in (
                ("like", -2.6, 2.0, 0.7),
                ("share", -3.6, 1.6, 1.0),
                ("follow", -3.8, 1.6, 0.3),
            ):
                if rng.random() < _sigmoid(a + b * s + c * q):
                    events.append((kind, None))
        step = self.drift / np.sqrt(len(self.mood))  # a step of norm ~drift
        self.mood = _unit(self.mood + step * rng.standard_normal(self.mood.shape))
        return Reaction(events, completion)


def make_users(
    n: int, catalog: SimCatalog, seed: int, *, drift: float = 0.08
) -> list[SimUser]:
    """n users, each with a long-term taste spread over three of the catalogue's topics and a
    mood for today near one of them (a session narrows to a part of what a user likes), whose
    mood moves by a step of norm ~``drift`` after every swipe. Seeded: the same n and seed give
    the same users."""
    rng = np.random.default_rng(seed)
    topics = np.array(list(catalog._topic_centres.values()))
    users = []
    spread = 1.0 / np.sqrt(catalog.latent_dims)  # noise vectors of norm ~1 before scaling
    for u in range(n):
        picks = topics[rng.choice(len(topics), size=3, replace=False)]
        taste = _unit(picks.sum(axis=0) + 0.3 * spread * rng.standard_normal(catalog.latent_dims))
        mood = _unit(
            picks[rng.integers(0, 3)] + 0.3 * spread * rng.standard_normal(catalog.latent_dims)
        )
        users.append(
            SimUser(f"sim{u}", taste, mood, np.random.default_rng([seed, u]), drift=drift)
        )
    return users
