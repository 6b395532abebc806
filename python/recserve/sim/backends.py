"""Two ways to reach a recserve engine with the API's own request bodies: over HTTP, a
``recserve serve`` process on 127.0.0.1 (what a client app does), or in process, the same
engine called directly (fast). Both validate bodies with the API's schemas, so a body one
refuses the other refuses too.

    backend = start_backend("http", Path("engine.toml"), Path("/tmp/engine-data"))
    backend.upsert_items({"items": [...], "amplify": False})
    page, stage_s = backend.feed("u1", n=1)   # the page; seconds per feed stage
    backend.close()
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Literal, Protocol

from recserve.service.child import free_port, start_serve, wait_ready
from recserve.sim.stages import parse_server_timing

__all__ = ["Backend", "HttpBackend", "InProcessBackend", "start_backend"]

Driver = Literal["http", "inprocess"]


class Backend(Protocol):
    def upsert_items(self, body: dict[str, Any]) -> None: ...
    def post_events(self, body: dict[str, Any]) -> None: ...
    def feed(self, user_id: str, n: int) -> tuple[dict[str, Any], dict[str, float]]: ...
    def item(self, item_id: str) -> dict[str, Any]: ...
    def models(self) -> dict[str, Any]: ...
    def snapshot(self) -> None: ...
    def close(self) -> None: ...


class InProcessBackend:
    def __init__(self, config: Path, data_dir: Path) -> None:
        from recserve.service.engine import Engine
        from recserve.service.settings import load_settings

        self.engine = Engine(load_settings(config, data_dir=data_dir))
        self.engine.start()

    def upsert_items(self, body: dict[str, Any]) -> None:
        from recserve.service.schemas import ItemsIn

        request = ItemsIn.model_validate(body)
        self.engine.upsert_items(*request.rows(), amplify=request.amplify)

    def post_events(self, body: dict[str, Any]) -> None:
        from recserve.service.schemas import EventsIn

        self.engine.post_events(EventsIn.model_validate(body).rows())

    def feed(self, user_id: str, n: int) -> tuple[dict[str, Any], dict[str, float]]:
        timings: dict[str, float] = {}
        return self.engine.feed(user_id, n, timings), timings

    def item(self, item_id: str) -> dict[str, Any]:
        return self.engine.item(item_id)

    def models(self) -> dict[str, Any]:
        return self.engine.list_models()

    def snapshot(self) -> None:
        """A snapshot now (with the impression log on, its catalog.npz is written too)."""
        self.engine.snapshot()

    def close(self) -> None:
        self.engine.close(snapshot=False)


class HttpBackend:
    """A ``recserve serve`` child process on a free port of 127.0.0.1, stopped by close().
    ``api_key``: sent as a Bearer token when the configuration sets ``[auth]`` keys (an admin
    key, since the driver posts items)."""

    def __init__(
        self, config: Path, data_dir: Path, timeout_s: float = 60.0, api_key: str | None = None
    ) -> None:
        import httpx

        self.port = free_port()
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.process = start_serve(config, data_dir, self.port, self.log)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key is not None else None
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", timeout=30.0, headers=headers
        )
        try:
            wait_ready(self.process, self.port, self.log, timeout_s)
        except RuntimeError:
            self.close()
            raise

    def _ok(self, response: Any) -> Any:
        if response.status_code >= 300:
            raise RuntimeError(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text[:500]}"
            )
        return response.json()

    def upsert_items(self, body: dict[str, Any]) -> None:
        self._ok(self.client.post("/v1/items", json=body))

    def post_events(self, body: dict[str, Any]) -> None:
        self._ok(self.client.post("/v1/events", json=body))

    def feed(self, user_id: str, n: int) -> tuple[dict[str, Any], dict[str, float]]:
        response = self.client.get(f"/v1/feed/{user_id}", params={"n": n})
        page = self._ok(response)
        return page, parse_server_timing(response.headers.get("Server-Timing", ""))

    def item(self, item_id: str) -> dict[str, Any]:
        return self._ok(self.client.get(f"/v1/items/{item_id}"))  # type: ignore[no-any-return]

    def models(self) -> dict[str, Any]:
        return self._ok(self.client.get("/v1/models"))  # type: ignore[no-any-return]

    def snapshot(self) -> None:
        """Nothing to ask: the API has no snapshot route, the server snapshots every
        ``snapshot_interval_s`` of its configuration."""

    def close(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_backend(driver: Driver, config: Path, data_dir: Path) -> Backend:
    if driver == "http":
        return HttpBackend(config, data_dir)
    if driver == "inprocess":
        return InProcessBackend(config, data_dir)
    raise ValueError(f"unknown driver {driver!r}: 'http' or 'inprocess'")
