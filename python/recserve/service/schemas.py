"""Request bodies of the HTTP API. Unknown fields are rejected (422), never ignored; NaN and
infinity are not numbers here. Types are strict: a string or a boolean where a number belongs
is 422 (``"100"``, ``true``), and so is ``100.0`` for an integer; an integer is a float (an
embedding may say ``1`` for ``1.0``). Every id is 1 to 256 characters and every list has a
ceiling; the settings' caps (``max_interests``, ``max_blocked_creators``) and the bound on
timestamps ahead of the clock (``max_clock_skew_s``) are checked where the settings are known
(the routes, ``Engine.post_events``)."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from recserve.catalog import Item
from recserve.ingest.event_row import EventRow

__all__ = [
    "MAX_DIMS",
    "TrialIn",
    "MAX_ID",
    "MAX_USER_LIST",
    "EventIn",
    "EventsIn",
    "ItemIn",
    "ItemsIn",
    "PathId",
    "QueryId",
    "ReviewIn",
    "UserIn",
]

MAX_ID = 256  # characters of any id, in a body or a path
MAX_DIMS = 4096  # values of an embedding (the service's dims are checked in the engine)
MAX_USER_LIST = 10_000  # the ceiling of the max_interests and max_blocked_creators settings
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
EpochMs = Annotated[int, Field(ge=0, lt=2**63, description="ms since the epoch")]
Tag = Annotated[str, Field(min_length=1, max_length=128)]
# Ids in paths and queries: over the bound 422 naming the parameter, the id never echoed.
PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID)]
QueryId = Annotated[str, Query(min_length=1, max_length=MAX_ID)]
EventType = Literal[
    "impression", "watch", "replay", "like", "share", "comment", "follow", "skip", "not_interested"
]
MAX_BATCH = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True)


class ItemIn(_Strict):
    id: Id
    embedding: list[float] = Field(min_length=1, max_length=MAX_DIMS)
    creator_id: Id
    duration_ms: int = Field(gt=0, lt=2**32)
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    created_at: EpochMs | None = None
    media_key: str | None = Field(default=None, min_length=1, max_length=1024)

    def to_item(self) -> Item:
        created_at = self.created_at if self.created_at is not None else 0
        return Item(
            self.id,
            self.creator_id,
            self.duration_ms,
            tuple(self.tags),
            created_at,
            self.media_key,
        )


class ItemsIn(_Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_BATCH)
    amplify: bool = Field(
        default=True,
        description="false: an established back catalogue, in the regular feed at once",
    )

    def check_created_at(self, latest_ms: int, skew_s: float) -> None:
        """ValueError naming the first item created more than ``skew_s`` ahead of the clock
        (``latest_ms``: recserve.service.clock.latest_ms)."""
        for i, item in enumerate(self.items):
            if item.created_at is not None and item.created_at > latest_ms:
                raise ValueError(
                    f"items[{i}].created_at: more than {skew_s:g} s ahead of the server's clock "
                    f"({latest_ms} ms with the skew allowed)"
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
    ts: EpochMs | None = Field(default=None, description="ms since the epoch; default now")
    session_id: Id | None = None
    request_id: Id | None = None

    def to_row(self) -> EventRow:
        return EventRow(
            self.event_id,
            self.user_id,
            self.item_id,
            self.type,
            self.watch_ms,
            self.duration_ms,
            self.ts,
            self.request_id,
        )


class EventsIn(_Strict):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)

    def rows(self) -> list[EventRow]:
        return [event.to_row() for event in self.events]


class UserIn(_Strict):
    interests: list[Tag] | None = Field(default=None, max_length=MAX_USER_LIST)
    blocked_creators: list[Id] | None = Field(default=None, max_length=MAX_USER_LIST)

    def check_caps(self, max_interests: int, max_blocked_creators: int) -> None:
        """ValueError naming the list longer than its setting allows."""
        for name, values, cap in (
            ("interests", self.interests, max_interests),
            ("blocked_creators", self.blocked_creators, max_blocked_creators),
        ):
            if values is not None and len(values) > cap:
                raise ValueError(f"{name}: at most {cap} per user, got {len(values)}")


class ReviewIn(_Strict):
    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=1000, description="kept in the item's history")


class TrialIn(_Strict):
    share: float = Field(
        gt=0, le=0.5, description="the share of users served the trial model (experiment trial)"
    )
