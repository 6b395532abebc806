from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import APIRouter, Query, Response

from recserve.service.routes.deps import EngineDep, FeedLimiterDep
from recserve.service.schemas import PathId, QueryId

router = APIRouter(prefix="/v1/feed", tags=["feed"])


@router.get("/{user_id}")
async def get_feed(
    user_id: PathId,
    engine: EngineDep,
    limiter: FeedLimiterDep,
    n: int | None = Query(None, ge=1),
    session_id: str | None = Query(None, max_length=256),
) -> Response:
    if n is not None and n > engine.settings.feed.max_n:
        raise ValueError(f"n: at most {engine.settings.feed.max_n}, got {n}")
    timings: dict[str, float] = {}
    if limiter is None:  # feed_threads = 0: on the event loop (see the setting)
        page = engine.feed(user_id, n, timings)
    else:
        page = await anyio.to_thread.run_sync(engine.feed, user_id, n, timings, limiter=limiter)
    # Serialised here, once: the page is plain JSON types already.
    response = Response(json.dumps(page, separators=(",", ":")), media_type="application/json")
    if timings:  # per stage, exact, for this request (a precomputed page has none)
        response.headers["Server-Timing"] = server_timing(timings)
    return response


def server_timing(timings: dict[str, float]) -> str:
    """The W3C Server-Timing header: ``retrieve;dur=0.412, …`` in milliseconds."""
    return ", ".join(f"{stage};dur={1e3 * seconds:.3f}" for stage, seconds in timings.items())


@router.get("/{user_id}/explain")
def explain(user_id: PathId, item_id: QueryId, engine: EngineDep) -> dict[str, Any]:
    return engine.explain(user_id, item_id)
