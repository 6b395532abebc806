from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from recserve.catalog import Item
from recserve.service.schemas import ItemsIn

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.post("")
def upsert_items(body: ItemsIn, request: Request) -> dict[str, int]:
    dims = {len(item.embedding) for item in body.items}
    if len(dims) != 1:
        first = next(
            i
            for i, item in enumerate(body.items)
            if len(item.embedding) != len(body.items[0].embedding)
        )
        raise ValueError(
            f"items[{first}].embedding: has {len(body.items[first].embedding)} values, "
            f"items[0] has {len(body.items[0].embedding)}"
        )
    items = [
        Item(
            item.id,
            item.creator_id,
            item.duration_ms,
            tuple(item.tags),
            item.created_at if item.created_at is not None else 0,
            item.media_key,
        )
        for item in body.items
    ]
    vectors = np.array([item.embedding for item in body.items], dtype=np.float32)
    return {"upserted": request.app.state.engine.upsert_items(items, vectors)}


@router.get("/{item_id}")
def get_item(item_id: str, request: Request) -> dict[str, Any]:
    return request.app.state.engine.item(item_id)  # type: ignore[no-any-return]


@router.delete("/{item_id}", status_code=204)
def take_down(item_id: str, request: Request) -> Response:
    request.app.state.engine.take_down(item_id)
    return Response(status_code=204)
