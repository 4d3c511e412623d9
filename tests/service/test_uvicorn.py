"""The service under a real uvicorn on 127.0.0.1: the wire format, and a client that hangs up."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.service.conftest import Server


@pytest.fixture(scope="module")
def server(serve) -> Iterator[Server]:
    with serve(max_batch_size=4) as running:
        yield running


def test_classify_over_http(server, png, forms):
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/healthz").json() == {"status": "ok", "detail": None}
        raw = client.post("/classify", content=png, headers={"content-type": "image/png", "x-request-id": "cam-1"})
        assert raw.status_code == 200 and raw.json()["request_id"] == "cam-1" == raw.headers["x-request-id"]
        multipart = client.post("/classify", files={"file": ("strip.png", png, "image/png")})
        assert multipart.json()["top5"] == raw.json()["top5"]
        frame, _ = forms["raw_frame"]
        gray = client.post(
            "/classify",
            content=frame,
            params={"width": 80, "height": 48},
            headers={"content-type": "application/octet-stream"},
        )
        assert gray.json()["top5"] == raw.json()["top5"]
        metrics = client.get("/metrics").text
        assert 'ilcs_requests_total{route="/classify",status="200"} 3.0' in metrics


def test_an_oversized_body_is_refused_over_the_wire(server):
    limit = server.app.state.settings.max_body_bytes
    response = httpx.post(
        f"{server.url}/classify", content=b"\x00" * (limit + 1), headers={"content-type": "image/png"}
    )
    assert response.status_code == 413 and response.headers["content-type"] == "application/problem+json"


def test_a_request_whose_client_hung_up_is_dropped_before_the_model(server, gate, png, until):
    runtime = server.app.state.runtime
    metric = server.app.state.metrics.registry.get_sample_value
    g = gate(runtime)
    post = {"content": png, "headers": {"content-type": "image/png"}}
    with httpx.Client(base_url=server.url) as client:
        blocker = threading.Thread(target=client.post, args=("/classify",), kwargs=post)
        blocker.start()
        until(g.entered.is_set, "a request in the model")
        with socket.create_connection((server.host, server.port)) as raw:
            head = (
                f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(png)}\r\n\r\n"
            )
            raw.sendall(head.encode() + png)
            until(lambda: runtime.batcher.depth == 1, "the request in the queue")
        # The socket is closed: the client has gone while its image waits in the queue.
        until(lambda: metric("ilcs_requests_total", {"route": "/classify", "status": "499"}) == 1, "the 499")
        g.open()
        blocker.join(30)
        until(lambda: runtime.batcher.depth == 0, "the queue to drain")
        assert client.post("/classify", **post).status_code == 200
    assert g.batches == [1, 1], "the hung-up request never reached the model"
