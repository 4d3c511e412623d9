"""Start-up (load, calibrate, warm up, then ready), shutdown, a bad checkpoint, and the metrics contract."""

from __future__ import annotations

import threading

import pytest

from model_zoo.checkpoint import CheckpointError, read_card
from service.inference import Engine

PNG = {"content-type": "image/png"}

# The contract with the Grafana dashboard: name as exposed -> its "# TYPE" in the text format.
CONTRACT = {
    "ilcs_requests_total": "counter",
    "ilcs_request_duration_seconds": "histogram",
    "ilcs_queue_wait_seconds": "histogram",
    "ilcs_queue_depth": "gauge",
    "ilcs_batch_size": "histogram",
    "ilcs_inference_seconds": "histogram",
    "ilcs_predictions_total": "counter",
    "ilcs_confidence": "histogram",
    "ilcs_low_confidence_total": "counter",
    "ilcs_model_info": "gauge",
}


def test_not_ready_until_warmed_up(live, gate, png, monkeypatch, until):
    release, warming = threading.Event(), threading.Event()
    real_warmup = Engine.warmup

    def slow_warmup(self, max_batch_size):
        warming.set()
        release.wait(60)
        return real_warmup(self, max_batch_size)

    monkeypatch.setattr(Engine, "warmup", slow_warmup)
    with live(wait_ready=False) as svc:
        until(warming.is_set, "the warm-up to start")
        assert svc.get("/healthz").status_code == 200, "alive while warming up"
        for response in (svc.get("/readyz"), svc.classify(png)):
            assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
            assert "warming up" in response.json()["detail"]
        g = gate(svc)
        g.open()
        release.set()
        until(lambda: svc.get("/readyz").status_code == 200, "ready after the warm-up")
        assert svc.classify(png).status_code == 200
        assert g.batches == [1], "the request refused while warming up never reached the model"


def test_warm_up_runs_every_batch_size(live, monkeypatch):
    sizes = []
    real_predict = Engine.predict
    monkeypatch.setattr(Engine, "predict", lambda self, inputs: sizes.append(len(inputs)) or real_predict(self, inputs))
    with live(max_batch_size=5):
        assert sizes == [1, 2, 3, 4, 5]


def test_stopping_answers_queued_requests_503(live, gate, png, until):
    with live(max_batch_size=1) as svc:
        g = gate(svc)
        running = svc.start("POST", "/classify", content=png, headers=PNG)
        until(g.entered.is_set, "an image in the model")
        queued = [svc.start("POST", "/classify", content=png, headers=PNG) for _ in range(2)]
        until(lambda: svc.runtime.batcher.depth == 2, "two images queued")
        svc.call(svc.runtime.batcher.stop())
        g.open()
        for future in (running, *queued):
            response = future.result()
            assert response.status_code == 503 and "shutting down" in response.json()["detail"]


def test_a_missing_or_tampered_checkpoint_stops_the_start_up(live, tiny_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="not found"), live(checkpoint=tmp_path / "missing"):
        pass
    tampered = tmp_path / "tampered"
    tampered.with_suffix(".json").write_bytes(tiny_checkpoint.with_suffix(".json").read_bytes())
    weights = bytearray(tiny_checkpoint.with_suffix(".safetensors").read_bytes())
    weights[-1] ^= 0xFF
    tampered.with_suffix(".safetensors").write_bytes(bytes(weights))
    with pytest.raises(CheckpointError, match="sha256"), live(checkpoint=tampered):
        pass


def test_metrics_carry_the_dashboard_contract(live, png, tiny_checkpoint):
    with live(low_confidence_threshold=1.0) as svc:  # every answer counts as low-confidence
        label = svc.classify(png).json()["label"]
        response = svc.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    for name, kind in CONTRACT.items():
        assert f"# TYPE {name} {kind}\n" in text, name
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert f'ilcs_predictions_total{{label="{label}"}} 1.0' in text
    assert "ilcs_low_confidence_total 1.0" in text
    assert 'ilcs_requests_total{route="/classify",status="200"} 1.0' in text
    assert 'ilcs_request_duration_seconds_count{route="/classify"} 1.0' in text
    assert 'ilcs_batch_size_bucket{le="64.0"}' in text
    (info,) = [line for line in text.splitlines() if line.startswith("ilcs_model_info{")]
    sha256 = read_card(tiny_checkpoint).weights_sha256
    assert f'sha256="{sha256}"' in info and 'device="cpu"' in info and 'name="ilcs"' in info and 'version="0"' in info
    assert info.endswith(" 1.0")


def test_low_confidence_is_counted_against_the_threshold(live, png):
    with live(low_confidence_threshold=0.0) as svc:
        body = svc.classify(png).json()
        assert body["low_confidence"] is False and svc.metric("ilcs_low_confidence_total") == 0
        assert svc.metric("ilcs_confidence_count") == 1


def test_each_app_has_its_own_registry(live, png):
    with live() as one, live() as two:
        one.classify(png)
        assert one.metric("ilcs_batch_size_count") == 1 and two.metric("ilcs_batch_size_count") == 0


@pytest.mark.parametrize(
    ("cores", "workers", "threads", "plan"),
    [
        (2, None, None, (2, 1)),
        (8, None, None, (8, 1)),
        (8, None, 4, (2, 4)),
        (8, 2, None, (2, 4)),
        (1, None, None, (1, 1)),
    ],
)
def test_the_cpu_is_shared_out_between_model_workers(monkeypatch, cores, workers, threads, plan):
    import torch

    from service.inference import plan_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    assert plan_workers(torch.device("cpu"), workers, threads) == plan


def test_two_model_workers_serve_two_batches_at_once(live, gate, png, until):
    with live(model_workers=2, max_batch_size=1) as svc:
        assert svc.get("/model").json()["serving"]["workers"] == 2
        g = gate(svc)
        first = [svc.start("POST", "/classify", content=png, headers=PNG) for _ in range(2)]
        until(lambda: len(g.batches) == 2, "both workers to hold a batch")
        g.open()
        assert [f.result().status_code for f in first] == [200, 200]
