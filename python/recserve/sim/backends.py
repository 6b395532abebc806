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

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal, Protocol

from recserve.sim.stages import parse_server_timing

__all__ = ["Backend", "HttpBackend", "InProcessBackend", "start_backend"]

Driver = Literal["http", "inprocess"]


class Backend(Protocol):
    def upsert_items(self, body: dict[str, Any]) -> None: ...
    def post_events(self, body: dict[str, Any]) -> None: ...
    def feed(self, user_id: str, n: int) -> tuple[dict[str, Any], dict[str, float]]: ...
    def item(self, item_id: str) -> dict[str, Any]: ...
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

    def close(self) -> None:
        self.engine.close(snapshot=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HttpBackend:
    """A ``recserve serve`` child process on a free port of 127.0.0.1, stopped by close()."""

    def __init__(self, config: Path, data_dir: Path, timeout_s: float = 60.0) -> None:
        import httpx

        self.port = _free_port()
        self.log = data_dir.parent / f"{data_dir.name}.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "recserve",
                    "serve",
                    "--config",
                    str(config),
                    "--data-dir",
                    str(data_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30.0)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"recserve serve exited: {self.log.read_text()[-2000:]}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"recserve serve was not ready in {timeout_s:.0f} s")
            time.sleep(0.1)

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
