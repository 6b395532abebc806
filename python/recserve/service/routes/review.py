"""Moderation as a gate in amplification: an item that passes the tier before
``amplification.review_before_tier`` waits for an admin's decision here (admin routes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from recserve.service.routes.deps import EngineDep
from recserve.service.schemas import PathId, ReviewIn

router = APIRouter(tags=["review"])


@router.post("/v1/items/{item_id}/review")
def review_item(item_id: PathId, body: ReviewIn, engine: EngineDep) -> dict[str, Any]:
    return engine.review(item_id, body.decision, body.reason)


@router.get("/v1/review/queue")
def review_queue(
    engine: EngineDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    return engine.review_queue(limit)
