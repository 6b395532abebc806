from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from recserve.service.schemas import EventsIn

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", status_code=202)
def post_events(body: EventsIn, request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.engine.post_events(body.rows()), status_code=202)
