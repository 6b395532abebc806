"""Scale-out mode: events come from a Kinesis stream and user state lives in DynamoDB.

Each replica runs a consumer (``recserve.ingest.kinesis.Worker``) over the shards it leases;
for each GetRecords batch it

1. decodes the records into columns in one pass (``recserve.ingest.records``); a record that
   does not decode goes to ``<data_dir>/dead-letter.jsonl`` with its shard and sequence
   number, and its neighbours go on;
2. loads from DynamoDB the batch's users not yet loaded since this replica took the shard (a
   user's newest state may have been written by the replica that held it before);
3. applies the batch to the local store, with sequence numbers the stream fixes (so a record
   read again after a failover is recognised by the user's high-water mark);
4. writes the users it changed to DynamoDB, each only if newer than the stored image. A user
   stored at the same version is the same state (the same records applied in the same
   order), but one stored at a newer version means another replica holds the shard now:
   the batch is not checkpointed and the shard is dropped.

Only then does the worker checkpoint. ``POST /v1/events`` puts the events on the stream (the
Producer): the replica that owns the user's shard applies them.

The engine starts it once its store is open, and hands it the parts it works on: this module
never imports the engine.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from recserve.catalog import Catalog
from recserve.ingest import records as codec
from recserve.ingest.event_row import EventRow
from recserve.ingest.kinesis import Consumed, Producer, PutFailed, Worker, WorkerSettings
from recserve.ingest.leases import LeaseLost, LeaseTable, new_worker_id
from recserve.profiles import EVENT_TYPES, ApplyResult, Events
from recserve.service.clock import Clock
from recserve.service.errors import NotReady
from recserve.service.metrics import Metrics
from recserve.service.settings import Settings
from recserve.store.dynamodb import DynamoUsers
from recserve.store.embedded import EmbeddedStore

__all__ = ["StreamIngest"]

log = logging.getLogger(__name__)
_WATCH = EVENT_TYPES.index("watch")


class StreamIngest:
    """``after_apply(result, events, now_ms)`` follows every batch applied to ``store`` (the
    engine's metrics, amplification and trending); ``catalog`` fills the durations of watches
    sent without one."""

    def __init__(
        self,
        settings: Settings,
        store: EmbeddedStore,
        catalog: Catalog,
        clock: Clock,
        metrics: Metrics,
        after_apply: Callable[[ApplyResult, Events, int], None],
    ) -> None:
        import boto3  # the aws extra; endpoints, region and credentials are boto3's own

        s = settings
        assert s.kinesis_stream is not None
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.metrics = metrics
        self.after_apply = after_apply
        self.foreign_ttl_s = s.kinesis.foreign_ttl_s
        self.stream = s.kinesis_stream
        session = boto3.session.Session()
        self.kinesis = session.client("kinesis")
        self.dynamodb = session.client("dynamodb")
        prefix = s.dynamodb_table_prefix
        self.users = (
            DynamoUsers(self.dynamodb, f"{prefix}users", catalog.dims, create=s.create_tables)
            if s.state_store == "dynamodb"
            else None
        )
        self.producer = Producer(self.kinesis, self.stream)
        worker_id = s.kinesis.worker_id or new_worker_id()
        leases = LeaseTable(self.dynamodb, f"{prefix}leases", worker_id, create=s.create_tables)
        self.worker = Worker(
            self.kinesis,
            leases,
            self.stream,
            self.handle,
            WorkerSettings(
                worker_id=worker_id,
                lease_duration_s=s.kinesis.lease_duration_s,
                renew_interval_s=s.kinesis.renew_interval_s,
                poll_interval_s=s.kinesis.poll_interval_s,
                max_records=s.kinesis.max_records,
            ),
        )
        self.binary = s.kinesis.record_format == "binary"
        self.dead_letters = 0
        self._dead_path = Path(s.data_dir) / "dead-letter.jsonl"
        self._loaded: dict[str, tuple[int, set[int]]] = {}  # shard -> (taking, users loaded)
        self._foreign: dict[int, float] = {}  # user -> when read, for users of others' shards
        self._fetch_lock = threading.Lock()

    def start(self) -> None:
        self.metrics.watch_stream(
            lambda: (self.worker.stats, self.worker.held, self.dead_letters)
        )
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    # ---- clients' events onto the stream ------------------------------------------------------
    def put(self, rows: list[EventRow], duration_ms: Any) -> None:
        """Puts the events on the stream; NotReady (HTTP 503, retry) if it refuses them."""
        encode = codec.encode_binary if self.binary else codec.encode_json
        records = [
            (
                row.user_id,
                encode(
                    row.event_id,
                    row.user_id,
                    row.item_id,
                    row.type,
                    watch_ms=row.watch_ms,
                    duration_ms=int(duration_ms[i]) or None,
                    ts=row.ts,
                ),
            )
            for i, row in enumerate(rows)
        ]
        try:
            self.producer.put(records)
        except (PutFailed, BotoCoreError, ClientError) as error:
            raise NotReady(f"the event stream did not take the events: {error}") from error

    # ---- reads for feeds ---------------------------------------------------------------------
    def load_missing(self, user_keys: list[int]) -> None:
        """Loads from DynamoDB the users this replica has no row for, and refreshes those of
        shards it does not hold once their copy is ``foreign_ttl_s`` old (the owner's writes
        reach DynamoDB after each batch). Users of held shards are never read: the local row
        is the newest there is."""
        if self.users is None:
            return
        profiles = self.store.profiles
        found = profiles.user_state(np.array(user_keys, dtype=np.uint64))["found"].tolist()
        now = time.monotonic()
        ttl = self.foreign_ttl_s
        wanted = [
            k
            for k, has_row in zip(user_keys, found, strict=True)
            if not has_row
            or (not self._owned(k) and now - self._foreign.get(k, -math.inf) > ttl)
        ]
        if wanted:
            with self._fetch_lock:
                self.users.fetch(profiles, wanted)
            if len(self._foreign) > 1_000_000:  # bounded: forgetting costs one more read
                self._foreign.clear()
            self._foreign.update((k, now) for k in wanted)

    def _owned(self, user_key: int) -> bool:
        return any(
            user_key in loaded and self.worker.generation(shard) == generation
            for shard, (generation, loaded) in list(self._loaded.items())
        )

    # ---- one batch from the stream ------------------------------------------------------------
    def handle(self, shard: str, records: list[dict[str, Any]], first_seq: int) -> Consumed:
        store = self.store
        batch = codec.decode_batch(records)
        # Ordinals: a record holds one user record, or several when KPL-aggregated.
        per_record = np.ones(len(records), dtype=np.int64)
        np.maximum.at(per_record, batch.record_index, batch.sub_sequence.astype(np.int64) + 1)
        for fault in batch.bad:
            per_record[fault.index] = max(per_record[fault.index], fault.sub_sequence + 1)
        starts = np.concatenate(([0], np.cumsum(per_record)[:-1]))
        seq = (first_seq + starts[batch.record_index] + batch.sub_sequence).astype(np.uint64)
        bad = list(batch.bad)
        keep = self._fill_durations(batch, bad)
        self._dead_letter(shard, records, bad)
        ts = batch.ts_ms.copy()
        for i in np.flatnonzero(ts < 0).tolist():  # no ts sent: when the stream took it
            arrival = records[int(batch.record_index[i])]["ApproximateArrivalTimestamp"]
            ts[i] = int(arrival.timestamp() * 1000)
        events = Events.of(
            users=batch.users[keep],
            items=batch.items[keep],
            types=batch.types[keep],
            watch_ms=batch.watch_ms[keep],
            duration_ms=batch.duration_ms[keep],
            ts_ms=ts[keep],
            seq=seq[keep],
            event_keys=batch.event_keys[keep],
        )
        users = np.unique(events.users).tolist()
        if self.users is not None:
            self._load_for(shard, users)
        if len(events):
            self.clock.observe(int(events.ts_ms.max()))
            self.after_apply(store.apply(events), events, self.clock.now_ms())
        if self.users is not None and users:
            written = self.users.write(store.profiles, users)
            if written.superseded:
                raise LeaseLost(
                    f"{len(written.superseded)} users of {shard} have newer state elsewhere"
                )
        last_sub = int(per_record[-1]) - 1
        return Consumed(int(per_record.sum()), last_sub)

    def _load_for(self, shard: str, users: list[int]) -> None:
        """Users are loaded once per holding of the shard: while this replica holds it, no one
        else writes them, so the local row stays the newest."""
        generation = self.worker.generation(shard) or 0
        held, loaded = self._loaded.get(shard, (generation, set()))
        if held != generation:
            loaded = set()
        todo = [u for u in users if u not in loaded]
        if todo and self.users is not None:
            with self._fetch_lock:
                self.users.fetch(self.store.profiles, todo)
            loaded.update(todo)
        self._loaded[shard] = (generation, loaded)

    def _fill_durations(
        self, batch: codec.DecodedBatch, bad: list[codec.BadRecord]
    ) -> np.ndarray:
        """Watches sent without duration_ms take the catalogue's; without one they are bad."""
        keep = np.ones(len(batch.users), dtype=bool)
        for i in np.flatnonzero((batch.types == _WATCH) & (batch.duration_ms == 0)).tolist():
            item = self.catalog.by_key(int(batch.items[i]))
            if item is None:
                keep[i] = False
                reason = "duration_ms: required for a watch of an item not in the catalogue"
                index, sub = int(batch.record_index[i]), int(batch.sub_sequence[i])
                bad.append(codec.BadRecord(index, sub, reason))
            else:
                batch.duration_ms[i] = item.duration_ms
        return keep

    def _dead_letter(
        self, shard: str, records: list[dict[str, Any]], bad: list[codec.BadRecord]
    ) -> None:
        """Appends the undecodable records, durably, before the batch can be checkpointed."""
        if not bad:
            return
        lines = []
        for fault in bad:
            record = records[fault.index]
            data = record.get("Data") if isinstance(record, dict) else None
            lines.append(
                json.dumps(
                    {
                        "shard": shard,
                        "sequence_number": record.get("SequenceNumber"),
                        "sub_sequence": fault.sub_sequence,
                        "reason": fault.reason,
                        "data": base64.b64encode(data).decode()
                        if isinstance(data, bytes)
                        else None,
                    }
                )
            )
        with self._dead_path.open("a") as out:
            out.write("\n".join(lines) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.dead_letters += len(bad)
        log.warning("%d undecodable records of %s written to %s", len(bad), shard, self._dead_path)
