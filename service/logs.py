"""Log set-up of ``ilcs serve``: plain text or one JSON object per line, each line with its request's id.

``ILCS_LOG_FORMAT=json`` writes every line (uvicorn's, the service's, the access
lines of ``service.access_log``) as a JSON object with ``timestamp`` (UTC, ISO 8601),
``level``, ``logger``, ``message`` and, for a line written while a request was being
handled, its ``request_id``; access lines add ``method``, ``path``, ``route``,
``status``, ``latency_ms`` and the predicted ``label``. The request id travels in a
context variable, set by the access-log middleware for the request's task, so every
line of that request carries it without being passed around.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

__all__ = ["LogFormat", "RequestIdFilter", "configure_logging", "current_request_id"]

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

current_request_id: ContextVar[str | None] = ContextVar("ilcs_request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Give every record the id of the request being handled when it was written (``-`` outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get() or "-"
        return True


def formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter of ``log_format``: human-readable text, or JSON with a UTC timestamp."""
    if log_format == "json":
        return JsonFormatter(
            ["levelname", "name", "message", "request_id"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
        )
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: LogFormat) -> None:
    """One handler on the root logger, to stderr, for the service's and uvicorn's loggers alike."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
