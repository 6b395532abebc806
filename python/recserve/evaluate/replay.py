"""Chronological replay of an event log through the engine: HR@k and NDCG@k of what it would
have recommended, for real-time recserve, the same engine frozen at a split time, popularity
(live, and frozen at the split), and two peers that learn in real time too: item-to-item
co-occurrence and ALS with per-event fold-in.

    catalogue = read_items("items.jsonl")
    events = read_events("events.jsonl", catalogue)
    result = replay(events, catalogue, config="recserve.toml")   # ReplayResult
    result.policies["realtime"].hr, result.policies["frozen"].ndcg, result.policies["itemcf"].hr

**Input.** Items: JSON lines in the body format of ``POST /v1/items`` (``id``, ``embedding``,
``creator_id``, ``duration_ms``, ``tags?``, ``created_at?`` ms, ``media_key?``); all are in the
catalogue from the start. Events: JSON lines in the format of ``POST /v1/events`` (``event_id``,
``user_id``, ``item_id``, ``type``, ``watch_ms?``, ``duration_ms?``, ``request_id?``,
``session_id?``), with ``ts`` (ms since the epoch) required: the replay runs on the log's clock.
Unknown fields, NaN, a missing ``ts`` or ``watch_ms`` (for a watch), an item not in the
catalogue or a malformed line is a :class:`ReplayError` naming the file, line and field.
Events are replayed in ``ts`` order (ties keep the file's order).

**Engagement.** A user engaged with an item if any of their events on it is a ``like``,
``share``, ``comment``, ``follow`` or ``replay``, or a ``watch`` of at least the update rule's
``completion_threshold`` of the duration (the engine's own notion of a completion; the
duration from the event, else the item).

**What is evaluated.** Each engaged (user, item) pair once, at the user's first event on the
item: just before that event is applied, each policy gives its top ``k``; a hit if the item is
in it, and NDCG@k = 1 / log2(rank + 2) (rank 0-based; 0 on a miss; one relevant item, so the
ideal DCG is 1). After that first event the item is seen and no policy may recommend it again.
By default only pairs met at or after the split time (``split`` of the way from the first to
the last event, 0.8: the last 20 % of time) are evaluated, where the policies differ;
``whole_run`` also scores the period before it (where frozen is real-time by definition).
``sample`` scores a seeded random sample of those pairs; every event is still applied.

**Policies.**

- ``realtime``: the engine (``recserve.service.engine.Engine``) built from the configuration,
  every event posted to it (skips and half watches included, so negatives count), and its page
  assembled by its own feed builder (candidates → filters → ranker → blend → page).
- ``frozen``: a second engine that gets only the events before the split: its profiles, item
  counters and trending stand still after it (a model and state refreshed by a batch job).
  What a user meets after the split is still never recommended to them (a serving layer knows
  what it showed); the replay records those items in the frozen engine's served memory, which
  excludes them exactly as the seen-set does, from retrieval on.
- ``popularity``: the unseen items with the most engaged users so far (ties: catalogue order),
  counting engagements after the split too: a live baseline, which knows what every user,
  new ones included, engaged with a moment ago.
- ``popularity_frozen``: the same with its counts stopped at the split, the batch counterpart
  that ``frozen`` should be compared with. In a log where most users of the scored period are
  new (MovieLens-100K: 182 of 269), the frozen engine knows nothing of them and can at best
  serve them what was popular at the split; it can beat popularity only on returning users.
- ``itemcf``: ``recserve.evaluate.peers.CoOccurrence``, item-to-item co-occurrence updated on
  every engagement (after the split too), scored from the user's engaged history with
  recency weights ``decay**age`` over the last ``window`` items.
- ``als``: ``recserve.evaluate.peers.ALSFoldIn``, implicit ALS fitted at the split on the
  engagements before it (item factors frozen from then on, a batch model), each user's vector
  refitted in closed form on every engagement (fold-in; new users get one at their first).
  Before the split it has no model: with ``whole_run`` its pages there are popularity's.

  The peers learn from engagements only (what the popularity baselines count); their page is
  the top ``k`` unseen items of their scores, equal scores in live-popularity order (then the
  catalogue's), and for a user they know nothing of yet (no engagement) the live popularity
  page, as a deployment would serve. Their settings are
  chosen on a validation period inside the data before the split
  (``recserve.evaluate.tuning``: the same replay of the peers alone, ``replay_peers``, on the
  events before the split, scored from ``split`` of that period on), never on the scored
  period; ``peers=`` fixes them instead. The chosen values are in ``settings["peers"]``.

**The ranker.** With ``train`` both engines serve a ranker trained on the events before the
split (``recserve.evaluate.trained``: impressions with sampled negatives, validation inside
the period before the split), the model a batch job would have trained at the split time;
otherwise the configured one (``similarity``: the query-item dot product). The engine's
popularity prior (``feed.popularity_weight``, off by default) comes from the configuration.

**How the engine runs here** (each choice because the replay would otherwise measure something
else than the configuration):

- *The log's clock.* ``Engine.feed`` reads the wall clock, which would decay every session
  vector from 1998 to today (to nothing) and age every item by decades; so the page comes
  from the engine's ``FeedBuilder.build`` (what ``Engine.feed`` calls) with ``now`` = the
  event's ``ts``, events are posted with their ``ts``, and sessions decay and time out on the
  log's clock. The ranker and blend are the user's experiment arm's, as ``Engine.feed`` picks.
- *No served memory* (``served_memory = 0``, frozen aside as above): no page is really shown
  in a replay, so items "served lately" would hide items the user is about to choose. The
  replay counts each item a user meets as one impression of their session, so the ranker's
  session-length feature reads what it would have in the service.
- *Trending undecayed* (``trending_half_life_s = inf``): the engine decays trending on the
  wall clock, which the replay compresses into minutes; undecayed is nearly what that gives,
  without depending on how fast the machine runs.
- *No exploration* (``explore_slots = 0`` unless the configuration sets it; then seeded per
  request): every item of a replayed catalogue is new to the amplifier, so exploration slots
  would hold a random sample of the whole catalogue.
- ``precompute``, the impression log and snapshots off; the state lives in a temporary
  directory (in ``/dev/shm`` where there is one: the WAL's fsyncs cost nothing there). Items are
  posted one at a time so the ANN graph, and with it every result, is the same on every run.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from recserve.evaluate.inputs import (
    Catalogue,
    ReplayError,
    check_event,
    read_events,
    read_items,
    validation_problem,
)
from recserve.evaluate.peer_replay import PeerPolicies, Popularity, replay_peers
from recserve.evaluate.peers import ALSFoldIn, CoOccurrence
from recserve.evaluate.scoring import (
    ENGAGING_TYPES,
    Score,
    engaged,
    in_time_order,
    plan_of,
    split_time,
)
from recserve.ids import key_of
from recserve.ingest.event_row import EventRow
from recserve.profiles import UpdateRule
from recserve.rank import Ranker, SimilarityRanker
from recserve.service.engine import Engine
from recserve.service.settings import Settings, load_settings

# Some names are those of inputs, scoring and peer_replay (which the tuning and the trainer
# import without this module and its engines), re-exported: callers of the replay find them here.
__all__ = [
    "ENGAGING_TYPES",
    "PEERS",
    "POLICIES",
    "PeerPolicies",
    "Catalogue",
    "Score",
    "ReplayError",
    "ReplayResult",
    "engaged",
    "in_time_order",
    "read_events",
    "read_items",
    "replay",
    "replay_peers",
    "replay_settings",
    "split_time",
    "write_jsonl",
]

POLICIES = ("realtime", "frozen", "popularity", "popularity_frozen", "itemcf", "als")
#: The peers among the policies (``recserve.evaluate.peers``), tuned before the split.
PEERS = ("itemcf", "als")
_POST_BATCH = 10_000  # events per post_events call at most (the API's batch limit)


@dataclass(frozen=True)
class ReplayResult:
    k: int
    split_ms: int
    first_ms: int
    last_ms: int
    events: int  # events applied (to realtime)
    users: int
    items: int
    model_version: str
    policies: dict[str, Score]  # the evaluated period (from the split on)
    returning: dict[str, Score]  # the same, for users with events before the split
    whole_run: dict[str, Score] | None  # also before the split, if asked
    candidates: int  # engaged (user, item) pairs in the evaluated period
    evaluated: int  # of those, scored (all unless sampled)
    users_evaluated: int
    users_returning: int
    seen_dropped: int  # seen items an engine page held (0: the engine's filters held)
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.policies[name].to_dict() for name in POLICIES}
        out.update(
            k=self.k,
            evaluated=self.evaluated,
            engagements_after_split=self.candidates,
            users_evaluated=self.users_evaluated,
            returning_users={
                "users": self.users_returning,
                "evaluated": self.returning["realtime"].evaluated,
                **{name: self.returning[name].to_dict() for name in POLICIES},
            },
            events=self.events,
            users=self.users,
            items=self.items,
            first_ts=self.first_ms,
            split_ts=self.split_ms,
            last_ts=self.last_ms,
            model_version=self.model_version,
            seen_dropped=self.seen_dropped,
            seconds=round(self.seconds, 3),
            settings=self.settings,
        )
        if self.whole_run is not None:
            out["whole_run"] = {
                "evaluated": self.whole_run["realtime"].evaluated,
                **{name: self.whole_run[name].to_dict() for name in POLICIES},
            }
        return out


# ---- the engines ----------------------------------------------------------------------------
def replay_settings(
    config: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str],
    dims: int,
    *,
    served_memory: int = 0,
    model: Path | None = None,
) -> Settings:
    """The engine's settings for a replay: the configuration (defaults, TOML file, environment),
    then what the replay needs (see the module doc)."""
    try:
        settings = load_settings(None if config is None else Path(config))
    except FileNotFoundError as error:
        raise ReplayError(str(error)) from None
    except ValidationError as error:
        raise ReplayError(f"{config}: {validation_problem(error)}") from None
    if settings.dims is not None and settings.dims != dims:
        raise ReplayError(f"{config}: dims {settings.dims}, but the items have {dims} dimensions")
    feed: dict[str, Any] = {
        "precompute": False,
        "served_memory": served_memory,
        "trending_half_life_s": math.inf,
    }
    if "explore_slots" not in settings.feed.model_fields_set:
        feed["explore_slots"] = 0
    served_model: dict[str, Any] = {}
    if model is not None:  # the ranker trained before the split replaces the configured one
        if any(arm.model is not None for e in settings.experiments for arm in e.arms):
            raise ReplayError(f"{config}: an experiment arm names a model; train=False for it")
        served_model = {"models_dir": str(model.parent), "model": model.stem}
    return settings.model_copy(
        update={
            **served_model,
            "data_dir": Path(data_dir),
            "dims": dims,
            "impression_log": False,
            "snapshot_interval_s": 1e9,
            "events_source": "http",
            "state_store": "embedded",
            "feed": settings.feed.model_copy(update=feed),
        }
    )


def _scratch_dir() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class _EnginePolicy:
    """One engine driven on the log's clock; pages from its feed builder."""

    def __init__(
        self, settings: Settings, catalogue: Catalogue, seed: int, similarity: bool
    ) -> None:
        self.engine = Engine(settings)
        self.engine.start()
        self.seed = seed
        self.similarity = similarity
        for i, item in enumerate(catalogue.items):  # one at a time: a reproducible ANN graph
            self.engine.upsert_items([item], catalogue.vectors[i : i + 1])
        self.pending: list[EventRow] = []
        self.posted = 0

    def add(self, row: EventRow) -> None:
        self.pending.append(row)
        if len(self.pending) >= _POST_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.engine.post_events(self.pending)
            self.posted += len(self.pending)
            self.pending = []

    def met(self, user_key: int, item_key: int, now_ms: int) -> None:
        """The user met the item: one impression of their session (and, with a served memory,
        never recommended again)."""
        self.engine.served.add(user_key, [item_key], now_ms / 1000.0)

    def _ranker(self, user_id: str) -> Ranker | SimilarityRanker:
        if self.similarity:
            return SimilarityRanker()
        assignment = self.engine.experiments.assign(user_id)  # as Engine.feed chooses
        ranker: Ranker | SimilarityRanker = self.engine.ranker
        if assignment.model is not None and self.engine.registry is not None:
            ranker = self.engine.registry.get(assignment.model)
        return ranker.with_blend(assignment.blend)

    def page(self, user_id: str, k: int, now_ms: int, request: int) -> list[str]:
        self.flush()
        builder = self.engine.builder
        assert builder is not None  # items were posted: the engine is open
        user_key = key_of(user_id)
        result = builder.build(
            user_key, k, self._ranker(user_id), now_ms, seed=(self.seed << 32) ^ request
        )
        return [served.item_id for served in result.items]

    def close(self) -> None:
        self.engine.close(snapshot=False)


# ---- the replay -----------------------------------------------------------------------------
def replay(
    events: Sequence[EventRow],
    catalogue: Catalogue,
    *,
    config: str | os.PathLike[str] | None = None,
    split: float = 0.8,
    k: int = 10,
    whole_run: bool = False,
    sample: int | None = None,
    seed: int = 0,
    similarity: bool = False,
    train: bool = False,
    negatives: int = 4,
    progress: Callable[[int, int], None] | None = None,
    peers: dict[str, Any] | None = None,
    peer_progress: Callable[[str], None] | None = None,
) -> ReplayResult:
    """Replays ``events`` in time order and scores the policies (see the module doc).
    ``similarity``: rank by the query-item dot product (the engine's ranker when it has no
    model) instead of the configured model. ``progress(done, total)`` is called now and then
    with the pairs scored so far. ``peers``: the peers' settings
    (``{"itemcf": {...}, "als": {...}}``, keyword arguments of ``CoOccurrence`` and
    ``ALSFoldIn``; a peer left out keeps its defaults); None tunes them on the period before
    the split (``recserve.evaluate.tuning``), ``peer_progress`` hearing what is being tuned."""
    started = time.perf_counter()
    if not 0.0 <= split < 1.0:
        raise ReplayError(f"split must be in [0, 1), got {split}")
    if k < 1:
        raise ReplayError(f"k must be >= 1, got {k}")
    if sample is not None and sample < 1:
        raise ReplayError(f"sample must be >= 1, got {sample}")
    if not events:
        raise ReplayError("no events to replay")
    known = {item.id: item for item in catalogue.items}
    for i, row in enumerate(events):
        try:
            check_event(row, known)
        except ReplayError as error:
            raise ReplayError(f"events[{i}] ({row.event_id!r}): {error}") from None

    rows = in_time_order(events)
    ts = [int(row.ts or 0) for row in rows]
    split_ms = split_time(rows, split)

    with ExitStack() as stack:
        scratch = _scratch_dir()
        directories = [
            stack.enter_context(tempfile.TemporaryDirectory(prefix="recserve-eval-", dir=scratch))
            for _ in range(3)
        ]
        realtime_settings = replay_settings(config, directories[0], catalogue.dims)
        rule = UpdateRule.from_dict(realtime_settings.update_rule)
        model = None
        if train and not similarity:
            from recserve.evaluate.trained import train_before  # torch, only when asked

            model = train_before(
                rows,
                catalogue,
                split_ms,
                directories[2],
                rule=rule,
                negatives=negatives,
                seed=seed,
                query=realtime_settings.feed.affinity_query(),
                co_engagement=realtime_settings.co_engagement.options(),
            )
            realtime_settings = replay_settings(config, directories[0], catalogue.dims, model=model)

        plan = plan_of(rows, known, rule, split)
        first_ms, last_ms = plan.first_ms, plan.last_ms
        engaged_pairs, after_split = plan.engaged_pairs, plan.after_split
        candidates = after_split if not whole_run else plan.pairs_at
        if peers is None:  # tuned on the events before the split only
            from recserve.evaluate.tuning import choose_peer_settings  # imports this module

            peers = choose_peer_settings(
                rows, catalogue, split=split, k=k, rule=rule, seed=seed, progress=peer_progress
            )
        peer_settings = {name: _setting_values(peers.get(name, {})) for name in PEERS}
        if sample is not None and sample < len(candidates):
            rng = np.random.default_rng(seed)
            candidates = sorted(rng.choice(candidates, size=sample, replace=False).tolist())
        targets = set(candidates)
        users_before = {row.user_id for row, t in zip(rows, ts, strict=True) if t < split_ms}

        realtime = _EnginePolicy(realtime_settings, catalogue, seed, similarity)
        stack.callback(realtime.close)
        frozen_settings = replay_settings(
            config, directories[1], catalogue.dims, served_memory=1 << 30, model=model
        )
        frozen = _EnginePolicy(frozen_settings, catalogue, seed, similarity)
        stack.callback(frozen.close)
        popularity = Popularity(catalogue)
        popularity_frozen = Popularity(catalogue)  # counts stop at the split
        n_items = len(catalogue.items)
        try:
            itemcf = CoOccurrence(n_items, **peer_settings["itemcf"])
            als = ALSFoldIn(n_items, **peer_settings["als"], seed=seed)
        except (TypeError, ValueError) as error:
            raise ReplayError(f"peers: {error}") from None
        peer_policies = PeerPolicies(catalogue, popularity, {"itemcf": itemcf}, {"als": als})

        scores = {name: Score(k) for name in POLICIES}
        returning = {name: Score(k) for name in POLICIES}
        before = {name: Score(k) for name in POLICIES}
        seen: dict[str, set[str]] = defaultdict(set)
        counted: set[tuple[str, str]] = set()  # pairs popularity has counted
        users_evaluated: set[str] = set()
        seen_dropped = 0
        done = 0

        for i, row in enumerate(rows):
            now = ts[i]
            user, item = row.user_id, row.item_id
            after = now >= split_ms
            if after:
                peer_policies.at_split()  # ALS fitted on the engagements before the split
            if i in targets:
                user_seen = seen[user]
                pages = {"realtime": realtime.page(user, k, now, i)}
                pages["frozen"] = frozen.page(user, k, now, i) if after else pages["realtime"]
                for name in ("realtime", "frozen"):
                    kept = [x for x in pages[name] if x not in user_seen]
                    seen_dropped += len(pages[name]) - len(kept)
                    pages[name] = kept
                pages["popularity"] = popularity.page(user_seen, k)
                pages["popularity_frozen"] = (
                    popularity_frozen.page(user_seen, k) if after else pages["popularity"]
                )
                pages.update(peer_policies.pages(user, k))
                for name in POLICIES:
                    if after:
                        scores[name].add(pages[name], item)
                        if user in users_before:
                            returning[name].add(pages[name], item)
                    else:
                        before[name].add(pages[name], item)
                if after:
                    users_evaluated.add(user)
                done += 1
                if progress is not None and done % 500 == 0:
                    progress(done, len(candidates))

            realtime.add(row)
            if not after:
                frozen.add(row)
            pair = (user, item)
            if item not in seen[user]:
                seen[user].add(item)
                peer_policies.met(user, item)
                user_key, item_key = key_of(user), key_of(item)
                realtime.met(user_key, item_key, now)
                if after:  # before the split, the frozen engine's own seen-set has it
                    frozen.met(user_key, item_key, now)
            if (
                pair not in counted
                and pair in engaged_pairs
                and engaged(row, known[item].duration_ms, rule)
            ):
                counted.add(pair)
                popularity.engaged(item)
                peer_policies.engaged(user, item)
                if not after:
                    popularity_frozen.engaged(item)
        peer_policies.at_split()
        realtime.flush()
        if progress is not None:
            progress(done, len(candidates))
        model_version = SimilarityRanker.version if similarity else realtime.engine.ranker.version

    whole = None
    if whole_run:
        whole = {name: Score(k) for name in POLICIES}
        for name in POLICIES:
            for part in (before[name], scores[name]):
                whole[name].evaluated += part.evaluated
                whole[name].hits += part.hits
                whole[name].ndcg_sum += part.ndcg_sum
    s = realtime_settings
    return ReplayResult(
        k=k,
        split_ms=split_ms,
        first_ms=first_ms,
        last_ms=last_ms,
        events=len(rows),
        users=len({row.user_id for row in rows}),
        items=len(catalogue.items),
        model_version=model_version,
        policies=scores,
        returning=returning,
        whole_run=whole,
        candidates=len(after_split),
        evaluated=scores["realtime"].evaluated,
        users_evaluated=len(users_evaluated),
        users_returning=len(users_evaluated & users_before),
        seen_dropped=seen_dropped,
        seconds=time.perf_counter() - started,
        settings={
            "feed": json.loads(s.feed.model_dump_json()),  # strict JSON: inf as null
            "update_rule": rule.to_dict(),
            "experiments": [json.loads(e.model_dump_json()) for e in s.experiments],
            "peers": peers,
        },
    )


def _setting_values(chosen: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a peer's chosen settings (what else tuning reports dropped)."""
    return {key: value for key, value in chosen.items() if key not in ("validation", "note")}


def write_jsonl(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """One JSON object a line (how the replay's input files are written)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
