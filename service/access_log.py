"""One access line per request, from the app itself: route, status, latency, predicted label, request id.

Replaces uvicorn's access log, which knows neither the route template nor the
answer. Probe and scrape requests (``/healthz``, ``/readyz``, ``/metrics``) are not
logged unless ``ILCS_LOG_PROBES=true``: an orchestrator and Prometheus would
otherwise fill the log with them. The query string is redacted as
``service.run.redact_query`` does (only the API's own parameters are kept).
The label is read from the first bytes of a 200 answer of ``/classify*``
(``"label":"...","index"`` is a ``ClassifyResult``'s top class), so no route has to
report it.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import current_request_id

__all__ = ["AccessLog"]

log = logging.getLogger("service.access")
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
_LABEL = re.compile(rb'"label":"((?:[^"\\]|\\.)*)","index"')


class AccessLog:
    """Pure-ASGI middleware; runs inside ``ServiceMiddleware``, which has set the request id."""

    def __init__(self, app: ASGIApp, enabled: bool = True, log_probes: bool = False) -> None:
        self.app = app
        self.enabled = enabled
        self.log_probes = log_probes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        token = current_request_id.set(request_id)
        start = time.perf_counter()
        status = 500
        labels: list[str] = []
        classify = scope["path"].startswith("/classify")

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and classify and status == 200:
                labels.extend(m.decode() for m in _LABEL.findall(message.get("body", b"")))
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if self.enabled and (self.log_probes or scope["path"] not in PROBES):
                self._line(scope, status, time.perf_counter() - start, labels, request_id)
            current_request_id.reset(token)

    def _line(self, scope: Scope, status: int, seconds: float, labels: list[str], request_id: str | None) -> None:
        from service.run import redact_query  # run imports main, which imports this module

        query = scope.get("query_string", b"").decode("latin-1")
        path = redact_query(f"{scope['path']}?{query}") if query else scope["path"]
        route = getattr(scope.get("route"), "path", "unmatched")
        label = ",".join(labels) or None
        client = scope.get("client")
        log.info(
            '%s "%s %s" %d %.1f ms%s',
            f"{client[0]}:{client[1]}" if client else "-",
            scope["method"],
            path,
            status,
            seconds * 1e3,
            f" label={label}" if label else "",
            extra={
                "request_id": request_id,
                "method": scope["method"],
                "path": path,
                "route": route,
                "status": status,
                "latency_ms": round(seconds * 1e3, 2),
                "label": label,
            },
        )
