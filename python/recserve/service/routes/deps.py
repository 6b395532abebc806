"""What routes take from the app besides the request, typed: ``app.state`` is untyped, so its
attributes are read here, once, and routes name the aliases (``engine: EngineDep``)."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Request

from recserve.service.engine import Engine

__all__ = ["EngineDep", "FeedLimiterDep", "engine_of", "feed_limiter_of"]


# Both async: FastAPI awaits them on the event loop rather than sending each to a thread.
async def engine_of(request: Request) -> Engine:
    """The engine ``create_app`` was given."""
    engine: Engine = request.app.state.engine
    return engine


async def feed_limiter_of(request: Request) -> anyio.CapacityLimiter | None:
    """The threads feeds may use at once; None: feeds run on the event loop (``feed_threads``
    = 0)."""
    limiter: anyio.CapacityLimiter | None = request.app.state.feed_limiter
    return limiter


EngineDep = Annotated[Engine, Depends(engine_of)]
FeedLimiterDep = Annotated[anyio.CapacityLimiter | None, Depends(feed_limiter_of)]
