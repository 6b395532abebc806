from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from recserve.media import MediaUrls
from recserve.service.clock import latest_ms
from recserve.service.routes.deps import EngineDep
from recserve.service.schemas import ItemsIn, PathId

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.post("")
def upsert_items(body: ItemsIn, engine: EngineDep) -> dict[str, int]:
    check_media_keys(body, engine.media)  # before anything of the batch is stored
    skew = engine.settings.max_clock_skew_s
    body.check_created_at(latest_ms(skew), skew)
    items, vectors = body.rows()
    return {"upserted": engine.upsert_items(items, vectors, amplify=body.amplify)}


def check_media_keys(body: ItemsIn, media: MediaUrls) -> None:
    """ValueError (422) naming ``items[i].media_key`` when media keys are restricted (signed
    URLs, or ``cloudfront.allowed_prefixes``) and one may not be served. An item without a
    media key is served under its id, so then the id is checked."""
    if not media.restricted:
        return
    for i, item in enumerate(body.items):
        try:
            media.check_key(item.media_key if item.media_key is not None else item.id)
        except ValueError as error:
            if item.media_key is None:
                raise ValueError(
                    f"items[{i}].media_key: missing, and the item's id, used in its place, {error}"
                ) from None
            raise ValueError(f"items[{i}].media_key: {error}") from None


@router.get("/{item_id}")
def get_item(item_id: PathId, engine: EngineDep) -> dict[str, Any]:
    return engine.item(item_id)


@router.delete("/{item_id}", status_code=204)
def take_down(item_id: PathId, engine: EngineDep) -> Response:
    engine.take_down(item_id)
    return Response(status_code=204)
