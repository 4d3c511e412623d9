"""The FastAPI app: ``create_app(settings)`` and its lifespan.

The lifespan loads and verifies the checkpoint, starts the batcher and, in the
background, calibrates (if asked) and warms up; ``/readyz`` turns 200 once that
is done. On shutdown the warm-up is cancelled, the batcher stopped and every
request still queued answered 503. A checkpoint that cannot be loaded stops the
start-up with the checkpoint's own error message: a service without its model
must not look alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from service.access_log import AccessLog
from service.errors import install_error_handlers
from service.inference import Engine
from service.metrics import Metrics
from service.middleware import ServiceMiddleware
from service.openapi import install_openapi
from service.routes import classify, health, metrics, model, v2
from service.routes.ui import install_ui
from service.runtime import Runtime
from service.settings import Settings, get_settings
from service.v2_infer import error_response

__all__ = ["create_app"]

log = logging.getLogger("service")

DESCRIPTION = """\
Classifies hot-rolled steel-strip surface images into the six NEU defect classes with ILCS
(Pei et al., 2022) and returns the class, the top-5 scores and the model's attention heatmap.
Images are batched dynamically across requests. Errors are `application/problem+json`.
When API keys are set, `/classify*` and `/model` need `Authorization: Bearer <key>` or `X-API-Key`.
The Open Inference Protocol (KServe v2) is served under `/v2` too: the same model, batcher, limits and keys
(keys for model metadata and infer), for KServe and Triton's clients; its errors are `{"error": "..."}`.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = await run_in_threadpool(Engine.from_settings, settings)
    runtime = Runtime(engine, settings, app.state.metrics)
    app.state.metrics.declare_classes(engine.card.labels, engine.card.training.get("class_counts"))
    runtime.batcher.start()
    app.state.runtime = runtime
    preparing = asyncio.create_task(runtime.start_up(), name="ilcs-warmup")
    try:
        yield
    finally:
        preparing.cancel()
        await asyncio.gather(preparing, return_exceptions=True)
        await runtime.batcher.stop()
        app.state.runtime = None
        log.info("stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service app; ``settings`` default to ``get_settings()`` (the environment)."""
    settings = settings or get_settings()
    app = FastAPIOffline(  # FastAPI whose /docs and /redoc load Swagger UI and ReDoc from the package, not a CDN
        title="ILCS steel-surface inspection",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,  # Starlette's redirect is built from the client's Host header: a 404 instead
        swagger_ui_parameters={"validatorUrl": None},  # no call to the public schema validator
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.api_keys = tuple(k.encode() for k in settings.all_api_keys())
    app.state.runtime = None
    app.add_middleware(AccessLog, enabled=settings.access_log, log_probes=settings.log_probes)  # inside the next
    app.add_middleware(
        ServiceMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.request_timeout_s,
    )
    install_error_handlers(app, forms={"/v2": error_response})  # the Open Inference Protocol's {"error": ...}
    install_openapi(app)
    for router in (classify.router, model.router, health.router, metrics.router, v2.router):
        app.include_router(router)
    install_ui(app)  # the inspection page at /
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ilcs-inspector")
    except PackageNotFoundError:
        return "0"
