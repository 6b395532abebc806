from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from recserve.service.routes.deps import EngineDep
from recserve.service.schemas import EventsIn

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", status_code=202)
def post_events(body: EventsIn, engine: EngineDep) -> JSONResponse:
    return JSONResponse(engine.post_events(body.rows()), status_code=202)
