"""What the engine raises for a request it cannot serve; ``recserve.service.app`` maps each to
its HTTP status."""

from __future__ import annotations

__all__ = ["CapacityExceeded", "Conflict", "NotFound", "NotReady"]


class NotReady(RuntimeError):
    """The service is recovering or shutting down (HTTP 503)."""


class NotFound(KeyError):
    """No such item, user or model (HTTP 404)."""


class Conflict(RuntimeError):
    """The request cannot apply to the current state (HTTP 409)."""


class CapacityExceeded(Conflict):
    """A configured capacity would be exceeded; nothing was stored (HTTP 409)."""
