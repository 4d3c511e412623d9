"""``ilcs serve``: the app under uvicorn, configured by ``ILCS_*`` environment variables."""

from __future__ import annotations

import logging

import uvicorn

from service.main import create_app
from service.settings import get_settings

__all__ = ["serve"]


def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the service until interrupted; ``host``/``port`` override ILCS_HOST/ILCS_PORT."""
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_level=settings.log_level,
        # One process: the model and its batcher live in it. Scale out with replicas, not workers.
        workers=1,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 1,
    )
