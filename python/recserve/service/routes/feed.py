from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import APIRouter, Query, Request, Response

router = APIRouter(prefix="/v1/feed", tags=["feed"])


@router.get("/{user_id}")
async def get_feed(
    user_id: str,
    request: Request,
    n: int | None = Query(None, ge=1),
    session_id: str | None = Query(None, max_length=256),
) -> Response:
    engine = request.app.state.engine
    if n is not None and n > engine.settings.feed.max_n:
        raise ValueError(f"n: at most {engine.settings.feed.max_n}, got {n}")
    limiter = request.app.state.feed_limiter
    if limiter is None:  # feed_threads = 0: on the event loop (see the setting)
        page = engine.feed(user_id, n)
    else:
        page = await anyio.to_thread.run_sync(engine.feed, user_id, n, limiter=limiter)
    # Serialised here, once: the page is plain JSON types already.
    return Response(json.dumps(page, separators=(",", ":")), media_type="application/json")


@router.get("/{user_id}/explain")
def explain(user_id: str, item_id: str, request: Request) -> dict[str, Any]:
    return request.app.state.engine.explain(user_id, item_id)  # type: ignore[no-any-return]
