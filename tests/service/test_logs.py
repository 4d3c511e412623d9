"""Logs: JSON lines with timestamp, level and request id; one access line per request; probes quiet."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from service.logs import RequestIdFilter, current_request_id, formatter


@contextmanager
def captured(log_format: str) -> Iterator[io.StringIO]:
    """Every log line of the process, formatted as ``ilcs serve`` formats it, into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_json_lines_carry_timestamp_level_and_the_request_id():
    with captured("json") as out:
        log = logging.getLogger("service")
        token = current_request_id.set("plc3-000412")
        try:
            log.warning("inside a request")
        finally:
            current_request_id.reset(token)
        log.info("outside")
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["level"] == "WARNING" and inside["logger"] == "service" and inside["message"] == "inside a request"
    assert inside["request_id"] == "plc3-000412" and inside["timestamp"].endswith("+00:00")
    assert outside["request_id"] == "-"


def test_access_lines_name_route_status_latency_label_and_id(serve, png):
    with captured("json") as out, serve() as server, httpx.Client(base_url=server.url) as client:
        ok = client.post("/classify", content=png, headers={"Content-Type": "image/png", "X-Request-ID": "line-7"})
        bad = client.post("/classify", content=b"junk", headers={"Content-Type": "image/png"})
        client.get("/healthz")
        client.get("/readyz")
        client.get("/metrics")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "service.access"]
    assert [a["path"] for a in access] == ["/classify", "/classify"], "probes and scrapes are not logged by default"
    first, second = access
    assert first["request_id"] == "line-7" and first["route"] == "/classify" and first["status"] == 200
    assert first["label"] == ok.json()["label"] and first["latency_ms"] > 0 and first["method"] == "POST"
    assert second["status"] == 400 and second["label"] is None
    assert second["request_id"] == bad.headers["x-request-id"]


def test_probe_lines_when_asked(serve):
    with captured("text") as out, serve(log_probes=True) as server:
        httpx.get(f"{server.url}/healthz")
    assert '"GET /healthz" 200' in out.getvalue()


def test_access_log_off(serve, png):
    with captured("text") as out, serve(access_log=False) as server:
        httpx.post(f"{server.url}/classify", content=png, headers={"Content-Type": "image/png"})
    assert "service.access" not in out.getvalue()
