"""The loop in one object: items, events, feeds, users and models over the embedded store.

The HTTP layer (``recserve.service.app``) only translates; everything the service does happens
here, so it can be driven and benchmarked in process.

    data_dir/recserve.json     dims, fixed by configuration or by the first items posted
    data_dir/state/            the embedded store: WAL + snapshots (recserve.store.embedded)
    data_dir/active-model      the model version last activated
    data_dir/impressions/      the impression log (recserve.train.log format)

Items, takedowns and user preferences are records of the store's log (kinds 16-18) beside the
events, so one recovery brings back all of them in order; the catalogue, amplification state and
preferences travel in the state file of each snapshot. Amplification is judged after each
events record is applied, live and in replay alike, so a restart reaches the same tiers.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recserve._files import write_atomic
from recserve.amplify import Amplifier, AmplifyConfig
from recserve.catalog import Catalog, Item, check_batch
from recserve.feed import FeedBuilder, FeedResult, Served, ServedMemory, UserPrefs
from recserve.ids import key_of, keys_of
from recserve.media import MediaUrls
from recserve.profiles import (
    EVENT_TYPES,
    ApplyResult,
    Events,
    Profiles,
    ProfilesConfig,
    UpdateRule,
)
from recserve.rank import BUILTIN_VERSION, ModelRegistry, Ranker, SimilarityRanker
from recserve.retrieve import Trending
from recserve.service import snapshot_files
from recserve.service.clock import latest_ms, make_clock
from recserve.service.erasure import PendingErasures
from recserve.service.experiments import Assignment, Experiments
from recserve.service.metrics import Metrics
from recserve.service.settings import Settings
from recserve.store.embedded import EXTENSION_KINDS, EmbeddedStore, LoadedFiles
from recserve.train.log import Event, Impression, LogWriter, Record, erase_users

if TYPE_CHECKING:
    from recserve.service.stream import StreamIngest

__all__ = ["Conflict", "Engine", "EventRow", "NotFound", "NotReady"]

log = logging.getLogger(__name__)

ITEMS, TAKE_DOWN, USER_PREFS = EXTENSION_KINDS, EXTENSION_KINDS + 1, EXTENSION_KINDS + 2
_JSON_LENGTH = struct.Struct("<I")
_TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}


class NotReady(RuntimeError):
    """The service is recovering or shutting down (HTTP 503)."""


class NotFound(KeyError):
    """No such item, user or model (HTTP 404)."""


class Conflict(RuntimeError):
    """The request cannot apply to the current state (HTTP 409)."""


class CapacityExceeded(Conflict):
    """A configured capacity would be exceeded; nothing was stored (HTTP 409)."""


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


@dataclass(frozen=True)
class EventRow:
    event_id: str
    user_id: str
    item_id: str
    type: str
    watch_ms: int | None = None
    duration_ms: int | None = None
    ts: int | None = None  # ms since the epoch; None: now
    request_id: str | None = None


class _State:
    """Catalogue, amplification and preferences: the store's extension (see the module doc)."""

    def __init__(
        self, dims: int, amplify: AmplifyConfig, trending: Trending, index_threads: int = 0
    ) -> None:
        self.catalog = Catalog(dims, index_threads=index_threads)
        self.amplifier = Amplifier(amplify)
        self.users = UserPrefs()
        self.trending = trending
        self.live = False  # during recovery, transitions are not counted as new
        self.transitions: list[str] = []

    def state(self) -> Any:
        # The catalogue, amplification and index travel in files of their own: image().
        return {"users": self.users.state()}

    def image(self) -> snapshot_files.StateImage:
        return snapshot_files.StateImage(
            self.catalog.image(), self.amplifier.image(), self.catalog.index
        )

    def load(self, state: Any, files: Mapping[str, Path]) -> LoadedFiles:
        return snapshot_files.load(state, files, self.catalog)

    def restore(self, state: Any, profiles: Profiles) -> None:
        if state is None:
            return

        def vectors_of(keys: Any) -> Any:
            return profiles.items(keys).vectors

        if isinstance(state, snapshot_files.LoadedState):
            loaded = state.take()
            with snapshot_files.gc_paused():  # millions of objects, none of them garbage
                self.catalog.restore_columns(loaded.catalog, vectors_of, loaded.index)
                self.amplifier = Amplifier.from_columns(loaded.amplifier, self.amplifier.config)
            self.users.restore(loaded.users)
            return
        self.catalog.restore(state["catalog"], vectors_of)  # a snapshot from before the files
        self.amplifier = Amplifier.from_dict(state["amplifier"], self.amplifier.config)
        self.users.restore(state["users"])

    def check_index(self, store: EmbeddedStore) -> None:
        """After recovery: the index holds the live catalogue, or is rebuilt (reported)."""
        problem = snapshot_files.check_index(
            self.catalog, lambda keys: store.profiles.items(keys).vectors
        )
        if problem is not None:  # logged with the others by the caller
            store.recovery.problems.append(problem)
            store.recovery.files["index"] = "rebuilt"

    def apply_record(self, kind: int, body: bytes, profiles: Profiles) -> None:
        (length,) = _JSON_LENGTH.unpack_from(body)
        header = json.loads(body[_JSON_LENGTH.size : _JSON_LENGTH.size + length])
        if kind == ITEMS:
            items = [Item.from_row(row) for row in header["items"]]
            vectors = np.frombuffer(
                body, dtype=np.float32, offset=_JSON_LENGTH.size + length
            ).reshape(len(items), self.catalog.dims)
            self.upsert(items, vectors, header["ts_ms"], profiles, header.get("amplify", True))
        elif kind == TAKE_DOWN:
            for key in header["keys"]:
                self.take_down(int(key), profiles)
        elif kind == USER_PREFS:
            self.users.set(int(header["user"]), header["interests"], header["blocked"])
        else:
            raise ValueError(f"unknown record kind {kind}")

    def upsert(
        self, items: list[Item], vectors: Any, ts_ms: int, profiles: Profiles, amplify: bool
    ) -> None:
        keys = np.array([item.key for item in items], dtype=np.uint64)
        profiles.set_items(keys, vectors)
        new = self.catalog.upsert(items, vectors)
        if len(new):
            counters = profiles.items(new).stats
            for i, key in enumerate(new.tolist()):
                self.amplifier.enter(
                    key, ts_ms, {k: int(v[i]) for k, v in counters.items()}, established=not amplify
                )

    def take_down(self, key: int, profiles: Profiles) -> None:
        item = self.catalog.by_key(key)
        if item is not None:
            self.catalog.take_down(item.id)
        self.amplifier.remove(key)
        self.trending.remove(key)
        profiles.remove_items([key])  # its row no longer counts against item_capacity

    def erase_user(self, user: int) -> None:
        self.users.forget(user)

    def applied_events(self, events: Events, profiles: Profiles) -> None:
        # Only items in an open tier are judged: read the counters of those alone.
        items = np.array(
            [k for k in np.unique(events.items).tolist() if self.amplifier.is_open(k)],
            dtype=np.uint64,
        )
        if not len(items):
            return
        stats = profiles.items(items).stats
        made = self.amplifier.observe(items, stats, int(events.ts_ms.max()))
        if self.live:
            self.transitions.extend(t.state for _, t in made)


def _record(header: dict[str, Any], tail: bytes = b"") -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    return _JSON_LENGTH.pack(len(text)) + text + tail


class _Precomputer:
    """Computes a user's next page in the background after their events; a page is served
    only while the user's state, the takedowns and the model are what it was computed for."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._pages: dict[int, tuple[tuple[int, ...], FeedResult, str | None]] = {}
        self._stop = False
        self._busy = 0
        self._thread = threading.Thread(target=self._run, name="recserve-precompute", daemon=True)
        self._thread.start()

    def enqueue(self, users: Sequence[str]) -> None:
        with self._cond:
            for user in users:
                if user not in self._queued:
                    self._queued.add(user)
                    self._queue.append(user)
            self._cond.notify()

    def take(
        self, user_key: int, stamp_now: Callable[[int], tuple[int, ...]]
    ) -> tuple[FeedResult, str | None] | None:
        """The user's waiting page if ``stamp_now(user_key)`` still matches its stamp."""
        with self._cond:
            entry = self._pages.pop(user_key, None)
        if entry is None or entry[0] != stamp_now(user_key):
            return None
        return entry[1], entry[2]

    def pages(self) -> tuple[int, int]:
        """(pages waiting to be served, users waiting for a page or being computed)."""
        with self._cond:
            return len(self._pages), len(self._queue) + self._busy

    def forget(self, user_id: str) -> None:
        with self._cond:
            self._pages.pop(key_of(user_id), None)
            if user_id in self._queued:
                self._queued.discard(user_id)
                self._queue.remove(user_id)

    def drop_containing(self, key: int) -> None:
        with self._cond:
            for user in [
                u for u, (_, r, _) in self._pages.items() if any(s.key == key for s in r.items)
            ]:
                del self._pages[user]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                user = self._queue.popleft()
                self._queued.discard(user)
                self._busy = 1
            try:
                computed = self.engine._compute_page(user)
            except Exception:  # a failed precompute only means the request computes inline
                log.exception("precomputing the feed of %r failed", user)
                computed = None
            with self._cond:
                self._busy = 0
                if computed is not None:
                    self._pages[key_of(user)] = computed
                    while len(self._pages) > 100_000:
                        self._pages.pop(next(iter(self._pages)))

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)


class Engine:
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
        self.store: EmbeddedStore | None = None
        self.state: _State | None = None
        self.builder: FeedBuilder | None = None
        self.registry: ModelRegistry | None = None
        self.ranker: Ranker | SimilarityRanker = SimilarityRanker()
        self._model_epoch = 0
        self._open_lock = threading.Lock()
        self._items_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._impressions: LogWriter | None = None
        # Records wait here and are written by the flush thread: requests only append.
        self._log_pending: list[Record] = []
        self._requests = 0
        self._precompute: _Precomputer | None = None
        self.stream: StreamIngest | None = None  # events from Kinesis (scale-out mode)
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
                self._impressions = LogWriter(self.data_dir / "impressions")
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
        state = _State(dims, amplify, self.trending, s.index_threads)
        store = EmbeddedStore(self.data_dir / "state", config, extension=state)
        state.check_index(store)
        state.live = True
        for problem in store.recovery.problems:
            log.error("recovery: %s", problem)
        registry = ModelRegistry(s.resolved_models_dir(), dims)
        self.ranker = self._initial_ranker(registry)
        for experiment in s.experiments:  # fail at start, not on some user's request
            for arm in experiment.arms:
                if arm.model is not None:
                    registry.get(arm.model).with_blend(arm.blend)
                elif arm.blend is not None:
                    self.ranker.with_blend(arm.blend)
        self.registry, self.state, self.store = registry, state, store
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
            self._precompute = _Precomputer(self)
        self._spawn(self._snapshot_loop, "recserve-snapshots")
        if s.events_source == "kinesis":
            from recserve.service.stream import StreamIngest  # boto3: the aws extra

            self.stream = StreamIngest(self, dims)
            self.stream.start()

    def _initial_ranker(self, registry: ModelRegistry) -> Ranker | SimilarityRanker:
        active = self.data_dir / "active-model"
        wanted = self.settings.model or (active.read_text().strip() if active.exists() else None)
        if wanted is not None:
            return registry.get(wanted)  # named: must load, else the start fails
        try:
            return registry.get(BUILTIN_VERSION)
        except ValueError as error:  # other dims than the built-in model's
            log.warning("no built-in model for this service (%s); ranking by similarity", error)
            return SimilarityRanker()

    def _flush_loop(self) -> None:
        while not self._stop.wait(1.0):
            self._flush_impressions()

    def _flush_impressions(self) -> None:
        with self._log_lock:
            records, self._log_pending = self._log_pending, []
            if self._impressions is not None:
                self._impressions.extend(records)
                self._impressions.flush()

    def _log(self, records: Sequence[Record]) -> None:
        if self._impressions is not None:
            with self._log_lock:
                self._log_pending.extend(records)

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(self.settings.snapshot_interval_s):
            try:
                self.snapshot()
            except Exception:
                log.exception("a periodic snapshot failed (the WAL still holds everything)")

    def snapshot(self) -> Path | None:
        return None if self.store is None else self.store.snapshot()

    def close(self, *, snapshot: bool = True) -> None:
        """Stops background work, writes a final snapshot and closes the files."""
        self.draining = True
        self._stop.set()
        if self.stream is not None:
            self.stream.stop()  # no batch in flight: the snapshot holds all it applied
        if self._precompute is not None:
            self._precompute.stop()
        if self.store is not None:
            if snapshot:
                self.store.snapshot()
            self.store.close()
        self._flush_impressions()
        with self._log_lock:
            if self._impressions is not None:
                self._impressions.close()
                self._impressions = None

    def _require(self) -> tuple[EmbeddedStore, _State, FeedBuilder]:
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
        with self._items_lock:  # the capacity check and the write, with no upsert in between
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
            header: dict[str, Any] = {"ts_ms": ts_ms, "items": [item.to_row() for item in items]}
            if not amplify:  # absent in older records: they all amplified
                header["amplify"] = False
            store.log(
                ITEMS,
                _record(header, vectors.tobytes()),
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
        }

    def take_down(self, item_id: str) -> None:
        started = time.perf_counter()
        store, state, _ = self._require()
        key = key_of(item_id)
        if state.catalog.by_key(key) is None and state.amplifier.state(key) is None:
            raise NotFound(f"no item {item_id!r}")
        store.log(
            TAKE_DOWN, _record({"keys": [str(key)]}), lambda: state.take_down(key, store.profiles)
        )
        if self._precompute is not None:
            self._precompute.drop_containing(key)
        self.metrics.takedown_seconds.observe(time.perf_counter() - started)

    def _url(self, item: Item) -> str:
        return self.media.url(item.media_key or item.id)

    # ---- events -----------------------------------------------------------------------------
    def post_events(self, rows: Sequence[EventRow]) -> dict[str, int]:
        """Durable and applied when it returns. ValueError naming the event index and field
        for a bad one (nothing of the batch applied)."""
        store, state, _ = self._require()
        n = len(rows)
        types = np.empty(n, dtype=np.uint8)
        watch = np.zeros(n, dtype=np.uint32)
        duration = np.zeros(n, dtype=np.uint32)
        latest = latest_ms(self.settings.max_clock_skew_s)
        for i, row in enumerate(rows):
            types[i] = _TYPE_CODES[row.type]
            if row.ts is not None and row.ts > latest:  # it would be "now" on the events' clock
                raise ValueError(
                    f"events[{i}].ts: more than {self.settings.max_clock_skew_s:g} s ahead of "
                    f"the server's clock ({latest} ms with the skew allowed)"
                )
            if row.watch_ms is not None:
                watch[i] = row.watch_ms
            if row.duration_ms is not None:
                duration[i] = row.duration_ms
            elif row.type == "watch":
                item = state.catalog.get(row.item_id)
                if item is None:
                    raise ValueError(
                        f"events[{i}].duration_ms: required for a watch of an item not in the "
                        f"catalogue ({row.item_id!r})"
                    )
                duration[i] = item.duration_ms
            if row.type == "watch" and row.watch_ms is None:
                raise ValueError(f"events[{i}].watch_ms: required for a watch")
        if self.stream is not None:  # scale-out: the owner of the user's shard applies them
            self.stream.put(list(rows), duration)  # NotReady (503) if the stream refuses them
            unknown = sum(state.catalog.get(r.item_id) is None for r in rows)
            return {"accepted": n, "applied": 0, "duplicates": 0, "unknown_items": unknown}
        # Time moves only for a batch that is applied (a refused one changes nothing).
        self.clock.observe(max((r.ts for r in rows if r.ts is not None), default=0))
        now = self.clock.now_ms()
        events = Events.of(
            users=keys_of(r.user_id for r in rows),
            items=keys_of(r.item_id for r in rows),
            types=types,
            watch_ms=watch,
            duration_ms=duration,
            ts_ms=[now if r.ts is None else r.ts for r in rows],
            seq=np.ones(n, dtype=np.uint64),  # replaced by log-ordered seqs in the store
            event_keys=keys_of(r.event_id for r in rows),
        )
        result = store.apply(events, assign_seq=True)
        self.after_apply(result, events, now)
        self._count_arms(rows, events)
        self._log_events(rows, events)
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
        for transition in self._drain_transitions(self.state):
            self.metrics.amplification.labels(transition).inc()
        self.trending.add(events.items, events.types, now_ms / 1000.0)

    @staticmethod
    def _drain_transitions(state: _State) -> list[str]:
        made, state.transitions = state.transitions, []
        return made

    def _count_arms(self, rows: Sequence[EventRow], events: Events) -> None:
        if not self.experiments.experiments:
            return
        threshold = self.rule.completion_threshold
        for i, row in enumerate(rows):
            outcome = None
            if row.type == "impression":
                outcome = "impression"
            elif row.type == "like":
                outcome = "like"
            elif (
                row.type == "watch"
                and events.duration_ms[i]
                and (events.watch_ms[i] >= threshold * events.duration_ms[i])
            ):
                outcome = "complete"
            if outcome is not None:
                for experiment, arm in self.experiments.assign(row.user_id).arms:
                    self.metrics.count_arm(experiment, arm, outcome)

    def _log_events(self, rows: Sequence[EventRow], events: Events) -> None:
        if self._impressions is None or not self.settings.impression_log:
            return
        records = [
            Event(
                ts=int(events.ts_ms[i]) / 1000.0,
                event_id=row.event_id,
                user=row.user_id,
                item=int(events.items[i]),
                type=row.type,
                request_id=row.request_id,
                watch_ms=int(events.watch_ms[i]),
                duration_ms=int(events.duration_ms[i]),
            )
            for i, row in enumerate(rows)
            if row.type != "impression"
        ]
        self._log(records)

    # ---- feeds ------------------------------------------------------------------------------
    def _ranker_for(self, assignment: Assignment) -> Ranker | SimilarityRanker:
        ranker: Ranker | SimilarityRanker = self.ranker
        if assignment.model is not None and self.registry is not None:
            ranker = self.registry.get(assignment.model)
        return ranker.with_blend(assignment.blend)

    def _stamp(self, user_key: int) -> tuple[int, ...]:
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

    def _compute_page(self, user_id: str) -> tuple[tuple[int, ...], FeedResult, str | None] | None:
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
        return stamp, result, assignment.label

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
        now = self.clock.now_ms() / 1000.0
        self.served.add(user_key, [s.key for s in items], now)
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
        if self._impressions is not None and items:
            ts = self.clock.now_ms() / 1000.0 if now is None else now
            records = [
                Impression(ts, request_id, user_id, s.key, position, model_version, label or "")
                for position, s in enumerate(items)
            ]
            self._log(records)
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
        header = {
            "user": str(key),
            "interests": None if interests is None else list(interests),
            "blocked": None if blocked is None else list(blocked),
        }
        store.log(USER_PREFS, _record(header), lambda: state.users.set(key, interests, blocked))
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
        if self._precompute is not None:
            self._precompute.forget(user_id)
        with self._log_lock:
            self._log_pending = [r for r in self._log_pending if r.user != user_id]
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
        with self._log_lock:
            if self._impressions is not None:
                self._impressions.extend(self._log_pending)
                self._log_pending = []
                self._impressions.close()  # the next record starts a new segment
            erase_users(self.data_dir / "impressions", set(users))
        self._erasures.done(users)
        log.info("erasure of %d user(s) complete on disk", len(users))

    # ---- models -----------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        if not self.ready:
            raise NotReady("recovering")
        if self.registry is None:
            return {"active": self.ranker.version, "models": []}
        return {
            "active": self.ranker.version,
            "models": [
                {**self.registry.describe(v), "active": v == self.ranker.version}
                for v in self.registry.versions()
            ],
        }

    def activate(self, version: str) -> dict[str, Any]:
        self._require()
        assert self.registry is not None
        try:
            ranker = self.registry.get(version)
        except KeyError:
            raise NotFound(f"no model {version!r}") from None
        self.ranker = ranker  # one reference swap: requests in flight keep the one they hold
        self._model_epoch += 1
        write_atomic(self.data_dir / "active-model", (version + "\n").encode())
        return {"active": version}

    def refresh_gauges(self) -> None:
        if self._precompute is not None:
            pages, backlog = self._precompute.pages()
            self.metrics.precomputed_pages.set(pages)
            self.metrics.precompute_backlog.set(backlog)
        if self.store is not None:
            stats = self.store.profiles.stats()
            self.metrics.evictions.set(sum(v for k, v in stats.items() if "evict" in k))
