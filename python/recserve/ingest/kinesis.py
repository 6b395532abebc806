"""Events from a Kinesis data stream (boto3): a consumer that shares the shards among workers
through leases in DynamoDB (``recserve.ingest.leases``), and a producer for clients.

    worker = Worker(kinesis, leases, stream, handler, settings)
    worker.start()      # takes, renews and steals leases; one reader thread per held shard
    ...
    worker.stop()       # stops reading and gives the leases back

The handler gets each GetRecords batch with the sequence number of its first user record and
returns once the batch is applied and its state durable; only then is the checkpoint written.
Delivery is therefore at least once: after a failover the new holder reads again from the
last checkpoint, and the per-user high-water mark makes those records change nothing.

Reading stays within the service limits (at most 5 GetRecords per second per shard, 10,000
records per call), backs off with jitter on throttling, takes a fresh iterator when one
expires, and starts a child shard only once its parents are read to their end, so a user's
events (one partition key) keep their order across splits and merges.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from recserve._aws import backoff, error_code
from recserve.ingest.leases import SHARD_END, TRIM_HORIZON, Lease, LeaseLost, LeaseTable

__all__ = ["ROOT_SEQ_BASE", "Consumed", "Producer", "PutFailed", "Worker", "WorkerSettings"]

log = logging.getLogger(__name__)

GET_RECORDS_LIMIT = 10_000
CALLS_PER_SECOND = 5  # GetRecords per shard
PUT_RECORDS_LIMIT = 500
PUT_BYTES_LIMIT = 5 << 20
# Where a root shard's sequence numbers start: above every sequence number the HTTP source
# assigns (log position x 2^20), so a data directory can move from HTTP events to a stream.
ROOT_SEQ_BASE = 1 << 62


class Consumed(NamedTuple):
    """What the handler made of a batch: user records counted (KPL aggregates hold several)
    and the sub-sequence number of the last one within its Kinesis record."""

    user_records: int
    last_sub_sequence: int


Handler = Callable[[str, list[dict[str, Any]], int], Consumed]


@dataclass(frozen=True)
class WorkerSettings:
    worker_id: str
    lease_duration_s: float = 10.0
    renew_interval_s: float = 2.0
    poll_interval_s: float = 0.2  # an idle shard is asked again after this
    max_records: int = GET_RECORDS_LIMIT


@dataclass
class WorkerStats:
    """Read by the service's /metrics."""

    behind_ms: dict[str, int] = field(default_factory=dict)  # MillisBehindLatest per shard
    records: int = 0
    throttled: int = 0  # GetRecords refused for throughput, each followed by a back-off
    backoff_s: float = 0.0
    expired_iterators: int = 0
    leases_taken: int = 0
    leases_lost: int = 0


class Worker:
    def __init__(
        self,
        kinesis: Any,
        leases: LeaseTable,
        stream: str,
        handler: Handler,
        settings: WorkerSettings,
    ) -> None:
        self.kinesis = kinesis
        self.leases = leases
        self.stream = stream
        self.handler = handler
        self.settings = settings
        self.stats = WorkerStats()
        self._held: dict[str, Lease] = {}
        self._readers: dict[str, _ShardReader] = {}
        self._seen: dict[str, tuple[int, float]] = {}  # shard -> (counter, when it last moved)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recserve-leases", daemon=True)

    def generation(self, shard_id: str) -> int | None:
        """Which taking of a held shard this is (None: not held): state cached for a shard
        is good only within one taking."""
        with self._lock:
            lease = self._held.get(shard_id)
        return None if lease is None else lease.generation

    @property
    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        with self._lock:
            readers = list(self._readers.values())
            held = [lease for lease in self._held.values() if not lease.finished]
        for reader in readers:
            reader.stop.set()
        for reader in readers:
            reader.join(timeout=30)
        if release:
            for lease in held:
                self.leases.release(lease)

    # ---- the lease loop ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._balance()
            except Exception:  # a DynamoDB or Kinesis hiccup: try again next round
                log.exception("the lease round failed")
            self._stop.wait(self.settings.renew_interval_s)

    def _shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        while True:
            page = self.kinesis.list_shards(**kwargs)
            shards += page["Shards"]
            if not page.get("NextToken"):
                return shards
            kwargs = {"NextToken": page["NextToken"]}

    def _balance(self) -> None:
        with self._lock:  # readers drop their shards from other threads
            held = list(self._held.values())
        for lease in held:
            try:
                self.leases.renew(lease)
            except LeaseLost:
                self._drop(lease)
        self.leases.add_shards(self._shards())
        leases = self.leases.all()
        now = time.monotonic()
        for shard_id, lease in leases.items():
            seen = self._seen.get(shard_id)
            if seen is None or seen[0] != lease.counter:
                self._seen[shard_id] = (lease.counter, now)
        open_leases = [lease for lease in leases.values() if not lease.finished]
        live_owners = {
            lease.owner
            for lease in open_leases
            if lease.owner is not None and not self._expired(lease, now)
        } | {self.settings.worker_id}
        target = math.ceil(len(open_leases) / len(live_owners)) if open_leases else 0
        with self._lock:
            mine = len(self._held)
        for lease in sorted(open_leases, key=lambda lease: lease.shard_id):
            if mine >= target:
                break
            if lease.shard_id in self._held or not self._ready(lease, leases):
                continue
            if lease.owner is None or self._expired(lease, now):
                mine += self._take(lease, leases)
        if mine < target:
            self._steal_one(open_leases, leases, target, now)

    def _expired(self, lease: Lease, now: float) -> bool:
        if lease.owner == self.settings.worker_id and lease.shard_id in self._held:
            return False
        _, since = self._seen[lease.shard_id]
        return now - since > self.settings.lease_duration_s

    @staticmethod
    def _ready(lease: Lease, leases: dict[str, Lease]) -> bool:
        """A child shard waits until its parents are read to the end (a parent without a
        lease is past the stream's retention)."""
        return all(leases[p].finished for p in lease.parents if p in leases)

    def _seq_base(self, lease: Lease, leases: dict[str, Lease]) -> int:
        if lease.seq_base is not None:
            return lease.seq_base
        parents = [leases[p] for p in lease.parents if p in leases]
        if len(parents) < len(lease.parents):  # a parent we never saw: above everything known
            return max((other.last_seq for other in leases.values()), default=0) + 1
        if not parents:
            return ROOT_SEQ_BASE
        return max(p.last_seq for p in parents) + 1

    def _take(self, lease: Lease, leases: dict[str, Lease]) -> int:
        try:
            taken = self.leases.take(lease, self._seq_base(lease, leases))
        except LeaseLost:
            return 0  # another worker was quicker
        log.info("took the lease of %s (from %s)", lease.shard_id, lease.owner)
        self.stats.leases_taken += 1
        taken.generation = self.stats.leases_taken
        reader = _ShardReader(self, taken)
        with self._lock:
            self._held[lease.shard_id] = taken
            self._readers[lease.shard_id] = reader
        reader.start()
        return 1

    def _steal_one(
        self, open_leases: list[Lease], leases: dict[str, Lease], target: int, now: float
    ) -> None:
        by_owner: dict[str, list[Lease]] = {}
        for lease in open_leases:
            if lease.owner and lease.owner != self.settings.worker_id:
                if not self._expired(lease, now):
                    by_owner.setdefault(lease.owner, []).append(lease)
        if not by_owner:
            return
        owner, theirs = max(by_owner.items(), key=lambda kv: (len(kv[1]), kv[0]))
        if len(theirs) > target:
            victim = sorted(theirs, key=lambda lease: lease.shard_id)[-1]
            log.info("stealing the lease of %s from %s", victim.shard_id, owner)
            self._take(victim, leases)

    def _drop(self, lease: Lease) -> None:
        """This taking of the lease is over (lost, or the shard is read to its end): stop its
        reader. A no-op once dropped, or when the shard has been taken again since: the reader
        of an earlier taking, ending late, must not stop the current one."""
        with self._lock:
            if self._held.get(lease.shard_id) is not lease:
                return
            del self._held[lease.shard_id]
            reader = self._readers.pop(lease.shard_id, None)
        if reader is not None:
            reader.stop.set()
        if not lease.finished and not self._stop.is_set():
            self.stats.leases_lost += 1
            log.warning("lost the lease of %s", lease.shard_id)


class _ShardReader(threading.Thread):
    def __init__(self, worker: Worker, lease: Lease) -> None:
        super().__init__(name=f"recserve-shard-{lease.shard_id}", daemon=True)
        self.worker = worker
        self.lease = lease
        self.stop = threading.Event()
        self._last_call = 0.0

    def run(self) -> None:
        try:
            self._read()
        except LeaseLost:
            pass
        except Exception:
            log.exception("reading %s failed; the lease is given up", self.lease.shard_id)
            self.worker.leases.release(self.lease)
        finally:
            self.worker._drop(self.lease)

    def _iterator(self, after: str) -> str:
        kwargs: dict[str, Any] = {
            "StreamName": self.worker.stream,
            "ShardId": self.lease.shard_id,
        }
        if after == TRIM_HORIZON:
            kwargs["ShardIteratorType"] = TRIM_HORIZON
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["StartingSequenceNumber"] = after
        return str(self.worker.kinesis.get_shard_iterator(**kwargs)["ShardIterator"])

    def _get_records(self, iterator: str) -> dict[str, Any]:
        """One GetRecords within the per-shard rate; backs off (full jitter) when throttled."""
        stats = self.worker.stats
        attempt = 0
        while True:
            wait = self._last_call + 1.0 / CALLS_PER_SECOND - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_call = time.monotonic()
            try:
                return dict(
                    self.worker.kinesis.get_records(
                        ShardIterator=iterator,
                        Limit=min(self.worker.settings.max_records, GET_RECORDS_LIMIT),
                    )
                )
            except ClientError as error:
                if error_code(error) not in (
                    "ProvisionedThroughputExceededException",
                    "KMSThrottlingException",
                ):
                    raise
                pause = backoff(attempt, base_s=0.1, cap_s=5.0)
                stats.throttled += 1
                stats.backoff_s += pause
                attempt += 1
                if self.stop.wait(pause):
                    raise LeaseLost("stopping") from None

    def _read(self) -> None:
        lease, worker = self.lease, self.worker
        position = lease.checkpoint  # the last record handled: where a new iterator starts
        iterator: str | None = self._iterator(position)
        ordinal = lease.ordinal
        while iterator is not None and not self.stop.is_set():
            try:
                response = self._get_records(iterator)
            except ClientError as error:
                if error_code(error) != "ExpiredIteratorException":
                    raise
                worker.stats.expired_iterators += 1
                iterator = self._iterator(position)
                continue
            records = response.get("Records", [])
            if "MillisBehindLatest" in response:
                worker.stats.behind_ms[lease.shard_id] = int(response["MillisBehindLatest"])
            iterator = response.get("NextShardIterator")
            if records:
                first_seq = (lease.seq_base or 0) + ordinal + 1
                consumed = worker.handler(lease.shard_id, records, first_seq)
                ordinal += consumed.user_records
                position = records[-1]["SequenceNumber"]
                worker.stats.records += len(records)
                worker.leases.checkpoint(lease, position, consumed.last_sub_sequence, ordinal)
            if iterator is None:  # a closed shard, read to its end: its children may start
                worker.leases.checkpoint(lease, SHARD_END, 0, ordinal)
                log.info("%s is read to its end (%d records)", lease.shard_id, ordinal)
                return
            if not records:
                self.stop.wait(worker.settings.poll_interval_s)


# ---- the producer ------------------------------------------------------------------------------
class PutFailed(RuntimeError):
    """Some records were still refused after every retry."""


class Producer:
    """Puts event records on the stream, partition key = user id (a user's events stay in
    order on one shard). Batches PutRecords (500 records, 5 MiB) and retries only the entries
    that failed, with jittered back-off."""

    def __init__(self, kinesis: Any, stream: str, *, attempts: int = 8) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.attempts = attempts
        self.retried = 0  # entries sent again after a partial failure

    def put(self, records: Sequence[tuple[str, bytes]]) -> list[tuple[str, str]]:
        """(partition key, data) pairs -> their (shard id, sequence number), in order."""
        placed: list[tuple[str, str]] = [("", "")] * len(records)
        for batch in self._batches(records):
            self._put_batch(records, batch, placed)
        return placed

    @staticmethod
    def _batches(records: Sequence[tuple[str, bytes]]) -> list[list[int]]:
        batches: list[list[int]] = [[]]
        size = 0
        for i, (key, data) in enumerate(records):
            entry = len(key.encode()) + len(data)
            if len(batches[-1]) == PUT_RECORDS_LIMIT or size + entry > PUT_BYTES_LIMIT:
                batches.append([])
                size = 0
            batches[-1].append(i)
            size += entry
        return [b for b in batches if b]

    def _put_batch(
        self,
        records: Sequence[tuple[str, bytes]],
        pending: list[int],
        placed: list[tuple[str, str]],
    ) -> None:
        for attempt in range(self.attempts):
            try:
                response = self.kinesis.put_records(
                    StreamName=self.stream,
                    Records=[
                        {"PartitionKey": records[i][0], "Data": records[i][1]} for i in pending
                    ],
                )
            except ClientError as error:
                if error_code(error) != "ProvisionedThroughputExceededException":
                    raise
                time.sleep(backoff(attempt))
                continue
            failed = []
            for i, result in zip(pending, response["Records"], strict=True):
                if "ErrorCode" in result:
                    failed.append(i)
                else:
                    placed[i] = (result["ShardId"], result["SequenceNumber"])
            if not failed:
                return
            self.retried += len(failed)
            pending = failed
            time.sleep(backoff(attempt))
        raise PutFailed(f"{len(pending)} records were refused {self.attempts} times")
