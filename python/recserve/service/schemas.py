"""Request bodies of the HTTP API. Unknown fields are rejected (422), never ignored; NaN and
infinity are not numbers here."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from recserve.catalog import Item
from recserve.service.engine import EventRow

__all__ = ["EventIn", "EventsIn", "ItemIn", "ItemsIn", "UserIn"]

Id = Annotated[str, Field(min_length=1, max_length=256)]
EventType = Literal[
    "impression", "watch", "replay", "like", "share", "comment", "follow", "skip", "not_interested"
]
MAX_BATCH = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class ItemIn(_Strict):
    id: Id
    embedding: list[float] = Field(min_length=1)
    creator_id: Id
    duration_ms: int = Field(gt=0, lt=2**32)
    tags: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=64
    )
    created_at: int | None = Field(default=None, ge=0, description="ms since the epoch")
    media_key: str | None = Field(default=None, min_length=1, max_length=1024)

    def to_item(self) -> Item:
        created_at = self.created_at if self.created_at is not None else 0
        return Item(
            self.id, self.creator_id, self.duration_ms, tuple(self.tags), created_at,
            self.media_key,
        )


class ItemsIn(_Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_BATCH)
    amplify: bool = Field(
        default=True,
        description="false: an established back catalogue, in the regular feed at once",
    )

    def rows(self) -> tuple[list[Item], npt.NDArray[np.float32]]:
        """The catalogue's items and their embeddings (one width for all, else ValueError)."""
        widths = [len(item.embedding) for item in self.items]
        for i, width in enumerate(widths):
            if width != widths[0]:
                raise ValueError(
                    f"items[{i}].embedding: has {width} values, items[0] has {widths[0]}"
                )
        items = [item.to_item() for item in self.items]
        return items, np.array([item.embedding for item in self.items], dtype=np.float32)


class EventIn(_Strict):
    event_id: Id
    user_id: Id
    item_id: Id
    type: EventType
    watch_ms: int | None = Field(default=None, ge=0, lt=2**32)
    duration_ms: int | None = Field(default=None, gt=0, lt=2**32)
    ts: int | None = Field(
        default=None, ge=0, lt=2**63, description="ms since the epoch; default now"
    )
    session_id: str | None = Field(default=None, max_length=256)
    request_id: str | None = Field(default=None, max_length=256)

    def to_row(self) -> EventRow:
        return EventRow(
            self.event_id, self.user_id, self.item_id, self.type, self.watch_ms,
            self.duration_ms, self.ts, self.request_id,
        )


class EventsIn(_Strict):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)

    def rows(self) -> list[EventRow]:
        return [event.to_row() for event in self.events]


class UserIn(_Strict):
    interests: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=64
    )
    blocked_creators: list[Id] | None = Field(default=None, max_length=10_000)
