"""Progressive amplification: each new item is shown to a small test audience first, then to
larger ones for as long as it keeps engaging (DESIGN.md, "Progressive amplification").

    enter ──▶ tier 0 "testing" ──passes──▶ tier 1 "promoted" ──▶ … ──▶ "graduated"
                                └─fails──▶ "stopped" (reason recorded)
    with review_before_tier = k: passing tier k-1 ──▶ "pending_review" ──approve──▶ tier k
                                                                      └─reject──▶ "rejected"

An open item is judged after every batch of events, not only when its tier's budget is spent
(``recserve.judge``): its completions and fast skips beyond what its viewers' match to it
predicted, over every impression since it entered testing, have a posterior; once the tier has
shown ``min_judged`` impressions of its own audience, it promotes as soon as that excess clears
the tier's bar with the configured confidence, stops as soon as it clearly cannot, and decides on
the posterior mean when the budget (the most impressions a tier shows) is spent. Smoothed
rates (completions, likes, shares and fast skips per impression of the tier's audience, each
with a Beta prior as in ``recserve.features``) must also meet the tier's thresholds to pass;
they are recorded with the excess in each transition. Passing the last
tier graduates the item: it competes in the regular feed and no longer takes reserved
exploration slots. Items in "testing" or "promoted" state are the open pool those slots draw
from; an item pending review keeps the reach it has earned but leaves the pool until an admin
approves it (the next tier) or rejects it (a takedown).

The amplifier holds only bookkeeping; the counters come from ``recserve.profiles`` item stats
(``observe`` takes them), and ``to_dict``/``from_dict`` and ``image``/``from_columns`` make it
durable alongside a snapshot.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import heapq
import operator
import statistics
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from recserve import _core
from recserve._columns import read_columns, string_columns, strings, write_columns
from recserve._core import CorruptFileError
from recserve.features import DEFAULT_PRIORS
from recserve.judge import Excess, OutcomeCurve, excess
from recserve.profiles import MATCH_SUM_SCALE

__all__ = ["AmplifierImage", "AmplifyConfig", "Amplifier", "Tier", "Transition", "core_seed"]

V = TypeVar("V", bound=Hashable)
FILE_MAGIC = b"RSAMPLF1"  # the snapshot file of AmplifierImage.write
FILE_VERSION = 1

STATES = ("testing", "promoted", "stopped", "graduated", "pending_review", "rejected")
OPEN_STATES = ("testing", "promoted")
DECISIONS = ("approve", "reject")
#: The item counters a judgement reads (names as in recserve.profiles.ITEM_STATS); the match
#: sum is kept in the profiles' fixed point, so every counter is an exact integer.
COUNTERS = (
    "impressions", "watches", "completions", "likes", "shares", "fast_skips",
    "impression_match_sum",
)  # fmt: skip
_FIXED_POINT = frozenset({"impression_match_sum"})
_CURVE_SAMPLE = 4096  # the latest tested items the outcome curve is fitted on
_CURVE_MIN_IMPRESSIONS = 100  # fewer in the sample: the priors' flat curve


@dataclass(frozen=True)
class Tier:
    """An impression budget and the bounds its audience must meet to pass."""

    budget: int
    min_completion_rate: float = 0.0
    min_like_rate: float = 0.0
    min_share_rate: float = 0.0
    max_skip_rate: float = 1.0
    #: The bar on the excess per impression (``recserve.judge``); None: the tier is judged on
    #: its rates alone, once its budget is spent.
    min_excess: float | None = None

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"a tier's budget must be >= 1 impression, got {self.budget}")
        if self.min_excess is not None and not -1.0 <= self.min_excess <= 1.0:
            raise ValueError(f"min_excess must be in [-1, 1], got {self.min_excess}")
        for name in ("min_completion_rate", "min_like_rate", "min_share_rate", "max_skip_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(budget=200, min_completion_rate=0.25, max_skip_rate=0.6, min_excess=-0.02),
    Tier(
        budget=2_000,
        min_completion_rate=0.30,
        min_like_rate=0.02,
        max_skip_rate=0.5,
        min_excess=0.0,
    ),
    Tier(
        budget=20_000,
        min_completion_rate=0.35,
        min_like_rate=0.03,
        min_share_rate=0.003,
        max_skip_rate=0.45,
        min_excess=0.02,
    ),
)

_RATE_PRIORS = {"completion": "complete", "like": "like", "share": "share", "skip": "skip"}
_SCALARS = {
    "confidence": float,
    "min_judged": int,
    "excess_prior": float,
    "refit_interval_s": float,
    "review_before_tier": int,
}


@dataclass(frozen=True)
class AmplifyConfig:
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    #: Beta priors (mean, strength in pseudo-impressions) of the judged rates.
    priors: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: {rate: DEFAULT_PRIORS[o] for rate, o in _RATE_PRIORS.items()}
    )
    #: The posterior probability an early promotion or stop needs.
    confidence: float = 0.9
    #: Impressions a tier shows before it may decide early.
    min_judged: int = 4
    #: The excess posterior's prior: this many impressions at no excess.
    excess_prior: float = 4.0
    #: Seconds of event time between refits of the outcome curve the excess is measured on.
    refit_interval_s: float = 300.0
    #: An item that passes tier k - 1 waits for an admin's review before tier k (k = the number
    #: of tiers: before it graduates); None: no review.
    review_before_tier: int | None = None

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("amplification needs at least one tier")
        unknown = sorted(set(self.priors) - set(_RATE_PRIORS))
        if unknown:
            raise ValueError(f"unknown rate(s) {unknown} in priors; known: {sorted(_RATE_PRIORS)}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if not 1 <= self.min_judged <= 1_000_000:
            raise ValueError(f"min_judged must be in [1, 1000000], got {self.min_judged}")
        if not 0.0 < self.excess_prior <= 1e6:
            raise ValueError(f"excess_prior must be in (0, 1e6], got {self.excess_prior}")
        if not 1.0 <= self.refit_interval_s <= 86_400.0:
            raise ValueError(f"refit_interval_s must be in [1, 86400], got {self.refit_interval_s}")
        review = self.review_before_tier
        if review is not None and not 1 <= review <= len(self.tiers):
            raise ValueError(
                f"review_before_tier must be in [1, {len(self.tiers)}] (the number of tiers: "
                f"review before graduating), got {review}"
            )

    @property
    def z(self) -> float:
        """The normal quantile of ``confidence``: the posterior bounds are mean ± z sd."""
        return statistics.NormalDist().inv_cdf(self.confidence)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AmplifyConfig:
        """From configuration: ``{"tiers": [{"budget": 200, "min_completion_rate": 0.25}, …],
        "priors": {"like": [0.05, 20]}}``. Unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        if set(data) - known:
            raise ValueError(f"unknown amplification setting(s) {sorted(set(data) - known)}")
        values: dict[str, Any] = {}
        if "tiers" in data:
            tier_keys = {f.name for f in dataclasses.fields(Tier)}
            tiers = []
            for i, tier in enumerate(data["tiers"]):
                if set(tier) - tier_keys:
                    raise ValueError(
                        f"tier {i}: unknown setting(s) {sorted(set(tier) - tier_keys)}"
                    )
                tiers.append(Tier(**tier))
            values["tiers"] = tuple(tiers)
        if "priors" in data:
            defaults = AmplifyConfig().priors
            values["priors"] = {
                **defaults,
                **{k: (float(v[0]), float(v[1])) for k, v in data["priors"].items()},
            }
        for name, kind in _SCALARS.items():
            if name in data:
                value = data[name]
                try:  # from TOML a number; from the environment a string
                    values[name] = None if value is None else kind(value)
                except (TypeError, ValueError):
                    raise ValueError(f"{name} must be a number, got {value!r}") from None
        return cls(**values)


@dataclass(frozen=True)
class Transition:
    """One entry of an item's history: where it went, when, and why."""

    ts_ms: int
    tier: int
    state: str
    reason: str
    rates: Mapping[str, float] = field(default_factory=dict)


_NO_COUNTS: Mapping[str, int] = MappingProxyType(dict.fromkeys(COUNTERS, 0))


class _Item(NamedTuple):
    """An item's bookkeeping: immutable, so a copy of the dict is an image (``image``); a
    transition replaces the entry. ``start`` may be shared between entries: never modified."""

    tier: int
    state: str
    start: Mapping[str, int]  # counters when the current tier began
    history: tuple[Transition, ...]
    entered: Mapping[str, int]  # counters when it entered testing: the excess counts from here


class _OpenPool:
    """The open items (``_core.feed.OpenPool``): O(1) add, remove and a uniform sample drawn
    from a seed, so a feed request's exploration draw does not scan every item the amplifier
    knows, and the native feed draws the same sample without the GIL."""

    def __init__(self) -> None:
        self.core = _core.feed.OpenPool()

    def add(self, key: int, tier: int) -> None:
        """Adds the item, or moves it to ``tier`` if it is in the pool."""
        self.core.add(int(key), int(tier))

    def tiers(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int8]:
        return self.core.tiers(np.ascontiguousarray(keys, dtype=np.uint64))

    def discard(self, key: int) -> None:
        self.core.discard(int(key))

    def sample(self, k: int, seed: int) -> npt.NDArray[np.uint64]:
        return self.core.sample(int(k), core_seed(seed))

    def keys(self) -> npt.NDArray[np.uint64]:
        return self.core.keys()  # a copy: safe beside a writer

    def __contains__(self, key: int) -> bool:
        return int(key) in self.core

    def __len__(self) -> int:
        return len(self.core)


def core_seed(seed: int) -> int:
    """A request's seed as the core's draws take it (any int: its low 64 bits)."""
    return int(seed) & 0xFFFF_FFFF_FFFF_FFFF


class Amplifier:
    def __init__(self, config: AmplifyConfig | None = None) -> None:
        self.config = config if config is not None else AmplifyConfig()
        self._items: dict[int, _Item] = {}
        self._open = _OpenPool()
        self._last_history: tuple[Transition, ...] = (Transition(0, -1, "", ""),)
        priors = self.config.priors
        self._prior_curve = OutcomeCurve((priors["completion"][0], 0.0), (priors["skip"][0], 0.0))
        self.curve = self._prior_curve
        self.refit_at_ms: int | None = None  # the next refit, in event time; None: at once
        self._cohort: collections.deque[int] = collections.deque(maxlen=_CURVE_SAMPLE)
        self._pending: dict[int, int] = {}  # item -> when it began to wait for review (ts_ms)

    def enter(
        self,
        item: int,
        now_ms: int,
        counters: Mapping[str, float] | None = None,
        *,
        established: bool = False,
    ) -> bool:
        """A new item starts testing at tier 0 (counters: its stats now, if any); an
        ``established`` one (a back catalogue being loaded) is graduated at once and never takes
        an exploration slot. An item the amplifier already knows keeps its state; returns
        whether the item was new."""
        if item in self._items:
            return False
        given = counters or {}
        start: Mapping[str, int] = {
            name: _as_counter(name, given.get(name, 0)) for name in COUNTERS
        }
        if not any(start.values()):
            start = _NO_COUNTS  # shared, as the entries of one batch share their history
        if established:
            last = len(self.config.tiers) - 1
            entry = _Item(
                last,
                "graduated",
                start,
                self._first_history(
                    Transition(int(now_ms), last, "graduated", "established item (amplify = false)")
                ),
                start,
            )
        else:
            entry = _Item(
                0,
                "testing",
                start,
                self._first_history(Transition(int(now_ms), 0, "testing", "new item")),
                start,
            )
            self._open.add(item, 0)
            self._cohort.append(item)
        self._items[item] = entry
        return True

    def _first_history(self, transition: Transition) -> tuple[Transition, ...]:
        """The history of an entering item: the same tuple as the last one's if equal (items
        posted in one batch), so a snapshot stores it once and a restore rebuilds it once."""
        if self._last_history[0] != transition:
            self._last_history = (transition,)
        return self._last_history

    def remove(self, item: int) -> bool:
        """Forgets the item (a takedown): it leaves the open pool at once."""
        self._open.discard(item)
        self._pending.pop(item, None)
        return self._items.pop(item, None) is not None

    # ---- judging ------------------------------------------------------------------------------
    def needs_refit(self, now_ms: int) -> bool:
        return self.refit_at_ms is None or int(now_ms) >= self.refit_at_ms

    def refit(self, stats: Mapping[str, npt.ArrayLike], now_ms: int) -> None:
        """The outcome curve from a sample of the catalogue's counters (``Profiles.items``
        stats); the next refit ``refit_interval_s`` of event time later. Judged in event time
        from the counters, so a replay of the same events refits and judges alike."""
        fitted = OutcomeCurve.fit(stats, _CURVE_MIN_IMPRESSIONS)
        if fitted is None:  # too few impressions yet: the priors, and another try next batch
            self.curve, self.refit_at_ms = self._prior_curve, int(now_ms)
            return
        self.curve = fitted
        self.refit_at_ms = int(now_ms) + int(1000 * self.config.refit_interval_s)

    def curve_sample(self) -> npt.NDArray[np.uint64]:
        """The items a refit reads: the latest that entered testing (``_CURVE_SAMPLE`` at
        most). A tested item is measured against its peers, items shown the same way to the
        same kind of audience, not against the established catalogue the feed's main slots
        pick for well-matched users."""
        return np.array(self._cohort, dtype=np.uint64)

    def observe(
        self, items: Iterable[int], stats: Mapping[str, npt.ArrayLike], now_ms: int
    ) -> list[tuple[int, Transition]]:
        """Judges every given open item on its tier's audience, from its counters now
        (``stats[name][i]`` for ``items[i]``, as ``Profiles.items(ids).stats``). Returns the
        transitions made."""
        ids = [int(i) for i in items]
        columns = _counter_columns(stats, len(ids))
        made = []
        for i, item in enumerate(ids):
            entry = self._items.get(item)
            if entry is None or entry.state not in OPEN_STATES:
                continue
            now = {name: int(columns[name][i]) for name in COUNTERS}
            verdict = self._judge(entry, now)
            if verdict is None:
                continue
            passed, rates, reasons = verdict
            entry, transition = self._move(entry, now, passed, rates, reasons, int(now_ms))
            self._items[item] = entry
            if entry.state == "pending_review":
                self._pending[item] = transition.ts_ms
            if entry.state in OPEN_STATES:
                self._open.add(item, entry.tier)  # its tier now: the feed's gate and boost read it
            else:
                self._open.discard(item)
            made.append((item, transition))
        return made

    def _judge(
        self, entry: _Item, now: Mapping[str, int]
    ) -> tuple[bool, dict[str, float], list[str]] | None:
        """(passed, rates, reasons) once the tier can decide; None while it cannot yet."""
        config, tier = self.config, self.config.tiers[entry.tier]
        exposure = _exposure(now) - _exposure(entry.start)
        spent = exposure >= tier.budget
        if exposure < (
            tier.budget if tier.min_excess is None else min(config.min_judged, tier.budget)
        ):
            return None
        rates = self._rates(now, entry.start, exposure)
        failed = _failed(tier, rates)
        if tier.min_excess is None:  # rates alone, at the end of the budget
            return not failed, rates, failed
        # The excess pools every impression since the item entered testing (a tier raises the
        # bar, and each tier still shows min_judged impressions of its own audience first).
        since = {name: now[name] - entry.entered[name] for name in COUNTERS}
        posterior = excess(
            self.curve,
            since["impressions"],
            since["impression_match_sum"],
            since["completions"],
            since["fast_skips"],
            config.excess_prior,
        )
        rates.update(
            excess=posterior.mean, excess_sd=posterior.sd, impressions=float(posterior.impressions)
        )
        z, bar = config.z, tier.min_excess
        if posterior.upper(z) < bar:
            return False, rates, [_excess_reason(posterior, "<", bar, config.confidence)]
        if posterior.lower(z) >= bar and not failed:
            return True, rates, [_excess_reason(posterior, ">=", bar, config.confidence)]
        if not spent:
            return None
        if posterior.mean < bar:
            failed.append(f"excess {posterior.mean:+.3f} < bar {bar:+.3f} with the budget spent")
        return not failed, rates, failed

    def _move(
        self,
        entry: _Item,
        now: Mapping[str, int],
        passed: bool,
        rates: dict[str, float],
        reasons: list[str],
        now_ms: int,
    ) -> tuple[_Item, Transition]:
        """The entry after a verdict, and the transition to record."""
        tier, last = entry.tier, len(self.config.tiers) - 1
        why = "; ".join(reasons)
        if not passed:
            transition = Transition(now_ms, tier, "stopped", why, rates)
            return entry._replace(state="stopped", history=(*entry.history, transition)), transition
        if self.config.review_before_tier == tier + 1:
            transition = Transition(
                now_ms,
                tier,
                "pending_review",
                f"passed tier {tier}{': ' + why if why else ''}; waits for review before "
                + ("graduating" if tier == last else f"tier {tier + 1}"),
                rates,
            )
            entry = entry._replace(state="pending_review", history=(*entry.history, transition))
            return entry, transition
        return self._advance(
            entry, now, f"passed tier {tier}{': ' + why if why else ''}", rates, now_ms
        )

    def _advance(
        self,
        entry: _Item,
        now: Mapping[str, int],
        reason: str,
        rates: Mapping[str, float],
        now_ms: int,
    ) -> tuple[_Item, Transition]:
        if entry.tier + 1 == len(self.config.tiers):
            transition = Transition(now_ms, entry.tier, "graduated", reason, rates)
            return entry._replace(
                state="graduated", history=(*entry.history, transition)
            ), transition
        transition = Transition(now_ms, entry.tier + 1, "promoted", reason, rates)
        entry = _Item(entry.tier + 1, "promoted", now, (*entry.history, transition), entry.entered)
        return entry, transition

    def _rates(
        self, now: Mapping[str, int], start: Mapping[str, int], exposure: int
    ) -> dict[str, float]:
        def smoothed(rate: str, counter: str) -> float:
            mean, strength = self.config.priors[rate]
            return (now[counter] - start[counter] + mean * strength) / (exposure + strength)

        return {
            "completion": smoothed("completion", "completions"),
            "like": smoothed("like", "likes"),
            "share": smoothed("share", "shares"),
            "skip": smoothed("skip", "fast_skips"),
        }

    # ---- review -------------------------------------------------------------------------------
    def review(
        self,
        item: int,
        decision: str,
        reason: str,
        now_ms: int,
        counters: Mapping[str, float] | None = None,
    ) -> Transition:
        """An admin's decision on an item pending review: ``approve`` opens the next tier (its
        audience counted from ``counters``, the item's stats now) or graduates it; ``reject``
        marks it rejected (the caller takes it down). ValueError if the item is not pending or
        the decision unknown: nothing changes then."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {list(DECISIONS)}, got {decision!r}")
        entry = self._items.get(int(item))
        if entry is None or entry.state != "pending_review":
            state = "unknown" if entry is None else entry.state
            raise ValueError(f"item {item} is not pending review (it is {state})")
        given = counters or {}
        now = {name: _as_counter(name, given.get(name, 0)) for name in COUNTERS}
        note = f"{decision}d by review" + (f": {reason}" if reason else "")
        if decision == "approve":
            entry, transition = self._advance(entry, now, note, {}, int(now_ms))
        else:
            transition = Transition(int(now_ms), entry.tier, "rejected", note)
            entry = entry._replace(state="rejected", history=(*entry.history, transition))
        self._items[int(item)] = entry
        del self._pending[int(item)]
        if entry.state in OPEN_STATES:
            self._open.add(int(item), entry.tier)
        return transition

    def reject(self, item: int, reason: str, now_ms: int) -> Transition | None:
        """A rejection decided on another replica, whose judging saw other events: the item is
        rejected whatever its state here. None, and nothing changes, if it is unknown or
        rejected already."""
        entry = self._items.get(int(item))
        if entry is None or entry.state == "rejected":
            return None
        if entry.state == "pending_review":
            return self.review(item, "reject", reason, now_ms)
        note = "rejected by review" + (f": {reason}" if reason else "")
        transition = Transition(int(now_ms), entry.tier, "rejected", note)
        self._items[int(item)] = entry._replace(
            state="rejected", history=(*entry.history, transition)
        )
        self._open.discard(int(item))
        return transition

    def pending_review(self) -> list[tuple[int, int]]:
        """(item, since ts_ms) of every item waiting for review."""
        return list(self._pending.items())

    def open_items(self) -> npt.NDArray[np.uint64]:
        """Items in a tier with budget left: what exploration slots draw from."""
        return self._open.keys()

    def sample_open(self, k: int, seed: int) -> npt.NDArray[np.uint64]:
        """Up to k distinct open items, uniformly at random, a function of the seed (the feed's
        request seed: the native and reference pipelines draw alike)."""
        return self._open.sample(k, seed)

    @property
    def open_pool(self) -> Any:
        """The open items in the core (``_core.feed.OpenPool``), for the native feed."""
        return self._open.core

    def open_tiers(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int8]:
        """Each item's open tier, -1 for an item not in the open pool."""
        return self._open.tiers(keys)

    def is_open(self, item: int) -> bool:
        return item in self._open

    @property
    def open_count(self) -> int:
        return len(self._open)

    def state_of(self, item: int) -> str | None:
        """The item's state alone (None if unknown): cheaper than ``state``."""
        entry = self._items.get(item)
        return None if entry is None else entry.state

    def state(self, item: int) -> dict[str, Any] | None:
        """The item's tier, state and history, as the API shows it; None if unknown."""
        entry = self._items.get(item)
        if entry is None:
            return None
        return {
            "tier": entry.tier,
            "state": entry.state,
            "budget": self.config.tiers[entry.tier].budget,
            "history": [dataclasses.asdict(t) for t in entry.history],
        }

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for entry in self._items.values():
            out[entry.state] += 1
        return out

    def __len__(self) -> int:
        return len(self._items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": {
                str(item): {
                    "tier": e.tier,
                    "state": e.state,
                    "start": dict(e.start),
                    "entered": dict(e.entered),
                    "history": [dataclasses.asdict(t) for t in e.history],
                }
                for item, e in self._items.items()
            },
            "curve": self.curve.as_list(),
            "refit_at_ms": self.refit_at_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], config: AmplifyConfig | None = None) -> Amplifier:
        amplifier = cls(config)
        tiers = len(amplifier.config.tiers)
        for key, e in data["items"].items():
            if e["state"] not in STATES or not 0 <= int(e["tier"]) < tiers:
                raise ValueError(
                    f"amplification state of item {key} is invalid: {e['state']!r}, "
                    f"tier {e['tier']} of {tiers}"
                )
            if e["state"] in OPEN_STATES:
                amplifier._open.add(int(key), int(e["tier"]))
            amplifier._items[int(key)] = _Item(
                int(e["tier"]),
                e["state"],
                {name: int(e["start"].get(name, 0)) for name in COUNTERS},
                tuple(Transition(**t) for t in e["history"]),
                {name: int(e.get("entered", e["start"]).get(name, 0)) for name in COUNTERS},
            )
        amplifier._restore_curve(data.get("curve"), data.get("refit_at_ms"))
        amplifier._index_restored()
        return amplifier

    def _index_restored(self) -> None:
        """After a restore: the latest items that entered testing, in the order they entered,
        and the items pending review."""
        tested = [
            (e.history[0].ts_ms, key)
            for key, e in self._items.items()
            if e.history[0].state == "testing"
        ]
        self._cohort.extend(key for _, key in heapq.nlargest(_CURVE_SAMPLE, tested)[::-1])
        self._pending = {
            key: e.history[-1].ts_ms
            for key, e in self._items.items()
            if e.state == "pending_review"
        }

    def _restore_curve(self, curve: Any, refit_at_ms: Any) -> None:
        """The judging curve a snapshot saved; none (an older one): refit at the next batch."""
        if curve is not None:
            self.curve = OutcomeCurve.from_list(curve)
            self.refit_at_ms = None if refit_at_ms is None else int(refit_at_ms)

    # ---- snapshot files: columns instead of JSON -----------------------------------------
    def image(self) -> AmplifierImage:
        """The state now, to write later: a copy of the dict (entries are immutable), so take
        it with applies paused; it costs one C-level dict copy."""
        return AmplifierImage(dict(self._items), self.curve, self.refit_at_ms)

    @classmethod
    def read(cls, path: Path) -> dict[str, npt.NDArray[Any]]:
        """The verified columns of a file ``AmplifierImage.write`` wrote (CorruptFileError if
        it is damaged), for ``from_columns``."""
        return read_columns(path, FILE_MAGIC, FILE_VERSION)

    @classmethod
    def from_columns(
        cls, columns: Mapping[str, npt.NDArray[Any]], config: AmplifyConfig | None = None
    ) -> Amplifier:
        """The amplifier ``AmplifierImage.columns`` describes. ValueError if an item's tier
        is beyond the configured tiers; CorruptFileError if the columns are inconsistent."""
        amplifier = cls(config)
        try:
            keys, tiers, states = columns["key"], columns["tier"], columns["state"]
            start_of, history_of = columns["start"], columns["history"]
            entered_of = columns.get("entered", start_of)  # older files: the tier's start
            start_rows = columns["starts"]
            history_offsets, steps = columns["history.offsets"], columns["history.steps"]
            t_ts, t_tier, t_state = columns["t.ts_ms"], columns["t.tier"], columns["t.state"]
            t_reason, rate_offsets = columns["t.reason"], columns["t.rates.offsets"]
            rate_names, rate_values = columns["t.rate.name"], columns["t.rate.value"]
        except KeyError as missing:
            raise CorruptFileError(f"the amplification columns lack {missing}") from None
        counters = strings(columns, "counters")
        reasons = strings(columns, "reasons")
        names = strings(columns, "rate_names")
        n, transitions_n = len(keys), len(t_ts)
        starts_n = len(start_rows) // max(len(counters), 1)
        if (
            not counters or counters != list(COUNTERS[: len(counters)])  # older: fewer counters
            or {len(tiers), len(states), len(start_of), len(history_of), len(entered_of)} != {n}
            or len(start_rows) != starts_n * len(counters)
            or {len(t_tier), len(t_state), len(t_reason), len(rate_offsets) - 1} != {transitions_n}
            or _out_of(states, len(STATES)) or _out_of(t_state, len(STATES))
            or _out_of(start_of, starts_n) or _out_of(entered_of, starts_n)
            or _out_of(history_of, len(history_offsets) - 1)
            or _out_of(steps, transitions_n) or _out_of(t_reason, len(reasons))
            or _out_of(rate_names, len(names)) or len(rate_names) != len(rate_values)
            or not _offsets_ok(history_offsets, len(steps))
            or not _offsets_ok(rate_offsets, len(rate_names))
        ):  # fmt: skip
            raise CorruptFileError("the amplification columns are inconsistent")
        tier_count = len(amplifier.config.tiers)
        if n and int(tiers.max()) >= tier_count:
            at = int(np.argmax(tiers))
            raise ValueError(
                f"amplification state of item {int(keys[at])} is invalid: tier {int(tiers[at])} "
                f"of {tier_count} (the configuration has fewer tiers than the snapshot)"
            )
        # Distinct values once (shared by every entry that has them), then one entry per item.
        rate_bounds = rate_offsets.tolist()
        named, values = [names[i] for i in rate_names.tolist()], rate_values.tolist()
        transitions = [
            Transition(ts, tier, STATES[state], reasons[reason], dict(zip(
                named[rate_bounds[i] : rate_bounds[i + 1]],
                values[rate_bounds[i] : rate_bounds[i + 1]], strict=True,
            )))
            for i, (ts, tier, state, reason) in enumerate(zip(
                t_ts.tolist(), t_tier.tolist(), t_state.tolist(), t_reason.tolist(), strict=True
            ))
        ]  # fmt: skip
        step_list = steps.tolist()
        bounds = history_offsets.tolist()
        histories = [
            tuple(transitions[j] for j in step_list[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        added = dict.fromkeys(COUNTERS[len(counters) :], 0)
        starts = [
            {**dict(zip(counters, row, strict=True)), **added}
            for row in start_rows.reshape(-1, len(counters)).tolist()
        ]
        entries = map(
            functools.partial(tuple.__new__, _Item),  # _Item._make without its length check
            zip(
                tiers.tolist(),
                [STATES[s] for s in states.tolist()],
                [starts[i] for i in start_of.tolist()],
                [histories[i] for i in history_of.tolist()],
                [starts[i] for i in entered_of.tolist()],
                strict=True,
            ),
        )
        key_list = keys.tolist()
        amplifier._items = dict(zip(key_list, entries, strict=True))
        if len(amplifier._items) != n:
            raise CorruptFileError("the amplification columns hold a key twice")
        open_codes = [STATES.index(s) for s in OPEN_STATES]
        is_open = np.isin(states, open_codes)
        for key, tier in zip(keys[is_open].tolist(), tiers[is_open].tolist(), strict=True):
            amplifier._open.add(key, tier)
        amplifier._index_restored()
        if "judge.curve" in columns:
            refit_at = columns.get("judge.refit_at_ms", np.array([-1]))
            if len(columns["judge.curve"]) != 4 or len(refit_at) != 1:
                raise CorruptFileError("the amplification columns are inconsistent")
            at = int(refit_at[0])
            try:
                amplifier._restore_curve(columns["judge.curve"].tolist(), None if at < 0 else at)
            except ValueError as e:
                raise CorruptFileError(f"the amplification columns: {e}") from None
        return amplifier


class AmplifierImage:
    """The amplifier's state at one moment (``Amplifier.image``), as columns or a file."""

    def __init__(
        self, items: dict[int, _Item], curve: OutcomeCurve, refit_at_ms: int | None
    ) -> None:
        self._items = items
        self._curve = curve
        self._refit_at_ms = refit_at_ms

    def write(self, path: Path) -> None:
        """Writes the file whole (temporary file, fsync, rename)."""
        write_columns(path, FILE_MAGIC, FILE_VERSION, self.columns())

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """Entries as columns. Starts, transitions and histories are stored once per distinct
        value (entries share them: a back catalogue posted in one batch has one history)."""
        n = len(self._items)
        entries = list(self._items.values())
        state_code = {state: code for code, state in enumerate(STATES)}
        starts = _Interner(operator.itemgetter(*COUNTERS))
        transitions = _Interner(
            lambda t: (t.ts_ms, t.tier, t.state, t.reason, tuple(t.rates.items()))
        )
        histories = _Interner(lambda history: tuple(transitions.index(t) for t in history))
        start_of = np.fromiter((starts.index(e.start) for e in entries), np.uint32, n)
        entered_of = np.fromiter((starts.index(e.entered) for e in entries), np.uint32, n)
        history_of = np.fromiter((histories.index(e.history) for e in entries), np.uint32, n)
        reasons: dict[str, int] = {}
        rate_names: dict[str, int] = {}
        steps = [step for history in histories.values for step in history]
        history_lengths = [len(history) for history in histories.values]
        rates = [t[4] for t in transitions.values]
        columns: dict[str, npt.NDArray[Any]] = {
            "key": np.fromiter(self._items.keys(), np.uint64, n),
            "tier": np.fromiter((e.tier for e in entries), np.uint16, n),
            "state": np.fromiter((state_code[e.state] for e in entries), np.uint8, n),
            "start": start_of,
            "entered": entered_of,
            "history": history_of,
            "starts": np.array(starts.values, dtype=np.int64).reshape(-1),
            "history.offsets": _offsets(history_lengths),
            "history.steps": np.array(steps, dtype=np.uint32),
            "t.ts_ms": np.array([t[0] for t in transitions.values], dtype=np.int64),
            "t.tier": np.array([t[1] for t in transitions.values], dtype=np.uint16),
            "t.state": np.array([state_code[t[2]] for t in transitions.values], dtype=np.uint8),
            "t.reason": np.array(
                [reasons.setdefault(t[3], len(reasons)) for t in transitions.values],
                dtype=np.uint32,
            ),
            "t.rates.offsets": _offsets([len(r) for r in rates]),
            "t.rate.name": np.array(
                [rate_names.setdefault(name, len(rate_names)) for r in rates for name, _ in r],
                dtype=np.uint32,
            ),
            "t.rate.value": np.array([value for r in rates for _, value in r], dtype=np.float64),
            "judge.curve": np.array(self._curve.as_list(), dtype=np.float64),
            "judge.refit_at_ms": np.array(
                [-1 if self._refit_at_ms is None else self._refit_at_ms], dtype=np.int64
            ),
        }
        columns.update(string_columns("counters", COUNTERS))
        columns.update(string_columns("reasons", list(reasons)))
        columns.update(string_columns("rate_names", list(rate_names)))
        return columns


class _Interner(Generic[V]):
    """Numbers distinct values in order of first appearance: by object identity first (entries
    that share an object cost one dict lookup), then by ``value_of(object)``."""

    def __init__(self, value_of: Callable[[Any], V]) -> None:
        self._value_of = value_of
        self._by_id: dict[int, int] = {}
        self._by_value: dict[V, int] = {}
        self.values: list[V] = []

    def index(self, obj: Any) -> int:
        at = self._by_id.get(id(obj))  # the image holds every object: ids stay unique
        if at is None:
            value = self._value_of(obj)
            at = self._by_value.get(value)
            if at is None:
                at = self._by_value[value] = len(self.values)
                self.values.append(value)
            self._by_id[id(obj)] = at
        return at


def _offsets(lengths: list[int]) -> npt.NDArray[np.uint64]:
    out = np.zeros(len(lengths) + 1, dtype=np.uint64)
    np.cumsum(np.array(lengths, dtype=np.uint64), out=out[1:])
    return out


def _offsets_ok(offsets: npt.NDArray[Any], total: int) -> bool:
    return bool(
        len(offsets) >= 1
        and offsets[0] == 0
        and offsets[-1] == total
        and not (np.diff(offsets.astype(np.int64)) < 0).any()
    )


def _out_of(codes: npt.NDArray[Any], size: int) -> bool:
    return bool(len(codes) and int(codes.max()) >= size)


def _as_counter(name: str, value: float) -> int:
    """A counter as the amplifier keeps it: the match sum in the profiles' fixed point."""
    if name in _FIXED_POINT:
        return int(round(float(value) * MATCH_SUM_SCALE))
    return int(value)


def _counter_columns(
    stats: Mapping[str, npt.ArrayLike], n: int
) -> dict[str, npt.NDArray[np.int64]]:
    """The judged counters as exact integers; a counter the stats lack counts 0."""
    out = {}
    for name in COUNTERS:
        if name not in stats:
            out[name] = np.zeros(n, dtype=np.int64)
        elif name in _FIXED_POINT:
            out[name] = np.rint(np.asarray(stats[name], np.float64) * MATCH_SUM_SCALE).astype(
                np.int64
            )
        else:
            out[name] = np.asarray(stats[name], dtype=np.int64)
    return out


def _excess_reason(posterior: Excess, relation: str, bar: float, confidence: float) -> str:
    return (
        f"excess {posterior.mean:+.3f} ± {posterior.sd:.3f} {relation} bar {bar:+.3f} at "
        f"{100 * confidence:.0f} % confidence after {posterior.impressions} impressions"
    )


def _exposure(counters: Mapping[str, int]) -> int:
    # Users who met the item: the profiles count each user's first event on it as its
    # impression, whether or not the client sends impression events.
    return counters["impressions"]


def _failed(tier: Tier, rates: Mapping[str, float]) -> list[str]:
    checks = (
        ("completion", tier.min_completion_rate, True),
        ("like", tier.min_like_rate, True),
        ("share", tier.min_share_rate, True),
        ("skip", tier.max_skip_rate, False),
    )
    failed = []
    for rate, bound, is_minimum in checks:
        value = rates[rate]
        if (value < bound) if is_minimum else (value > bound):
            failed.append(
                f"{rate} rate {value:.3f} {'<' if is_minimum else '>'} "
                f"{'min' if is_minimum else 'max'} {bound:.3f}"
            )
    return failed
