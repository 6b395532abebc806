"""``recserve serve`` as a child process on 127.0.0.1: what the demo's HTTP driver and the
service tests start.

    port = free_port()
    process = start_serve(config, data_dir, port, log)
    wait_ready(process, port, log, timeout_s=60)   # RuntimeError with the log's tail
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["free_port", "start_serve", "wait_ready"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(
    config: Path, data_dir: Path, port: int, log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts the server, its output appended to ``log``; ``env`` replaces the environment."""
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
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
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
        )


def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float) -> None:
    """Until ``/readyz`` answers 200; RuntimeError if the process exits or time runs out."""
    import httpx  # the demo and test extras

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"recserve serve exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"recserve serve was not ready in {timeout_s:.0f} s: {log.read_text()[-3000:]}"
    )
