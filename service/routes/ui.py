"""GET /: the inspection page, static HTML and JavaScript shipped in the package (``service/static``).

The page holds no data of its own: the model card and the answers it shows come from
``/model`` and ``/classify``, which need the API key when keys are set (the page asks for
it and sends it as ``X-API-Key``); the live figures come from ``/metrics``. Its
Content-Security-Policy lets it load and call nothing but this service.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC", "install_ui"]

STATIC = Path(__file__).resolve().parents[1] / "static"
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

router = APIRouter(tags=["ui"], include_in_schema=False)


@router.get("/")
async def inspection_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


def install_ui(app: FastAPI) -> None:
    """Serve the page at ``/`` and its script and style sheet under ``/ui``."""
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
