"""The OpenAPI document as served: every error response is ``application/problem+json`` with ``Problem``.

FastAPI documents the ``responses=`` of a route as ``application/json`` and adds a
422 of its own (``HTTPValidationError``), but every error of this service is a
``Problem`` sent as ``application/problem+json`` (``service.errors``). The schema
is rewritten once, so that clients and schemathesis see what the service sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.errors import PROBLEM_JSON
from service.openapi_examples import complete_schema

__all__ = ["install_openapi"]

_PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}


def install_openapi(app: FastAPI) -> None:
    """Serve the rewritten schema at ``/openapi.json`` (and in ``/docs``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_schema(  # examples, headers, 500s: service.openapi_examples
                problem_json_schema(
                    get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def problem_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every 4xx and 5xx response's content set to a problem+json ``Problem``.

    Except a response that declares an error body of its own (the Open Inference Protocol's ``InferenceError``).
    """
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for code, response in operation.get("responses", {}).items():
                if code[0] in "45" and not _own_error_body(response):
                    response["content"] = {PROBLEM_JSON: _PROBLEM}
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, never sent here
        components.pop(unused, None)
    return schema


def _own_error_body(response: dict[str, Any]) -> bool:
    refs = {c.get("schema", {}).get("$ref", "") for c in response.get("content", {}).values()}
    return any(ref and ref.rsplit("/", 1)[-1] not in _GENERIC_ERRORS for ref in refs)


_GENERIC_ERRORS = ("Problem", "HTTPValidationError")
