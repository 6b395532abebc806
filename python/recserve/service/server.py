"""``recserve serve``: the app under uvicorn, with SIGTERM handled as a drain.

On SIGTERM:

1. ``/readyz`` turns 503 at once, and for ``shutdown_grace_s`` (5) nothing else changes: the
   listener still accepts and every request is served, so a load balancer that polls
   ``/readyz`` takes the instance out of rotation before any connection is refused;
2. then uvicorn closes the listener and lets the requests in flight finish (at most
   ``shutdown_timeout_s``; idle keep-alive connections are closed);
3. the engine writes its final snapshot, and the process exits 0.

A second SIGTERM, or SIGINT (Ctrl-C at a terminal), ends the grace at once and drains.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from types import FrameType

import uvicorn

from recserve.service.app import create_app
from recserve.service.auth import unprotected_listen
from recserve.service.engine import Engine
from recserve.service.settings import Settings

__all__ = ["serve"]


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, engine: Engine, grace_s: float) -> None:
        super().__init__(config)
        self.engine = engine
        self.grace_s = grace_s
        self.drain_at: float | None = None  # when the grace after SIGTERM ends

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.engine.shutting_down = True  # /readyz: 503 from now on
        if sig == signal.SIGTERM and self.drain_at is None and self.grace_s > 0:
            self.drain_at = time.monotonic() + self.grace_s  # serve on until then (on_tick)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        # uvicorn's main loop calls this every 0.1 s; should_exit starts its shutdown.
        if self.drain_at is not None and time.monotonic() >= self.drain_at:
            self.should_exit = True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn raises the captured signal again once done, so the process would die of
            # it; a drained shutdown with its final snapshot written is a clean exit.
            self._captured_signals.clear()


def serve(settings: Settings, *, log_level: str = "info") -> None:
    """Runs until SIGTERM. ValueError, before anything starts, when the settings would listen
    beyond loopback without API keys (``recserve.service.auth.unprotected_listen``)."""
    problem = unprotected_listen(settings)
    if problem is not None:
        raise ValueError(problem)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    engine = Engine(settings)
    app = create_app(settings, engine=engine)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=int(max(1, settings.shutdown_timeout_s)),
        access_log=False,
    )
    _Server(config, engine, settings.shutdown_grace_s).run()
