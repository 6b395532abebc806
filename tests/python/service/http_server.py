"""Helpers for the service tests. A real recserve server: ``python -m recserve serve`` on
127.0.0.1 (a free port), its own data directory and TOML configuration, driven by httpx."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from recserve.service.child import free_port, start_serve, wait_ready

DIMS = 16


class Server:
    def __init__(self, data_dir: Path, config: str = "") -> None:
        self.data_dir = data_dir
        self.config_path = data_dir.parent / f"{data_dir.name}.toml"
        self.config_path.write_text(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.env: dict[str, str] = {}  # more environment for the process (e.g. AWS endpoints)

    def start(self, timeout: float = 60.0) -> Server:
        """Starts the process and waits until /readyz says 200."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECSERVE_")}
        # No grace after SIGTERM, so each stop() takes no 5 s: a test of the grace sets
        # RECSERVE_SHUTDOWN_GRACE_S in self.env (the environment wins over the TOML file).
        env = env | {"RECSERVE_SHUTDOWN_GRACE_S": "0"} | self.env
        self.process = start_serve(self.config_path, self.data_dir, self.port, self.log, env)

    def wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        wait_ready(self.process, self.port, self.log, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def client(self, api_key: str | None = None) -> httpx.Client:
        """An httpx client; with ``api_key``, every request carries it as a Bearer token."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key is not None else None
        return httpx.Client(base_url=self.url, timeout=30.0, headers=headers)


def item_batch(
    n: int, seed: int, *, prefix: str = "v", creators: int = 50, tags: int = 8
) -> list[dict[str, Any]]:
    """n items with clustered embeddings (seeded), a creator and a tag each."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, DIMS))
    cluster = rng.integers(0, 8, n)
    vectors = centres[cluster] + 0.3 * rng.standard_normal((n, DIMS))
    return [
        {
            "id": f"{prefix}{i}",
            "embedding": [round(float(x), 6) for x in vectors[i]],
            "creator_id": f"c{i % creators}",
            "duration_ms": 15_000,
            "tags": [f"t{cluster[i] % tags}"],
        }
        for i in range(n)
    ]


def watch(
    event_id: str, user: str, item: str, fraction: float = 1.0, **extra: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "user_id": user,
        "item_id": item,
        "type": "watch",
        "watch_ms": int(15_000 * fraction),
        "duration_ms": 15_000,
        **extra,
    }


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """Starts servers on demand (import it into the test module); kills them at the end."""
    servers: list[Server] = []

    def make(config: str = "", name: str = "data") -> Server:
        server = Server(tmp_path / name, config)
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.process is not None:
            server.process.kill()
            server.process.wait()


def serving(
    tmp_path_factory: pytest.TempPathFactory, name: str, config: str, items: list[dict[str, Any]]
) -> Iterator[Server]:
    """A module's shared server: started with its catalogue posted, stopped (SIGTERM) after."""
    server = Server(tmp_path_factory.mktemp(name) / "data", config).start()
    with server.client() as client:
        assert client.post("/v1/items", json={"items": items}).status_code == 200
    yield server
    server.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    """A client of the module's ``server`` fixture (import both names into the module)."""
    with server.client() as client:
        yield client
