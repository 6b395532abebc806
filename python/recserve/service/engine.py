"""The loop in one object: items, events, feeds, users and models over the embedded store.

The HTTP layer (``recserve.service.app``) only translates; everything the service does happens
here, so it can be driven and benchmarked in process. The engine wires the parts, each in a
module of its own:

    catalogue_state     catalogue, amplification and preferences beside the profiles
    catalogue_records   how their changes are logged in the store and read back
    event_batch         clients' events checked and turned into columns
    precompute          the next page of each user who just acted, in the background
    impression_log      what was served and what users did, for the trainer
    training_catalog    the items the log can refer to, written at every snapshot
    errors              what a request gets instead of an answer

    data_dir/recserve.json     dims, fixed by configuration or by the first items posted
    data_dir/state/            the embedded store: WAL + snapshots (recserve.store.embedded)
    data_dir/models/           the models and serving.json, what serves (service.model_store);
                               models_dir may name another directory or an S3 prefix
    data_dir/active-model      the model version last activated, before serving.json
    data_dir/impressions/      the impression log (recserve.train.log format) and its
                               catalog.npz: the directory is a training set
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recserve._files import write_atomic
from recserve.amplify import AmplifyConfig
from recserve.catalog import Item, check_batch
from recserve.exposure import ExposureLedger
from recserve.feed import FeedBuilder, FeedResult, Served, ServedMemory
from recserve.ids import key_of
from recserve.ingest.event_row import EventRow
from recserve.media import MediaUrls
from recserve.profiles import ApplyResult, Events, ProfilesConfig, UpdateRule
from recserve.rank import BUILTIN_VERSION, ModelRegistry, Ranker, SimilarityRanker
from recserve.retrieve import Trending
from recserve.service import catalogue_records
from recserve.service.catalogue_state import CatalogueState
from recserve.service.clock import latest_ms, make_clock
from recserve.service.erasure import PendingErasures
from recserve.service.errors import CapacityExceeded, Conflict, NotFound, NotReady
from recserve.service.event_batch import check_events, outcome_of
from recserve.service.experiments import Assignment, Experiments
from recserve.service.impression_log import (
    ImpressionLogWriter,
    event_records,
    impression_records,
)
from recserve.service.metrics import Metrics
from recserve.service.model_store import (
    DirectoryModels,
    S3Models,
    Serving,
    open_models,
    valid_version,
)
from recserve.service.precompute import Page, Precomputer, Stamp
from recserve.service.settings import Arm, Experiment, Settings
from recserve.service.training_catalog import TrainingCatalog
from recserve.store.embedded import EmbeddedStore

if TYPE_CHECKING:
    from recserve.service.catalogue_sync import CatalogueSync
    from recserve.service.stream import StreamIngest

__all__ = ["Engine"]

log = logging.getLogger(__name__)

MAX_DIMS = 4096  # the widest embedding the first items may fix


def _checked_dims(items: Sequence[Item], embeddings: Any) -> int:
    """The dims of a first batch of items, once the whole batch is valid (ValueError if not)."""
    vectors = np.asarray(embeddings, dtype=np.float32)
    if vectors.ndim != 2 or not 1 <= vectors.shape[1] <= MAX_DIMS:
        raise ValueError(
            f"embeddings: the first items fix the dims, which must be 1 to {MAX_DIMS} "
            f"values; got shape {vectors.shape}"
        )
    check_batch(items, vectors, int(vectors.shape[1]))  # raises naming the item
    return int(vectors.shape[1])


class Engine:
    """The service's state and its operations; ``start`` recovers, ``close`` stops."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.data_dir = Path(settings.data_dir)
        self.ready = False
        self.draining = False  # closing: requests are refused
        self.shutting_down = False  # a stop was asked for: /readyz says 503, requests still run
        self.failure: str | None = None
        self.experiments = Experiments(settings.experiments)
        cloudfront = settings.cloudfront
        self.media = MediaUrls(
            settings.media_url_template,
            cloudfront_domain=cloudfront.domain,
            key_pair_id=cloudfront.key_pair_id,
            private_key_file=cloudfront.private_key_file,
            ttl_s=cloudfront.signed_url_ttl_s,
            allowed_prefixes=cloudfront.allowed_prefixes,
        )
        self.rule = UpdateRule.from_dict(settings.update_rule)
        self.clock = make_clock(settings.clock)
        self.trending = Trending(settings.feed.trending_half_life_s)
        self.served = ServedMemory(
            settings.feed.served_memory,
            session_timeout_s=self.rule.session_timeout_seconds,
        )
        self.exposure = ExposureLedger(
            round(settings.exposure.view_timeout_s * 1000), settings.exposure.max_pending
        )
        self.store: EmbeddedStore | None = None
        self.state: CatalogueState | None = None
        self.builder: FeedBuilder | None = None
        self.registry: ModelRegistry | None = None
        self.ranker: Ranker | SimilarityRanker = SimilarityRanker()
        self.models: DirectoryModels | S3Models | None = None
        self.serving: Serving | None = None  # what serving.json said when last applied
        self._model_epoch = 0
        self._open_lock = threading.Lock()
        self._items_lock = threading.Lock()
        self._impression_log = ImpressionLogWriter(self.data_dir / "impressions")
        self._training_catalog = TrainingCatalog(self.data_dir / "impressions")
        self._requests = 0
        self._precompute: Precomputer | None = None
        self.stream: StreamIngest | None = None  # events from Kinesis (scale-out mode)
        self.catalogue: CatalogueSync | None = None  # the catalogue through its stream (same)
        self._stop = threading.Event()
        self._erasures: PendingErasures | None = None
        self._erasure_due = threading.Event()
        self._background: list[threading.Thread] = []

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Recovers the state and loads the model; ``ready`` once done (``failure`` if not)."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            dims = self._stored_dims()
            if dims is None:
                dims = self.settings.dims
            elif self.settings.dims is not None and self.settings.dims != dims:
                raise ValueError(
                    f"{self.data_dir} holds dims {dims}; "
                    f"the configuration says {self.settings.dims}"
                )
            if dims is not None:
                self._open(dims)
            if self.settings.impression_log:
                self._impression_log.open()
            self._spawn(self._flush_loop, "recserve-flush")
            self._erasures = PendingErasures(self.data_dir / "erasures.json")
            if self._erasures.pending():  # a restart before the last ones were complete
                self._erasure_due.set()
            self._spawn(self._erasure_loop, "recserve-erasure")
            self.ready = True
        except Exception as error:
            self.failure = f"{type(error).__name__}: {error}"
            log.exception("recserve failed to start")
            raise

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._background.append(thread)

    def _stored_dims(self) -> int | None:
        path = self.data_dir / "recserve.json"
        if not path.exists():
            return None
        return int(json.loads(path.read_text())["dims"])

    def _open(self, dims: int) -> None:
        path = self.data_dir / "recserve.json"
        if not path.exists():
            write_atomic(path, (json.dumps({"dims": dims}) + "\n").encode())
        s = self.settings
        config = ProfilesConfig(
            dims=dims,
            user_capacity=s.user_capacity,
            item_capacity=s.item_capacity,
            rule=self.rule,
            # Embedded: users past the capacity wait on disk (store.disk_users). DynamoDB: they
            # are there already, and the least recent simply leave memory.
            user_lru=s.state_store == "dynamodb",
            co_engagement=s.co_engagement.options(),
        )
        amplify = AmplifyConfig.from_dict(s.amplification)
        state = CatalogueState(dims, amplify, self.trending, s.index_threads)
        if s.impression_log:  # before recovery: takedowns it replays keep their rows too
            state.training = self._training_catalog
        store = EmbeddedStore(self.data_dir / "state", config, extension=state)
        state.check_index(store)
        state.live = True
        for problem in store.recovery.problems:
            log.error("recovery: %s", problem)
        if s.catalog_stream is not None:  # before the feed builder: a bootstrap replaces parts
            from recserve.service.catalogue_sync import CatalogueSync  # boto3: the aws extra

            self.catalogue = CatalogueSync(s, store, state, self.metrics, self._dropped)
        self.models = open_models(s.resolved_models_dir(), self.data_dir / "models-cache")
        registry = ModelRegistry(self.models.directory, dims, source=self.models)
        self.registry = registry
        self._initial_models()
        for experiment in s.experiments:  # fail at start, not on some user's request
            for arm in experiment.arms:
                if arm.model is not None:
                    registry.get(arm.model).with_blend(arm.blend)
                elif arm.blend is not None:
                    self.ranker.with_blend(arm.blend)
        self.state, self.store = state, store
        self.builder = FeedBuilder(
            s.feed,
            state.catalog,
            store.profiles,
            state.amplifier,
            self.trending,
            state.users,
            self.served,
        )
        if s.feed.precompute:
            self._precompute = Precomputer(self._compute_page)
        self._spawn(self._snapshot_loop, "recserve-snapshots")
        self._spawn(self._model_poll_loop, "recserve-models")
        if s.events_source == "kinesis":
            from recserve.service.stream import StreamIngest  # boto3: the aws extra

            self.stream = StreamIngest(
                s, store, state.catalog, self.clock, self.metrics, self.after_apply
            )
            self.stream.start()
        if self.catalogue is not None:
            self.catalogue.start()

    def _initial_models(self) -> None:
        """The configured model, else serving.json's choice, else the last activated before
        serving.json existed, else the built-in one. A named model must load, else the start
        fails."""
        assert self.models is not None
        assert self.registry is not None
        if self.settings.model is not None:
            self.ranker = self.registry.get(self.settings.model)
            return
        serving = self.models.read_serving()
        active = self.data_dir / "active-model"
        if serving is None and active.exists():
            serving = Serving(active.read_text().strip())
        if serving is not None:
            self._apply_serving(serving)
            return
        try:
            self.ranker = self.registry.get(BUILTIN_VERSION)
        except ValueError as error:  # other dims than the built-in model's
            log.warning("no built-in model for this service (%s); ranking by similarity", error)
            self.ranker = SimilarityRanker()

    def _apply_serving(self, serving: Serving) -> None:
        """Serves ``serving``: its models load first (KeyError, ValueError: nothing changes)."""
        assert self.registry is not None
        ranker = self.registry.get(serving.active)
        experiments = list(self.settings.experiments)
        if serving.trial is not None:
            self.registry.get(serving.trial)
            share = serving.trial_share
            experiments.append(
                Experiment(
                    name="trial",
                    arms=(
                        Arm(name="control", weight=1.0 - share),
                        Arm(name=serving.trial, weight=share, model=serving.trial),
                    ),
                )
            )
        # Reference swaps: requests in flight keep what they hold.
        self.ranker, self.experiments, self.serving = ranker, Experiments(experiments), serving
        self._model_epoch += 1

    def _model_poll_loop(self) -> None:
        """Reads serving.json every ``model_poll_s``: an activation made on another replica, or
        by a retraining job, is served here within that."""
        while not self._stop.wait(self.settings.model_poll_s):
            if self.models is None or self.settings.model is not None:
                continue  # a model fixed by configuration stays
            try:
                serving = self.models.read_serving()
                if serving is not None and serving != self.serving:
                    self._apply_serving(serving)
                    log.info("serving %s from %s", serving, self.models.where)
            except Exception as error:  # the current model keeps serving
                log.error("serving.json of %s not applied: %s", self.models.where, error)

    def _flush_loop(self) -> None:
        while not self._stop.wait(1.0):
            self._impression_log.flush()

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(self.settings.snapshot_interval_s):
            try:
                self.snapshot()
            except Exception:
                log.exception("a periodic snapshot failed (the WAL still holds everything)")

    def snapshot(self) -> Path | None:
        if self.store is None:
            return None
        path = self.store.snapshot()
        self._write_training_catalog()
        return path

    def _write_training_catalog(self) -> None:
        """The impression log's catalog.npz, after a snapshot (``training_catalog``)."""
        state, store = self.state, self.store
        if state is None or store is None or state.training is None:
            return
        try:
            state.training.write(state.catalog, store.profiles)
        except Exception:
            log.exception("writing impressions/catalog.npz failed (the next snapshot retries)")

    def close(self, *, snapshot: bool = True) -> None:
        """Stops background work, writes a final snapshot and closes the files."""
        self.draining = True
        self._stop.set()
        if self.stream is not None:
            self.stream.stop()  # no batch in flight: the snapshot holds all it applied
        if self.catalogue is not None:
            self.catalogue.stop()
        if self._precompute is not None:
            self._precompute.stop()
        if self.store is not None:
            if snapshot:
                self.store.snapshot()
                self._write_training_catalog()
            self.store.close()
        self._impression_log.close()

    def _require(self) -> tuple[EmbeddedStore, CatalogueState, FeedBuilder]:
        if not self.ready or self.draining:
            raise NotReady("recovering" if not self.ready else "shutting down")
        if self.store is None or self.state is None or self.builder is None:
            raise Conflict("no items yet: post items first (they fix the embedding dims)")
        return self.store, self.state, self.builder

    # ---- items ------------------------------------------------------------------------------
    def upsert_items(self, items: Sequence[Item], embeddings: Any, *, amplify: bool = True) -> int:
        """Adds or updates items; new ones enter amplification, or with ``amplify=False`` (a
        back catalogue) compete in the regular feed at once."""
        if not self.ready or self.draining:
            raise NotReady("recovering" if not self.ready else "shutting down")
        if self.store is None:
            with self._open_lock:
                if self.store is None:
                    # The first batch fixes the dims for good: it must be valid as a whole first.
                    self._open(_checked_dims(items, embeddings))
        store, state, _ = self._require()
        keys, vectors = state.catalog.check(items, embeddings)
        with self._items_lock:  # the checks and the write, with no upsert or review in between
            rejected = [i.id for i, k in zip(items, keys.tolist(), strict=True)
                        if state.amplifier.state_of(k) == "rejected"]  # fmt: skip
            if rejected:
                raise Conflict(
                    f"item(s) {rejected[:5]} were rejected by review and stay down; nothing was "
                    "stored (post new content under a new id)"
                )
            stored = store.profiles.items(keys).found
            added = int((~stored).sum())
            rows = int(store.profiles.stats()["items"])
            if rows + added > self.settings.item_capacity:
                raise CapacityExceeded(
                    f"item_capacity is {self.settings.item_capacity}: {rows} items are stored "
                    f"and this batch adds {added}; nothing was stored (raise item_capacity, or "
                    "take items down)"
                )
            self.clock.observe(max((item.created_at for item in items), default=0))
            ts_ms = self.clock.now_ms()
            if self.catalogue is not None:  # every replica applies it from the stream
                self.catalogue.put_items(ts_ms, items, vectors, amplify)
                return len(keys)
            store.log(
                catalogue_records.ITEMS,
                catalogue_records.items_record(ts_ms, items, vectors, amplify=amplify),
                lambda: state.upsert(list(items), vectors, ts_ms, store.profiles, amplify),
            )
        return len(keys)

    def item(self, item_id: str) -> dict[str, Any]:
        store, state, _ = self._require()
        item = state.catalog.get(item_id)
        if item is None:
            raise NotFound(f"no item {item_id!r}")
        stats = {k: int(v[0]) for k, v in store.profiles.items([item.key]).stats.items()}
        shown = max(stats["impressions"], stats["watches"])
        rate = stats["completions"] / shown if shown else 0.0
        self.exposure.resolve(self.clock.now_ms(), store.profiles.seen)  # windows passed idle
        served = self.exposure.counts(item.key)
        return {
            "id": item.id,
            "creator_id": item.creator_id,
            "duration_ms": item.duration_ms,
            "tags": list(item.tags),
            "created_at": item.created_at,
            "media_key": item.media_key,
            "url": self._url(item),
            "stats": {**stats, "completion_rate": rate},
            "amplification": state.amplifier.state(item.key),
            "exposure": {
                "impressions": stats["impressions"],
                "served": served.served,
                "served_not_viewed": served.served_not_viewed,
            },
        }

    def take_down(self, item_id: str) -> None:
        started = time.perf_counter()
        store, state, _ = self._require()
        key = key_of(item_id)
        if state.catalog.by_key(key) is None and state.amplifier.state(key) is None:
            raise NotFound(f"no item {item_id!r}")
        if self.catalogue is not None:  # every replica applies it from the stream
            self.catalogue.put_take_down(key)  # _dropped follows
        else:
            store.log(
                catalogue_records.TAKE_DOWN,
                catalogue_records.take_down_record([key]),
                lambda: state.take_down(key, store.profiles),
            )
            self._dropped([key])
        self.metrics.takedown_seconds.observe(time.perf_counter() - started)

    def _dropped(self, keys: list[int]) -> None:
        """Items just taken down leave the pages computed ahead and the exposure ledger."""
        for key in keys:
            if self._precompute is not None:
                self._precompute.drop_containing(key)
            self.exposure.drop_item(key)

    # ---- review -----------------------------------------------------------------------------
    def review(self, item_id: str, decision: str, reason: str) -> dict[str, Any]:
        """An admin's decision on an item pending review, logged and applied (a rejection is a
        takedown). Conflict if the item is not pending: nothing is logged then."""
        started = time.perf_counter()
        store, state, _ = self._require()
        key = key_of(item_id)
        with self._items_lock:  # the check and the record, with no other decision between
            now = state.amplifier.state_of(key)
            if now is None:
                raise NotFound(f"no item {item_id!r} in amplification")
            if now != "pending_review":
                raise Conflict(f"item {item_id!r} is not pending review (it is {now})")
            ts_ms = self.clock.now_ms()
            if self.catalogue is not None:  # every replica applies it from the stream
                self.catalogue.put_review(ts_ms, key, decision, reason)  # _dropped follows
            else:
                store.log(
                    catalogue_records.REVIEW,
                    catalogue_records.review_record(ts_ms, key, decision, reason),
                    lambda: state.review(key, decision, reason, ts_ms, store.profiles),
                )
                if decision == "reject":
                    self._dropped([key])
        if decision == "reject":
            self.metrics.takedown_seconds.observe(time.perf_counter() - started)
        for transition in state.drain_transitions():
            self.metrics.amplification.labels(transition).inc()
        return {"id": item_id, "decision": decision, "amplification": state.amplifier.state(key)}

    def review_queue(self, limit: int) -> dict[str, Any]:
        store, state, _ = self._require()
        return {"items": state.review_queue(store.profiles, limit)}

    def _url(self, item: Item) -> str:
        return self.media.url(item.media_key or item.id)

    # ---- events -----------------------------------------------------------------------------
    def post_events(self, rows: Sequence[EventRow]) -> dict[str, int]:
        """Durable and applied when it returns. ValueError naming the event index and field
        for a bad one (nothing of the batch applied)."""
        store, state, _ = self._require()
        skew = self.settings.max_clock_skew_s
        checked = check_events(rows, state.catalog, latest_ms(skew), skew)
        n = len(rows)
        if self.stream is not None:  # scale-out: the owner of the user's shard applies them
            # NotReady (503) if the stream refuses them
            self.stream.put(list(rows), checked.duration_ms)
            if self._impression_log.is_open:  # beside the pages this replica served them
                logged = checked.events(self.clock.now_ms())
                self._impression_log.append(event_records(rows, logged))
            unknown = sum(state.catalog.get(r.item_id) is None for r in rows)
            return {"accepted": n, "applied": 0, "duplicates": 0, "unknown_items": unknown}
        # Time moves only for a batch that is applied (a refused one changes nothing).
        self.clock.observe(max((r.ts for r in rows if r.ts is not None), default=0))
        now = self.clock.now_ms()
        events = checked.events(now)
        result = store.apply(events, assign_seq=True)
        self.after_apply(result, events, now)
        self._count_arms(rows, events)
        if self._impression_log.is_open:
            self._impression_log.append(event_records(rows, events))
        if self._precompute is not None:
            self._precompute.enqueue(list(dict.fromkeys(r.user_id for r in rows)))
        return {
            "accepted": n,
            "applied": result.applied,
            "duplicates": result.duplicate_keys + result.stale,
            "unknown_items": result.unknown_items,
        }

    def after_apply(self, result: ApplyResult, events: Events, now_ms: int) -> None:
        """What follows every applied batch, from HTTP or the stream: metrics, amplification
        transitions, trending."""
        assert self.state is not None
        self.metrics.events_applied.inc(result.applied)
        self.metrics.events_duplicate.inc(result.duplicate_keys + result.stale)
        self.metrics.events_unknown_items.inc(result.unknown_items)
        for transition in self.state.drain_transitions():
            self.metrics.amplification.labels(transition).inc()
        self.trending.add(events.items, events.types, now_ms / 1000.0)
        if self.store is not None:  # the batch is in the seen-sets: settle passed windows
            self.exposure.resolve(now_ms, self.store.profiles.seen)

    def _count_arms(self, rows: Sequence[EventRow], events: Events) -> None:
        if not self.experiments.experiments:
            return
        threshold = self.rule.completion_threshold
        for i, row in enumerate(rows):
            watch_ms, duration_ms = int(events.watch_ms[i]), int(events.duration_ms[i])
            outcome = outcome_of(row.type, watch_ms, duration_ms, threshold)
            if outcome is not None:
                for experiment, arm in self.experiments.assign(row.user_id).arms:
                    self.metrics.count_arm(experiment, arm, outcome)

    # ---- feeds ------------------------------------------------------------------------------
    def _ranker_for(self, assignment: Assignment) -> Ranker | SimilarityRanker:
        ranker: Ranker | SimilarityRanker = self.ranker
        if assignment.model is not None and self.registry is not None:
            ranker = self.registry.get(assignment.model)
        return ranker.with_blend(assignment.blend)

    def _stamp(self, user_key: int) -> Stamp:
        """What a precomputed page must still match to be served."""
        assert self.store is not None
        assert self.state is not None
        user = self.store.profiles.user_state([user_key])
        return (
            int(user["high_water_seq"][0]),
            int(user["events_applied"][0]),
            self.served.version(user_key),
            self.state.users.version,
            self.state.catalog.takedown_epoch,
            self._model_epoch,
        )

    def _compute_page(self, user_id: str) -> Page | None:
        if self.builder is None or self.draining:
            return None
        user_key = key_of(user_id)
        if self.store is not None:
            self.store.ensure_users([user_key])  # evicted since their events: back first
        stamp = self._stamp(user_key)
        assignment = self.experiments.assign(user_id)
        result = self.builder.build(
            user_key,
            self.settings.feed.default_n,
            self._ranker_for(assignment),
            self.clock.now_ms(),
            seed=user_key ^ stamp[0],
        )
        return Page(stamp, result, assignment.label)

    def feed(
        self, user_id: str, n: int | None = None, timings: dict[str, float] | None = None
    ) -> dict[str, Any]:
        """The user's next page. ``timings``, when given, receives the seconds each stage took
        (retrieve, filter, rank, total) if the page was assembled for this request."""
        if self.ready and not self.draining and self.store is None:  # no items yet: empty
            return self._page(user_id, [], self.ranker.version, self.experiments.assign(user_id))
        store, state, builder = self._require()
        n = self.settings.feed.default_n if n is None else n
        user_key = key_of(user_id)
        if self.stream is not None:  # only a miss waits for DynamoDB
            self.stream.load_missing([user_key])
        store.ensure_users([user_key])  # a user evicted to disk comes back first
        assignment = self.experiments.assign(user_id)
        result: FeedResult | None = None
        if self._precompute is not None and n == self.settings.feed.default_n:
            page = self._precompute.take(user_key, self._stamp)
            if page is not None and page[1] == assignment.label:
                result = page[0]
            self.metrics.precompute.labels("hit" if result is not None else "miss").inc()
        if result is None:
            self._requests += 1
            result = builder.build(
                user_key, n, self._ranker_for(assignment), self.clock.now_ms(), seed=self._requests
            )
            for stage, seconds in result.timings.items():
                self.metrics.stage_seconds.labels(stage).observe(seconds)
            if timings is not None:
                timings.update(result.timings)
        # A takedown that returned before this point removed the item: never serve it.
        items = [s for s in result.items if state.catalog.by_key(s.key) is not None]
        now_ms = self.clock.now_ms()
        now = now_ms / 1000.0
        keys = [s.key for s in items]
        self.served.add(user_key, keys, now)
        self.exposure.record(user_key, keys, now_ms, store.profiles.seen)  # served, not precomputed
        return self._page(user_id, items, result.model_version, assignment, now)

    def _page(
        self,
        user_id: str,
        items: list[Served],
        model_version: str,
        assignment: Assignment,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The response, with the served list written to the impression log."""
        request_id = uuid.uuid4().hex
        label = assignment.label
        for experiment, arm in assignment.arms:
            self.metrics.feeds_served.labels(experiment, arm).inc()
        if self._impression_log.is_open and items:
            ts = self.clock.now_ms() / 1000.0 if now is None else now
            self._impression_log.append(
                impression_records(ts, request_id, user_id, items, model_version, label)
            )
        return {
            "request_id": request_id,
            "user_id": user_id,
            "model_version": model_version,
            "experiment": label,
            "items": [
                {
                    "item_id": s.item_id,
                    "score": s.score,
                    "source": s.source,
                    "url": self._url_of_key(s.key),
                }
                for s in items
            ],
        }

    def _url_of_key(self, key: int) -> str:
        assert self.state is not None
        item = self.state.catalog.by_key(key)
        return "" if item is None else self._url(item)

    def explain(self, user_id: str, item_id: str) -> dict[str, Any]:
        store, state, builder = self._require()
        store.ensure_users([key_of(user_id)])
        key = key_of(item_id)
        if state.catalog.by_key(key) is None and state.amplifier.state(key) is None:
            raise NotFound(f"no item {item_id!r}")
        assignment = self.experiments.assign(user_id)
        result = builder.build(
            key_of(user_id),
            self.settings.feed.default_n,
            self._ranker_for(assignment),
            self.clock.now_ms(),
            trace_key=key,
        )
        return {
            "user_id": user_id,
            "item_id": item_id,
            "experiment": assignment.label,
            **(result.trace or {}),
        }

    # ---- users ------------------------------------------------------------------------------
    def set_user(
        self, user_id: str, interests: Sequence[str] | None, blocked: Sequence[str] | None
    ) -> None:
        store, state, _ = self._require()
        key = key_of(user_id)
        store.log(
            catalogue_records.USER_PREFS,
            catalogue_records.user_prefs_record(key, interests, blocked),
            lambda: state.users.set(key, interests, blocked),
        )
        if self._precompute is not None:
            self._precompute.enqueue([user_id])

    def user(self, user_id: str) -> dict[str, Any]:
        store, state, _ = self._require()
        key = key_of(user_id)
        if self.stream is not None:
            self.stream.load_missing([key])
        store.ensure_users([key])
        words = store.profiles.user_state([key])
        if not words["found"][0] and not state.users.known(key):
            raise NotFound(f"no user {user_id!r}")
        recent = store.profiles.recent_items(key)
        tags = state.catalog.tag_counts(recent)
        now = self.clock.now_ms()
        last = int(words["session_last_ms"][0])
        timeout_ms = self.rule.session_timeout_seconds * 1000
        return {
            "user_id": user_id,
            "events_applied": int(words["events_applied"][0]),
            "impressions": int(words["impressions"][0]),
            "completions": int(words["completions"][0]),
            "fast_skips": int(words["fast_skips"][0]),
            "session": {
                "active": bool(words["found"][0]) and now - last <= timeout_ms,
                "started_at": int(words["session_start_ms"][0]) or None,
                "last_event_at": last or None,
            },
            "top_tags": [t for t, _ in sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:10]],
            "interests": list(state.users.interests(key)),
            "blocked_creators": sorted(state.users.blocked(key)),
            "recent_items": [
                item.id
                for k in recent.tolist()[:20]
                if (item := state.catalog.by_key(k)) is not None
            ],
        }

    def erase_user(self, user_id: str) -> None:
        """Forgets the user at once: profile, seen-set, preferences, pages, and their rows of
        the impression log not yet written. Their bytes leave the data directory (snapshots,
        WAL, user file, impression log) within ``erasure_delay_s`` (``_complete_erasures``)."""
        store, _, _ = self._require()
        if self.stream is not None:
            # Replicas keep their own copies and write them back to DynamoDB: an erasure must
            # travel on the stream to reach them all, which is not built yet.
            raise Conflict("erasing a user is not available in scale-out mode yet")
        assert self._erasures is not None
        key = key_of(user_id)
        self._erasures.add(user_id)
        store.erase_user(key)
        self.served.forget(key)
        self.exposure.forget_user(key)
        if self._precompute is not None:
            self._precompute.forget(user_id)
        self._impression_log.drop_user(user_id)
        self._erasure_due.set()

    def _erasure_loop(self) -> None:
        while not self._stop.is_set():
            if not self._erasure_due.wait(timeout=1.0):
                continue
            # Erasures within half the delay are compacted together (a compaction is a whole
            # snapshot); the other half is the compaction's own time.
            if self._stop.wait(self.settings.erasure_delay_s / 2):
                return
            self._erasure_due.clear()
            try:
                self._complete_erasures()
            except Exception:
                log.exception("completing erasures failed; retrying")
                self._erasure_due.set()

    def _complete_erasures(self) -> None:
        """Rewrites or drops every file that may hold the bytes of users erased so far."""
        assert self._erasures is not None
        users = self._erasures.pending()
        if not users:
            return
        if self.store is not None:
            self.store.compact()
        self._impression_log.erase(users)
        self._erasures.done(users)
        log.info("erasure of %d user(s) complete on disk", len(users))

    # ---- models -----------------------------------------------------------------------------
    def list_models(self) -> dict[str, Any]:
        if not self.ready:
            raise NotReady("recovering")
        trial = None
        if self.serving is not None and self.serving.trial is not None:
            trial = {"version": self.serving.trial, "share": self.serving.trial_share}
        if self.registry is None:
            return {"active": self.ranker.version, "trial": trial, "models": []}
        return {
            "active": self.ranker.version,
            "trial": trial,
            "models": [
                {**self.registry.describe(v), "active": v == self.ranker.version}
                for v in self.registry.versions()
            ],
        }

    def activate(self, version: str) -> dict[str, Any]:
        """Serves ``version`` to everyone (ending a trial), here and, through serving.json, on
        every replica reading the same models_dir."""
        self._known(version)
        self._change_serving(lambda: Serving(version))
        return {"active": version}

    @staticmethod
    def _known(version: str) -> None:
        if not valid_version(version):
            raise NotFound(f"no model {version[:80]!r}")

    def start_trial(self, version: str, share: float) -> dict[str, Any]:
        """Serves ``version`` to ``share`` of users (experiment ``trial``), the active model to
        the rest."""
        if isinstance(self.ranker, SimilarityRanker):
            raise Conflict("no model is active to compare a trial with: activate one first")
        self._known(version)
        active = self.ranker.version
        self._change_serving(lambda: Serving(active, version, share))
        return {"active": active, "trial": version, "trial_share": share}

    def end_trial(self) -> dict[str, Any]:
        if self.serving is None or self.serving.trial is None:
            raise NotFound("no trial is running")
        active = self.serving.active
        self._change_serving(lambda: Serving(active))
        return {"active": active}

    def _change_serving(self, make: Any) -> None:
        self._require()
        assert self.models is not None
        serving: Serving = make()  # ValueError (422): a bad share
        try:
            self._apply_serving(serving)
        except KeyError as missing:
            raise NotFound(f"no model {str(missing)[:80]}") from None
        self.models.write_serving(serving)

    def refresh_gauges(self) -> None:
        if self._precompute is not None:
            pages, backlog = self._precompute.pages()
            self.metrics.precomputed_pages.set(pages)
            self.metrics.precompute_backlog.set(backlog)
        if self.state is not None:
            pending = self.state.amplifier.pending_review()
            self.metrics.review_queue.set(len(pending))
            oldest = min((since for _, since in pending), default=None)
            age_ms = 0 if oldest is None else max(self.clock.now_ms() - oldest, 0)
            self.metrics.review_oldest_age.set(age_ms / 1000.0)
        if self.store is not None:
            stats = self.store.profiles.stats()
            self.metrics.evictions.set(sum(v for k, v in stats.items() if "evict" in k))
