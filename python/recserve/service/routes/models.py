from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from recserve.service.routes.deps import EngineDep

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
def list_models(engine: EngineDep) -> dict[str, Any]:
    return engine.models()


@router.post("/{version}/activate")
def activate(version: str, engine: EngineDep) -> dict[str, Any]:
    return engine.activate(version)
