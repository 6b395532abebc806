"""Runs simulated users through several policies on the same catalogue and scores them.

Each user has a history before the session (``history`` swipes on items near their long-term
taste, a day earlier), which every policy hears; the ``cold`` users (by index) have none. Then,
per policy, a copy of the user (same taste, mood and random stream) swipes ``swipes`` times:
the policy serves a page of ``page_size`` items, the user swipes through it in order, and the
policy observes each swipe as it happens; the next page is asked for once the page is used up.
Users take turns swipe by swipe, so popularity and amplification see the whole population as it
goes, and from the first swipe on, every ``new_every`` swipes of the population, ``new_items``
new items with hidden quality arrive.

Time is simulated: the session starts at ``START_MS``, a user swipes every ``SWIPE_MS``, and
every timestamp sent says so. An engine on the events' clock (``clock = "events"``) therefore
gives the same feeds whether it runs in process or over HTTP, however fast the machine is.
The frozen engine hears no events in the session, so its clock moves with the items posted to
it: it lags the session by at most ``new_every`` swipes of the population.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from recserve.sim.catalog import SimCatalog
from recserve.sim.policies import Policy
from recserve.sim.users import SimUser

__all__ = ["SessionResult", "run_sessions"]

START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z: a fixed start, so runs repeat exactly
SWIPE_MS = 12_000  # between two swipes of one user
DAY_MS = 86_400_000


@dataclass
class SessionResult:
    swipes: int
    completion: dict[str, npt.NDArray[np.float64]]  # policy -> users x swipes
    new_items: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    impressions: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)  # of new items
    served_total: dict[str, int] = field(default_factory=dict)  # impressions of all items

    def new_item_share(self, policy: str) -> float | None:
        """The share of the policy's impressions during the run that went to the new items
        (by new creators); None where it counted none."""
        total = self.served_total.get(policy, 0)
        if policy not in self.impressions or not total:
            return None
        return float(self.impressions[policy].sum() / total)

    def mean_curve(self, policy: str) -> npt.NDArray[np.float64]:
        return np.asarray(self.completion[policy].mean(axis=0))

    def window(self, policy: str, first: int, last: int) -> float:
        """Mean completion over swipes first..last (1-based, inclusive)."""
        return float(self.completion[policy][:, first - 1 : last].mean())

    def calibration(
        self, policy: str, oracle: str = "oracle", share: float = 0.8
    ) -> npt.NDArray[np.float64]:
        """Per user, the swipe by which the feed has calibrated: the first at which the user's
        completion over the last 3 swipes reaches ``share`` of what the oracle got them over
        the same 3 swipes (NaN: not within the session)."""
        kernel = np.ones(3) / 3
        out = np.full(len(self.completion[policy]), np.nan)
        for u, (mine, best) in enumerate(
            zip(self.completion[policy], self.completion[oracle], strict=True)
        ):
            hits = np.flatnonzero(
                np.convolve(mine, kernel, mode="valid")
                >= share * np.convolve(best, kernel, mode="valid")
            )
            if len(hits):
                out[u] = hits[0] + 3
        return out


def _history_items(
    user: SimUser, catalog: SimCatalog, k: int, rng: np.random.Generator
) -> list[int]:
    """Items the user met before: drawn among a sample, weighted to their long-term taste."""
    sample = rng.choice(len(catalog), size=min(len(catalog), 400), replace=False)
    affinity = catalog.latent[sample] @ user.taste
    weights = np.exp(4 * affinity)
    chosen = rng.choice(sample, size=k, replace=False, p=weights / weights.sum())
    return [int(i) for i in chosen]


def run_sessions(
    catalog: SimCatalog,
    users: Sequence[SimUser],
    policies: Sequence[Policy],
    *,
    swipes: int = 20,
    history: int = 10,
    new_every: int = 200,
    new_items: int = 20,
    seed: int = 0,
    page_size: int = 1,
    cold: Collection[int] = (),
    progress: Callable[[int, int], None] | None = None,
    after_round: Callable[[int], None] | None = None,
) -> SessionResult:
    """``progress(done, total)`` after each swipe of the population; ``after_round(s)`` once
    every user has made swipe s (0-based)."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    rng = np.random.default_rng(seed)
    for policy in policies:
        policy.add_items(np.arange(len(catalog)), START_MS - 2 * DAY_MS, new=False)
    for u, user in enumerate(users):
        if u in cold:
            continue
        ts = START_MS - DAY_MS + u * 1000
        probe = copy.deepcopy(user)  # the history must not move the session's random stream
        for item in _history_items(user, catalog, history, rng):
            reaction = probe.react(catalog, item)
            for policy in policies:
                policy.history(user, item, reaction, ts)
            ts += SWIPE_MS
    copies = {p.name: [copy.deepcopy(user) for user in users] for p in policies}
    completion = {p.name: np.zeros((len(users), swipes)) for p in policies}
    pages: dict[str, list[list[int]]] = {p.name: [[] for _ in users] for p in policies}
    first_new = len(catalog)
    done, total = 0, swipes * len(users)
    for s in range(swipes):
        for u in range(len(users)):
            now = START_MS + s * SWIPE_MS + u * SWIPE_MS // len(users)
            if new_items and done % new_every == 0:
                arrived = catalog.add_new(new_items, step=done)
                for policy in policies:
                    policy.add_items(arrived, now, new=True)
            for policy in policies:
                user = copies[policy.name][u]
                queue = pages[policy.name][u]
                if not queue:
                    queue.extend(policy.page(user, now, page_size))
                    if not queue:
                        raise RuntimeError(f"{policy.name} served an empty page to {user.user_id}")
                item = queue.pop(0)
                reaction = user.react(catalog, item)
                policy.observe(user, item, reaction, now)
                completion[policy.name][u, s] = reaction.completion
            done += 1
            if progress is not None:
                progress(done, total)
        if after_round is not None:
            after_round(s)
    result = SessionResult(swipes, completion, np.arange(first_new, len(catalog)))
    for policy in policies:
        served = getattr(policy, "served_new", None)
        if served is not None:
            result.impressions[policy.name] = np.array(
                [served.get(int(i), 0) for i in result.new_items], dtype=np.int64
            )
            result.served_total[policy.name] = int(getattr(policy, "served_total", 0))
    return result
