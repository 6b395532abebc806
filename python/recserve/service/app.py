"""The FastAPI application: ``create_app(settings)``.

Recovery runs in a background thread from the lifespan's start, so ``/healthz`` answers at once
and ``/readyz`` says 503 until the state is back and the model loaded; other endpoints answer
503 with Retry-After until then, and again while shutting down. At shutdown (uvicorn drains the
requests in flight first) the engine writes a final snapshot.

Errors: malformed JSON 400; a body over ``max_body_bytes`` 413 (checked on the header and on the
bytes as they arrive); schema and value errors 422 naming the field (the offending input is not
echoed back); unknown item, user or model 404; a body not whole within ``body_timeout_s`` 408;
more than ``max_inflight`` requests or ``max_inflight_bytes`` body bytes at once 503 with
Retry-After (``Guard``).
"""

from __future__ import annotations

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
from recserve.service.asgi_json import send_json
from recserve.service.auth import Auth, Keys
from recserve.service.engine import Engine
from recserve.service.errors import Conflict, NotFound, NotReady
from recserve.service.metrics import Metrics
from recserve.service.routes import events, feed, health, items, models, review, users
from recserve.service.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)
_UNGUARDED = ("/healthz", "/readyz", "/metrics")


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class Guard:
    """ASGI middleware in front of the API (health and metrics pass untouched). Before any
    routing or parsing it refuses

    - a body over ``max_body_bytes``: 413 (on the declared length, and as a chunked body
      arrives);
    - a request beyond ``max_inflight`` requests, or whose body would take the bytes in flight
      over ``max_inflight_bytes``: 503 + Retry-After. A declared length counts from the start,
      before a byte is read; a chunked body as it arrives. A request without a body needs only
      a slot, so feeds are still served while large bodies fill the byte budget;
    - a body not whole ``body_timeout_s`` after the headers: 408.

    A refusal once the body has begun to arrive says ``connection: close`` and gives the
    request's slot and bytes back at once; in every other case they come back when the app
    returns or raises, so neither a slow, vanished or failing client nor a failing route can
    keep them."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.limit = settings.max_body_bytes
        self.max_inflight = settings.max_inflight
        self.max_bytes = settings.max_inflight_bytes
        self.body_timeout = settings.body_timeout_s
        self.retry_after = str(settings.retry_after_s).encode()
        self.metrics = metrics
        self.inflight = 0
        self.inflight_bytes = 0

    def _count(self, requests: int, nbytes: int) -> None:
        self.inflight += requests
        self.inflight_bytes += nbytes
        self.metrics.inflight_requests.set(self.inflight)
        self.metrics.inflight_bytes.set(self.inflight_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNGUARDED:
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                declared = int(value)
            elif name == b"transfer-encoding":
                chunked = True
        # Refused before reading, the connection stays open: uvicorn discards the body as it
        # comes, so a client that sends it anyway reads the answer rather than a reset.
        if declared is not None and declared > self.limit:
            await send_json(send, 413, {"detail": f"body over {self.limit} bytes"}, [])
            return
        counted = declared or 0
        if self.inflight >= self.max_inflight or self.inflight_bytes + counted > self.max_bytes:
            self.metrics.rejected.inc()
            detail = (
                "too many requests in flight; retry later"
                if self.inflight >= self.max_inflight
                else f"too many body bytes in flight (at most {self.max_bytes}); retry later"
            )
            await send_json(send, 503, {"detail": detail}, [(b"retry-after", self.retry_after)])
            return
        deadline = anyio.current_time() + self.body_timeout
        received = 0
        body_done = not (chunked or declared)
        refused = released = started = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._count(-1, -counted)

        async def refuse(status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> Message:
            nonlocal refused
            refused = True
            release()  # the slot is free before the answer is even written
            if not started:  # part of the body is still to come, perhaps never: close
                closing = [*headers, (b"connection", b"close")]
                await send_json(send, status, {"detail": detail}, closing)
            return {"type": "http.disconnect"}

        async def guarded_receive() -> Message:
            nonlocal received, counted, body_done
            if refused:
                return {"type": "http.disconnect"}
            if body_done or started:  # no body, or the app answered without it: no deadline
                return await receive()
            with anyio.move_on_after(deadline - anyio.current_time()) as waiting:
                message = await receive()
            if waiting.cancelled_caught:
                self.metrics.body_timeouts.inc()
                detail = f"the body did not arrive within {self.body_timeout:g} s"
                return await refuse(408, detail, [])
            if message["type"] != "http.request":
                return message  # a disconnect: the app ends and the slot comes back
            received += len(message.get("body", b""))
            body_done = not message.get("more_body", False)
            if received > self.limit:  # a chunked body with no length said up front
                return await refuse(413, f"body over {self.limit} bytes", [])
            if received > counted:  # beyond what was declared (chunked): count it now
                if self.inflight_bytes + received - counted > self.max_bytes:
                    self.metrics.rejected.inc()
                    detail = f"too many body bytes in flight (at most {self.max_bytes})"
                    return await refuse(503, detail, [(b"retry-after", self.retry_after)])
                self._count(0, received - counted)
                counted = received
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:  # after a refusal, the app's own answer has nowhere to go
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        self._count(1, counted)
        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # The app failed on the body it was refused; the client has its answer already.
            log.debug("after a refusal the app raised", exc_info=True)
        finally:
            release()


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
    for module in (items, review, events, feed, users, models, health):
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
