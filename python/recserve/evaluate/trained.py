"""A ranker trained on the replayed log before the split: the model a batch job would have
trained at the split time, for both engines of the replay (``replay(..., train=True)``).

    model = train_before(events, catalogue, split_ms, directory, rule=rule)   # a .rsm path

The events before ``split_ms`` become an impression log (``recserve.train.log``): an
``impression`` event is an impression (its ``request_id``, else its ``event_id``, as the
request; position 0), every other event an event joined to the user's latest impression of
the item (``recserve.train.labels``). ``recserve.train.replay`` turns it into rows as of
serve time, with ``negatives`` sampled negatives per impression (items the user had not been
shown: what a log of choices such as MovieLens ratings lacks, and without which the ranker
never learns that most users choose popular items), and ``recserve.train.trainer`` trains
and quantizes the ranker on the earlier rows; its held-out metrics come from the latest
``heldout_fraction`` of them, all before the split. Nothing after the split is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recserve.affinity import AffinityQuery
from recserve.evaluate.inputs import Catalogue, ReplayError
from recserve.ingest.event_row import EventRow
from recserve.profiles import CoEngagementOptions, UpdateRule
from recserve.train.log import Catalog, Event, Impression, ImpressionLog, LogReport, Record

__all__ = ["TRAINED_VERSION", "train_before"]

TRAINED_VERSION = "trained-before-split"


def _records(events: Sequence[EventRow], catalogue: Catalogue, split_ms: int) -> list[Record]:
    row_of = {item.id: i for i, item in enumerate(catalogue.items)}
    records: list[Record] = []
    for row in events:
        if row.ts is None or row.ts >= split_ms:
            continue
        item = row_of[row.item_id]
        ts = row.ts / 1000.0
        if row.type == "impression":
            request = row.request_id or row.event_id
            records.append(Impression(ts, request, row.user_id, item, 0, "replay", "replay"))
            # ... and the event that says it was viewed (labels: else served-not-viewed)
            records.append(Event(ts, row.event_id, row.user_id, item, "impression", request))
            continue
        duration = row.duration_ms or catalogue.items[item].duration_ms
        records.append(
            Event(
                ts,
                row.event_id,
                row.user_id,
                item,
                row.type,
                row.request_id,
                row.watch_ms or 0,
                duration if row.type == "watch" else 0,
            )
        )
    return records


def train_before(
    events: Sequence[EventRow],
    catalogue: Catalogue,
    split_ms: int,
    directory: str | os.PathLike[str],
    *,
    rule: UpdateRule | None = None,
    negatives: int = 4,
    seed: int = 0,
    query: AffinityQuery | None = None,
    co_engagement: CoEngagementOptions | None = None,
    **options: Any,
) -> Path:
    """Trains the ranker on ``events`` before ``split_ms`` and writes it to
    ``directory/<TRAINED_VERSION>.rsm`` (returned). ``query`` and ``co_engagement`` are how
    the serving engine reads the affinity features (its feed and co-engagement settings), so
    the rows are built as it will build them. ``options`` go to
    ``recserve.train.trainer.train_dataset`` (epochs, hidden, …)."""
    from recserve.train.replay import replay as to_rows  # the training stack, loaded on demand
    from recserve.train.trainer import train_dataset

    records = _records(events, catalogue, split_ms)
    impressions = sum(isinstance(r, Impression) for r in records)
    if impressions < 10:
        raise ReplayError(
            f"{impressions} impression(s) before the split: too few to train a ranker on "
            "(a log without impression events has nothing to train on)"
        )
    created = np.array([item.created_at or 0 for item in catalogue.items], np.float64) / 1000.0
    catalog = Catalog(np.arange(len(catalogue.items), dtype=np.int64), catalogue.vectors, created)
    log = ImpressionLog(records, catalog, LogReport(records=len(records)))
    dataset = to_rows(
        log,
        rule=rule,
        negatives=negatives,
        seed=seed,
        query=query,
        profiles_config=None if co_engagement is None else {"co_engagement": co_engagement},
    )
    out = Path(directory) / f"{TRAINED_VERSION}.rsm"
    options.setdefault("progress", False)
    info = {"source": "replay before the split", "split_ms": split_ms, "negatives": negatives}
    train_dataset(dataset, seed=seed, out=out, extra_metadata=info, **options)
    return out
