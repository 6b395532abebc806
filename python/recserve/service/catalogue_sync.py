"""Scale-out catalogue: the engine's items, takedowns and review decisions go through the
catalogue stream (``catalogue_stream``) instead of straight into the local store, every replica
applies the stream in order, and a new replica starts from the newest S3 snapshot
(``catalogue_snapshots``), written by whichever replica holds the ``catalogue-snapshot`` role
in the lease table.

    engine ──put──▶ catalogue stream ──read──▶ every replica: check, log (STREAMED), apply
                                             └─ role holder, each snapshot interval: files ──▶ S3

The engine starts it once its store is open, and hands it the parts it works on: this module
never imports the engine.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from botocore.exceptions import BotoCoreError, ClientError

from recserve._aws import ensure_table
from recserve._core import CorruptFileError
from recserve.catalog import Item
from recserve.ingest.leases import RoleLease, new_worker_id
from recserve.service import catalogue_records
from recserve.service.catalogue_snapshots import FILES, S3Snapshots, write_vectors
from recserve.service.catalogue_state import CatalogueState
from recserve.service.catalogue_stream import CatalogueStream, split_items
from recserve.service.errors import NotReady
from recserve.service.metrics import Metrics
from recserve.service.settings import Settings
from recserve.store.embedded import EmbeddedStore

__all__ = ["CatalogueSync"]

log = logging.getLogger(__name__)

ROLE = "catalogue-snapshot"


def _session() -> Any:
    import boto3  # the aws extra; endpoints, region and credentials are boto3's own

    return boto3.session.Session()


class CatalogueSync:
    """``dropped(keys)`` follows every record that took items down, whichever replica wrote
    it (the engine drops them from precomputed pages and the exposure ledger)."""

    def __init__(
        self,
        settings: Settings,
        store: EmbeddedStore,
        state: CatalogueState,
        metrics: Metrics,
        dropped: Callable[[list[int]], None],
    ) -> None:
        assert settings.catalog_stream is not None
        session = _session()
        self.settings = settings
        self.store = store
        self.state = state
        self.metrics = metrics
        self.dropped = dropped
        self.snapshots: S3Snapshots | None = None
        self.role: RoleLease | None = None
        if settings.snapshot_uri is not None:
            self.snapshots = S3Snapshots(
                session.client("s3"), settings.snapshot_uri, keep=settings.catalog.snapshots_kept
            )
            dynamodb = session.client("dynamodb")
            table = f"{settings.dynamodb_table_prefix}leases"
            ensure_table(dynamodb, table, "shard_id", "S", create=settings.create_tables)
            # Held for three intervals: a holder that stops writing hands over after them.
            duration = 3 * settings.snapshot_interval_s
            worker = settings.kinesis.worker_id or new_worker_id()
            self.role = RoleLease(dynamodb, table, ROLE, worker, duration)
        self.published: str | None = None  # the last snapshot this replica wrote
        self._bootstrap_if_new()
        self.stream = CatalogueStream(
            session.client("kinesis"),
            settings.catalog_stream,
            state.stream_seq,
            self._apply,
            poll_interval_s=settings.catalog.poll_interval_s,
            between_batches=self._maybe_snapshot,
        )
        self._snapshot_due = time.monotonic() + settings.snapshot_interval_s
        self._upload: threading.Thread | None = None
        metrics.catalog_lag.set_function(self.stream.lag_s)

    def start(self) -> None:
        self.stream.start()

    def stop(self) -> None:
        self.stream.stop()
        if self._upload is not None:
            self._upload.join(timeout=60)

    # ---- writes (the engine's, after its checks) ---------------------------------------------
    def put_items(
        self, ts_ms: int, items: Sequence[Item], vectors: npt.NDArray[np.float32], amplify: bool
    ) -> None:
        bodies = split_items(ts_ms, items, vectors, amplify)
        self._put([(catalogue_records.ITEMS, body) for body in bodies])

    def put_take_down(self, key: int) -> None:
        self._put([(catalogue_records.TAKE_DOWN, catalogue_records.take_down_record([key]))])

    def put_review(self, ts_ms: int, key: int, decision: str, reason: str) -> None:
        body = catalogue_records.review_record(ts_ms, key, decision, reason)
        self._put([(catalogue_records.REVIEW, body)])

    def _put(self, records: list[tuple[int, bytes]]) -> None:
        """On the stream, then applied here: the caller reads its write. NotReady (503, retry)
        if the stream refuses it or this replica has not applied it in time."""
        try:
            seq = self.stream.put(records)
        except (ClientError, BotoCoreError) as error:
            raise NotReady(f"the catalogue stream did not take the change: {error}") from error
        timeout = self.settings.catalog.write_timeout_s
        if not self.stream.wait_applied(seq, timeout):
            raise NotReady(
                f"the change is on the catalogue stream (sequence number {seq}) but this "
                f"replica has not applied it within {timeout} s; every replica will"
            )

    # ---- reads (the stream's thread) ---------------------------------------------------------
    def _apply(self, seq: str, kind: int, body: bytes) -> bool:
        store, state = self.store, self.state
        problem = state.check_streamed(kind, body, store.profiles)
        if problem is not None:
            log.warning("catalogue record %s skipped: %s", seq, problem)
            self.metrics.catalog_records.labels("skipped").inc()
            return False
        store.log(
            catalogue_records.STREAMED,
            catalogue_records.streamed_record(seq, kind, body),
            lambda: state.apply_streamed(seq, kind, body, store.profiles),
        )
        self.metrics.catalog_records.labels("applied").inc()
        for transition in state.drain_transitions():
            self.metrics.amplification.labels(transition).inc()
        record = catalogue_records.decode(kind, body, state.catalog.dims)
        if isinstance(record, catalogue_records.TakeDownRecord):
            self.dropped(record.keys)
        elif isinstance(record, catalogue_records.ReviewRecord) and record.decision == "reject":
            self.dropped([record.key])
        return True

    # ---- S3 snapshots ------------------------------------------------------------------------
    def _bootstrap_if_new(self) -> None:
        """A replica whose store is empty loads the newest S3 snapshot that is whole (older
        ones stand in for a damaged one), then keeps it in a local snapshot at once (a
        restart needs S3 no more). With none whole, it reads the stream from its start."""
        store = self.store
        if self.snapshots is None or store.recovery.snapshot is not None or store.applied_lsn:
            return
        tried: set[str] = set()
        for key in self.snapshots.manifests():  # S3 out of reach raises: the start fails
            try:
                manifest = self.snapshots.manifest(key)
                if manifest is None or manifest["seq"] in tried:
                    continue
                tried.add(manifest["seq"])
                self._bootstrap(manifest)
                return
            except CorruptFileError as error:
                problem = f"the S3 catalogue snapshot {key} was not used: {error}"
                log.error("recovery: %s", problem)
                store.recovery.problems.append(problem)
        if tried:  # slower, and loses nothing the stream still holds
            log.error("recovery: no S3 catalogue snapshot was whole: reading the stream")
        else:
            log.info("no catalogue snapshot in S3 yet: reading the stream from its start")

    def _bootstrap(self, manifest: dict[str, Any]) -> None:
        store, state = self.store, self.state
        if int(manifest["dims"]) != state.catalog.dims:
            raise CorruptFileError(
                f"it holds dims {manifest['dims']}, this replica {state.catalog.dims}"
            )
        assert self.snapshots is not None
        with tempfile.TemporaryDirectory(dir=store.data_dir) as directory:
            downloaded = self.snapshots.download(manifest, Path(directory))
            with store.paused():
                problems = state.bootstrap(downloaded.paths, downloaded.seq, store.profiles)
            state.check_index(store)
        for problem in problems:
            log.error("recovery: %s", problem)
        store.recovery.problems.extend(problems)
        store.snapshot()
        log.info("catalogue loaded from the S3 snapshot at %s: %d items",
                 downloaded.seq, len(state.catalog))  # fmt: skip

    def _maybe_snapshot(self) -> None:
        """Between two batches of the stream: if due and this replica holds the role, the
        files at this position, written here and uploaded on a thread of their own."""
        if self.snapshots is None or self.role is None or time.monotonic() < self._snapshot_due:
            return
        self._snapshot_due = time.monotonic() + self.settings.snapshot_interval_s
        if self._upload is not None and self._upload.is_alive():
            return  # the last one is still uploading
        try:
            if not self.role.hold():
                return
        except (ClientError, BotoCoreError) as error:
            log.warning("the catalogue snapshot role could not be checked: %s", error)
            return
        self.write_snapshot()

    def write_snapshot(self) -> bool:
        """Writes the files at this position and starts their upload; False if nothing was
        read from the stream since the last one. Call between two records of the stream."""
        store, state = self.store, self.state
        with store.paused():  # amplification waits: the images are of one moment
            seq = state.stream_seq
            image = state.image()
            keys = np.asarray(state.catalog.keys(), dtype=np.uint64)
            vectors = np.array(store.profiles.items(keys).vectors, dtype=np.float32)
        if seq is None or seq == self.published:
            return False  # nothing read yet, or nothing new since the last one
        directory = store.data_dir / "catalogue-snapshot"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        image.catalog.write(directory / FILES["catalog"])
        image.amplifier.write(directory / FILES["amplifier"])
        image.index.save(directory / FILES["index"])  # only this thread changes the index
        write_vectors(directory / FILES["vectors"], keys, vectors)
        self._upload = threading.Thread(
            target=self._publish, args=(seq, directory), name="recserve-s3-snapshot", daemon=True
        )
        self._upload.start()
        return True

    def _publish(self, seq: str, directory: Path) -> None:
        assert self.snapshots is not None
        try:
            key = self.snapshots.publish(seq, self.state.catalog.dims, directory)
            self.published = seq
            self.metrics.catalog_snapshots.labels("published").inc()
            log.info("catalogue snapshot at %s published to s3://%s/%s",
                     seq, self.snapshots.bucket, key)  # fmt: skip
        except (ClientError, BotoCoreError, OSError) as error:
            self.metrics.catalog_snapshots.labels("failed").inc()
            log.error("the catalogue snapshot at %s was not published: %s", seq, error)
