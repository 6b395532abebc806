"""How much better (or worse) a tested item did than its audience's match to it predicted: the
evidence amplification judges a tier on (``recserve.amplify``).

An item shown to well-matched users completes more often for the match alone; crediting it
for that would promote whatever the relevance gate sent to the right people. So an
impression's outcome is compared with what an impression of that match does on average in the
catalogue, a line fitted now and then on a sample of items' counters (impressions-weighted
least squares on each item's mean impression match)::

    p_complete(m) = a_c + b_c m          p_skip(m) = a_s + b_s m

Over the n impressions of a tier, with M the sum of their matches, c completions and s fast
skips, the excess is

    Y = (c - (a_c n + b_c M)) - (s - (a_s n + b_s M))

per impression a number in about [-1, 1] (0: as the match predicted). Its posterior is normal,
with a prior of ``prior_strength`` impressions at 0: mean ``Y / (n + prior)`` and standard
deviation ``sqrt(v / (n + prior))``, v the variance of one impression's completion minus skip
at the expected rates. A tier promotes once the mean's lower bound at the configured confidence
clears its bar, and stops once the upper bound falls below it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve.profiles import MATCH_SUM_SCALE

__all__ = ["Excess", "OutcomeCurve", "excess"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class OutcomeCurve:
    """What an impression of match m completes and fast-skips on average: two lines."""

    complete: tuple[float, float] = (0.3, 0.0)
    skip: tuple[float, float] = (0.5, 0.0)

    @classmethod
    def fit(cls, stats: Mapping[str, Any], min_impressions: int = 1) -> OutcomeCurve | None:
        """The lines through these items' counters (``Profiles.items(keys).stats``); None
        while they hold fewer than ``min_impressions`` impressions in all."""
        n = np.asarray(stats["impressions"], dtype=np.float64)
        met = n > 0
        if n.sum() < max(min_impressions, 1):
            return None
        n = n[met]
        match = np.asarray(stats["impression_match_sum"], dtype=np.float64)[met] / n
        completions = np.asarray(stats["completions"], dtype=np.float64)[met]
        skips = np.minimum(np.asarray(stats["fast_skips"], dtype=np.float64)[met], n)
        return cls(_line(completions / n, match, n), _line(skips / n, match, n))

    def as_list(self) -> list[float]:
        return [*self.complete, *self.skip]

    @classmethod
    def from_list(cls, values: Any) -> OutcomeCurve:
        ac, bc, as_, bs = (float(v) for v in values)
        if not all(math.isfinite(v) for v in (ac, bc, as_, bs)):
            raise ValueError(f"an outcome curve must be finite, got {[ac, bc, as_, bs]}")
        return cls((ac, bc), (as_, bs))


@dataclass(frozen=True)
class Excess:
    """The posterior of a tier's excess per impression."""

    mean: float
    sd: float
    impressions: int

    def lower(self, z: float) -> float:
        return self.mean - z * self.sd

    def upper(self, z: float) -> float:
        return self.mean + z * self.sd


def excess(
    curve: OutcomeCurve,
    impressions: int,
    match_fixed: int,
    completions: int,
    fast_skips: int,
    prior_strength: float,
) -> Excess:
    """The posterior over ``impressions`` impressions whose matches sum to ``match_fixed`` (the
    profiles' fixed point), with these completions and fast skips."""
    n = max(int(impressions), 0)
    match = match_fixed / MATCH_SUM_SCALE
    (ac, bc), (as_, bs) = curve.complete, curve.skip
    expected_c = min(max(ac * n + bc * match, 0.0), float(n))
    expected_s = min(max(as_ * n + bs * match, 0.0), float(n))
    y = (completions - expected_c) - (min(fast_skips, n) - expected_s)
    pc = min(max(expected_c / n, 0.01), 0.99) if n else curve.complete[0]
    ps = min(max(expected_s / n, 0.01), 0.99) if n else curve.skip[0]
    variance = max(pc + ps - (pc - ps) ** 2, 0.05)  # completion and skip exclude each other
    weight = n + prior_strength
    return Excess(y / weight, math.sqrt(variance / weight), n)


def _line(rate: F64, x: F64, weight: F64) -> tuple[float, float]:
    """Weighted least squares of rate on x: (intercept, slope); flat if x does not vary."""
    total = float(weight.sum())
    mx = float((weight * x).sum()) / total
    my = float((weight * rate).sum()) / total
    var = float((weight * (x - mx) ** 2).sum()) / total
    slope = float((weight * (x - mx) * (rate - my)).sum()) / total / var if var > 1e-9 else 0.0
    return my - slope * mx, slope
