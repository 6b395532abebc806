from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from recserve.service.routes.deps import EngineDep
from recserve.service.schemas import PathId, UserIn

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.put("/{user_id}")
def put_user(user_id: PathId, body: UserIn, engine: EngineDep) -> dict[str, Any]:
    body.check_caps(engine.settings.max_interests, engine.settings.max_blocked_creators)
    engine.set_user(user_id, body.interests, body.blocked_creators)
    return engine.user(user_id)


@router.get("/{user_id}")
def get_user(user_id: PathId, engine: EngineDep) -> dict[str, Any]:
    return engine.user(user_id)


@router.delete("/{user_id}", status_code=204)
def erase_user(user_id: PathId, engine: EngineDep) -> Response:
    """Forgets the user at once; their bytes leave the data directory within
    ``erasure_delay_s``."""
    engine.erase_user(user_id)
    return Response(status_code=204)
