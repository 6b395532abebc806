"""The ranker's input row: one float32 vector per (user, candidate item) pair.

The same code builds rows for training (the replay of an impression log, many users at once)
and for serving (one user, a few hundred candidates, numpy only)::

    spec = FeatureSpec(dims=64)                      # layout, Beta priors, no normalisation yet
    raw = build_features(spec, user, items, stats, context, normalize=False)
    spec = spec.fit(raw[train_rows])                 # per-feature mean/std of the training rows
    x = build_features(spec, user, items, stats, context)   # float32 [n, spec.width]

Layout at ``dims = d`` (``3 * d + 19`` columns, 211 at the default d = 64; version 1, which
older models read, stops before the last three: ``3 * d + 16``), in this order:

============================  =====  ===================================================
field                         width  value
============================  =====  ===================================================
``user_long``                 d      the user's long-term vector
``user_session``              d      the user's current-session vector
``item``                      d      the candidate's item vector
``dot_long_item``             1      <user_long, item>
``dot_session_item``          1      <user_session, item>
``item_<outcome>_rate``       7      (count + a) / (impressions + a + b) for complete, replay,
                                     like, share, comment, follow, skip; Beta(a, b) prior with
                                     a = mean * strength, b = (1 - mean) * strength
``item_log_impressions``      1      log1p(impressions served so far)
``item_log_age_hours``        1      log1p(max(now - created_at, 0) / 3600)
``user_log_events``           1      log1p(events the user has sent)
``user_log_session_length``   1      log1p(impressions served in the current session)
``user_complete_rate``        1      the user's smoothed completion rate (same prior)
``user_skip_rate``            1      the user's smoothed fast-skip rate (same prior)
``position``                  1      the slot in the session feed (0 = first)
``related_score``             1      co-engagement score from the user's recent positives
``positive_similarity``       1      largest cosine to one of the user's recent positives
``log_hours_since_region_``   1      log1p(hours since the user's latest positive in the
``positive``                         item's catalogue region; 720 if none)
============================  =====  ===================================================

The last three (version 2) come from ``recserve.affinity``, the same function in the feed and in
the training replay.

Normalisation is ``(raw - mean) / std`` per column, with ``mean`` and ``std`` fitted on the
training rows and stored in the spec (and so in the model file, through ``to_dict``). Every
input is checked: a wrong dimension or a NaN/inf raises a ValueError naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve import _core
from recserve.affinity import NO_POSITIVE_HOURS, Affinity

__all__ = [
    "FORMAT",
    "OUTCOMES",
    "VERSION",
    "Context",
    "FeatureSpec",
    "ItemStats",
    "UserFeatures",
    "build_features",
]

FORMAT = "recserve.features"
VERSION = 2  # what new specs are; version-1 specs (no affinity columns) are still read
SUPPORTED_VERSIONS = (1, 2)

#: Outcomes counted per impression, in the order of the item-rate columns.
OUTCOMES: tuple[str, ...] = ("complete", "replay", "like", "share", "comment", "follow", "skip")

#: Beta prior per outcome rate: (prior mean, prior strength in pseudo-impressions).
DEFAULT_PRIORS: dict[str, tuple[float, float]] = {
    "complete": (0.3, 20.0),
    "replay": (0.05, 20.0),
    "like": (0.05, 20.0),
    "share": (0.01, 20.0),
    "comment": (0.01, 20.0),
    "follow": (0.005, 20.0),
    "skip": (0.3, 20.0),
}

_SCALAR_FIELDS: tuple[str, ...] = (
    "dot_long_item",
    "dot_session_item",
    *(f"item_{o}_rate" for o in OUTCOMES),
    "item_log_impressions",
    "item_log_age_hours",
    "user_log_events",
    "user_log_session_length",
    "user_complete_rate",
    "user_skip_rate",
    "position",
)

#: Version 2's columns after the version-1 scalars (recserve.affinity).
_AFFINITY_FIELDS: tuple[str, ...] = (
    "related_score",
    "positive_similarity",
    "log_hours_since_region_positive",
)

_STD_FLOOR = 1e-6

Array = npt.NDArray[Any]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class UserFeatures:
    """One user (vectors of shape [d], counts scalar) or one user per row ([n, d], [n])."""

    long_term: npt.ArrayLike
    session: npt.ArrayLike
    events: npt.ArrayLike = 0
    session_length: npt.ArrayLike = 0
    impressions: npt.ArrayLike = 0
    completes: npt.ArrayLike = 0
    skips: npt.ArrayLike = 0


@dataclass(frozen=True)
class ItemStats:
    """Per-candidate counters, each of shape [n] (or scalar, broadcast to every candidate).

    ``impressions`` counts impressions served; the outcome fields count impressions that had
    that outcome (see ``OUTCOMES``); ``created_at`` is the item's creation time (Unix seconds).
    """

    impressions: npt.ArrayLike = 0
    complete: npt.ArrayLike = 0
    replay: npt.ArrayLike = 0
    like: npt.ArrayLike = 0
    share: npt.ArrayLike = 0
    comment: npt.ArrayLike = 0
    follow: npt.ArrayLike = 0
    skip: npt.ArrayLike = 0
    created_at: npt.ArrayLike = 0.0


@dataclass(frozen=True)
class Context:
    """When (Unix seconds) and where (slot in the session feed) each candidate is shown."""

    now: npt.ArrayLike
    position: npt.ArrayLike = 0


@dataclass(eq=False)
class FeatureSpec:
    """The layout of the input row, its priors and (once fitted) its normalisation."""

    dims: int = 64
    priors: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    mean: F32 | None = None
    std: F32 | None = None
    version: int = VERSION

    def __post_init__(self) -> None:
        if isinstance(self.dims, bool) or not isinstance(self.dims, int) or self.dims < 1:
            raise ValueError(f"dims must be a positive integer, got {self.dims!r}")
        if self.version not in SUPPORTED_VERSIONS:
            raise ValueError(f"version must be one of {SUPPORTED_VERSIONS}, got {self.version!r}")
        priors = {name: self.priors.get(name, DEFAULT_PRIORS[name]) for name in OUTCOMES}
        unknown = sorted(set(self.priors) - set(OUTCOMES))
        if unknown:
            raise ValueError(f"priors: unknown outcome(s) {unknown}; expected some of {OUTCOMES}")
        for name, (mean, strength) in priors.items():
            if not (0.0 < float(mean) < 1.0 and float(strength) > 0.0):
                raise ValueError(
                    f"priors[{name!r}]: need 0 < mean < 1 and strength > 0, "
                    f"got ({mean}, {strength})"
                )
        self.priors = {k: (float(m), float(s)) for k, (m, s) in priors.items()}
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together (or neither)")
        if self.mean is not None and self.std is not None:
            self.mean = _vector(self.mean, "mean", self.width)
            self.std = _vector(self.std, "std", self.width)
            if (self.std <= 0).any():
                raise ValueError("std: every entry must be > 0")

    @property
    def fields(self) -> list[tuple[str, int]]:
        """(field name, width) in row order."""
        d = self.dims
        vectors = [("user_long", d), ("user_session", d), ("item", d)]
        return vectors + [(name, 1) for name in self._scalars]

    @property
    def _scalars(self) -> tuple[str, ...]:
        return _SCALAR_FIELDS + (_AFFINITY_FIELDS if self.version >= 2 else ())

    @property
    def width(self) -> int:
        return 3 * self.dims + len(self._scalars)

    @property
    def names(self) -> list[str]:
        """One name per column: ``user_long[0]`` … ``position``."""
        out: list[str] = []
        for name, width in self.fields:
            out.extend([name] if width == 1 else [f"{name}[{i}]" for i in range(width)])
        return out

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def slice(self, name: str) -> slice:
        """The columns of one field."""
        slices = self.__dict__.get("_slices")
        if slices is None:  # computed once: the feed builds rows on every request
            slices, start = {}, 0
            for field_name, width in self.fields:
                slices[field_name] = slice(start, start + width)
                start += width
            self.__dict__["_slices"] = slices
        try:
            return slices[name]  # type: ignore[no-any-return]
        except KeyError:
            raise KeyError(f"no field {name!r}; fields are {list(slices)}") from None

    def layout(self, normalize: bool = True) -> Any:
        """The core's form of this layout (``_core.feed.Layout``), made once per spec."""
        key = "_layout" if normalize else "_raw_layout"
        layout = self.__dict__.get(key)
        if layout is None:
            priors = np.array([self.priors[o] for o in OUTCOMES], dtype=np.float64)
            fitted = normalize and self.mean is not None
            layout = self.__dict__[key] = _core.feed.Layout(
                self.dims,
                self.version,
                priors,
                self.mean if fitted else None,
                self.std if fitted else None,
            )
        return layout

    def fit(self, rows: npt.ArrayLike) -> FeatureSpec:
        """A copy of this spec normalised by the mean and std of these (raw) rows."""
        raw = _rows(rows, self.width, "rows")
        if raw.shape[0] == 0:
            raise ValueError("rows: need at least one row to fit the normalisation")
        wide = raw.astype(np.float64)
        std = wide.std(axis=0)
        std[std < _STD_FLOOR] = 1.0
        return FeatureSpec(
            self.dims,
            self.priors,
            wide.mean(axis=0).astype(np.float32),
            std.astype(np.float32),
            self.version,
        )

    def normalize(self, rows: npt.ArrayLike) -> F32:
        """Raw rows -> the model's inputs (a copy; unchanged when not fitted)."""
        raw = _rows(rows, self.width, "rows")
        if self.mean is None or self.std is None:
            return raw.copy()
        return ((raw - self.mean) / self.std).astype(np.float32)

    def denormalize(self, rows: npt.ArrayLike) -> F32:
        """The model's inputs -> raw rows."""
        x = _rows(rows, self.width, "rows")
        if self.mean is None or self.std is None:
            return x.copy()
        return (x * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (stored as the model's ``feature_spec``)."""
        return {
            "format": FORMAT,
            "version": self.version,
            "dims": self.dims,
            "width": self.width,
            "fields": [{"name": name, "width": width} for name, width in self.fields],
            "names": self.names,
            "priors": {name: [mean, strength] for name, (mean, strength) in self.priors.items()},
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """The inverse of ``to_dict``; refuses other formats and versions."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"not a feature spec: expected format {FORMAT!r}")
        version = data.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"feature spec version {version!r} is not supported "
                f"(this recserve reads versions {SUPPORTED_VERSIONS})"
            )
        try:
            priors = {str(k): (float(v[0]), float(v[1])) for k, v in data["priors"].items()}
            mean, std = data.get("mean"), data.get("std")
            spec = cls(
                dims=data["dims"],
                priors=priors,
                mean=None if mean is None else np.asarray(mean, dtype=np.float32),
                std=None if std is None else np.asarray(std, dtype=np.float32),
                version=int(version),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"feature spec is malformed: {exc!r}") from exc
        if "names" in data and list(data["names"]) != spec.names:
            raise ValueError(
                f"feature spec names do not match the version-{version} layout for its dims"
            )
        return spec


def build_features(
    spec: FeatureSpec,
    user: UserFeatures,
    items: npt.ArrayLike,
    stats: ItemStats,
    context: Context,
    *,
    affinity: Affinity | None = None,
    normalize: bool = True,
) -> F32:
    """Rows [n, spec.width] for n candidate items (float32 [n, d]); see the module docstring.

    ``affinity`` fills version 2's columns (None: as for a user without recent positives);
    ``normalize=False`` gives the raw rows (what ``FeatureSpec.fit`` takes).
    """
    d = spec.dims
    item_vectors = _rows(items, d, "items")
    n = item_vectors.shape[0]
    long_term = _user_vectors(user.long_term, n, d, "user.long_term")
    session = _user_vectors(user.session, n, d, "user.session")
    scalars = np.empty((n, _core.feed.SCALAR_COLUMNS), dtype=np.float64)
    scalars[:, 0] = _counts(stats.impressions, n, "stats.impressions")
    for i, outcome in enumerate(OUTCOMES):
        scalars[:, 1 + i] = _counts(getattr(stats, outcome), n, f"stats.{outcome}")
    scalars[:, 8] = _scalars(stats.created_at, n, "stats.created_at")
    scalars[:, 9] = _scalars(context.now, n, "context.now")
    scalars[:, 10] = _counts(user.events, n, "user.events")
    scalars[:, 11] = _counts(user.session_length, n, "user.session_length")
    scalars[:, 12] = _counts(user.impressions, n, "user.impressions")
    scalars[:, 13] = _counts(user.completes, n, "user.completes")
    scalars[:, 14] = _counts(user.skips, n, "user.skips")
    scalars[:, 15] = _counts(context.position, n, "context.position")
    if affinity is None:
        scalars[:, 16:18] = 0.0
        scalars[:, 18] = NO_POSITIVE_HOURS
    else:
        scalars[:, 16] = _scalars(affinity.related, n, "affinity.related")
        scalars[:, 17] = _scalars(affinity.positive_similarity, n, "affinity.positive_similarity")
        scalars[:, 18] = _counts(
            affinity.region_positive_hours, n, "affinity.region_positive_hours"
        )
    # The arithmetic is the core's (recserve/feed/features.hpp): the native feed writes the same
    # rows to the bit, so a model sees in serving what it saw in training.
    rows: F32 = _core.feed.feature_rows(
        spec.layout(normalize), long_term, session, item_vectors, scalars
    )
    return rows


def _check_finite(array: Array, name: str) -> None:
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(
            f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})"
        )


def _as_float(value: npt.ArrayLike, name: str) -> Array:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    return array


def _rows(value: npt.ArrayLike, width: int, name: str) -> F32:
    array = _as_float(value, name)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name} must have shape (n, {width}), got {array.shape}")
    out = np.ascontiguousarray(array, dtype=np.float32)
    _check_finite(out, name)
    return out


def _vector(value: npt.ArrayLike, name: str, width: int) -> F32:
    array = _as_float(value, name)
    if array.shape != (width,):
        raise ValueError(f"{name} must have shape ({width},), got {array.shape}")
    out = np.ascontiguousarray(array, dtype=np.float32)
    _check_finite(out, name)
    return out


def _user_vectors(value: npt.ArrayLike, n: int, d: int, name: str) -> F32:
    """One user's vector ([d], for every row) or one per row ([n, d]), float32, checked."""
    array = _as_float(value, name)
    if array.shape == (d,):
        out = np.ascontiguousarray(array, dtype=np.float32)
        _check_finite(out, name)
        return out
    if array.shape != (n, d):
        raise ValueError(f"{name} must have shape ({d},) or ({n}, {d}), got {array.shape}")
    return _rows(array, d, name)


def _scalars(value: npt.ArrayLike, n: int, name: str) -> npt.NDArray[np.float64]:
    array = _as_float(value, name)
    if array.ndim == 0:
        array = np.full(n, float(array))
    elif array.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {array.shape}")
    out = array.astype(np.float64, copy=False)
    _check_finite(out, name)
    return out


def _counts(value: npt.ArrayLike, n: int, name: str) -> npt.NDArray[np.float64]:
    out = _scalars(value, n, name)
    if (out < 0).any():
        raise ValueError(f"{name} must be >= 0")
    return out
