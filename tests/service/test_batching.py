"""Requests from different clients share model calls, and one bad request disturbs none of its neighbours."""

from __future__ import annotations

import numpy as np
import pytest

PNG = {"content-type": "image/png"}


def top(response) -> dict[str, float]:
    assert response.status_code == 200, response.text
    return {t["label"]: t["score"] for t in response.json()["top5"]}


@pytest.fixture(scope="module")
def pictures(images) -> list[bytes]:
    """Eight different images."""
    rng = np.random.default_rng(7)
    return [images(rng.integers(0, 256, (40 + 8 * i, 60), dtype=np.uint8)) for i in range(8)]


def test_concurrent_requests_are_batched_together(live, gate, png, pictures, until):
    with live(max_batch_size=8) as svc:
        g = gate(svc)
        blocker = svc.start("POST", "/classify", content=png, headers=PNG)
        until(g.entered.is_set, "the first request to reach the model")
        waiting = [svc.start("POST", "/classify", content=p, headers=PNG) for p in pictures]
        until(lambda: svc.runtime.batcher.depth == 8, "eight requests in the queue")
        g.open()
        assert all(f.result().status_code == 200 for f in [blocker, *waiting])
        assert g.batches == [1, 8]
        # The dashboard sees the same: one call of 1 image, one call of 8.
        assert svc.metric("ilcs_batch_size_count") == 2 and svc.metric("ilcs_batch_size_sum") == 9
        assert svc.metric("ilcs_batch_size_bucket", le="8.0") - svc.metric("ilcs_batch_size_bucket", le="4.0") == 1
        assert svc.metric("ilcs_queue_wait_seconds_count") == 9 and svc.metric("ilcs_inference_seconds_count") == 2
        timing = waiting[0].result().json()["timing_ms"]
        assert timing["queue_ms"] > 0 and timing["inference_ms"] > 0


def test_a_bad_image_in_a_busy_batch_does_not_disturb_its_neighbours(live, gate, model_calls, png, pictures, until):
    with live(max_batch_size=16) as svc:
        alone = [top(svc.classify(p)) for p in pictures]  # each image's answer on its own
        model_batches = model_calls(svc)
        g = gate(svc)
        blocker = svc.start("POST", "/classify", content=png, headers=PNG)
        until(g.entered.is_set, "the first request to reach the model")
        good = [svc.start("POST", "/classify", content=p, headers=PNG) for p in pictures[:4]]
        cut = pictures[4][: len(pictures[4]) // 2]  # truncated in its pixels: the header passes inspection
        bad = svc.start("POST", "/classify", content=cut, headers=PNG)
        good += [svc.start("POST", "/classify", content=p, headers=PNG) for p in pictures[4:]]
        until(lambda: svc.runtime.batcher.depth == 9, "the nine requests in the queue")
        g.open()
        assert bad.result().status_code == 400
        assert "could not decode the image" in bad.result().json()["detail"]
        for future, expected in zip(good, alone, strict=True):
            assert top(future.result()) == pytest.approx(expected, abs=1e-5)
        assert blocker.result().status_code == 200
        assert g.batches == [1, 9], "the bad image was decoded in the batch of nine"
        assert model_batches == [1, 8], "and left out of the model's batch"


def test_a_model_failure_fails_its_batch_with_500_and_the_service_carries_on(live, png):
    with live() as svc:
        batcher = svc.runtime.batcher
        real = batcher.predict

        def broken(inputs):
            batcher.predict = real  # fail once
            raise RuntimeError("simulated kernel fault")

        batcher.predict = broken
        response = svc.classify(png)
        assert response.status_code == 500 and response.headers["content-type"] == "application/problem+json"
        assert "simulated kernel fault" in response.json()["detail"]
        assert svc.classify(png).status_code == 200


def test_batch_requests_share_the_queue_with_single_requests(live, gate, png, pictures, until):
    with live(max_batch_size=8) as svc:
        g = gate(svc)
        blocker = svc.start("POST", "/classify", content=png, headers=PNG)
        until(g.entered.is_set, "the first request to reach the model")
        files = [("files", (f"{i}.png", p, "image/png")) for i, p in enumerate(pictures[:5])]
        batch = svc.start("POST", "/classify/batch", files=files)
        singles = [svc.start("POST", "/classify", content=p, headers=PNG) for p in pictures[5:]]
        until(lambda: svc.runtime.batcher.depth == 8, "5 + 3 images in the queue")
        g.open()
        assert [r["error"] for r in batch.result().json()["results"]] == [None] * 5
        assert all(s.result().status_code == 200 for s in singles) and blocker.result().status_code == 200
        assert g.batches == [1, 8]
