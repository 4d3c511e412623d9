"""The model card of the served checkpoint, and how it is served."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import ApiKey, RuntimeDep
from service.schemas import ModelInfo, Problem

router = APIRouter(prefix="/model", tags=["model"], dependencies=[ApiKey])


@router.get(
    "",
    summary="Model card: labels, input size, metrics, serving batch size and calibration",
    responses={401: {"model": Problem}},
)
async def model_card(runtime: RuntimeDep) -> ModelInfo:
    return runtime.model_info()
