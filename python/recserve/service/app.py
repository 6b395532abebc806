"""The FastAPI application: ``create_app(settings)``.

Recovery runs in a background thread from the lifespan's start, so ``/healthz`` answers at once
and ``/readyz`` says 503 until the state is back and the model loaded; other endpoints answer
503 with Retry-After until then, and again while shutting down. At shutdown (uvicorn drains the
requests in flight first) the engine writes a final snapshot.

Errors: malformed JSON 400; a body over ``max_body_bytes`` 413 (checked on the header and on the
bytes as they arrive); schema and value errors 422 naming the field (the offending input is not
echoed back); unknown item, user or model 404; more than ``max_inflight`` requests at once 503
with Retry-After.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recserve import __version__
from recserve.service.auth import Auth, Keys
from recserve.service.engine import Conflict, Engine, NotFound, NotReady
from recserve.service.metrics import Metrics
from recserve.service.routes import events, feed, health, items, models, users
from recserve.service.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)
_UNGUARDED = ("/healthz", "/readyz", "/metrics")


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class Guard:
    """ASGI middleware: refuses bodies over the limit (413) and requests over the in-flight
    limit (503 + Retry-After), before any routing or parsing."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.limit = settings.max_body_bytes
        self.max_inflight = settings.max_inflight
        self.retry_after = str(settings.retry_after_s).encode()
        self.metrics = metrics
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNGUARDED:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _send_json(send, 413, {"detail": f"body over {self.limit} bytes"}, [])
                return
        if self.inflight >= self.max_inflight:
            self.metrics.rejected.inc()
            await _send_json(
                send,
                503,
                {"detail": "overloaded; retry later"},
                [(b"retry-after", self.retry_after)],
            )
            return
        received = 0
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # a chunked body with no length said up front
                    refused = True
                    await _send_json(send, 413, {"detail": f"body over {self.limit} bytes"}, [])
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # after a 413, the app's own answer has nowhere to go
                await send(message)

        self.inflight += 1
        try:
            await self.app(scope, counted_receive, guarded_send)
        finally:
            self.inflight -= 1


def _validation_detail(error: RequestValidationError) -> tuple[int, Any]:
    errors = error.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed JSON: " + "; ".join(
            str(e.get("ctx", {}).get("error", e["msg"])) for e in errors
        )
    detail = [
        {
            "loc": list(e["loc"]),
            "field": ".".join(str(p) for p in e["loc"][1:] if p != "body") or str(e["loc"][-1]),
            "msg": e["msg"],
            "type": e["type"],
        }
        for e in errors
    ]
    return 422, detail


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    engine = engine if engine is not None else Engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads = settings.feed_threads
        app.state.feed_limiter = anyio.CapacityLimiter(threads) if threads else None
        starter = threading.Thread(target=_start, name="recserve-recovery", daemon=True)
        starter.start()
        try:
            yield
        finally:
            engine.draining = True
            starter.join()
            if engine.ready:
                engine.close()

    def _start() -> None:
        try:
            engine.start()
        except Exception:  # recorded in engine.failure; /readyz reports it
            pass

    app = FastAPI(title="recserve", version=__version__, lifespan=lifespan)
    app.state.engine = engine
    for module in (items, events, feed, users, models, health):
        app.include_router(module.router)

    retry = {"Retry-After": str(settings.retry_after_s)}

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        status, detail = _validation_detail(error)
        return _error(status, detail)

    @app.exception_handler(ValueError)
    async def _value(request: Request, error: ValueError) -> JSONResponse:
        return _error(422, str(error))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, error: NotFound) -> JSONResponse:
        return _error(404, error.args[0] if error.args else "not found")

    @app.exception_handler(NotReady)
    async def _not_ready(request: Request, error: NotReady) -> JSONResponse:
        return _error(503, str(error), retry)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, error: Conflict) -> JSONResponse:
        return _error(409, str(error))

    app.add_middleware(Guard, settings=settings, metrics=engine.metrics)
    app.add_middleware(Auth, keys=Keys.from_settings(settings.auth))  # outermost: before the body
    return app
