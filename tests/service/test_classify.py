"""POST /classify and /classify/batch: every input form, and what an answer holds."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

LABELS = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture(scope="module")
def svc(live):
    with live() as running:
        yield running


def scores(response) -> list[float]:
    """The answer's scores in label order (the tiny model has six classes, so top5 misses one)."""
    assert response.status_code == 200, response.text
    by_label = {t["label"]: t["score"] for t in response.json()["top5"]}
    return [by_label.get(label, 0.0) for label in LABELS]


@pytest.fixture(scope="module")
def reference(svc, png):
    return scores(svc.classify(png))


@pytest.mark.parametrize("form", ["png", "bmp", "tiff", "png16", "rgb", "rgba", "palette", "raw_frame"])
def test_every_lossless_form_of_one_image_gets_the_same_answer(svc, forms, gray, reference, form):
    data, media = forms[form]
    params = {"width": gray.shape[1], "height": gray.shape[0]} if form == "raw_frame" else None
    response = svc.classify(data, media, params=params)
    assert scores(response) == pytest.approx(reference, abs=1e-6)
    body = response.json()
    assert (body["width"], body["height"]) == (80, 48)


def test_multipart_field_file(svc, png, reference):
    response = svc.post("/classify", files={"file": ("strip.png", png, "image/png")})
    assert scores(response) == pytest.approx(reference, abs=1e-6)


def test_jpeg_body(svc, gray, images):
    response = svc.classify(images(gray, "JPEG", quality=95), "image/jpeg")
    assert response.status_code == 200
    assert response.json()["label"] in LABELS


@pytest.mark.parametrize(
    ("mode", "fmt", "media"),
    [
        ("CMYK", "JPEG", "image/jpeg"),
        ("1", "PNG", "image/png"),
        ("I;16", "TIFF", "image/tiff"),
        ("LA", "PNG", "image/png"),
    ],
)
def test_other_image_modes_are_converted_too(svc, gray, images, mode, fmt, media):
    img = Image.fromarray(gray.astype(np.uint16) * 257) if mode == "I;16" else Image.fromarray(gray).convert(mode)
    response = svc.classify(images(img, fmt), media)
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (80, 48)


def test_thin_images_up_to_the_aspect_limit_are_fine_and_thinner_ones_refused(svc):
    for width, height in ((512, 32), (32, 512), (100, 40)):  # ILCS_MAX_ASPECT is 16
        frame = bytes(range(256)) * (width * height // 256) + bytes(width * height % 256)
        response = svc.classify(frame, "application/octet-stream", params={"width": width, "height": height})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["width"], body["height"]) == (width, height)
        # A side of at least twice the model's input (64 here) is reduced by a whole factor before the model.
        assert body["heatmap"]["width"] == (width if width < 128 else width // (width // 64))
    for width, height in ((5000, 1), (1, 3000), (600, 32)):
        frame = bytes(width * height)
        response = svc.classify(frame, "application/octet-stream", params={"width": width, "height": height})
        assert response.status_code == 422, response.text
        assert "ILCS_MIN_SIDE" in response.json()["detail"] or "ILCS_MAX_ASPECT" in response.json()["detail"]


def test_media_type_aliases_and_parameters_are_understood(svc, gray, images):
    assert svc.classify(images(gray, "JPEG"), "image/jpg").status_code == 200
    assert svc.classify(images(gray, "BMP"), "image/x-ms-bmp").status_code == 200
    assert svc.classify(images(gray), "Image/PNG; charset=binary").status_code == 200


def test_answer_holds_label_top5_model_and_timing(svc, png):
    body = svc.classify(png).json()
    top5 = body["top5"]
    assert [t["label"] for t in top5] == [t["label"] for t in sorted(top5, key=lambda t: -t["score"])]
    assert len(top5) == 5 and len({t["label"] for t in top5}) == 5
    assert body["label"] == top5[0]["label"] and body["confidence"] == top5[0]["score"]
    assert LABELS[body["index"]] == body["label"]
    assert body["low_confidence"] == (body["confidence"] < 0.5)
    card = svc.get("/model").json()
    assert body["model"] == {"name": card["name"], "version": card["version"], "sha256": card["weights_sha256"]}
    timing = body["timing_ms"]
    assert 0 <= timing["queue_ms"] <= timing["total_ms"] and 0 < timing["inference_ms"] <= timing["total_ms"]


def test_request_id_is_echoed_or_made(svc, png):
    response = svc.classify(png, headers={"X-Request-ID": "plc-7.frame-000123"})
    assert response.json()["request_id"] == "plc-7.frame-000123" == response.headers["x-request-id"]
    made = svc.classify(png)
    assert made.json()["request_id"] == made.headers["x-request-id"] and len(made.headers["x-request-id"]) >= 16
    odd = svc.classify(png, headers={"X-Request-ID": "has spaces and <html>"})
    assert odd.json()["request_id"] != "has spaces and <html>"


def _png(heatmap: dict) -> Image.Image:
    assert heatmap["encoding"] == "png"
    img = Image.open(io.BytesIO(base64.b64decode(heatmap["data"])))
    assert img.format == "PNG"
    return img


def test_heatmap_is_an_8bit_gray_png_at_the_input_size(svc, png):
    heatmap = svc.classify(png).json()["heatmap"]
    img = _png(heatmap)
    assert img.mode == "L" and img.size == (80, 48) == (heatmap["width"], heatmap["height"])
    arr = np.asarray(img)
    assert arr.min() == 0 and arr.max() == 255, "min-max normalised per image"


def test_heatmap_overlay_is_a_colour_png_and_none_skips_it(svc, png):
    overlay = svc.post("/classify?heatmap=overlay", content=png, headers={"content-type": "image/png"}).json()
    img = _png(overlay["heatmap"])
    assert overlay["heatmap"]["kind"] == "overlay" and img.mode == "RGB" and img.size == (80, 48)
    none = svc.post("/classify?heatmap=none", content=png, headers={"content-type": "image/png"}).json()
    assert none["heatmap"] is None


def test_heatmap_of_a_large_raw_frame_has_the_size_of_the_frame_reduced_for_the_model(svc):
    frame = np.random.default_rng(1).integers(0, 256, (300, 1000), dtype=np.uint8)
    body = svc.classify(frame.tobytes(), "application/octet-stream", params={"width": 1000, "height": 300}).json()
    assert (body["width"], body["height"]) == (1000, 300)
    # Sides of at least twice the model's input (64 here) are reduced by whole factors: 1000 / 15, 300 / 4.
    assert _png(body["heatmap"]).size == (67, 75) == (body["heatmap"]["width"], body["heatmap"]["height"])
    small = np.random.default_rng(1).integers(0, 256, (100, 120), dtype=np.uint8)
    body = svc.classify(small.tobytes(), "application/octet-stream", params={"width": 120, "height": 100}).json()
    assert _png(body["heatmap"]).size == (120, 100), "an image under twice the input keeps its size"


def test_batch_answers_each_image_in_order_and_a_bad_one_alone(svc, forms, reference):
    files = [
        ("files", ("a.png", forms["png"][0], "image/png")),
        ("files", ("broken.png", forms["png"][0][:50], "image/png")),
        ("files", ("c.tiff", forms["tiff"][0], "image/tiff")),
    ]
    response = svc.post("/classify/batch", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert [r["filename"] for r in results] == ["a.png", "broken.png", "c.tiff"]
    assert results[1]["result"] is None and results[1]["error"]["status"] == 400
    for r in (results[0], results[2]):
        assert r["error"] is None
        got = {t["label"]: t["score"] for t in r["result"]["top5"]}
        assert [got.get(label, 0.0) for label in LABELS] == pytest.approx(reference, abs=1e-5)
    assert results[2]["result"]["request_id"] == f"{body['request_id']}/2"


def test_model_card_route(svc):
    card = svc.get("/model").json()
    assert card["labels"] == LABELS and card["input_size"] == 64 and len(card["weights_sha256"]) == 64
    assert card["serving"]["device"] == "cpu" and card["serving"]["max_batch_size"] == 8


def test_openapi_documents_every_input_form(svc):
    spec = svc.get("/openapi.json").json()
    content = spec["paths"]["/classify"]["post"]["requestBody"]["content"]
    assert {
        "multipart/form-data",
        "image/jpeg",
        "image/png",
        "image/bmp",
        "image/tiff",
        "application/octet-stream",
    } <= set(content)
    assert {"400", "401", "413", "415", "422", "503", "504"} <= set(spec["paths"]["/classify"]["post"]["responses"])
