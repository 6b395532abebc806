"""The service's guard against slow and greedy clients (``recserve.service.app.Guard``), through
real sockets against uvicorn on 127.0.0.1: a body must arrive whole within ``body_timeout_s``
(else 408, its slot freed at once); bodies in flight share a byte budget (a declared length
counts up front, a chunked body as it arrives; over it 503 + Retry-After before reading); health
is answered throughout, and no refusal, disconnect or failure keeps a slot."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from http_server import free_port

from recserve.service.app import create_app
from recserve.service.engine import Engine
from recserve.service.settings import Settings

HEAD = (
    "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    "content-length: {length}\r\n\r\n"
)
CHUNKED = (
    b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


class Failing(Engine):
    """An engine whose feed of user ``boom`` raises: a request that fails inside the app."""

    def feed(self, user_id: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if user_id == "boom":
            raise RuntimeError("boom")
        return super().feed(user_id, *args, **kwargs)


@contextlib.contextmanager
def serving(tmp_path: Path, **settings: Any) -> Iterator[tuple[int, httpx.Client]]:
    """create_app under uvicorn on a thread; yields (port, a client) once /readyz says 200."""
    config = Settings(data_dir=tmp_path / "data", dims=8, **settings)
    app = create_app(config, engine=Failing(config))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run)
    thread.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0)
    try:
        until(lambda: _ready(client))
        yield port, client
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def hold(port: int, length: int, sent: bytes = b"{") -> socket.socket:
    """A request that declares ``length`` bytes of body and sends only ``sent``."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(HEAD.format(length=length).encode() + sent)
    return sock


def answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """All the server sends until it closes the connection (fails if it does not in time)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def post(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post("/v1/events", content=body, headers={"content-type": "application/json"})


def gauge(client: httpx.Client, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


def idle(client: httpx.Client) -> bool:
    requests = gauge(client, "recserve_inflight_requests")
    return requests == 0 and gauge(client, "recserve_inflight_bytes") == 0


def test_a_body_not_whole_within_body_timeout_is_408_and_frees_its_slot(tmp_path: Path) -> None:
    with serving(tmp_path, body_timeout_s=1.0, max_inflight=3) as (port, client):
        held = [hold(port, 1000) for _ in range(3)]
        try:
            until(lambda: client.get("/v1/feed/u1").status_code == 503)  # all slots held
            assert client.get("/v1/feed/u1").headers["retry-after"] == "1"
            assert client.get("/healthz").status_code == 200  # health is never blocked
            assert client.get("/readyz").status_code == 200
            for sock in held:
                response = answer(sock)  # the server answers and closes the connection
                assert response.startswith(b"HTTP/1.1 408"), response[:100]
                assert b"connection: close" in response.lower()
                assert b"did not arrive" in response
        finally:
            for sock in held:
                sock.close()
        assert client.get("/v1/feed/u1").status_code == 200  # the slots are free at once
        assert idle(client)


def test_declared_bytes_count_against_the_budget_before_the_body_is_read(tmp_path: Path) -> None:
    limits = {"max_body_bytes": 50_000, "max_inflight_bytes": 80_000, "body_timeout_s": 30.0}
    with serving(tmp_path, **limits) as (port, client):
        held = hold(port, 50_000)
        try:
            until(lambda: gauge(client, "recserve_inflight_bytes") == 50_000)
            big = post(client, b" " * 40_000)  # 50 + 40 kB > 80 kB
            assert big.status_code == 503
            assert big.headers["retry-after"] == "1"
            assert "bytes" in big.json()["detail"]
            # Requests that fit still pass: one without a body, one with a small body.
            assert client.get("/v1/feed/u1").status_code == 200
            assert post(client, b"{").status_code == 400
        finally:
            held.close()  # the client goes away: its bytes are given back
        until(lambda: idle(client))
        assert post(client, b" " * 40_000).status_code == 400  # admitted


def test_a_chunked_body_counts_as_it_arrives(tmp_path: Path) -> None:
    limits = {"max_body_bytes": 50_000, "max_inflight_bytes": 80_000, "body_timeout_s": 30.0}
    chunk = b"3a98\r\n" + b" " * 15_000 + b"\r\n"
    with serving(tmp_path, **limits) as (port, client):
        first = socket.create_connection(("127.0.0.1", port))
        second = socket.create_connection(("127.0.0.1", port))
        try:
            first.sendall(CHUNKED + chunk * 3)  # 45 kB so far, and more to come
            until(lambda: gauge(client, "recserve_inflight_bytes") == 45_000)
            assert post(client, b" " * 40_000).status_code == 503  # declared: 85 kB
            assert post(client, b" " * 30_000).status_code == 400  # 75 kB: fits
            second.sendall(CHUNKED + chunk * 2)  # 75 kB in flight
            until(lambda: gauge(client, "recserve_inflight_bytes") == 75_000)
            second.sendall(chunk)  # 90 kB: refused as it arrives
            response = answer(second)
            assert response.startswith(b"HTTP/1.1 503"), response[:100]
            assert b"retry-after: 1" in response.lower()
            assert gauge(client, "recserve_inflight_bytes") == 45_000
        finally:
            first.close()
            second.close()
        until(lambda: idle(client))


def test_no_refusal_disconnect_or_failure_keeps_a_slot(tmp_path: Path) -> None:
    limits = {"max_inflight": 2, "max_body_bytes": 10_000, "body_timeout_s": 30.0}
    with serving(tmp_path, **limits) as (port, client):
        for _ in range(4):
            # The app raises (uvicorn then closes the connection: a fresh one each time).
            boom = client.get("/v1/feed/boom", headers={"connection": "close"})
            assert boom.status_code == 500
            assert post(client, b"{").status_code == 400  # malformed
            assert post(client, b" " * 20_000).status_code == 413
            chunked = post(client, iter([b" " * 6_000] * 3))
            assert chunked.status_code == 413
            sock = hold(port, 5_000)  # a client that vanishes halfway through its body
            until(lambda: gauge(client, "recserve_inflight_requests") == 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset, not a polite close
        until(lambda: idle(client))
        held = [hold(port, 100) for _ in range(2)]  # both slots can still be taken
        try:
            until(lambda: client.get("/v1/feed/u1").status_code == 503)
        finally:
            for sock in held:
                sock.close()
        until(lambda: client.get("/v1/feed/u1").status_code == 200)
