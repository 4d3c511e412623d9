"""benchmarks.overhead: the near-null model and the bound the report derives (no service is started here)."""

from __future__ import annotations

import pytest

from benchmarks.overhead import Row, format_report, null_checkpoint, payloads


def test_the_near_null_model_is_a_loadable_checkpoint_that_costs_next_to_nothing(tmp_path):
    from model_zoo.checkpoint import load_checkpoint

    model, card = load_checkpoint(null_checkpoint(tmp_path))
    assert card.input_size == 32 and len(card.labels) == 6
    assert sum(p.numel() for p in model.parameters()) < 5_000  # the shipped ILCS: ~200,000


def test_requests_are_complete_http_messages():
    (post,) = payloads([b"\xff\xd8jpeg"], "/classify?heatmap=none")
    assert post.startswith(b"POST /classify?heatmap=none HTTP/1.1\r\n")
    assert b"Content-Length: 6\r\n\r\n\xff\xd8jpeg" in post
    assert payloads([b"x"], "GET /healthz") == [b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"]


def test_report_bounds_the_ratio_by_the_cpu_the_request_path_needs(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    rows = [
        Row("shipped, /classify", raw=100.0, throughput=50.0, server_ms=30.0, client_ms=0.5, errors=0),
        Row("near-null model, /classify", raw=1000.0, throughput=300.0, server_ms=6.0, client_ms=0.5, errors=0),
        Row("near-null model, GET /healthz", raw=None, throughput=3000.0, server_ms=0.3, client_ms=0.1, errors=0),
    ]
    text = format_report("python -m benchmarks.overhead", rows, ["0.1", "0.1", "0.1"])
    # model 20 ms/img (2 cores / 100 img/s); near-null: 6 - 2 = 4 ms besides the model, client 0.5 ms
    assert "| shipped, /classify | 100.0 | 50.0 | 50% | 30.00 | 20.00 | 10.00 | 0.50 | 0 |" in text
    assert "20.0 / (20.0 + 4.0 + 0.50) = **82%**" in text
    assert f"under {20 / 9:.1f} ms of CPU" in text
    assert 20 / (20 + 4 + 0.5) == pytest.approx(0.816, abs=1e-3)
