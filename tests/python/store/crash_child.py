"""The process test_embedded_crash kills: ingests numbered batches into an EmbeddedStore and
prints "ack N" once batch N is acknowledged (durable and applied), "snapshot" / "snapshot done"
around each snapshot. Also the batches and the serial oracle the test compares against.

    python crash_child.py DATA_DIR FIRST_BATCH LAST_BATCH SNAPSHOT_EVERY [--bounded]
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import numpy as np

from recserve.profiles import EVENT_TYPES, Events, Profiles, ProfilesConfig
from recserve.store.embedded import EmbeddedStore

CONFIG = ProfilesConfig.from_dict(
    {
        "dims": 16,
        "user_capacity": 4096,
        "item_capacity": 4096,
        "seen": {"recent": 16, "filter_bits": 1024, "filter_items": 64},
    }
)
USERS, ITEMS, EVENTS_PER_BATCH = 300, 400, 400
# With a bound: 64 users in memory of the 300, the others in the store's user file.
BOUNDED = ProfilesConfig.from_dict(
    {**dataclasses.asdict(CONFIG), "user_capacity": 64, "user_lru": False}
)


def item_vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12345)
    return np.arange(ITEMS - 50, dtype=np.uint64), rng.standard_normal(
        (ITEMS - 50, CONFIG.dims)
    ).astype(np.float32)


def batch(number: int) -> Events:
    rng = np.random.default_rng(1000 + number)
    n = EVENTS_PER_BATCH
    first = number * n + 1
    return Events.of(
        users=rng.integers(0, USERS, n),
        items=rng.integers(0, ITEMS, n),
        types=rng.integers(0, len(EVENT_TYPES), n),
        watch_ms=rng.integers(0, 40000, n),
        duration_ms=rng.integers(2000, 40000, n),
        ts_ms=(first + np.arange(n)) * 500,
        seq=np.arange(first, first + n),
    )


def oracle(batches: int) -> Profiles:
    """The state after batches 0..batches-1, applied serially in memory."""
    p = Profiles(CONFIG)
    p.set_items(*item_vectors())
    for number in range(batches):
        p.apply(batch(number))
    return p


class _SlowImage:
    """A snapshot image that waits before it is written, so a kill aimed at a snapshot's start
    lands inside the snapshot on any disk (a fast one writes this small state in well under a
    millisecond)."""

    def __init__(self, image: Any) -> None:
        self.image = image

    def write(self, path: str) -> None:
        time.sleep(0.02)
        self.image.write(path)


def main(data_dir: str, first: int, last: int, snapshot_every: int, bounded: bool) -> None:
    store = EmbeddedStore(data_dir, BOUNDED if bounded else CONFIG, segment_bytes=64 << 10)
    take_image = store.profiles.snapshot
    store.profiles.snapshot = lambda lsn: _SlowImage(take_image(lsn))
    store.set_items(*item_vectors())  # an upsert of the same vectors: harmless when repeated
    print("ready", flush=True)
    for number in range(first, last):
        store.apply(batch(number))
        print(f"ack {number}", flush=True)
        if (number + 1) % snapshot_every == 0:
            print("snapshot", flush=True)
            store.snapshot()
            print("snapshot done", flush=True)
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), "--bounded" in sys.argv)
