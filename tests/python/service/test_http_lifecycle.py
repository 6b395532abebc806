"""Shutdown and crashes under load: every event acknowledged with 202 is there after a
restart, after SIGTERM (which exits 0 once drained, its final snapshot written) and after
kill -9 alike; through the grace after SIGTERM /readyz says 503 while requests are served."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
from http_server import DIMS, Server, item_batch, make_server, watch

BATCH = 50


def _load(
    server: Server, workers: int, acked: dict[str, int], stop: threading.Event
) -> list[threading.Thread]:
    """Threads posting batches of distinct events for their own users; acked[user] counts the
    events of batches that got 202."""
    lock = threading.Lock()

    def work(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            batch = 0
            while not stop.is_set():
                batch += 1
                user = f"life-{worker}-{batch % 5}"
                events = [
                    {
                        "event_id": f"{worker}-{batch}-{i}",
                        "user_id": user,
                        "item_id": f"v{i}",
                        "type": "watch",
                        "watch_ms": 1000 * (i % 15),
                        "duration_ms": 15_000,
                    }
                    for i in range(BATCH)
                ]
                try:
                    response = client.post("/v1/events", json={"events": events})
                except httpx.TransportError:
                    return  # the server went away: this batch is not acknowledged
                if response.status_code == 202:
                    with lock:
                        acked[user] = acked.get(user, 0) + BATCH
                elif response.status_code != 503:
                    raise AssertionError(f"{response.status_code}: {response.text}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    return threads


def _applied(server: Server, users: list[str]) -> dict[str, int]:
    with server.client() as client:
        return {u: client.get(f"/v1/users/{u}").json()["events_applied"] for u in users}


def _snapshots(server: Server) -> set[Path]:
    return set((server.data_dir / "state" / "snapshots").glob("profiles-*.snap"))


def _run(server: Server, sig: int) -> tuple[int, set[Path], dict[str, int], dict[str, int]]:
    """(exit code, snapshots the stop wrote, events acknowledged, events there after restart)"""
    server.start()
    with server.client() as client:
        client.post("/v1/items", json={"items": item_batch(BATCH, seed=51)})
    acked: dict[str, int] = {}
    stop = threading.Event()
    threads = _load(server, 3, acked, stop)
    deadline = time.monotonic() + 30
    while sum(acked.values()) < 40 * BATCH and time.monotonic() < deadline:
        time.sleep(0.05)
    before = _snapshots(server)
    code = server.stop(sig)
    written = _snapshots(server) - before  # before the restart, which may write its own
    stop.set()
    for thread in threads:
        thread.join()
    assert sum(acked.values()) >= 40 * BATCH
    server.start()
    applied = _applied(server, sorted(acked))
    server.stop()
    return code, written, acked, applied


def test_sigterm_drains_snapshots_and_exits_zero_losing_nothing(make_server) -> None:
    server = make_server(f"dims = {DIMS}\nshutdown_timeout_s = 10\n")
    server.env["RECSERVE_SHUTDOWN_GRACE_S"] = "1"  # the load goes on through the grace
    code, written, acked, applied = _run(server, signal.SIGTERM)
    assert code == 0
    assert written  # the SIGTERM under load wrote the final snapshot
    for user, count in acked.items():
        # Acknowledged events are all there; a batch the drain finished but whose answer never
        # arrived may be there too.
        assert count <= applied[user] <= count + 3 * BATCH, user


def test_kill_9_loses_nothing_acknowledged(make_server) -> None:
    server = make_server(f"dims = {DIMS}\n")
    code, written, acked, applied = _run(server, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not written
    for user, count in acked.items():
        assert count <= applied[user] <= count + 3 * BATCH, user


def test_after_sigterm_readyz_is_503_through_the_grace_while_requests_are_served(
    make_server,
) -> None:
    server = make_server(f"dims = {DIMS}\n")
    server.env["RECSERVE_SHUTDOWN_GRACE_S"] = "4"
    server.start()
    assert server.process is not None
    with server.client() as client:
        items = {"items": item_batch(BATCH, seed=52)}
        assert client.post("/v1/items", json=items).status_code == 200
    before = _snapshots(server)
    server.process.send_signal(signal.SIGTERM)
    # Through the grace: /readyz says 503, and a new connection is accepted and served.
    with server.client() as client:
        deadline = time.monotonic() + 10
        while (ready := client.get("/readyz")).status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert ready.json()["status"] == "shutting down"
        assert ready.headers["retry-after"] == "1"
    with server.client() as client:  # a fresh connection: the listener still accepts
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/feed/grace-user").status_code == 200
        events = [watch(f"grace-{i}", "grace-user", f"v{i}") for i in range(3)]
        assert client.post("/v1/events", json={"events": events}).status_code == 202
        assert server.process.poll() is None
    # Then the listener closes, the drain ends with a final snapshot, and the exit is clean.
    assert server.process.wait(timeout=30) == 0
    server.process = None
    assert _snapshots(server) - before
    server.start()
    assert _applied(server, ["grace-user"]) == {"grace-user": 3}
    server.stop()
