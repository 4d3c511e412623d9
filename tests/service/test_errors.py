"""Every error as application/problem+json with its code; a bad request never reaches the model, never 500s."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def svc(live):
    """Limits small enough to hit: 64 KiB bodies, 1 megapixel images, 3 images per batch request."""
    with live(max_body_bytes=64 * 1024, max_pixels=1_000_000, max_batch_images=3) as running:
        yield running


def assert_problem(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]
    for word in words:
        assert word in problem["detail"], problem["detail"]
    return problem


async def chunks(data: bytes, size: int = 8192):
    """A body sent chunked, without Content-Length."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def bad_requests(png: bytes, bomb) -> dict[str, tuple[int, dict, tuple[str, ...]]]:
    """name -> (status, request kwargs, words the message must contain)."""
    frame = {"content-type": "application/octet-stream"}
    return {
        "truncated png": (
            400,
            {"content": png[: len(png) // 2], "headers": {"content-type": "image/png"}},
            ("decode",),
        ),
        "garbage": (400, {"content": b"\x00garbage" * 20, "headers": {"content-type": "image/jpeg"}}, ("JPEG, PNG",)),
        "empty body": (400, {"content": b"", "headers": {"content-type": "image/png"}}, ("no image",)),
        "frame too short": (
            400,
            {"content": b"\x00" * 1599, "headers": frame, "params": {"width": 40, "height": 40}},
            ("1599 bytes", "1600"),
        ),
        "text/plain": (415, {"content": png, "headers": {"content-type": "text/plain"}}, ("text/plain", "image/png")),
        "no content type": (415, {"content": png}, ("(none)",)),
        "body over limit": (413, {"content": b"\x00" * 70_000, "headers": {"content-type": "image/png"}}, ("65536",)),
        "chunked body over limit": (
            413,
            {"content": chunks(b"\x00" * 70_000), "headers": {"content-type": "image/png"}},
            ("65536",),
        ),
        "too many pixels": (413, {"content": bomb(2000, 1000), "headers": {"content-type": "image/png"}}, ("pixels",)),
        "decompression bomb": (
            413,
            {"content": bomb(100_000, 100_000), "headers": {"content-type": "image/png"}},
            ("10000000000",),
        ),
        "frame over pixel limit": (
            413,
            {"content": b"\x00" * 100, "headers": frame, "params": {"width": 2000, "height": 1000}},
            ("pixels",),
        ),
        "frame without size": (422, {"content": b"\x00" * 100, "headers": frame}, ("width", "height")),
        "zero width": (422, {"content": b"", "headers": frame, "params": {"width": 0, "height": 10}}, ("width",)),
        "unknown heatmap": (
            422,
            {"content": png, "headers": {"content-type": "image/png"}, "params": {"heatmap": "rainbow"}},
            ("heatmap",),
        ),
        "multipart without boundary": (400, {"content": png, "headers": {"content-type": "multipart/form-data"}}, ()),
        "two files to /classify": (
            400,
            {"files": [("file", ("a.png", png, "image/png")), ("file", ("b.png", png, "image/png"))]},
            ("files",),
        ),
        "multipart without file": (422, {"files": {"image": ("a.png", png, "image/png")}}, ("'file'",)),
    }


CASES = list(bad_requests(b"", lambda w, h: b""))


@pytest.mark.parametrize("case", CASES)
def test_bad_request_gets_its_code_and_never_reaches_the_model(svc, model_calls, png, bomb, case):
    status, kwargs, words = bad_requests(png, bomb)[case]
    calls = model_calls(svc)
    assert_problem(svc.post("/classify", **kwargs), status, *words)
    assert calls == [], "a bad request reached the model"
    assert svc.metric("ilcs_requests_total", route="/classify", status="500") == 0


def test_a_real_decompression_bomb_is_refused_before_decoding(svc, images):
    # 4000 x 4000 black pixels: 16 Mpx in a file of a few kilobytes.
    bomb = images(np.zeros((4000, 4000), np.uint8), compress_level=9)
    assert len(bomb) < 64 * 1024
    assert_problem(svc.classify(bomb), 413, "16000000 pixels", "1000000")


def test_batch_errors(svc, png):
    assert_problem(svc.classify(png, url="/classify/batch"), 415, "multipart/form-data")
    too_many = [("files", (f"{i}.png", png, "image/png")) for i in range(4)]
    assert_problem(svc.post("/classify/batch", files=too_many), 413, "more than 3 images")
    assert_problem(svc.post("/classify/batch", files={"note": (None, "a text field, no file")}), 422, "no files")


def test_unknown_route_and_method_are_problems_too(svc):
    assert_problem(svc.get("/nowhere"), 404, "/nowhere")
    assert_problem(svc.get("/classify"), 405, "GET /classify")


def test_queue_full_is_503_with_retry_after(live, gate, png, until):
    with live(max_batch_size=1, queue_size=2) as svc:
        g = gate(svc)
        first = svc.start("POST", "/classify", content=png, headers={"content-type": "image/png"})
        until(g.entered.is_set, "the first image to reach the model")
        queued = [svc.start("POST", "/classify", content=png, headers={"content-type": "image/png"}) for _ in range(2)]
        until(lambda: svc.runtime.batcher.depth == 2, "two images in the queue")
        response = svc.classify(png)
        assert_problem(response, 503, "capacity")
        assert int(response.headers["retry-after"]) >= 1
        assert svc.metric("ilcs_queue_depth") == 2
        g.open()
        assert [f.result().status_code for f in [first, *queued]] == [200, 200, 200]


def test_request_past_its_deadline_is_504(live, gate, png, until):
    with live(max_batch_size=1, request_timeout_s=0.5) as svc:
        g = gate(svc)
        blocked = svc.start("POST", "/classify", content=png, headers={"content-type": "image/png"})
        until(g.entered.is_set, "the first image to reach the model")
        late = svc.classify(png)  # waits behind the blocked batch until its deadline passes
        assert_problem(late, 504, "deadline")
        g.open()
        assert_problem(blocked.result(), 504, "deadline")
        until(lambda: svc.runtime.batcher.depth == 0, "the batcher to drain the queue")
        assert g.batches == [1], "the image whose request timed out in the queue was not run"
