"""The peers' side of a replay: their pages (``PeerPolicies``) beside live popularity
(``Popularity``), and the replay of the peers alone (``replay_peers``), which is how
``recserve.evaluate.tuning`` chooses their settings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

from recserve.evaluate.inputs import Catalogue
from recserve.evaluate.peers import ALSFoldIn, CoOccurrence, top_unseen
from recserve.evaluate.scoring import Plan, Score, engaged, plan_of
from recserve.ingest.event_row import EventRow
from recserve.profiles import UpdateRule

__all__ = ["PeerPolicies", "Popularity", "replay_peers"]


class Popularity:
    """Engaged users per item so far; the top unseen ones, ties in catalogue order."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.ids = [item.id for item in catalogue.items]
        self.row = {item_id: i for i, item_id in enumerate(self.ids)}
        n = len(self.ids)
        # count + a tie-break below 1 that favours earlier items: every key distinct
        self.keys = (n - np.arange(n, dtype=np.float64)) / (n + 1)

    def engaged(self, item_id: str) -> None:
        self.keys[self.row[item_id]] += 1.0

    def page(self, seen: Collection[str], k: int) -> list[str]:
        keys = self.keys.copy()
        if seen:
            keys[[self.row[item_id] for item_id in seen]] = -np.inf
        m = min(k, len(keys))
        top = np.argpartition(-keys, m - 1)[:m]
        top = top[np.argsort(-keys[top])]
        return [self.ids[i] for i in top.tolist() if keys[i] > -np.inf]


class PeerPolicies:
    """The peers' pages in a replay: item-to-item co-occurrence (``itemcf``) and ALS with
    fold-in (``als``) of ``recserve.evaluate.peers``, any number of each (named), sharing the
    live popularity ``popularity`` for users they know nothing of and for ties.

    The replay calls, in time order: ``pages`` before a scored event, ``met`` at each user's
    first event on an item (seen from then on), ``engaged`` at the event that makes a pair
    engaged, and ``at_split`` once, at the first event at or after the split: the ALS models
    are fitted there, on the engagements before it (so before the split their pages are
    popularity's)."""

    def __init__(
        self,
        catalogue: Catalogue,
        popularity: Popularity,
        itemcf: dict[str, CoOccurrence],
        als: dict[str, ALSFoldIn],
    ) -> None:
        self.ids = [item.id for item in catalogue.items]
        self.row = popularity.row
        self.popularity = popularity
        if len({id(cf._c) for cf in itemcf.values()}) > 1:
            raise ValueError("the itemcf peers must share their counts (with_settings)")
        self.itemcf = itemcf
        self.als = als
        self.seen: dict[str, list[int]] = defaultdict(list)
        self.before: list[tuple[str, int]] = []  # engagements before the split, for ALS
        self.split_reached = False

    @property
    def names(self) -> list[str]:
        return [*self.itemcf, *self.als]

    def pages(self, user: str, k: int) -> dict[str, list[str]]:
        seen = np.array(self.seen.get(user, []), dtype=np.int64)
        scores: dict[str, npt.NDArray[np.float32]] = {}
        views = list(self.itemcf.values())
        if views and views[0].has_history(user):  # the views share their counts: one read
            scores.update(zip(self.itemcf, views[0].scores_of_views(user, views), strict=True))
        for name, model in self.als.items():
            if model.has_history(user):
                scores[name] = model.scores(user)
        out: dict[str, list[str]] = {}
        fallback: list[str] | None = None
        for name in self.names:
            if name in scores:
                top = top_unseen(scores[name], seen, k, self.popularity.keys)
                out[name] = [self.ids[i] for i in top]
            else:  # nothing known of the user yet: what a deployment serves, popularity
                if fallback is None:
                    fallback = self.popularity.page({self.ids[i] for i in seen.tolist()}, k)
                out[name] = fallback
        return out

    def met(self, user: str, item_id: str) -> None:
        self.seen[user].append(self.row[item_id])

    def engaged(self, user: str, item_id: str) -> None:
        row = self.row[item_id]
        for cf in self.itemcf.values():
            cf.engaged(user, row)
        if not self.split_reached:
            self.before.append((user, row))
        else:
            for model in self.als.values():
                model.engaged(user, row)

    def at_split(self) -> None:
        if self.split_reached:
            return
        self.split_reached = True
        users = [user for user, _ in self.before]
        rows = [row for _, row in self.before]
        for model in self.als.values():
            model.fit(users, rows, [1.0] * len(rows))
        self.before = []


def replay_peers(
    rows: Sequence[EventRow],
    catalogue: Catalogue,
    *,
    itemcf: dict[str, CoOccurrence],
    als: dict[str, ALSFoldIn],
    split: float = 0.8,
    k: int = 10,
    rule: UpdateRule | None = None,
) -> tuple[Plan, dict[str, Score]]:
    """The replay of the peers alone, without the engines (how their settings are tuned):
    the same pairs scored, the same seen items excluded, popularity for unknown users, as in
    ``replay``. ``rows`` in time order; returns the plan and each named peer's score."""
    rule = rule if rule is not None else UpdateRule()
    known = {item.id: item for item in catalogue.items}
    plan = plan_of(rows, known, rule, split)
    popularity = Popularity(catalogue)
    peers = PeerPolicies(catalogue, popularity, itemcf, als)
    scores = {name: Score(k) for name in peers.names}
    targets = set(plan.after_split)
    seen: set[tuple[str, str]] = set()
    counted: set[tuple[str, str]] = set()
    for i, row in enumerate(plan.rows):
        if plan.ts[i] >= plan.split_ms:
            peers.at_split()
        if i in targets:
            for name, page in peers.pages(row.user_id, k).items():
                scores[name].add(page, row.item_id)
        pair = (row.user_id, row.item_id)
        if pair not in seen:
            seen.add(pair)
            peers.met(*pair)
        if (
            pair not in counted
            and pair in plan.engaged_pairs
            and engaged(row, known[row.item_id].duration_ms, rule)
        ):
            counted.add(pair)
            popularity.engaged(row.item_id)
            peers.engaged(*pair)
    peers.at_split()
    return plan, scores
