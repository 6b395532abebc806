"""Item quality learned from every viewer at once: how much better (or worse) an item does than
its viewers' match to it predicted.

    quality = ItemQuality(prior_views=10, optimism=0.5)
    quality.refit(stats)                 # any sample of items' counters: the catalogue's curve
    lift, bonus = quality.posterior(stats)   # per candidate

Two items equally close to a user's taste differ in how well they are made, and that shows only
in outcomes. Per item the profiles count impressions (users who met it: each user's first event
on it, whatever its type), completions, fast skips and the sum of each viewer's match to the item
when they met it (``impression_match_sum``: the cosine of the user's vectors and the item's). The
catalogue's curve, refitted now and then on a sample of items by impression-weighted least
squares, says what an impression of match m completes and fast-skips on average:
``p_complete(m) = a_c + b_c m``, ``p_skip(m) = a_s + b_s m``. An item's evidence is what it got
beyond that::

    excess = (completions - sum p_complete(m)) - (fast_skips - sum p_skip(m))
    lift   = excess / (impressions + prior_views)    # shrunk to 0 while impressions are few
    bonus  = optimism / sqrt(1 + impressions)        # UCB-style: few, more benefit of doubt

so an item that completes more often than its audience's taste explains rises for everyone after a
handful of impressions, not only for the users who first met it, and a new item gets a bounded
chance. Impressions, not watches, are the unit: a client that reports a fast skip as a ``skip``
event (no watch) still counts against the item.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ItemQuality"]

F64 = npt.NDArray[np.float64]


def _counters(stats: dict[str, npt.NDArray[Any]]) -> tuple[F64, F64, F64, F64]:
    shown = stats["impressions"].astype(np.float64)
    completions = stats["completions"].astype(np.float64)
    skips = stats["fast_skips"].astype(np.float64)
    match = stats["impression_match_sum"].astype(np.float64)  # Profiles.items: a float sum
    return shown, completions, np.minimum(skips, shown), match


def _line(rate: F64, mean_match: F64, weight: F64) -> tuple[float, float]:
    """Weighted least squares of rate on mean_match: (intercept, slope)."""
    total = float(weight.sum())
    if total <= 0:
        return 0.0, 0.0
    mx = float((weight * mean_match).sum()) / total
    my = float((weight * rate).sum()) / total
    var = float((weight * (mean_match - mx) ** 2).sum()) / total
    covariance = float((weight * (mean_match - mx) * (rate - my)).sum()) / total
    slope = covariance / var if var > 1e-9 else 0.0
    return my - slope * mx, slope


class ItemQuality:
    def __init__(self, prior_views: float = 10.0, optimism: float = 0.0) -> None:
        self.prior_views = prior_views
        self.optimism = optimism
        self.complete_line = (0.0, 0.0)
        self.skip_line = (0.0, 0.0)

    def refit(self, stats: dict[str, npt.NDArray[Any]]) -> None:
        """The catalogue's curve from these items' counters (those met at least once)."""
        shown, completions, skips, match = _counters(stats)
        seen = shown > 0
        if not seen.any():
            return
        v, m = shown[seen], match[seen] / shown[seen]
        self.complete_line = _line(completions[seen] / v, m, v)
        self.skip_line = _line(skips[seen] / v, m, v)

    def posterior(self, stats: dict[str, npt.NDArray[Any]]) -> tuple[F64, F64]:
        """(lift, bonus) per item, as the module doc defines them."""
        shown, completions, skips, match = _counters(stats)
        (ac, bc), (as_, bs) = self.complete_line, self.skip_line
        excess = (completions - (ac * shown + bc * match)) - (skips - (as_ * shown + bs * match))
        lift = excess / (shown + self.prior_views)
        bonus = self.optimism / np.sqrt(1.0 + shown)
        return lift, bonus
