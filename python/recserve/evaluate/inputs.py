"""The input of a replay: its catalogue and its event log, read from JSON lines and checked.

Items are in the body format of ``POST /v1/items``, events in that of ``POST /v1/events`` with
``ts`` required (see ``recserve.evaluate.replay``); anything else is a :class:`ReplayError`
naming the file, line and field.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from recserve.catalog import Item
from recserve.ingest.event_row import EventRow
from recserve.service.schemas import EventIn, ItemIn

__all__ = [
    "Catalogue",
    "ReplayError",
    "check_event",
    "read_events",
    "read_items",
    "validation_problem",
]


class ReplayError(ValueError):
    """Bad replay input: the message names the file and line (or event) and the field."""


@dataclass(frozen=True)
class Catalogue:
    """The items of a replay and their embeddings (row i belongs to ``items[i]``)."""

    items: list[Item]
    vectors: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.items):
            raise ReplayError(
                f"expected one embedding row per item ({len(self.items)}), "
                f"got an array of shape {self.vectors.shape}"
            )
        if not len(self.items):
            raise ReplayError("the catalogue is empty")
        if not np.isfinite(self.vectors).all():
            row = int(np.flatnonzero(~np.isfinite(self.vectors).all(axis=1))[0])
            raise ReplayError(f"item {self.items[row].id!r}: embedding has NaN or infinity")
        seen: set[str] = set()
        for item in self.items:
            if item.id in seen:
                raise ReplayError(f"item id {item.id!r} appears twice")
            seen.add(item.id)

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])


def _lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    p = Path(path)
    if not p.is_file():
        raise ReplayError(f"{p}: no such file")
    with p.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, line


def validation_problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "line"
    return f"{where}: {first['msg']}"


def read_items(path: str | os.PathLike[str]) -> Catalogue:
    """Items from a JSON-lines file in the ``POST /v1/items`` body format (one item a line)."""
    items: list[Item] = []
    rows: list[list[float]] = []
    for number, line in _lines(path):
        try:
            item = ItemIn.model_validate_json(line)
        except ValidationError as error:
            raise ReplayError(f"{path}:{number}: {validation_problem(error)}") from None
        if rows and len(item.embedding) != len(rows[0]):
            raise ReplayError(
                f"{path}:{number}: embedding: {len(item.embedding)} values, "
                f"the first item has {len(rows[0])}"
            )
        items.append(item.to_item())
        rows.append(item.embedding)
    if not items:
        raise ReplayError(f"{path}: no items")
    try:
        return Catalogue(items, np.asarray(rows, dtype=np.float32))
    except ReplayError as error:
        raise ReplayError(f"{path}: {error}") from None


def read_events(path: str | os.PathLike[str], catalogue: Catalogue | None = None) -> list[EventRow]:
    """Events from a JSON-lines file in the ``POST /v1/events`` format, ``ts`` required; with
    ``catalogue``, an event on an item not in it is an error too."""
    known = None if catalogue is None else {item.id for item in catalogue.items}
    rows: list[EventRow] = []
    for number, line in _lines(path):
        try:
            event = EventIn.model_validate_json(line)
        except ValidationError as error:
            raise ReplayError(f"{path}:{number}: {validation_problem(error)}") from None
        row = event.to_row()
        try:
            check_event(row, known)
        except ReplayError as error:
            raise ReplayError(f"{path}:{number}: {error}") from None
        rows.append(row)
    if not rows:
        raise ReplayError(f"{path}: no events")
    return rows


def check_event(row: EventRow, known: Collection[str] | None) -> None:
    if row.ts is None:
        raise ReplayError("ts: required in a replay log (ms since the epoch)")
    if row.type == "watch" and row.watch_ms is None:
        raise ReplayError("watch_ms: required for a watch")
    if known is not None and row.item_id not in known:
        raise ReplayError(f"item_id: {row.item_id!r} is not in the catalogue")
