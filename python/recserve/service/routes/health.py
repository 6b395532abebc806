from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from recserve.service.routes.deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(engine: EngineDep) -> JSONResponse:
    if engine.failure is not None:
        return JSONResponse({"status": "failed", "detail": engine.failure}, status_code=503)
    if not engine.ready or engine.draining or engine.shutting_down:
        status = "recovering" if not engine.ready else "shutting down"
        retry = str(engine.settings.retry_after_s)
        return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": retry})
    return JSONResponse({"status": "ready", "model_version": engine.ranker.version})


@router.get("/metrics")
def metrics(engine: EngineDep) -> Response:
    body = engine.metrics.render(engine.refresh_gauges)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
