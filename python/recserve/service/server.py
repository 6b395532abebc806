"""``recserve serve``: the app under uvicorn, with SIGTERM handled as a drain.

On SIGTERM or SIGINT: ``/readyz`` turns 503 at once (load balancers stop sending), uvicorn
stops accepting and lets the requests in flight finish (at most ``shutdown_timeout_s``), then
the engine writes its final snapshot and the process exits 0.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from types import FrameType

import uvicorn

from recserve.service.app import create_app
from recserve.service.auth import unprotected_listen
from recserve.service.engine import Engine
from recserve.service.settings import Settings

__all__ = ["serve"]


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, engine: Engine) -> None:
        super().__init__(config)
        self.engine = engine

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.engine.shutting_down = True
        super().handle_exit(sig, frame)

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
    _Server(config, engine).run()
