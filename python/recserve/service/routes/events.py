from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from recserve.service.engine import EventRow
from recserve.service.schemas import EventsIn

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", status_code=202)
def post_events(body: EventsIn, request: Request) -> JSONResponse:
    rows = [
        EventRow(
            e.event_id, e.user_id, e.item_id, e.type, e.watch_ms, e.duration_ms, e.ts, e.request_id
        )
        for e in body.events
    ]
    return JSONResponse(request.app.state.engine.post_events(rows), status_code=202)
