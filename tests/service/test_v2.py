"""The Open Inference Protocol (KServe v2) routes: the protocol's bodies, /classify's answers, /classify's guards.

In-process, on the tiny checkpoint. Binary tensor data is framed and read by NVIDIA's own
client code (``tritonclient.http``'s ``generate_request_body`` and ``InferResult``), not by
ours; ``test_v2_triton.py`` runs the whole client against a live ``ilcs serve``.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct

import numpy as np
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput, InferResult

from model_zoo.preprocess import Preprocess, decode_gray

INFER = "/v2/models/ilcs/infer"
HEADER = "Inference-Header-Content-Length"
QUICK = {"graph": False, "warmup": False}  # for the apps a test starts for one setting: eager model, no warm-up


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_request(*files: bytes, outputs: list[dict] | None = None) -> dict:
    body: dict = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(files)], "data": list(map(b64, files))}]
    }
    if outputs is not None:
        body["outputs"] = outputs
    return body


def outputs_of(response) -> dict[str, dict]:
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def probabilities_from_classify(result: dict, labels: list[str]) -> dict[str, float]:
    return {t["label"]: t["score"] for t in result["top5"]}


def triton(svc, inputs: list[InferInput], outputs: list[InferRequestedOutput] | None = None, **kw) -> InferResult:
    """One infer call framed and read by the Triton client's own code (binary tensor data when asked)."""
    body, json_size = InferenceServerClient.generate_request_body(inputs, outputs=outputs, **kw)
    headers = {} if json_size is None else {HEADER: str(json_size)}
    r = svc.post(INFER, content=body, headers=headers)
    assert r.status_code == 200, r.text
    return InferResult.from_response_body(r.content, header_length=r.headers.get(HEADER))


@pytest.fixture(scope="module")
def svc(live):
    with live() as running:
        yield running


@pytest.fixture(scope="module")
def card(svc):
    return svc.runtime.engine.card


def prepared(png: bytes, card) -> np.ndarray:
    """The model's input for ``png`` as a client would make it: the card's one preprocessing, 1 x C x S x S."""
    return Preprocess.from_card(card)(decode_gray(png)).contiguous().numpy()


# ---- health and metadata ----------------------------------------------------------------------


def test_health_is_a_status_code_with_an_empty_body(svc):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/ilcs/ready"):
        r = svc.get(path)
        assert (r.status_code, r.content) == (200, b""), path


def test_server_metadata_names_the_binary_data_extension(svc):
    meta = svc.get("/v2").json()
    assert meta["name"] == "ilcs-inspector" and meta["version"] and meta["extensions"] == ["binary_tensor_data"]


def test_model_metadata_comes_from_the_checkpoint_card(svc, card):
    meta = svc.get("/v2/models/ilcs").json()
    assert meta["name"] == card.name and meta["versions"] == [card.version]
    assert {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"]} == {
        "image": ("BYTES", [-1]),
        "tensor": ("FP32", [-1, card.in_chans, card.input_size, card.input_size]),
    }
    assert {t["name"]: (t["datatype"], t["shape"]) for t in meta["outputs"]} == {
        "probabilities": ("FP32", [-1, len(card.labels)]),
        "label": ("BYTES", [-1]),
        "heatmap": ("BYTES", [-1]),
    }
    assert svc.get(f"/v2/models/ilcs/versions/{card.version}").json() == meta
    assert svc.get(f"/v2/models/ilcs/versions/{card.version}/ready").status_code == 200


@pytest.mark.parametrize(
    "path", ["/v2/models/resnet", "/v2/models/ilcs/versions/9.9", "/v2/models/resnet/ready", "/v2/models/x/infer"]
)
def test_an_unknown_model_or_version_is_a_404_in_the_protocols_error_form(svc, path, png):
    r = svc.post(path, json=image_request(png)) if path.endswith("infer") else svc.get(path)
    assert r.status_code == 404 and set(r.json()) == {"error"} and "serves 'ilcs'" in r.json()["error"]


# ---- infer: the same answers as /classify ----------------------------------------------------------


def test_an_image_in_json_gets_classifys_probabilities_and_label(svc, forms, labels):
    for name in ("png", "bmp", "tiff", "rgb"):
        data, media = forms[name]
        expected = svc.classify(data, media).json()
        out = outputs_of(svc.post(INFER, json=image_request(data)))
        assert set(out) == {"probabilities", "label"}, "the heatmap only when asked"
        assert out["probabilities"]["shape"] == [1, len(labels)] and out["probabilities"]["datatype"] == "FP32"
        probabilities = dict(zip(labels, out["probabilities"]["data"], strict=True))
        for label, score in probabilities_from_classify(expected, labels).items():
            assert probabilities[label] == score, name
        assert out["label"] == {"name": "label", "datatype": "BYTES", "shape": [1], "data": [expected["label"]]}


def test_several_images_in_one_request_answer_in_order(svc, images, gray, png, labels):
    files = [png, images(np.fliplr(gray)), images(255 - gray)]
    out = outputs_of(svc.post(INFER, json=image_request(*files)))
    assert out["probabilities"]["shape"] == [3, len(labels)]
    rows = np.array(out["probabilities"]["data"]).reshape(3, len(labels))
    for row, label, data in zip(rows, out["label"]["data"], files, strict=True):
        expected = svc.classify(data).json()
        assert label == expected["label"] and row[labels.index(label)] == pytest.approx(expected["confidence"])
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-5)


def test_the_heatmap_output_is_classifys_png(svc, png):
    for kind in ("gray", "overlay"):
        expected = svc.classify(png, params={"heatmap": kind}).json()["heatmap"]["data"]
        asked = [{"name": "label"}, {"name": "heatmap", "parameters": {"kind": kind}}]
        out = outputs_of(svc.post(INFER, json=image_request(png, outputs=asked)))
        assert set(out) == {"label", "heatmap"}
        assert out["heatmap"]["data"] == [expected], kind


def test_binary_tensor_data_as_the_triton_client_frames_it(svc, png, labels):
    expected = svc.classify(png).json()
    for binary_out in (True, False):
        given = InferInput("image", [1], "BYTES")
        given.set_data_from_numpy(np.array([png], dtype=np.object_), binary_data=True)
        asked = [InferRequestedOutput(n, binary_data=binary_out) for n in ("probabilities", "label", "heatmap")]
        result = triton(svc, [given], asked, request_id="line-7")
        assert result.get_response()["id"] == "line-7"
        probabilities = result.as_numpy("probabilities")
        assert probabilities.dtype == np.float32 and probabilities.shape == (1, len(labels))
        for label, score in probabilities_from_classify(expected, labels).items():
            assert float(probabilities[0, labels.index(label)]) == score
        label = result.as_numpy("label")[0]
        assert (label.decode() if isinstance(label, bytes) else label) == expected["label"]
        heatmap = result.as_numpy("heatmap")[0]
        png_out = heatmap if isinstance(heatmap, bytes) else base64.b64decode(heatmap)
        assert png_out == base64.b64decode(expected["heatmap"]["data"])


def test_without_outputs_the_triton_client_gets_every_default_output_as_binary(svc, png):
    given = InferInput("image", [1], "BYTES")
    given.set_data_from_numpy(np.array([png], dtype=np.object_))
    result = triton(svc, [given])
    assert {o["name"]: o["parameters"]["binary_data_size"] > 0 for o in result.get_response()["outputs"]} == {
        "probabilities": True,
        "label": True,
    }


def test_a_preprocessed_tensor_gets_the_same_answer_as_its_image(svc, card, png, labels):
    expected = svc.classify(png).json()
    tensor = prepared(png, card)
    for binary in (True, False):
        given = InferInput("tensor", list(tensor.shape), "FP32")
        given.set_data_from_numpy(tensor, binary_data=binary)
        result = triton(svc, [given], [InferRequestedOutput("probabilities"), InferRequestedOutput("label")])
        probabilities = result.as_numpy("probabilities")
        for label, score in probabilities_from_classify(expected, labels).items():
            assert float(probabilities[0, labels.index(label)]) == score, binary
        assert result.as_numpy("label")[0] in (expected["label"], expected["label"].encode())


def test_a_tensors_heatmap_is_drawn_at_the_models_input_size(svc, card, png):
    body = {
        "inputs": [
            {"name": "tensor", "datatype": "FP32", "shape": [1, 3, 64, 64], "data": prepared(png, card).tolist()}
        ],
        "outputs": [{"name": "heatmap"}],
    }
    (heatmap,) = outputs_of(svc.post(INFER, json=body))["heatmap"]["data"]
    width, height = struct.unpack(">II", base64.b64decode(heatmap)[16:24])  # the PNG's IHDR
    assert (width, height) == (card.input_size, card.input_size)


def test_the_versioned_route_and_the_request_id(svc, card, png):
    body = {**image_request(png), "id": "plc3-9"}
    r = svc.post(f"/v2/models/ilcs/versions/{card.version}/infer", json=body)
    assert r.status_code == 200 and r.json()["id"] == "plc3-9" and r.json()["model_version"] == card.version
    unnamed = svc.post(INFER, json=image_request(png), headers={"X-Request-ID": "line-3"})
    assert unnamed.json()["id"] == "line-3", "without an id the request's X-Request-ID names the answer"


# ---- bad requests: a 4xx in the protocol's error form, never a 500 --------------------------------

TENSOR_SHAPE = [1, 3, 64, 64]


def tensor_input(**changes) -> dict:
    return {"name": "tensor", "datatype": "FP32", "shape": TENSOR_SHAPE, "data": [0.0] * 3 * 64 * 64, **changes}


def body_of(inputs: list[dict], **extra) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


BAD_JSON = {
    "not JSON": b"\x89PNG...",
    "no inputs": b"{}",
    "inputs not a list": b'{"inputs": 3}',
    "two inputs": body_of([tensor_input(), tensor_input()]),
    "unknown input": body_of([tensor_input(name="pixels")]),
    "image as FP32": body_of([{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]),
    "tensor as BYTES": body_of([tensor_input(datatype="BYTES")]),
    "tensor of the wrong size": body_of([tensor_input(shape=[1, 3, 32, 32], data=[0.0] * 3 * 32 * 32)]),
    "tensor short of data": body_of([tensor_input(data=[0.0, 1.0])]),
    "tensor of strings": body_of([tensor_input(data=["a"] * 3 * 64 * 64)]),
    "tensor with an object": body_of([tensor_input(data=[{"x": 1}])]),
    "tensor without data": body_of([tensor_input(data=None)]),
    "negative dimension": body_of([tensor_input(shape=[-1, 3, 64, 64])]),
    "no images": body_of([{"name": "image", "datatype": "BYTES", "shape": [0], "data": []}]),
    "image not base64": body_of([{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]),
    "image a number": body_of([{"name": "image", "datatype": "BYTES", "shape": [1], "data": [7]}]),
    "count not the shape": body_of([{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["AAAA"]}]),
    "image shape 2-d": body_of([{"name": "image", "datatype": "BYTES", "shape": [1, 2], "data": ["AAAA", "AAAA"]}]),
    "not an image": body_of([{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["AAAA"]}]),
    "unknown output": body_of([tensor_input()], outputs=[{"name": "logits"}]),
    "heatmap kind": body_of([tensor_input()], outputs=[{"name": "heatmap", "parameters": {"kind": "jet"}}]),
    "parameters nested": body_of([tensor_input()], parameters={"a": {"b": 1}}),
}


@pytest.mark.parametrize("body", BAD_JSON.values(), ids=BAD_JSON.keys())
def test_a_bad_json_request_is_a_400_with_the_protocols_error_object(svc, body):
    r = svc.post(INFER, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json" and set(r.json()) == {"error"} and r.json()["error"]


def framed(head: dict, binary: bytes, length: str | None = None) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(head).encode()
    return text + binary, {HEADER: length if length is not None else str(len(text))}


def bytes_input(size: int) -> dict:
    return {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": size}}


BAD_BINARY = {
    "header length not a number": framed({"inputs": [bytes_input(4)]}, b"\0\0\0\0", length="ten"),
    "header length past the body": framed({"inputs": [bytes_input(4)]}, b"\0\0\0\0", length="100000"),
    "size past the data": framed({"inputs": [bytes_input(40)]}, b"\0\0\0\0"),
    "size not an integer": framed({"inputs": [bytes_input(4) | {"parameters": {"binary_data_size": "4"}}]}, b"\0" * 4),
    "bytes left over": framed({"inputs": [bytes_input(4)]}, b"\0\0\0\0" + b"extra"),
    "element cut short": framed({"inputs": [bytes_input(6)]}, struct.pack("<I", 9) + b"ab"),
    "length cut short": framed({"inputs": [bytes_input(2)]}, b"\1\0"),
    "tensor bytes short": framed(
        {"inputs": [tensor_input(data=None, parameters={"binary_data_size": 8})]}, np.zeros(2, "<f4").tobytes()
    ),
    "tensor far out of range": framed(
        {"inputs": [tensor_input(data=None, parameters={"binary_data_size": 3 * 64 * 64 * 4})]},
        np.full(3 * 64 * 64, 3e38, "<f4").tobytes(),
    ),
    "tensor NaN": framed(
        {"inputs": [tensor_input(data=None, parameters={"binary_data_size": 3 * 64 * 64 * 4})]},
        np.full(3 * 64 * 64, np.nan, "<f4").tobytes(),
    ),
}


@pytest.mark.parametrize("case", BAD_BINARY.values(), ids=BAD_BINARY.keys())
def test_bad_binary_tensor_data_is_a_400_with_the_protocols_error_object(svc, case):
    body, headers = case
    r = svc.post(INFER, content=body, headers=headers)
    assert r.status_code == 400 and set(r.json()) == {"error"}, r.text


def test_a_compressed_body_is_refused_with_a_415(svc, png):
    body = gzip.compress(json.dumps(image_request(png)).encode())
    r = svc.post(INFER, content=body, headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 415 and "uncompressed" in r.json()["error"]


def test_one_bad_image_of_several_fails_the_request_and_is_named(svc, png):
    r = svc.post(INFER, json=image_request(png, b"not an image", png))
    assert r.status_code == 400 and r.json()["error"].startswith("image 1: ")


def test_classifys_limits_hold(live, png, bomb):
    with live(max_batch_images=2, max_body_bytes=64 * 1024, max_pixels=1_000_000, **QUICK) as svc:
        assert svc.post(INFER, json=image_request(png, png, png)).status_code == 400  # more images than allowed
        r = svc.post(INFER, json=image_request(bomb(5000, 5000)))
        assert r.status_code == 413 and set(r.json()) == {"error"}
        r = svc.post(INFER, content=b" " * (65 * 1024), headers={"content-type": "application/json"})
        assert r.status_code == 413 and set(r.json()) == {"error"}


def test_routes_and_methods_that_do_not_exist_answer_in_the_protocols_form(svc):
    for method, path, status in (("GET", "/v2/nothing", 404), ("GET", INFER, 405), ("POST", "/v2/health/live", 405)):
        r = svc.request(method, path)
        assert r.status_code == status and set(r.json()) == {"error"}, (method, path)
    assert svc.get("/nothing").headers["content-type"] == "application/problem+json", "elsewhere: problem+json"


# ---- the same keys, readiness, queue and metrics as /classify ---------------------------------------


def test_api_keys_guard_metadata_and_infer_but_not_health(live, png):
    with live(api_keys=["k1"], **QUICK) as svc:
        for r in (svc.get("/v2/models/ilcs"), svc.post(INFER, json=image_request(png))):
            assert r.status_code == 401 and set(r.json()) == {"error"} and r.headers["www-authenticate"]
        assert svc.post(INFER, json=image_request(png), headers={"X-API-Key": "k1"}).status_code == 200
        assert svc.get("/v2/models/ilcs", headers={"Authorization": "Bearer k1"}).status_code == 200
        for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/ilcs/ready"):
            assert svc.get(path).status_code == 200, path


def test_not_ready_is_a_503_with_retry_after(live, png):
    with live(wait_ready=False, **QUICK) as svc:
        svc.runtime.stop_admitting()
        for r in (
            svc.get("/v2/health/ready"),
            svc.get("/v2/models/ilcs/ready"),
            svc.post(INFER, json=image_request(png)),
        ):
            assert r.status_code == 503 and r.headers["retry-after"] and set(r.json()) == {"error"}
        assert svc.get("/v2/health/live").status_code == 200


def test_a_full_queue_refuses_with_a_503_and_retry_after(live, gate, png, until):
    with live(max_batch_size=1, queue_size=1, refusal_delay_s=0, **QUICK) as svc:
        g = gate(svc)
        first = svc.start("POST", INFER, json=image_request(png))
        until(g.entered.is_set, "the first request to reach the model")
        second = svc.start("POST", INFER, json=image_request(png))
        until(lambda: svc.metric("ilcs_queue_depth") == 1, "the second request to queue")
        refused = svc.post(INFER, json=image_request(png))
        assert refused.status_code == 503 and refused.headers["retry-after"] and set(refused.json()) == {"error"}
        g.open()
        assert first.result().status_code == 200 and second.result().status_code == 200


def test_infer_is_counted_like_classify(svc, png):
    route = "/v2/models/{model_name}/infer"
    before = svc.metric("ilcs_requests_total", route=route, status="200")
    predictions = sum(svc.metric("ilcs_predictions_total", label=label) for label in svc.runtime.engine.labels)
    outputs_of(svc.post(INFER, json=image_request(png, png)))
    assert svc.metric("ilcs_requests_total", route=route, status="200") == before + 1
    assert sum(svc.metric("ilcs_predictions_total", label=label) for label in svc.runtime.engine.labels) == (
        predictions + 2
    )
