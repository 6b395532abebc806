"""Per-stage feed latency as the server measured it for each request: the ``Server-Timing``
header of ``GET /v1/feed`` (``retrieve;dur=0.412, filter;dur=0.130, …``, milliseconds), read
the same way for the timings an in-process engine hands back. Exact per request, so the demo's
percentiles are those of the requests themselves, not of histogram buckets."""

from __future__ import annotations

__all__ = ["parse_server_timing"]


def parse_server_timing(header: str) -> dict[str, float]:
    """{stage: seconds} from a Server-Timing header; entries without a ``dur`` are skipped,
    a malformed one is a ValueError naming it."""
    out: dict[str, float] = {}
    for entry in filter(None, (part.strip() for part in header.split(","))):
        name, *params = (p.strip() for p in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "dur":
                try:
                    out[name] = float(value) / 1e3
                except ValueError:
                    message = f"Server-Timing entry {entry!r}: dur is not a number"
                    raise ValueError(message) from None
    return out
