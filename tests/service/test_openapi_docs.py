"""The OpenAPI document is complete: examples everywhere, the 500, the headers, /metrics' type, HEAD probes."""

from __future__ import annotations

import pytest

from service.main import create_app
from service.metrics import CONTENT_TYPE_LATEST
from tests.service.conftest import IsolatedSettings

SCHEMA = create_app(IsolatedSettings(checkpoint="unused")).openapi()
OPERATIONS = [(path, method, op) for path, item in SCHEMA["paths"].items() for method, op in item.items()]
IDS = [f"{method.upper()} {path}" for path, method, _ in OPERATIONS]


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=IDS)
def test_every_request_and_response_has_an_example(path, method, operation):
    for parameter in operation.get("parameters", []):
        assert "example" in parameter or "examples" in parameter, f"{parameter['name']} has no example"
    body = operation.get("requestBody", {})
    for media in body.get("content", {}):
        assert f"- `{media}`: `curl " in body["description"], f"request body {media} has no example"
    for code, response in operation["responses"].items():
        for media, content in response.get("content", {}).items():
            assert content.get("example") is not None, f"{code} {media} has no example"


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=IDS)
def test_headers_and_the_500_are_declared(path, method, operation):
    responses = operation["responses"]
    if path.startswith("/v2"):  # the Open Inference Protocol's own error object
        assert responses["500"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferenceError")
    elif path != "/healthz":
        assert "application/problem+json" in responses["500"]["content"]
    for code, response in responses.items():
        assert "X-Request-ID" in response["headers"], f"{code} does not declare X-Request-ID"
        if code == "503":
            assert response["headers"]["Retry-After"]["required"]
    assert any(p["name"] == "X-Request-ID" and p["in"] == "header" for p in operation["parameters"])


def test_metrics_is_prometheus_text_and_probes_take_head():
    (media,) = SCHEMA["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert media == CONTENT_TYPE_LATEST and media.startswith("text/plain; version=")
    assert {"get", "head"} <= set(SCHEMA["paths"]["/healthz"]) and {"get", "head"} <= set(SCHEMA["paths"]["/readyz"])
    ids = [op["operationId"] for _, _, op in OPERATIONS]
    assert len(ids) == len(set(ids)), "operation ids repeat"


def test_the_documented_headers_and_head_are_what_the_service_does(live, png):
    with live() as svc:
        for path in ("/healthz", "/readyz"):
            r = svc.request("HEAD", path)
            assert r.status_code == 200 and r.content == b"" and r.headers["x-request-id"]
        r = svc.get("/metrics")
        assert r.headers["content-type"] == CONTENT_TYPE_LATEST and r.headers["x-request-id"]
        assert svc.classify(png, headers={"X-Request-ID": "line-3"}).headers["x-request-id"] == "line-3"
    with live(wait_ready=False) as svc:
        svc.runtime.stop_admitting()
        r = svc.request("HEAD", "/readyz")
        assert r.status_code == 503 and r.headers["retry-after"]
