"""Progressive amplification: each new item is shown to a small test audience first, then to
larger ones for as long as it keeps engaging (DESIGN.md, "Progressive amplification").

    enter ──▶ tier 0 "testing" ──budget spent, passes──▶ tier 1 "promoted" ──▶ … ──▶ "graduated"
                                └─budget spent, fails──▶ "stopped" (reason recorded)

A tier's budget is a number of impressions. When the impressions since the tier began reach
it, the tier's audience is judged: smoothed rates over that audience alone (completions, likes,
shares and fast skips per impression, each with a Beta prior as in ``recserve.features``) are
compared with the tier's thresholds. Passing opens the next tier (a larger budget); failing
stops the item with every failed threshold in its reason; passing the last tier graduates it:
it competes in the regular feed and no longer takes reserved exploration slots. Items in
"testing" or "promoted" state are the open pool those slots draw from.

The amplifier holds only bookkeeping; the counters come from ``recserve.profiles`` item stats
(``observe`` takes them), and ``to_dict``/``from_dict`` make it durable alongside a snapshot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve.features import DEFAULT_PRIORS

__all__ = ["AmplifyConfig", "Amplifier", "Tier", "Transition"]

STATES = ("testing", "promoted", "stopped", "graduated")
OPEN_STATES = ("testing", "promoted")
#: The item counters a judgement reads (names as in recserve.profiles.ITEM_STATS).
COUNTERS = ("impressions", "watches", "completions", "likes", "shares", "fast_skips")


@dataclass(frozen=True)
class Tier:
    """An impression budget and the bounds its audience must meet to pass."""

    budget: int
    min_completion_rate: float = 0.0
    min_like_rate: float = 0.0
    min_share_rate: float = 0.0
    max_skip_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"a tier's budget must be >= 1 impression, got {self.budget}")
        for name in ("min_completion_rate", "min_like_rate", "min_share_rate", "max_skip_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(budget=200, min_completion_rate=0.25, max_skip_rate=0.6),
    Tier(budget=2_000, min_completion_rate=0.30, min_like_rate=0.02, max_skip_rate=0.5),
    Tier(
        budget=20_000,
        min_completion_rate=0.35,
        min_like_rate=0.03,
        min_share_rate=0.003,
        max_skip_rate=0.45,
    ),
)

_RATE_PRIORS = {"completion": "complete", "like": "like", "share": "share", "skip": "skip"}


@dataclass(frozen=True)
class AmplifyConfig:
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    #: Beta priors (mean, strength in pseudo-impressions) of the judged rates.
    priors: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: {rate: DEFAULT_PRIORS[o] for rate, o in _RATE_PRIORS.items()}
    )

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("amplification needs at least one tier")
        unknown = sorted(set(self.priors) - set(_RATE_PRIORS))
        if unknown:
            raise ValueError(f"unknown rate(s) {unknown} in priors; known: {sorted(_RATE_PRIORS)}")

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
        return cls(**values)


@dataclass(frozen=True)
class Transition:
    """One entry of an item's history: where it went, when, and why."""

    ts_ms: int
    tier: int
    state: str
    reason: str
    rates: Mapping[str, float] = field(default_factory=dict)


@dataclass
class _Item:
    tier: int
    state: str
    start: dict[str, int]  # counters when the current tier began
    history: list[Transition]


class _OpenPool:
    """The open items as a list with a position index: O(1) add, remove and uniform sample,
    so a feed request's exploration draw does not scan every item the amplifier knows."""

    def __init__(self) -> None:
        self._keys: list[int] = []
        self._where: dict[int, int] = {}

    def add(self, key: int) -> None:
        if key not in self._where:
            self._where[key] = len(self._keys)
            self._keys.append(key)

    def discard(self, key: int) -> None:
        at = self._where.pop(key, None)
        if at is None:
            return
        last = self._keys.pop()
        if at < len(self._keys):
            self._keys[at] = last
            self._where[last] = at

    def sample(self, k: int, rng: np.random.Generator) -> npt.NDArray[np.uint64]:
        keys = self._keys
        n = len(keys)
        if n <= k:
            return np.array(keys, dtype=np.uint64)
        picks = rng.choice(n, size=k, replace=False) if k * 4 > n else rng.integers(0, n, k)
        out = []
        for i in np.unique(picks).tolist():
            try:
                out.append(keys[i])
            except IndexError:  # the pool shrank under us (a writer); skip that pick
                continue
        return np.array(out, dtype=np.uint64)

    def keys(self) -> npt.NDArray[np.uint64]:
        return np.array(list(self._keys), dtype=np.uint64)  # a copy: safe beside a writer

    def __contains__(self, key: int) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self._keys)


class Amplifier:
    def __init__(self, config: AmplifyConfig | None = None) -> None:
        self.config = config if config is not None else AmplifyConfig()
        self._items: dict[int, _Item] = {}
        self._open = _OpenPool()

    def enter(
        self,
        item: int,
        now_ms: int,
        counters: Mapping[str, int] | None = None,
        *,
        established: bool = False,
    ) -> bool:
        """A new item starts testing at tier 0 (counters: its stats now, if any); an
        ``established`` one (a back catalogue being loaded) is graduated at once and never takes
        an exploration slot. An item the amplifier already knows keeps its state; returns
        whether the item was new."""
        if item in self._items:
            return False
        start = {name: int((counters or {}).get(name, 0)) for name in COUNTERS}
        if established:
            last = len(self.config.tiers) - 1
            entry = _Item(last, "graduated", start, [
                Transition(int(now_ms), last, "graduated", "established item (amplify = false)")
            ])
        else:
            entry = _Item(0, "testing", start, [Transition(int(now_ms), 0, "testing", "new item")])
            self._open.add(item)
        self._items[item] = entry
        return True

    def remove(self, item: int) -> bool:
        """Forgets the item (a takedown): it leaves the open pool at once."""
        self._open.discard(item)
        return self._items.pop(item, None) is not None

    def observe(
        self, items: Iterable[int], stats: Mapping[str, npt.ArrayLike], now_ms: int
    ) -> list[tuple[int, Transition]]:
        """Judges every given open item whose tier budget is spent, from its counters now
        (``stats[name][i]`` for ``items[i]``, as ``Profiles.items(ids).stats``). Returns the
        transitions made."""
        ids = [int(i) for i in items]
        columns = {name: np.asarray(stats[name], dtype=np.int64) for name in COUNTERS}
        made = []
        for i, item in enumerate(ids):
            entry = self._items.get(item)
            if entry is None or entry.state not in OPEN_STATES:
                continue
            now = {name: int(columns[name][i]) for name in COUNTERS}
            exposure = _exposure(now) - _exposure(entry.start)
            tier = self.config.tiers[entry.tier]
            if exposure < tier.budget:
                continue
            rates = self._rates(now, entry.start, exposure)
            failed = _failed(tier, rates)
            if failed:
                transition = Transition(
                    int(now_ms), entry.tier, "stopped", "; ".join(failed), rates
                )
                entry.state = "stopped"
            elif entry.tier + 1 == len(self.config.tiers):
                transition = Transition(
                    int(now_ms),
                    entry.tier,
                    "graduated",
                    f"passed the last tier ({entry.tier})",
                    rates,
                )
                entry.state = "graduated"
            else:
                entry.tier += 1
                entry.state = "promoted"
                entry.start = now
                transition = Transition(
                    int(now_ms), entry.tier, "promoted", f"passed tier {entry.tier - 1}", rates
                )
            entry.history.append(transition)
            if entry.state not in OPEN_STATES:
                self._open.discard(item)
            made.append((item, transition))
        return made

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

    def open_items(self) -> npt.NDArray[np.uint64]:
        """Items in a tier with budget left: what exploration slots draw from."""
        return self._open.keys()

    def sample_open(self, k: int, rng: np.random.Generator) -> npt.NDArray[np.uint64]:
        """Up to k distinct open items, uniformly at random."""
        return self._open.sample(k, rng)

    def is_open(self, item: int) -> bool:
        return item in self._open

    @property
    def open_count(self) -> int:
        return len(self._open)

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
                    "start": e.start,
                    "history": [dataclasses.asdict(t) for t in e.history],
                }
                for item, e in self._items.items()
            }
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
                amplifier._open.add(int(key))
            amplifier._items[int(key)] = _Item(
                int(e["tier"]),
                e["state"],
                {name: int(e["start"][name]) for name in COUNTERS},
                [Transition(**t) for t in e["history"]],
            )
        return amplifier


def _exposure(counters: Mapping[str, int]) -> int:
    # Impressions as logged; when a client sends watches without impressions, the watches.
    return max(counters["impressions"], counters["watches"])


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
