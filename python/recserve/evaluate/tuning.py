"""The peers' settings, chosen on a validation period inside the data before the split.

``recserve eval`` scores the policies on the events from the split on (80 % of the time).
The peers (``recserve.evaluate.peers``) are tuned without those events: the replay of the
peers alone (``recserve.evaluate.peer_replay.replay_peers``: the same pair selection, seen-item
exclusion and popularity fallback as the full replay) runs on the events before the split,
scored from ``split`` of *that* period on (64-80 % of the whole time with the default 0.8),
ALS fitted at that inner split. Every setting of each grid is replayed in one pass (the
co-occurrence counts are shared by all its settings); the one with the best HR@k wins (then
NDCG@k; then the first in grid order). The chosen values and their validation scores are
reported with the results (``settings.peers``).

Grids (small enough that the whole MovieLens evaluation takes minutes on 2 cores):

- itemcf: ``decay`` 0.6, 0.7, 0.8, 0.9, 1.0 x ``window`` 5, 20, None x ``normalize``
  cosine, none (30 settings);
- als: ``factors`` 16, 32, 64 x ``regularization`` 0.01, 0.1, 1 x ``alpha`` 1, 10, 40
  (27 settings), ``iterations`` fixed at 10.

With no engagement to score in the validation period (a very short log) the defaults are kept,
and the report says so.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

from recserve.evaluate.inputs import Catalogue
from recserve.evaluate.peer_replay import replay_peers
from recserve.evaluate.peers import ALSFoldIn, CoOccurrence, Normalize
from recserve.evaluate.scoring import Score, split_time
from recserve.ingest.event_row import EventRow
from recserve.profiles import UpdateRule

__all__ = ["ALS_GRID", "ALS_ITERATIONS", "ITEMCF_GRID", "choose_peer_settings"]

ITEMCF_GRID: dict[str, tuple[Any, ...]] = {
    "decay": (0.6, 0.7, 0.8, 0.9, 1.0),
    "window": (5, 20, None),
    "normalize": ("cosine", "none"),
}
ALS_GRID: dict[str, tuple[Any, ...]] = {
    "factors": (16, 32, 64),
    "regularization": (0.01, 0.1, 1.0),
    "alpha": (1.0, 10.0, 40.0),
}
ALS_ITERATIONS = 10
_DEFAULTS: dict[str, dict[str, Any]] = {
    "itemcf": {"decay": 0.8, "window": None, "normalize": "cosine"},
    "als": {"factors": 32, "regularization": 0.1, "alpha": 10.0, "iterations": ALS_ITERATIONS},
}


def _grid(grid: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def choose_peer_settings(
    rows: Sequence[EventRow],
    catalogue: Catalogue,
    *,
    split: float = 0.8,
    k: int = 10,
    rule: UpdateRule | None = None,
    seed: int = 0,
    itemcf_grid: dict[str, tuple[Any, ...]] | None = None,
    als_grid: dict[str, tuple[Any, ...]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The peers' settings for a replay of ``rows`` (in time order) split at ``split``,
    chosen on the events before the split only (see the module doc):
    ``{"itemcf": {settings..., "validation": scores}, "als": {...}, "validation": period}``."""
    started = time.perf_counter()
    split_ms = split_time(rows, split)
    before = [row for row in rows if int(row.ts or 0) < split_ms]
    itemcf_settings = _grid(itemcf_grid if itemcf_grid is not None else ITEMCF_GRID)
    als_settings = [
        {**s, "iterations": ALS_ITERATIONS}
        for s in _grid(als_grid if als_grid is not None else ALS_GRID)
    ]
    if progress is not None:
        progress(
            f"tuning the peers on the {len(before):,} events before the split: "
            f"{len(itemcf_settings)} itemcf and {len(als_settings)} ALS settings"
        )
    if not before:
        return _defaults("no events before the split", split_ms, split_ms)
    n = len(catalogue.items)
    base = CoOccurrence(n)
    itemcf = {
        f"itemcf{i}": base.with_settings(
            decay=s["decay"], window=s["window"], normalize=_normalize(s["normalize"])
        )
        for i, s in enumerate(itemcf_settings)
    }
    als = {f"als{i}": ALSFoldIn(n, **s, seed=seed) for i, s in enumerate(als_settings)}
    plan, scores = replay_peers(
        before, catalogue, itemcf=itemcf, als=als, split=split, k=k, rule=rule
    )
    period = {
        "from_ts": plan.split_ms,
        "to_ts": split_ms,
        "evaluated": len(plan.after_split),
        "settings_tried": {"itemcf": len(itemcf_settings), "als": len(als_settings)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not plan.after_split:
        return _defaults("no engagement to score before the split", plan.split_ms, split_ms)
    return {
        "itemcf": _best(itemcf_settings, [scores[name] for name in itemcf]),
        "als": _best(als_settings, [scores[name] for name in als]),
        "validation": period,
    }


def _normalize(value: str) -> Normalize:
    if value not in ("cosine", "none"):
        raise ValueError(f"normalize must be 'cosine' or 'none', got {value!r}")
    return "cosine" if value == "cosine" else "none"


def _best(settings: list[dict[str, Any]], scores: list[Score]) -> dict[str, Any]:
    best = max(range(len(settings)), key=lambda i: (scores[i].hr, scores[i].ndcg, -i))
    return {**settings[best], "validation": _rounded(scores[best].to_dict())}


def _rounded(metrics: dict[str, float | int]) -> dict[str, float | int]:
    return {key: round(v, 4) if isinstance(v, float) else v for key, v in metrics.items()}


def _defaults(note: str, from_ms: int, to_ms: int) -> dict[str, Any]:
    return {
        **{name: {**values, "note": note} for name, values in _DEFAULTS.items()},
        "validation": {"from_ts": from_ms, "to_ts": to_ms, "evaluated": 0},
    }
