"""NVIDIA's Triton HTTP client, which nobody here wrote, against a live ``ilcs serve``: it answers as /classify does.

``ilcs serve`` runs as a person starts it (the shipped checkpoint, API keys on) on a free
loopback port; ``tritonclient.http.InferenceServerClient`` checks health, reads the
metadata and infers with both inputs (encoded image files as ``BYTES``, the preprocessed
``FP32`` tensor), each sent both ways (binary tensor data, the client's default, and JSON),
on the repository's sample images. Every answer must equal ``/classify``'s for the same image.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from model_zoo.checkpoint import load_checkpoint
from model_zoo.preprocess import Preprocess, decode_gray
from tests.live_server import ROOT, ilcs_serve

KEY = "line-3-key"
SAMPLES = sorted(p for p in (ROOT / "samples").iterdir() if p.suffix in (".png", ".bmp"))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[InferenceServerClient, str]]:
    log = tmp_path_factory.mktemp("v2") / "serve.log"
    with ilcs_serve(log, threads="1", max_batch_size="4", api_keys=KEY) as url:
        client = InferenceServerClient(url.removeprefix("http://"), network_timeout=120.0)
        try:
            yield client, url
        finally:
            client.close()


@pytest.fixture(scope="module")
def card():
    return load_checkpoint(ROOT / "model_zoo" / "checkpoints" / "ilcs_neu")[1]


def auth() -> dict[str, str]:
    """The key header, a new dict each call: the Triton client adds its own headers to the dict it is given."""
    return {"X-API-Key": KEY}


def classify(url: str, path: Path) -> dict:
    r = httpx.post(f"{url}/classify", files={"file": (path.name, path.read_bytes())}, headers=auth(), timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def assert_same_answer(probabilities: np.ndarray, label: bytes | str, expected: dict, labels: list[str]) -> None:
    assert text(label) == expected["label"]
    for top in expected["top5"]:
        assert float(probabilities[labels.index(top["label"])]) == top["score"], top["label"]


def test_health_and_metadata(served, card):
    client, _ = served
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(card.name) and client.is_model_ready(card.name, card.version)
    assert not client.is_model_ready("resnet50")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata(card.name, headers=auth())
    assert meta["versions"] == [card.version]
    assert {t["name"]: t["shape"] for t in meta["inputs"]} == {"image": [-1], "tensor": [-1, 3, 160, 160]}
    assert {t["name"]: t["shape"] for t in meta["outputs"]}["probabilities"] == [-1, len(card.labels)]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_image_files_as_bytes_answer_as_classify(served, card, binary):
    client, url = served
    for path in SAMPLES:
        data = path.read_bytes()
        given = InferInput("image", [1], "BYTES")
        # In JSON a BYTES element is a string: the file goes as base64 (the client sends raw bytes only as binary).
        given.set_data_from_numpy(np.array([data if binary else base64.b64encode(data)], dtype=np.object_), binary)
        asked = [InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "label", "heatmap")]
        result = client.infer(card.name, [given], outputs=asked, headers=auth())
        expected = classify(url, path)
        assert_same_answer(result.as_numpy("probabilities")[0], result.as_numpy("label")[0], expected, card.labels)
        heatmap = result.as_numpy("heatmap")[0]
        png = heatmap if binary else base64.b64decode(heatmap)
        assert png == base64.b64decode(expected["heatmap"]["data"]), path.name


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_preprocessed_tensor_answers_as_classify(served, card, binary):
    client, url = served
    prepare = Preprocess.from_card(card)
    for path in SAMPLES:
        tensor = prepare(decode_gray(path.read_bytes())).contiguous().numpy()
        given = InferInput("tensor", list(tensor.shape), "FP32")
        given.set_data_from_numpy(tensor, binary_data=binary)
        result = client.infer(card.name, [given], model_version=card.version, headers=auth())  # default outputs
        expected = classify(url, path)
        assert_same_answer(result.as_numpy("probabilities")[0], result.as_numpy("label")[0], expected, card.labels)


def test_every_sample_in_one_request(served, card):
    client, url = served
    files = np.array([p.read_bytes() for p in SAMPLES], dtype=np.object_)
    given = InferInput("image", [len(files)], "BYTES")
    given.set_data_from_numpy(files)
    result = client.infer(card.name, [given], headers=auth())
    probabilities, labels = result.as_numpy("probabilities"), result.as_numpy("label")
    assert probabilities.shape == (len(SAMPLES), len(card.labels))
    for row, label, path in zip(probabilities, labels, SAMPLES, strict=True):
        expected = classify(url, path)
        assert text(label) == expected["label"]  # batched with others: the same up to float rounding
        for top in expected["top5"]:
            assert float(row[card.labels.index(top["label"])]) == pytest.approx(top["score"], abs=1e-6)


def test_the_client_reports_the_services_errors(served, card):
    client, _ = served
    given = InferInput("image", [1], "BYTES")
    given.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as bad:
        client.infer(card.name, [given], headers=auth())
    assert bad.value.status() == "400" and "could not decode the image" in bad.value.message()
    with pytest.raises(InferenceServerException) as unauthorised:
        client.infer(card.name, [given])
    assert unauthorised.value.status() == "401" and "API key" in unauthorised.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("resnet50", headers=auth())
    assert unknown.value.status() == "404"
