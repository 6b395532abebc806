"""recserve.service.app in process (uvicorn on a thread, 127.0.0.1): readiness follows
recovery and shutdown; the embedding dims come from the first items when not configured."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from http_server import free_port, item_batch, watch

from recserve.service.app import create_app
from recserve.service.engine import Engine
from recserve.service.settings import Settings


class SlowStart(Engine):
    """Recovery that waits for the test's word, so the not-ready phase can be observed."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.go = threading.Event()

    def start(self) -> None:
        self.go.wait(timeout=30)
        super().start()


@contextlib.contextmanager
def running(app: FastAPI) -> Iterator[httpx.Client]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.get("/healthz")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)


def wait_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_readyz_is_503_until_recovered_and_other_routes_refuse_with_retry_after(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", dims=8)
    engine = SlowStart(settings)
    with running(create_app(settings, engine=engine)) as client:
        assert client.get("/healthz").status_code == 200
        waiting = client.get("/readyz")
        assert waiting.status_code == 503
        assert waiting.json()["status"] == "recovering"
        assert waiting.headers["retry-after"] == "1"
        feed = client.get("/v1/feed/u1")
        assert feed.status_code == 503
        assert feed.headers["retry-after"] == "1"
        engine.go.set()
        wait_ready(client)
        assert client.get("/v1/feed/u1").json()["items"] == []  # ready; no items yet
        engine.shutting_down = True  # what SIGTERM sets
        assert client.get("/readyz").json()["status"] == "shutting down"
    assert list((tmp_path / "data" / "state" / "snapshots").glob("profiles-*.snap"))


def test_without_configured_dims_the_first_items_fix_them(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with running(create_app(settings)) as client:
        wait_ready(client)
        assert client.get("/v1/feed/u").json()["items"] == []  # nothing to serve yet
        early = client.post("/v1/events", json={"events": [watch("e0", "u", "v0")]})
        assert early.status_code == 409
        assert "post items first" in early.json()["detail"]
        assert client.post("/v1/items", json={"items": item_batch(20, seed=61)}).status_code == 200
        assert (
            client.post("/v1/events", json={"events": [watch("e1", "u", "v0")]}).status_code == 202
        )
        short = client.post(
            "/v1/items", json={"items": [{**item_batch(1, seed=62)[0], "embedding": [1.0]}]}
        )
        assert short.status_code == 422
    assert (tmp_path / "data" / "recserve.json").read_text().strip() == '{"dims": 16}'
