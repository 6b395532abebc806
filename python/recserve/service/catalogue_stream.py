"""One catalogue across replicas: items, takedowns and review decisions travel through a Kinesis
stream of their own (``catalog_stream``), which every replica reads whole and applies in order.

Why a stream of its own rather than a record kind on the events stream: the events stream is
partitioned by user, and each replica reads only the shards it leases, while every replica
needs every catalogue record, in one order. On the events stream each record would have to be
copied to every shard (and to the new ones at each reshard), and the order of two records on
different shards would be lost. A one-shard stream has one order and each replica reads it
whole, without leases. It costs a second stream, and its read budget of 5 GetRecords calls a
second, shared by all readers, bounds replicas x polls: at the default 1 s poll, 5 replicas;
more need a longer ``catalog.poll_interval_s``.

Writes: the record is put with one partition key (so on one shard, in one order), and the
writer waits until its own reader has applied it, so the caller reads its own write. Once put,
the record is durable: if the wait times out it is still applied, here and everywhere, as
reading catches up. A batch of items larger than a Kinesis record (1 MiB) goes as several
records, put in order.

Reads: each record is checked, logged in the local store with its sequence number (a STREAMED
record) and applied by ``apply``; a restart reads on after the last one logged. A record that
does not decode or fails its checks is skipped alike on every replica, and counted.

Lag (``lag_s``): the age of the oldest change this replica may not have applied, i.e. the time
since a read began that found the stream drained. Between polls it is at most the poll interval
plus the time to apply a batch; a reader that cannot reach the stream sees it grow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from botocore.exceptions import BotoCoreError, ClientError

from recserve._aws import backoff, error_code
from recserve.catalog import Item
from recserve.service import catalogue_records

__all__ = ["MAX_RECORD_BYTES", "CatalogueStream", "split_items"]

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1_000_000  # a Kinesis record holds 1 MiB with its partition key
PARTITION_KEY = "catalogue"
_THROTTLED = ("ProvisionedThroughputExceededException", "KMSThrottlingException")


def split_items(
    ts_ms: int,
    items: Sequence[Item],
    vectors: npt.NDArray[np.float32],
    amplify: bool,
    max_bytes: int = MAX_RECORD_BYTES,
) -> list[bytes]:
    """ITEMS record bodies of at most ``max_bytes`` each (with the kind byte), in order."""
    body = catalogue_records.items_record(ts_ms, items, vectors, amplify=amplify)
    if len(body) + 1 <= max_bytes:
        return [body]
    if len(items) == 1:
        raise ValueError(
            f"item {items[0].id!r} takes {len(body)} bytes as a catalogue record; "
            f"the stream holds at most {max_bytes}"
        )
    half = len(items) // 2
    return split_items(ts_ms, items[:half], vectors[:half], amplify, max_bytes) + split_items(
        ts_ms, items[half:], vectors[half:], amplify, max_bytes
    )


class CatalogueStream:
    """Puts this replica's catalogue records on the stream and applies everyone's, in order.

    ``apply(seq, kind, body)`` logs and applies one record (the caller checks it first and
    returns False for a skipped one); ``between_batches()`` runs on the reader's thread after
    each batch, while no record is being applied (the S3 snapshot is taken there).
    """

    def __init__(
        self,
        kinesis: Any,
        stream: str,
        position: str | None,
        apply: Callable[[str, int, bytes], bool],
        *,
        poll_interval_s: float = 1.0,
        between_batches: Callable[[], None] | None = None,
        attempts: int = 8,
    ) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.position = position  # the last sequence number applied; None: from the start
        self._apply = apply
        self.poll_interval_s = poll_interval_s
        self._between_batches = between_batches
        self.attempts = attempts
        self.applied = 0
        self.skipped = 0
        self._shard = self._only_shard()
        self._applied_seq = int(position) if position is not None else -1
        self._changed = threading.Condition()
        self._caught_up_at = time.monotonic()  # a fresh reader is as stale as its first read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _only_shard(self) -> str:
        shards = self.kinesis.list_shards(StreamName=self.stream)["Shards"]
        open_ = [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
        if len(open_) != 1 or len(shards) != 1:
            raise RuntimeError(
                f"the catalogue stream {self.stream!r} must have exactly one shard, which "
                f"keeps every record in one order; it has {len(shards)} ({len(open_)} open)"
            )
        return str(open_[0]["ShardId"])

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recserve-catalogue", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # ---- writes ------------------------------------------------------------------------------
    def put(self, records: Sequence[tuple[int, bytes]]) -> str:
        """Puts (kind, body) records in order; the sequence number of the last. Raises
        ClientError/BotoCoreError when the stream refuses one after every retry (the ones
        before it are on the stream)."""
        previous: str | None = None
        for kind, body in records:
            kwargs: dict[str, Any] = {
                "StreamName": self.stream,
                "PartitionKey": PARTITION_KEY,
                "Data": bytes([kind]) + body,
            }
            if previous is not None:  # strictly after the one before, whatever else arrives
                kwargs["SequenceNumberForOrdering"] = previous
            previous = str(self._call(self.kinesis.put_record, **kwargs)["SequenceNumber"])
        if previous is None:
            raise ValueError("no records to put")
        return previous

    def wait_applied(self, seq: str, timeout_s: float) -> bool:
        """True once the record ``seq`` (and all before it) is applied here."""
        target = int(seq)
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._applied_seq < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._changed.wait(left)
            return True

    def lag_s(self) -> float:
        return max(0.0, time.monotonic() - self._caught_up_at)

    # ---- reads -------------------------------------------------------------------------------
    def _iterator(self) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": self._shard}
        if self.position is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["StartingSequenceNumber"] = self.position
        return str(self._call(self.kinesis.get_shard_iterator, **kwargs)["ShardIterator"])

    def _run(self) -> None:
        iterator: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if iterator is None:
                    iterator = self._iterator()
                began = time.monotonic()
                response = self._call(self.kinesis.get_records, ShardIterator=iterator, Limit=1000)
                records = response.get("Records", [])
                for record in records:
                    self._take(record)
                iterator = response.get("NextShardIterator")
                if int(response.get("MillisBehindLatest", 0)) == 0:
                    self._caught_up_at = began
                if self._between_batches is not None:
                    self._between_batches()
                failures = 0
                if iterator is None:
                    log.error("the catalogue stream's shard %s was closed: not read further",
                              self._shard)  # fmt: skip
                    return
                if not records:
                    self._stop.wait(self.poll_interval_s)
            except (ClientError, BotoCoreError) as error:
                if (
                    isinstance(error, ClientError)
                    and error_code(error) == "ExpiredIteratorException"
                ):
                    iterator = None
                    continue
                failures += 1
                log.warning("reading the catalogue stream failed (%s); retrying", error)
                iterator = None  # read on from the position: nothing is skipped
                self._stop.wait(backoff(failures, base_s=0.2, cap_s=10.0))
            except Exception:
                failures += 1
                log.exception("applying a catalogue record failed; retrying from %s",
                              self.position)  # fmt: skip
                iterator = None
                self._stop.wait(backoff(failures, base_s=0.2, cap_s=10.0))

    def _take(self, record: dict[str, Any]) -> None:
        seq = str(record["SequenceNumber"])
        data = bytes(record["Data"])
        kind, body = (data[0], data[1:]) if data else (-1, b"")
        if self._apply(seq, kind, body):
            self.applied += 1
        else:
            self.skipped += 1
        self.position = seq
        with self._changed:
            self._applied_seq = int(seq)
            self._changed.notify_all()

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
        """One call, retried with back-off while the stream throttles it."""
        for attempt in range(self.attempts):
            try:
                return dict(method(**kwargs))
            except ClientError as error:
                if error_code(error) not in _THROTTLED or attempt == self.attempts - 1:
                    raise
                if self._stop.wait(backoff(attempt, base_s=0.1, cap_s=5.0)):
                    raise
        raise AssertionError("unreachable")
