"""What the served OpenAPI document adds to FastAPI's: examples, headers, the 500, ``/metrics``'s type, ``HEAD``.

Applied once to the generated schema (``service.openapi``), adding only what is missing,
so a route that declares its own response or example keeps it:

* every response gets an example (by its schema: a ``ClassifyResult``, a ``Problem`` of its status...),
  every query parameter one too, every request body a curl line per media type in its description
  (a binary body has no JSON example; an example without a value breaks ReDoc);
* every response declares ``X-Request-ID`` (the middleware sets it on each), every 503
  ``Retry-After``; every operation takes an optional ``X-Request-ID`` request header;
* every operation documents the 500 it answers when something fails inside the service;
* ``/metrics`` answers the Prometheus text format, not JSON.
"""

from __future__ import annotations

from copy import deepcopy
from http import HTTPStatus
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from service.errors import PROBLEM_JSON

__all__ = ["complete_schema"]

_PROBLEM_REF = "#/components/schemas/Problem"
_SHA256 = "7196959875831361d3ac36832af59c2a06ef5c52dacad4a6a46e5a2bda234f82"
_TOP5 = [
    {"label": "scratches", "score": 0.97},
    {"label": "inclusion", "score": 0.02},
    {"label": "crazing", "score": 0.005},
    {"label": "patches", "score": 0.003},
    {"label": "pitted_surface", "score": 0.002},
]
CLASSIFY_EXAMPLE: dict[str, Any] = {
    "request_id": "plc3-000412",
    "label": "scratches",
    "index": 5,
    "confidence": 0.97,
    "low_confidence": False,
    "top5": _TOP5,
    "heatmap": {
        "method": "miam_spatial",
        "encoding": "png",
        "kind": "gray",
        "width": 200,
        "height": 200,
        "data": "iVBORw0KGgoAAAANSUhEUg...",
    },
    "width": 200,
    "height": 200,
    "model": {"name": "ilcs", "version": "3.1.0", "sha256": _SHA256},
    "timing_ms": {"queue_ms": 1.9, "inference_ms": 41.0, "total_ms": 47.3},
}
_BAD_IMAGE = {
    "type": "about:blank",
    "title": "Bad Request",
    "status": 400,
    "detail": "cannot identify image file: the upload; send a JPEG, PNG, BMP or TIFF file",
    "instance": "/classify",
    "request_id": "plc3-000413",
}
BATCH_EXAMPLE: dict[str, Any] = {
    "request_id": "plc3-000414",
    "results": [
        {"index": 0, "filename": "crazing.png", "result": {**CLASSIFY_EXAMPLE, "request_id": "plc3-000414/0"}},
        {"index": 1, "filename": "broken.png", "error": {**_BAD_IMAGE, "request_id": "plc3-000414/1"}},
    ],
}
MODEL_EXAMPLE: dict[str, Any] = {
    "format_version": 1,
    "name": "ilcs",
    "version": "3.1.0",
    "arch": "ilcs",
    "labels": ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"],
    "input_size": 160,
    "mean": 0.4,
    "std": 0.2,
    "metrics": {"test_top1": 0.9956, "test_top5": 1.0},
    "weights_sha256": _SHA256,
    "serving": {
        "device": "cpu",
        "dtype": "float32",
        "workers": 2,
        "threads": 1,
        "max_batch_size": 4,
        "max_delay_ms": 2.0,
        "queue_size": 256,
        "calibration": [
            {
                "measure": "service",
                "batch_size": 4,
                "delay_ms": 2.0,
                "images_per_s": 61.2,
                "ms_per_batch": 127.5,
                "mean_batch": 3.9,
            }
        ],
    },
}
_DETAILS = {
    400: "cannot identify image file: the upload; send a JPEG, PNG, BMP or TIFF file",
    401: "this service needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
    413: "Content-Length is 31457280 bytes, more than the limit of 20971520 bytes; send one smaller image per request",
    415: "Content-Type 'application/json' is not accepted; send multipart/form-data with a field 'file', ...",
    422: "a raw frame (application/octet-stream) needs the query parameters width and height in pixels",
    500: "the model failed on this batch; the error is logged and the next batch runs: retry the request",
    503: "the queue is full; retry after the Retry-After seconds",
    504: "no answer within the request deadline of 10 s; retry, or send fewer images at once",
}
_BY_SCHEMA = {"ClassifyResult": CLASSIFY_EXAMPLE, "BatchResult": BATCH_EXAMPLE, "ModelInfo": MODEL_EXAMPLE}
_PARAMETER_EXAMPLES = {"heatmap": "overlay", "width": 200, "height": 200}
_BODY_EXAMPLES = {
    "multipart/form-data": "curl -F file=@samples/scratches.png localhost:8000/classify",
    "image/png": "curl --data-binary @samples/pitted_surface.png -H 'Content-Type: image/png' localhost:8000/classify",
    "application/octet-stream": "curl --data-binary @samples/scratches.raw -H 'Content-Type: application/octet-stream' "
    "'localhost:8000/classify?width=200&height=200'",
}
_BATCH_COMMAND = "curl -F files=@samples/crazing.png -F files=@samples/patches.png localhost:8000/classify/batch"
_REQUEST_ID_HEADER = {
    "description": "the request's id: the caller's X-Request-ID when it is a sane token, else a new one",
    "required": True,
    "schema": {"type": "string"},
    "example": "plc3-000412",
}
_RETRY_AFTER_HEADER = {
    "description": "seconds to wait before retrying",
    "required": True,
    "schema": {"type": "string"},
    "example": "1",
}
_REQUEST_ID_PARAMETER = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "an id for this request (letters, digits, . _ : -, at most 128), echoed in the answer and the logs",
    "schema": {"type": "string"},
    "example": "plc3-000412",
}
_METRICS_EXAMPLE = '# TYPE ilcs_predictions_total counter\nilcs_predictions_total{label="scratches"} 412.0\n'


def problem_example(status: int) -> dict[str, Any]:
    """A problem+json body of ``status`` as the service sends it."""
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": _DETAILS.get(status, "what was wrong and what to do"),
        "instance": "/classify",
        "request_id": "plc3-000412",
    }


def complete_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the examples, headers, 500s and content types described in the module docstring."""
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            _complete_operation(path, operation)
    return schema


def _complete_operation(path: str, operation: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    for parameter in parameters:
        if parameter["name"] in _PARAMETER_EXAMPLES:
            parameter.setdefault("example", _PARAMETER_EXAMPLES[parameter["name"]])
    if not any(p["name"].lower() == "x-request-id" for p in parameters):
        parameters.append(deepcopy(_REQUEST_ID_PARAMETER))
    body = operation.get("requestBody")
    if body is not None:  # binary bodies have no JSON example: each media type's curl line, in the description
        lines = []
        for media in body.get("content", {}):
            command = _BODY_EXAMPLES.get(media, _BODY_EXAMPLES["image/png"].replace("image/png", media))
            if path.endswith("/batch"):
                command = _BATCH_COMMAND
            lines.append(f"- `{media}`: `{command}`")
        body.setdefault("description", "Examples, with the samples of the repository:\n\n" + "\n".join(lines))
    responses = operation.setdefault("responses", {})
    if path != "/healthz":  # an unexpected fault anywhere else is a problem+json 500
        responses.setdefault("500", {"description": "Internal Server Error"})
        responses["500"].setdefault("content", {PROBLEM_JSON: {"schema": {"$ref": _PROBLEM_REF}}})
    if path == "/metrics":
        responses["200"]["content"] = {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}, "example": _METRICS_EXAMPLE}}
    for code, response in responses.items():
        headers = response.setdefault("headers", {})
        headers.setdefault("X-Request-ID", deepcopy(_REQUEST_ID_HEADER))
        if code == "503":
            headers.setdefault("Retry-After", deepcopy(_RETRY_AFTER_HEADER))
        for content in response.get("content", {}).values():
            content.setdefault("example", _example(code, content.get("schema", {}), path))


def _example(code: str, schema: dict[str, Any], path: str) -> Any:
    name = schema.get("$ref", "").rsplit("/", 1)[-1]
    if name == "Problem":
        return problem_example(int(code))
    if name == "Health":
        return {"status": "ready" if path == "/readyz" else "ok"}
    return _BY_SCHEMA.get(name)
