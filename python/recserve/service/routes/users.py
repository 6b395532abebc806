from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from recserve.service.schemas import PathId, UserIn

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.put("/{user_id}")
def put_user(user_id: PathId, body: UserIn, request: Request) -> dict[str, Any]:
    engine = request.app.state.engine
    body.check_caps(engine.settings.max_interests, engine.settings.max_blocked_creators)
    engine.set_user(user_id, body.interests, body.blocked_creators)
    return engine.user(user_id)  # type: ignore[no-any-return]


@router.get("/{user_id}")
def get_user(user_id: PathId, request: Request) -> dict[str, Any]:
    return request.app.state.engine.user(user_id)  # type: ignore[no-any-return]


@router.delete("/{user_id}", status_code=204)
def erase_user(user_id: PathId, request: Request) -> Response:
    """Forgets the user at once; their bytes leave the data directory within
    ``erasure_delay_s``."""
    request.app.state.engine.erase_user(user_id)
    return Response(status_code=204)
