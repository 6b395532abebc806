from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from recserve.service.schemas import ItemsIn

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.post("")
def upsert_items(body: ItemsIn, request: Request) -> dict[str, int]:
    items, vectors = body.rows()
    engine = request.app.state.engine
    return {"upserted": engine.upsert_items(items, vectors, amplify=body.amplify)}


@router.get("/{item_id}")
def get_item(item_id: str, request: Request) -> dict[str, Any]:
    return request.app.state.engine.item(item_id)  # type: ignore[no-any-return]


@router.delete("/{item_id}", status_code=204)
def take_down(item_id: str, request: Request) -> Response:
    request.app.state.engine.take_down(item_id)
    return Response(status_code=204)
