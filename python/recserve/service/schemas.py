"""Request bodies of the HTTP API. Unknown fields are rejected (422), never ignored; NaN and
infinity are not numbers here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class ItemsIn(_Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_BATCH)


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


class EventsIn(_Strict):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class UserIn(_Strict):
    interests: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=64
    )
    blocked_creators: list[Id] | None = Field(default=None, max_length=10_000)
