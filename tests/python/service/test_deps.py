"""recserve.service.routes.deps: routes get the engine (and the feed threads) through the
typed dependencies, so a test or an embedding app can hand them another one, and no route
reads the untyped ``app.state`` itself."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
from fastapi import FastAPI

from recserve.service.routes import deps, feed, items, models, users


class StubEngine:
    """What the routes below call, answering with what it was asked."""

    failure = None
    ready = True
    draining = False
    shutting_down = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def list_models(self) -> dict[str, Any]:
        return {"active": "stub", "models": []}

    def activate(self, version: str) -> dict[str, Any]:
        self.calls.append(("activate", version))
        return {"active": version}

    def user(self, user_id: str) -> dict[str, Any]:
        return {"user_id": user_id}

    def erase_user(self, user_id: str) -> None:
        self.calls.append(("erase_user", user_id))

    def take_down(self, item_id: str) -> None:
        self.calls.append(("take_down", item_id))


def app_of(*routers: Any) -> FastAPI:
    app = FastAPI()
    for module in routers:
        app.include_router(module.router)
    return app


def call(app: FastAPI, method: str, path: str) -> httpx.Response:
    """One request, in process (no lifespan: the app's state is what the test set)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path)

    return anyio.run(send)


def test_routes_call_the_engine_the_dependency_gives() -> None:
    app = app_of(models, users, items)
    stub = StubEngine()
    app.dependency_overrides[deps.engine_of] = lambda: stub
    assert call(app, "GET", "/v1/models").json() == {"active": "stub", "models": []}
    assert call(app, "POST", "/v1/models/v2/activate").json() == {"active": "v2"}
    assert call(app, "GET", "/v1/users/u1").json() == {"user_id": "u1"}
    assert call(app, "DELETE", "/v1/users/u1").status_code == 204
    assert call(app, "DELETE", "/v1/items/a").status_code == 204
    assert stub.calls == [("activate", "v2"), ("erase_user", "u1"), ("take_down", "a")]


def test_the_engine_is_the_app_s() -> None:
    app = app_of(models)
    app.state.engine = StubEngine()
    assert call(app, "GET", "/v1/models").json()["active"] == "stub"


def test_feeds_run_within_the_app_s_limiter() -> None:
    limiter = anyio.CapacityLimiter(1)
    borrowed: list[float] = []

    class FeedEngine(StubEngine):
        settings = SimpleNamespace(feed=SimpleNamespace(max_n=10))

        def feed(self, user_id: str, n: int | None, timings: dict[str, float]) -> dict[str, Any]:
            borrowed.append(limiter.borrowed_tokens)  # 1: on a thread the limiter lent
            return {"user_id": user_id, "items": []}

    app = app_of(feed)
    app.state.engine = FeedEngine()
    app.state.feed_limiter = limiter
    assert call(app, "GET", "/v1/feed/u1").json() == {"user_id": "u1", "items": []}
    app.state.feed_limiter = None  # feed_threads = 0: on the event loop
    assert call(app, "GET", "/v1/feed/u1").status_code == 200
    assert borrowed == [1, 0]


def test_routes_read_the_app_state_only_through_deps() -> None:
    routes = Path(feed.__file__).parent
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(routes.glob("*.py"))
        if path.name != "deps.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "app.state" in line or "type: ignore" in line
    ]
    assert offenders == []
