"""A JSON answer sent straight on the ASGI channel: for middleware that refuses a request
before the app (and its routing and parsing) ever sees it."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

__all__ = ["send_json"]


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
