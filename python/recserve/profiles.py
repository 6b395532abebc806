"""User and item state, and the update rules that events apply to it.

>>> p = Profiles(ProfilesConfig(dims=64))
>>> p.set_items(item_ids, item_vectors)
>>> p.apply(Events.of(users=u, items=i, types=["watch", ...], watch_ms=w, duration_ms=d,
...                   ts_ms=t, seq=s))
ApplyResult(applied=..., stale=0, duplicate_keys=0, unknown_items=0)
>>> long_term, session, found = p.user_vectors(u)

One ``apply`` call runs a whole columnar batch in C++ with the GIL released. Per event: an
engagement weight from the declared :class:`UpdateRule`, the user's long-term vector moved
slowly and the session vector fast toward the item (away for negative signals), the item's
counters, the user's seen-set, and for a positive (weight >= ``co_engagement.positive_weight``)
the user's recent positives and the item-to-item co-engagement index that :meth:`Profiles.related`
reads (docs/co-engagement.md). An event at or below the user's high-water mark of sequence
numbers, or whose key is in the user's window of recent keys, changes nothing (counted).
Readers never see a half-written vector; see ``cpp/include/recserve/profiles/profiles.hpp``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from recserve import _core
from recserve._arrays import as_id_rows, as_ids

__all__ = [
    "EVENT_TYPES",
    "ITEM_STATS",
    "MATCH_SUM_SCALE",
    "MAX_RELATED",
    "ApplyResult",
    "CoEngagementOptions",
    "Events",
    "ItemState",
    "Profiles",
    "ProfilesConfig",
    "RecentPositives",
    "SeenOptions",
    "UpdateRule",
    "UserVectors",
]

EVENT_TYPES: tuple[str, ...] = tuple(_core.profiles.event_types)
ITEM_STATS: tuple[str, ...] = tuple(_core.profiles.item_stats)
#: ``match_sum`` is kept in fixed point: the stored integer over this is the sum of cosines.
MATCH_SUM_SCALE = float(1 << 20)
MAX_RELATED: int = int(_core.profiles.max_related)
_TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}

DEFAULT_WEIGHTS: dict[str, float] = {
    "impression": 0.0,
    "watch": 1.0,
    "replay": 0.8,
    "like": 0.5,
    "share": 0.6,
    "comment": 0.5,
    "follow": 0.6,
    "skip": -0.1,
    "not_interested": -1.0,
}


def _reject_unknown(cls: type, data: Mapping[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s) {unknown}; known: {sorted(known)}")


@dataclass(frozen=True)
class UpdateRule:
    """How much an event says about a user's taste, and how far it moves their vectors.

    watch: ``weights["watch"] * curve(min(watch_ms / duration_ms, completion_cap))``, the curve
    piecewise linear through ``completion_curve``; a watch or skip shorter than
    ``fast_skip_seconds`` that did not complete: ``fast_skip_weight``; other types:
    ``weights[type]``. A weight w moves a vector v to ``(1 - a) v + sign(w) a x`` with
    ``a = min(1, lr |w|)``: ``lr_long`` for the long-term vector, ``lr_session`` for the session
    one, which first decays by ``2 ** (-dt / session_half_life_seconds)`` since the user's last
    event, or restarts from zero after ``session_timeout_seconds``.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    completion_curve: tuple[tuple[float, float], ...] = ((0.0, -0.2), (0.3, 0.0), (1.0, 1.0))
    completion_cap: float = 1.0
    completion_threshold: float = 0.9
    fast_skip_seconds: float = 3.0
    fast_skip_weight: float = -0.5
    lr_long: float = 0.02
    lr_session: float = 0.25
    session_half_life_seconds: float = 600.0
    session_timeout_seconds: float = 1800.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpdateRule:
        """From configuration (e.g. a TOML table). Unknown keys and event types are errors;
        ``weights`` may name only the types it changes."""
        _reject_unknown(cls, data)
        values = dict(data)
        if "weights" in values:
            unknown = sorted(set(values["weights"]) - set(EVENT_TYPES))
            if unknown:
                raise ValueError(
                    f"unknown event type(s) {unknown} in weights; known: {list(EVENT_TYPES)}"
                )
            values["weights"] = {**DEFAULT_WEIGHTS, **values["weights"]}
        if "completion_curve" in values:
            values["completion_curve"] = tuple(
                (float(x), float(y)) for x, y in values["completion_curve"]
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["weights"] = dict(self.weights)
        out["completion_curve"] = [list(knot) for knot in self.completion_curve]
        return out

    def _for_core(self) -> dict[str, Any]:
        core = self.to_dict()
        core["weights"] = [float(self.weights[name]) for name in EVENT_TYPES]
        core["curve_x"] = [x for x, _ in self.completion_curve]
        core["curve_y"] = [y for _, y in self.completion_curve]
        del core["completion_curve"]
        return core


@dataclass(frozen=True)
class SeenOptions:
    """Per user: ``recent`` items exactly, older ones in a Bloom filter of two generations of
    ``filter_items`` items in ``filter_bits`` bits each (about 2.4 % false positives when full)."""

    recent: int = 128
    filter_bits: int = 8192
    filter_items: int = 1024


@dataclass(frozen=True)
class CoEngagementOptions:
    """The item-to-item co-engagement index (docs/co-engagement.md). A positive is an event of
    engagement weight >= ``positive_weight`` on an item with a vector; each user keeps their last
    ``history`` distinct positives, and each new one pairs with them. Each item keeps its
    ``neighbours`` heaviest co-engaged items (0: no index and no recent positives); weights and
    counts decay with ``half_life_seconds`` of event time (0: never)."""

    neighbours: int = 64
    history: int = 32
    positive_weight: float = 0.5
    half_life_seconds: float = 0.0


@dataclass(frozen=True)
class ProfilesConfig:
    dims: int
    user_capacity: int = 1 << 20
    item_capacity: int = 1 << 20
    shards: int = 16
    seen: SeenOptions = SeenOptions()
    event_key_window: int = 256  # recent event keys remembered per user (redelivery check)
    rule: UpdateRule = UpdateRule()
    # True: a new user in a full shard evicts that shard's LRU user (their state must live
    # elsewhere too). False: users leave only through evict_users(), which returns them.
    user_lru: bool = True
    co_engagement: CoEngagementOptions = CoEngagementOptions()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfilesConfig:
        _reject_unknown(cls, data)
        values = dict(data)
        if "seen" in values:
            _reject_unknown(SeenOptions, values["seen"])
            values["seen"] = SeenOptions(**values["seen"])
        if "co_engagement" in values:
            _reject_unknown(CoEngagementOptions, values["co_engagement"])
            values["co_engagement"] = CoEngagementOptions(**values["co_engagement"])
        if "rule" in values:
            values["rule"] = UpdateRule.from_dict(values["rule"])
        return cls(**values)

    def _for_core(self) -> Any:
        return _core.profiles.options(
            self.dims,
            self.user_capacity,
            self.item_capacity,
            self.shards,
            self.seen.recent,
            self.seen.filter_bits,
            self.seen.filter_items,
            self.event_key_window,
            self.rule._for_core(),
            self.user_lru,
            co_neighbours=self.co_engagement.neighbours,
            co_history=self.co_engagement.history,
            co_positive_weight=self.co_engagement.positive_weight,
            co_half_life_seconds=self.co_engagement.half_life_seconds,
        )


def _column(values: Any, what: str, dtype: type[np.generic], n: int | None) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-dimensional, got shape {array.shape}")
    if n is not None and array.shape[0] != n:
        raise ValueError(f"{what} must have {n} values (one per event), got {array.shape[0]}")
    if array.size and array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(
                f"{what} contains NaN or infinity at event {int(np.argmin(np.isfinite(array)))}"
            )
        if (array != np.round(array)).any():
            raise ValueError(f"{what} must be whole numbers")
    elif array.size and array.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integers, got dtype {array.dtype}")
    info = np.iinfo(dtype)  # type: ignore[type-var]
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(f"{what} must be in {info.min}..{info.max}")
    return np.ascontiguousarray(array, dtype=dtype)


def _types(values: Any, n: int) -> npt.NDArray[np.uint8]:
    array = np.asarray(values)
    if array.dtype.kind in "US":
        codes = np.empty(array.shape, dtype=np.uint8)
        for i, name in enumerate(array.tolist()):
            code = _TYPE_CODES.get(name.decode() if isinstance(name, bytes) else name)
            if code is None:
                raise ValueError(
                    f"unknown event type {name!r} at event {i}; known: {list(EVENT_TYPES)}"
                )
            codes[i] = code
        array = codes
    types = _column(array, "types", np.uint8, n)
    if types.size and int(types.max()) >= len(EVENT_TYPES):
        raise ValueError(
            f"unknown event type code {int(types.max())} at event {int(np.argmax(types))}"
        )
    return types


@dataclass(frozen=True)
class Events:
    """A columnar batch of events, checked and in the dtypes the core takes (use :meth:`of`)."""

    users: npt.NDArray[np.uint64]
    items: npt.NDArray[np.uint64]
    types: npt.NDArray[np.uint8]
    watch_ms: npt.NDArray[np.uint32]
    duration_ms: npt.NDArray[np.uint32]
    ts_ms: npt.NDArray[np.int64]
    seq: npt.NDArray[np.uint64]
    event_keys: npt.NDArray[np.uint64] | None = None

    @classmethod
    def of(
        cls,
        *,
        users: Any,
        items: Any,
        types: Any,
        ts_ms: Any,
        seq: Any,
        watch_ms: Any = None,
        duration_ms: Any = None,
        event_keys: Any = None,
    ) -> Events:
        """types: names (``"watch"``) or codes (index in EVENT_TYPES). watch_ms and duration_ms
        default to 0 (a watch needs duration_ms > 0). seq: >= 1, increasing per user.
        event_keys: optional ids of the events (0 = none), e.g. a hash of the client's id."""
        user_array = as_ids(users, "users")
        n = user_array.shape[0]
        zeros = np.zeros(n, dtype=np.uint32)
        return cls(
            users=user_array,
            items=_column(as_ids(items, "items"), "items", np.uint64, n),
            types=_types(types, n),
            watch_ms=zeros if watch_ms is None else _column(watch_ms, "watch_ms", np.uint32, n),
            duration_ms=zeros
            if duration_ms is None
            else _column(duration_ms, "duration_ms", np.uint32, n),
            ts_ms=_column(ts_ms, "ts_ms", np.int64, n),
            seq=_column(seq, "seq", np.uint64, n),
            event_keys=None
            if event_keys is None
            else _column(event_keys, "event_keys", np.uint64, n),
        )

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def _core_args(self) -> tuple[Any, ...]:
        return (
            self.users,
            self.items,
            self.types,
            self.watch_ms,
            self.duration_ms,
            self.ts_ms,
            self.seq,
            self.event_keys,
        )


class ApplyResult(NamedTuple):
    applied: int
    stale: int  # sequence number at or below the user's high-water mark: ignored
    duplicate_keys: int  # event key already applied for that user: ignored
    unknown_items: int  # applied, but the item has no vector yet: no vector moved


class UserVectors(NamedTuple):
    long_term: npt.NDArray[np.float32]
    session: npt.NDArray[np.float32]
    found: npt.NDArray[np.bool_]


class ItemState(NamedTuple):
    vectors: npt.NDArray[np.float32]  # zeros where has_vector is False
    has_vector: npt.NDArray[np.bool_]
    # One array per name in ITEM_STATS: uint64 counts, except match_sum, float64: the sum over
    # watches of the viewer's cosine match to the item before the watch moved them (divide by
    # "watches" for the mean match), and impression_match_sum, the same over impressions.
    stats: dict[str, npt.NDArray[Any]]
    found: npt.NDArray[np.bool_]  # the item has a row (vector or counters)


class RecentPositives(NamedTuple):
    items: npt.NDArray[np.uint64]  # newest first
    ts_ms: npt.NDArray[np.int64]  # of the latest positive on each
    weights: npt.NDArray[np.float32]  # the largest engagement weight of those positives


class Profiles:
    def __init__(self, config: ProfilesConfig, *, _core_profiles: Any = None) -> None:
        self.config = config
        self._core = (
            _core_profiles
            if _core_profiles is not None
            else _core.profiles.Profiles(config._for_core())
        )

    @property
    def core(self) -> Any:
        """The core state (``_core.profiles.Profiles``), for the native feed."""
        return self._core

    @classmethod
    def load(cls, path: str, config: ProfilesConfig) -> tuple[Profiles, int]:
        """A snapshot file and the log position it includes. Raises CorruptFileError for a
        damaged or truncated file, FileNotFoundError for none."""
        core, lsn = _core.profiles.Profiles.load(str(path), config._for_core())
        return cls(config, _core_profiles=core), int(lsn)

    @property
    def dims(self) -> int:
        return self.config.dims

    def set_items(self, ids: Any, vectors: Any) -> None:
        """Upserts item vectors, keeping their counters. NaN, infinity or a wrong shape raise
        and change nothing."""
        id_array, vec_array = as_id_rows(ids, vectors)
        self._core.set_items(id_array, vec_array)

    def remove_items(self, ids: Any) -> int:
        return int(self._core.remove_items(as_ids(ids)))

    @staticmethod
    def check(events: Events) -> None:
        """Raises ValueError naming the first bad event and field, as apply would."""
        _core.profiles.Profiles.check(*events._core_args())

    def apply(self, events: Events) -> ApplyResult:
        """Applies the batch in order. A bad event raises ValueError naming it; nothing applied."""
        return ApplyResult(**self._core.apply(*events._core_args()))

    def user_vectors(self, users: Any, now_ms: int | None = None) -> UserVectors:
        """Long-term and session vectors, the session decayed to now_ms (default: now)."""
        now = int(time.time() * 1000) if now_ms is None else int(now_ms)
        return UserVectors(*self._core.user_vectors(as_ids(users, "users"), now))

    def user_state(self, users: Any) -> dict[str, npt.NDArray[Any]]:
        """high_water_seq, events_applied, session_last_ms, session_start_ms, impressions,
        completions (watches past the completion threshold), fast_skips, found."""
        words, found = self._core.user_words(as_ids(users, "users"))
        return {
            "high_water_seq": words[:, 0],
            "events_applied": words[:, 1],
            "session_last_ms": words[:, 2].view(np.int64),
            "session_start_ms": words[:, 3].view(np.int64),
            "impressions": words[:, 4],
            "completions": words[:, 5],
            "fast_skips": words[:, 6],
            "found": found,
        }

    def export_users(self, users: Any) -> list[tuple[bytes, bytes] | None]:
        """Each user's whole state as ``(vectors, state)`` images (None: no row): vectors are
        the float32 long-term and session vectors, state the counters, seen-set and event key
        window. For stores that keep users elsewhere (``recserve.store.dynamodb``)."""
        return self._core.export_users(as_ids(users, "users"))

    def import_users(self, users: Any, vectors: list[bytes], states: list[bytes]) -> int:
        """Replaces each user's state with its exported image if the image has applied more
        (a higher high-water mark; checked under the writer lock, so an image read before
        newer events were applied here never replaces them). Returns how many were replaced.
        A damaged or mismatched image raises ValueError and nothing changes."""
        return int(self._core.import_users(as_ids(users, "users"), list(vectors), list(states)))

    def evict_users(
        self, keep: int
    ) -> tuple[npt.NDArray[np.uint64], list[tuple[bytes, bytes]]]:
        """Removes users until at most ``keep`` remain (the least recently updated of each
        fullest shard first) and returns their keys and ``export_users`` images."""
        return self._core.evict_users(int(keep))

    def erase_user(self, user: int) -> bool:
        """Forgets one user (vectors, counters, seen-set, event keys); whether any existed."""
        return bool(self._core.erase_user(int(user)))

    def seen(self, user: int, items: Any) -> npt.NDArray[np.bool_]:
        """Whether the user has met each item (exact for recent items; older ones through a
        filter that may, rarely, say yes for an unseen item)."""
        return self._core.seen(int(user), as_ids(items, "items"))

    def recent_items(self, user: int) -> npt.NDArray[np.uint64]:
        """The user's recent items, newest first."""
        return self._core.recent_items(int(user))

    def recent_positives(self, user: int) -> RecentPositives:
        """The user's last distinct positives, newest first: (items, ts_ms, weights), a plain
        tuple with names; empty arrays for a user without any."""
        return RecentPositives(*self._core.recent_positives(int(user)))

    def related(
        self,
        user: int,
        now_ms: int,
        k: int,
        recency_decay: float = 0.8,
        alpha: float = 0.5,
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """Up to ``k`` items co-engaged with the user's recent positives, best first (ties by
        key): ``score(j) = sum_r recency_decay**r * w(i_r, j) / (n(i_r)**(1 - alpha) *
        n(j)**alpha)`` over the positives i_r, newest r = 0, leaving those positives out
        (alpha 0.5: cosine). Empty for a user without positives. Scores do not depend on
        ``now_ms`` (every count decays alike). Bad arguments raise ValueError."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise TypeError(f"k must be an integer, got {type(k).__name__}")
        if not 1 <= int(k) <= MAX_RELATED:
            raise ValueError(f"k must be in 1..{MAX_RELATED}, got {k}")
        decay, a = float(recency_decay), float(alpha)
        if not 0.0 <= decay <= 1.0:  # also refuses NaN
            raise ValueError(f"recency_decay must be in [0, 1], got {recency_decay}")
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        return self._core.related(int(user), int(now_ms), int(k), decay, a)

    def items(self, ids: Any) -> ItemState:
        vectors, words, found = self._core.items(as_ids(ids))
        stats: dict[str, npt.NDArray[Any]] = {
            name: words[:, i] for i, name in enumerate(ITEM_STATS)
        }
        for name in ("match_sum", "impression_match_sum"):
            stats[name] = stats[name].view(np.int64) / MATCH_SUM_SCALE
        return ItemState(vectors, (words[:, len(ITEM_STATS)] & 1).astype(bool), stats, found)

    def stats(self) -> dict[str, int]:
        return dict(self._core.stats())

    def snapshot(self, lsn: int) -> Any:
        """The whole state in memory (taken under the writer lock), tagged with lsn; call
        ``.write(path)`` on it to store it durably (temporary file, fsync, rename)."""
        return self._core.snapshot(int(lsn))
