from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
def list_models(request: Request) -> dict[str, Any]:
    return request.app.state.engine.models()  # type: ignore[no-any-return]


@router.post("/{version}/activate")
def activate(version: str, request: Request) -> dict[str, Any]:
    return request.app.state.engine.activate(version)  # type: ignore[no-any-return]
