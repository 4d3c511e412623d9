"""Errors as ``application/problem+json`` (RFC 9457), each with a message a line engineer can act on.

Every failure the service knows of is a ``ServiceError`` with its HTTP status;
the model zoo's image errors map to 400 and 413. Handlers are installed for
those, for request validation (422), for Starlette's HTTP errors (404, 405)
and, as a last resort, for anything unexpected (500, logged with its traceback;
a bad request never gets there because every input check raises a ``ServiceError``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from model_zoo.preprocess import ImageDecodeError, ImageTooLargeError
from service.schemas import Problem

__all__ = [
    "PROBLEM_JSON",
    "ErrorForm",
    "BadImage",
    "BadRequest",
    "ClientDisconnected",
    "DeadlineExceeded",
    "InferenceFailed",
    "NotReady",
    "PayloadTooLarge",
    "QueueFull",
    "RequestTimeout",
    "ServiceError",
    "Unauthorized",
    "UnprocessableRequest",
    "UnsupportedMediaType",
    "install_error_handlers",
    "problem_for",
    "problem_response",
]

PROBLEM_JSON = "application/problem+json"
ErrorForm = Callable[[Problem, dict[str, str] | None], Response]  # an API's own error body
log = logging.getLogger("service")


class ServiceError(Exception):
    """An error with its HTTP status, short title and extra response headers."""

    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BadRequest(ServiceError):
    status, title = 400, "Bad Request"


class BadImage(ServiceError):
    status, title = 400, "Bad Image"


class Unauthorized(ServiceError):
    status, title = 401, "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"WWW-Authenticate": 'Bearer realm="ilcs"'})


class RequestTimeout(ServiceError):
    status, title = 408, "Request Timeout"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"Connection": "close"})  # the rest of the body may never come


class PayloadTooLarge(ServiceError):
    status, title = 413, "Payload Too Large"


class UnsupportedMediaType(ServiceError):
    status, title = 415, "Unsupported Media Type"


class UnprocessableRequest(ServiceError):
    status, title = 422, "Unprocessable Request"


class InferenceFailed(ServiceError):
    status, title = 500, "Inference Failed"


class QueueFull(ServiceError):
    status, title = 503, "Service Busy"

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail, {"Retry-After": str(retry_after_s)})


class NotReady(ServiceError):
    status, title = 503, "Not Ready"

    def __init__(self, detail: str, retry_after_s: int = 5) -> None:
        super().__init__(detail, {"Retry-After": str(retry_after_s)})


class DeadlineExceeded(ServiceError):
    status, title = 504, "Deadline Exceeded"


class ClientDisconnected(ServiceError):
    status, title = 499, "Client Closed Request"  # nginx's code; nobody reads it, the metrics do


def problem_for(exc: Exception, request_id: str | None = None, instance: str | None = None) -> Problem:
    """The ``Problem`` describing ``exc`` (used for whole responses and for batch entries)."""
    if isinstance(exc, ClientDisconnect):  # Starlette's, raised when the client hangs up during the upload
        exc = ClientDisconnected("the client closed the connection while sending the request")
    elif isinstance(exc, ImageTooLargeError):
        exc = PayloadTooLarge(f"{exc}; send a smaller image or raise ILCS_MAX_PIXELS")
    elif isinstance(exc, ImageDecodeError):
        exc = BadImage(str(exc))
    if not isinstance(exc, ServiceError):
        exc = InferenceFailed(f"unexpected error ({type(exc).__name__}); the service log has the details")
    return Problem(title=exc.title, status=exc.status, detail=exc.detail, instance=instance, request_id=request_id)


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True), status_code=problem.status, headers=headers, media_type=PROBLEM_JSON
    )


def _respond(request: Request, problem: Problem, headers: dict[str, str] | None = None) -> Response:
    """The error in the form of the API the request was for (``install_error_handlers``' ``forms``)."""
    path = request.url.path
    forms: dict[str, ErrorForm] = getattr(request.app.state, "error_forms", {})
    for prefix, render in forms.items():
        if path == prefix or path.startswith(prefix + "/"):
            return render(problem, headers)
    return problem_response(problem, headers)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _service_error(request: Request, exc: Exception) -> Response:
    headers = exc.headers if isinstance(exc, ServiceError) else None
    if isinstance(exc, QueueFull):  # a retry storm waits here, off the CPU, instead of coming straight back
        settings = getattr(request.app.state, "settings", None)
        await asyncio.sleep(getattr(settings, "refusal_delay_s", 0.0))
    if not isinstance(exc, ServiceError | ImageDecodeError | ImageTooLargeError | ClientDisconnect):
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(request, problem_for(exc, _request_id(request), request.url.path), headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    detail = "invalid request parameters: " + "; ".join(parts) + " (see /docs for the API)"
    return _respond(request, problem_for(UnprocessableRequest(detail), _request_id(request), request.url.path))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    # Starlette raises these for unknown routes (404), wrong methods (405) and malformed multipart bodies (400).
    hint = "see /docs for the routes and their methods" if exc.status_code in (404, 405) else "see /docs for the format"
    problem = Problem(
        title=HTTPStatus(exc.status_code).phrase,
        status=exc.status_code,
        detail=f"{request.method} {request.url.path}: {exc.detail}; {hint}",
        instance=request.url.path,
        request_id=_request_id(request),
    )
    return _respond(request, problem, dict(exc.headers or {}))


def install_error_handlers(app: FastAPI, forms: dict[str, ErrorForm] | None = None) -> None:
    """Route every error to a problem+json response, or under a path prefix of ``forms`` to that API's form.

    (The Open Inference Protocol's routes under ``/v2`` answer its ``{"error": ...}`` object.)
    """
    app.state.error_forms = dict(forms or {})
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(ImageDecodeError, _service_error)
    app.add_exception_handler(ImageTooLargeError, _service_error)
    app.add_exception_handler(ClientDisconnect, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _service_error)
