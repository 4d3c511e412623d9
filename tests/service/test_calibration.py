"""Calibration plans the batcher by the service's end-to-end throughput, not by the bare model's."""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

import pytest

from service import calibration, pipeline
from service.closed_loop import measure_service, sample_images
from service.inference import Engine
from service.schemas import CalibrationRow

SIZES = (1, 2, 4)


@pytest.fixture
def answers_cost_more_in_big_batches(monkeypatch):
    """A model call of 100 ms whatever its size, and answers that cost 100 ms each in batches over 2 images.

    The bare model is then fastest per image at batch 4 and the service at batch 2 (20 images/s against
    10 at batch 1 and 8 at batch 4): the heatmap and answer of a big batch (here, by construction)
    outweigh what the model saves. Sleeps, so the margins hold on a loaded machine.
    """
    batch = threading.local()
    predict, render = Engine.predict, pipeline.render_heatmap

    def slow_predict(self, inputs):
        batch.size = len(inputs)
        time.sleep(0.1)
        return predict(self, inputs)

    def costly_render(*args, **kwargs):
        if getattr(batch, "size", 1) > 2:
            time.sleep(0.1)
        return render(*args, **kwargs)

    monkeypatch.setattr(Engine, "predict", slow_predict)
    monkeypatch.setattr(pipeline, "render_heatmap", costly_render)


def test_the_plan_follows_the_end_to_end_measure_not_the_bare_model(live, answers_cost_more_in_big_batches):
    with live(calibrate=True, max_batch_size=4, calibration_seconds=0.3, warmup=False) as svc:
        serving = svc.get("/model").json()["serving"]
        bare = calibration.choose(calibration.measure(svc.runtime.engine, SIZES, min_seconds=0.2))
        assert bare.batch_size == 4, "the bare model alone is fastest per image at the largest batch"
        rows = serving["calibration"]
        assert svc.runtime.batcher.max_batch_size == serving["max_batch_size"] == 2, rows
        assert [(r["measure"], r["batch_size"]) for r in rows] == [("service", s) for s in SIZES]
        best = max(rows, key=lambda r: r["images_per_s"])
        assert best["batch_size"] == 2 and serving["max_delay_ms"] == best["delay_ms"]


def test_calibration_at_start_up_shows_the_end_to_end_table_and_serves(live, png):
    with live(calibrate=True, calibration_seconds=0.01, max_batch_size=4) as svc:
        serving = svc.get("/model").json()["serving"]
        rows = serving["calibration"]
        assert [(r["measure"], r["batch_size"]) for r in rows] == [("service", 1), ("service", 2), ("service", 4)]
        for r in rows:
            assert r["images_per_s"] > 0 and r["ms_per_batch"] > 0
            assert 1 <= r["mean_batch"] <= r["batch_size"] and 1.0 <= r["delay_ms"] <= 10.0
        assert svc.runtime.batcher.max_batch_size == serving["max_batch_size"] in (1, 2, 4)
        assert svc.classify(png).status_code == 200
        # calibration's images are not the service's traffic
        assert sum(svc.metric("ilcs_predictions_total", label=lab) for lab in svc.runtime.engine.labels) == 1


def test_a_model_failing_while_calibrating_leaves_the_service_unready_saying_why(live, monkeypatch):
    def broken(self, inputs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(Engine, "predict", broken)
    with live(calibrate=True, calibration_seconds=0.01, max_batch_size=2, wait_ready=False) as svc:
        for _ in range(600):
            if "start-up failed" in svc.get("/readyz").text:
                break
            time.sleep(0.05)
        answer = svc.get("/readyz")
    assert answer.status_code == 503 and "kernel exploded" in answer.text


def test_end_to_end_measure_answers_every_size_with_the_smallest_ones_delay(settings):
    chosen = settings(calibration_seconds=0.01)
    engine = Engine.from_settings(chosen)
    rows = asyncio.run(measure_service(engine, chosen, (1, 3), 0.01, images=sample_images(2)))
    assert [(r.measure, r.batch_size) for r in rows] == [("service", 1), ("service", 3)]
    assert rows[0].delay_ms == rows[1].delay_ms == round(min(max(rows[0].ms_per_batch / 2, 1.0), 10.0), 1)


def test_a_plan_whose_batch_outlasts_the_admission_wait_is_not_chosen():
    rows = [
        CalibrationRow(measure="service", batch_size=b, delay_ms=2.0, images_per_s=ips, ms_per_batch=ms)
        for b, ips, ms in ((1, 40.0, 25.0), (8, 60.0, 4000.0))
    ]
    assert calibration.choose(rows).batch_size == 8
    assert calibration.choose(rows, max_batch_ms=3000.0) == calibration.Plan(1, 2.0)


def test_bench_calibrate_prints_the_end_to_end_pick(settings, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(calibration, "get_settings", lambda: settings(calibration_seconds=0.01))
    monkeypatch.setattr(calibration, "DEFAULT_SIZES", (1, 2))
    out = tmp_path / "calibration.md"
    calibration.calibrate_cli(argparse.Namespace(out=str(out), load=False))
    text = capsys.readouterr().out
    assert "end to end on torch" in text and "(chosen)" in text and "ILCS_MAX_BATCH_SIZE=" in text
    assert out.read_text() == text
