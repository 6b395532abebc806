"""Servers that a test starts are killed at its end, whatever happened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_server import Server


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
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
