from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from recserve.service.routes.deps import EngineDep
from recserve.service.schemas import TrialIn

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
def list_models(engine: EngineDep) -> dict[str, Any]:
    return engine.list_models()


@router.post("/{version}/activate")
def activate(version: str, engine: EngineDep) -> dict[str, Any]:
    return engine.activate(version)


@router.post("/{version}/trial")
def start_trial(version: str, body: TrialIn, engine: EngineDep) -> dict[str, Any]:
    return engine.start_trial(version, body.share)


@router.delete("/trial")
def end_trial(engine: EngineDep) -> dict[str, Any]:
    return engine.end_trial()
