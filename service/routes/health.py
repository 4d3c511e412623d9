"""Liveness and readiness, open without an API key (orchestrators probe them)."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import RuntimeDep
from service.schemas import Health, Problem

router = APIRouter(tags=["health"])


@router.head("/healthz", summary="The process is alive (no body)")
@router.get("/healthz", summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.head(
    "/readyz",
    summary="The model is loaded and warmed up (no body)",
    responses={503: {"model": Problem, "description": "still loading or warming up"}},
)
@router.get(
    "/readyz",
    summary="The model is loaded and warmed up",
    responses={503: {"model": Problem, "description": "still loading or warming up"}},
)
async def readyz(runtime: RuntimeDep) -> Health:
    runtime.ensure_ready()
    return Health(status="ready")
