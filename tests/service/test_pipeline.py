"""service.pipeline.BatchProcessor: one batch of jobs in the model thread, each image failing alone."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from service.batcher import BatchFailed
from service.errors import BadImage, InferenceFailed
from service.inference import Engine
from service.intake import Header, ImageLimits, decode
from service.metrics import Metrics
from service.pipeline import Answer, BatchProcessor, Job, Upload, batch_failed, inspect_upload

LIMITS = ImageLimits(max_pixels=1_000_000, max_side=4096, min_side=8, max_aspect=16)


def job(upload: Upload, heatmap: str = "gray") -> Job:
    """A job as ``classify_uploads`` queues it; an upload whose header is refused gets a header it claims."""
    try:
        header = inspect_upload(upload, LIMITS)
    except Exception:  # noqa: BLE001 - the batch function must still refuse it when it decodes
        header = Header("PNG", 80, 48)
    return Job(upload, header, heatmap)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> Engine:
    return Engine.load(tiny_checkpoint, "cpu", threads=1, workers=1)


@pytest.fixture
def processor(engine) -> BatchProcessor:
    return BatchProcessor(engine, Metrics())


def sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def test_every_job_gets_the_answer_it_would_get_alone(processor, engine, png, gray):
    frame = Upload(gray.tobytes(), width=gray.shape[1], height=gray.shape[0])
    jobs = [job(Upload(png), "gray"), job(frame, "none"), job(Upload(png), "overlay")]
    answers = processor(jobs)
    alone = engine.predict([engine.prepare(decode(png, inspect_upload(Upload(png), LIMITS), 64)[0])])[0]
    assert all(isinstance(a, Answer) for a in answers)
    for answer in answers:
        np.testing.assert_allclose(answer.prediction.scores, alone.scores, atol=1e-5)
        assert (answer.height, answer.width) == gray.shape
    gray_map, no_map, overlay = (a.heatmap for a in answers)
    assert no_map is None and gray_map.kind == "gray" and overlay.kind == "overlay"
    picture = Image.open(io.BytesIO(base64.b64decode(overlay.data)))
    assert picture.mode == "RGB" and picture.size == (gray.shape[1], gray.shape[0])


def test_an_image_that_fails_to_decode_gets_its_error_and_stays_out_of_the_model(processor, engine, model_calls, png):
    sizes = model_calls(engine)
    answers = processor([job(Upload(png), "gray"), job(Upload(png[:60]), "gray"), job(Upload(png), "none")])
    assert sizes == [2], "the model saw the two good images only"
    assert isinstance(answers[0], Answer) and isinstance(answers[2], Answer)
    assert isinstance(answers[1], BadImage) and "could not decode" in str(answers[1])
    assert (
        sample(processor.metrics, "ilcs_batch_size_sum") == 2
        and sample(processor.metrics, "ilcs_batch_size_count") == 1
    )


def test_a_batch_of_only_bad_images_never_calls_the_model(processor, engine, model_calls):
    calls = model_calls(engine)
    answers = processor([job(Upload(b""), "gray"), job(Upload(b"not an image"), "gray")])
    assert calls == []
    assert all(isinstance(a, BadImage) for a in answers)
    assert sample(processor.metrics, "ilcs_batch_size_count") == 0


def test_a_model_failure_fails_the_images_in_the_model_and_keeps_the_decoding_errors(
    processor, engine, png, monkeypatch
):
    def broken(inputs):
        raise RuntimeError("simulated kernel fault")

    monkeypatch.setattr(engine, "predict", broken)
    answers = processor([job(Upload(png), "gray"), job(Upload(b"\x00" * 10), "gray"), job(Upload(png), "gray")])
    assert isinstance(answers[1], BadImage)
    for failed in (answers[0], answers[2]):
        assert isinstance(failed, InferenceFailed)
        assert "batch of 2 images" in str(failed) and "simulated kernel fault" in str(failed)
    assert sample(processor.metrics, "ilcs_batch_failures_total") == 1


def test_a_model_returning_too_few_outputs_fails_its_batch_once(processor, engine, png, monkeypatch):
    real = engine.predict
    monkeypatch.setattr(engine, "predict", lambda inputs: real(inputs)[:-1])
    answers = processor([job(Upload(png), "gray"), job(Upload(png), "gray")])
    assert all(isinstance(a, InferenceFailed) and "1 outputs for a batch of 2 inputs" in str(a) for a in answers)
    assert sample(processor.metrics, "ilcs_batch_failures_total") == 1


def test_a_fault_in_the_batch_function_itself_fails_its_batch_and_is_counted(processor, png, monkeypatch):
    def broken(*args):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(processor, "_answer", broken)
    answers = processor([job(Upload(png), "gray"), job(Upload(png), "none")])
    assert all(isinstance(a, InferenceFailed) and "batch of 2 images" in str(a) for a in answers)
    assert "simulated bug" in str(answers[0])
    assert sample(processor.metrics, "ilcs_batch_failures_total") == 1


def test_a_batch_the_batcher_failed_reaches_the_client_as_inference_failed():
    failed = batch_failed(BatchFailed(3, RuntimeError("simulated")))
    assert isinstance(failed, InferenceFailed) and failed.status == 500
    assert str(failed) == "the model failed on the batch of 3 images this one was in (simulated); retry the request"


def test_a_heatmap_that_cannot_be_rendered_fails_its_image_alone(processor, png, monkeypatch):
    from service import pipeline

    real = pipeline.render_heatmap

    def fails_on_overlays(attention, image, kind, method, **style):
        if kind == "overlay":
            raise MemoryError("simulated")
        return real(attention, image, kind, method, **style)

    monkeypatch.setattr(pipeline, "render_heatmap", fails_on_overlays)
    gray, overlay, none = processor([job(Upload(png), "gray"), job(Upload(png), "overlay"), job(Upload(png), "none")])
    assert isinstance(gray, Answer) and isinstance(none, Answer)
    assert isinstance(overlay, InferenceFailed) and "heatmap=none" in str(overlay)


def test_the_heatmap_is_shown_with_the_cards_blur_and_gamma(engine, png, monkeypatch):
    from service import pipeline

    seen = []
    monkeypatch.setattr(pipeline, "render_heatmap", lambda *a, **style: seen.append(style))
    card = engine.card.model_copy(update={"heatmap_blur": 0.75, "heatmap_gamma": 1.5})
    monkeypatch.setattr(engine, "card", card)
    BatchProcessor(engine, Metrics())([job(Upload(png), "gray")])
    assert seen == [{"blur": 0.75, "gamma": 1.5}]


@pytest.mark.parametrize(
    ("mode", "subsampling"), [("L", 0), ("RGB", 0), ("RGB", 1), ("RGB", 2)], ids=["gray", "444", "422", "420"]
)
def test_a_plain_jpeg_is_decoded_once_into_pillows_pixels_and_refused_when_cut(gray, mode, subsampling, monkeypatch):
    from service import intake

    picture = Image.fromarray(np.dstack([gray, np.roll(gray, 7, 1), 255 - gray]) if mode == "RGB" else gray)
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=90, subsampling=subsampling)
    data = buf.getvalue()
    header = intake.inspect(data, LIMITS)
    assert intake._plain_jpeg(data, header, 64) is not None
    once = decode(data, header, 64)
    monkeypatch.setattr(intake, "_plain_jpeg", lambda *args: None)  # the strict pass, then Pillow
    twice = decode(data, header, 64)
    assert once[1:] == twice[1:] and np.array_equal(once[0], twice[0])
    monkeypatch.undo()
    scan = data.index(b"\xff\xda")
    with pytest.raises(BadImage):
        decode(data[: scan + (len(data) - scan) // 3] + b"\xff\xd9", header, 64)  # cut, closed with EOI
