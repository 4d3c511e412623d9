"""ILCS_BACKEND: torch, ONNX Runtime and OpenVINO answer alike; auto measures them all and serves the fastest.

Parity tolerances (fp32 everywhere on the CPU): top-1 identical, softmax probabilities within
``PROB_ATOL`` and the heatmap's map within ``MAP_ATOL`` of torch's, on the same prepared images.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from model_zoo import onnx_export
from service import backends
from service.backends import BackendUnavailable, available_backends, check_backend
from service.inference import Engine

PROB_ATOL = 1e-4
MAP_ATOL = 1e-4
ONNX_BACKENDS = [b for b in available_backends(torch.device("cpu")) if b != "torch"]
needs_onnx = pytest.mark.skipif(not ONNX_BACKENDS, reason="no ONNX backend installed (the dev extra has both)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_engine(tiny_checkpoint):
    return Engine.load(tiny_checkpoint, "cpu", threads=1, workers=1, graph=True, backend="torch")


@pytest.fixture(scope="module", params=ONNX_BACKENDS)
def other(request, torch_engine, cache):
    return _other(torch_engine, request.param, cache)


def _other(engine: Engine, name: str, cache) -> Engine:
    return Engine(engine.model, engine.card, engine.device, workers=2, graph=False, backend=name, cache_dir=cache)


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48 + 8 * (i % 3), 80), dtype=np.uint8) for i in range(n)]


def test_torch_is_always_available_and_listed_first():
    assert available_backends(torch.device("cpu"))[0] == "torch"
    check_backend("torch")
    check_backend("auto")


def test_an_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(BackendUnavailable, match="choose auto, torch, onnxruntime, openvino"):
        check_backend("tensorrt")


@pytest.mark.parametrize(("name", "extra"), [("onnxruntime", "onnx"), ("openvino", "openvino")])
def test_a_backend_not_installed_is_a_clear_error_naming_the_extra(monkeypatch, tiny_checkpoint, name, extra):
    monkeypatch.setattr(backends, "_installed", lambda module: module not in ("onnxruntime", "openvino"))
    with pytest.raises(
        BackendUnavailable, match=rf"ILCS_BACKEND={name} needs .*pip install 'ilcs-inspector\[{extra}\]'"
    ):
        Engine.load(tiny_checkpoint, "cpu", threads=1, workers=1, backend=name)
    assert available_backends(torch.device("cpu")) == ["torch"]


def test_openvino_is_cpu_only():
    with pytest.raises(BackendUnavailable, match="CPU only"):
        check_backend("openvino", torch.device("cuda", 0))
    assert "openvino" not in available_backends(torch.device("cuda", 0))


@needs_onnx
@pytest.mark.parametrize("batch", [1, 7])
def test_every_backend_gives_torchs_top1_probabilities_and_map(torch_engine, other, batch):
    inputs = [torch_engine.prepare(img) for img in _images(batch, seed=batch)]
    for ref, got in zip(torch_engine.predict(inputs), other.predict(inputs), strict=True):
        assert got.scores.argmax() == ref.scores.argmax()
        np.testing.assert_allclose(got.scores, ref.scores, atol=PROB_ATOL)
        np.testing.assert_allclose(got.attention, ref.attention, atol=MAP_ATOL)
        assert got.scores.dtype == np.float32 and got.attention.shape == ref.attention.shape


@needs_onnx
def test_model_workers_may_call_a_backend_at_once(torch_engine, other):
    inputs = [torch_engine.prepare(img) for img in _images(3, seed=9)]
    expected = [p.scores for p in torch_engine.predict(inputs)]
    results: list = [None] * 4

    def call(i: int) -> None:
        results[i] = [p.scores for _ in range(5) for p in other.predict(inputs)][-3:]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for got in results:
        np.testing.assert_allclose(np.stack(got), np.stack(expected), atol=PROB_ATOL)


@needs_onnx
def test_the_graph_is_exported_once_per_weights_and_reused(torch_engine, cache, monkeypatch):
    name = ONNX_BACKENDS[0]
    _other(torch_engine, name, cache)  # exported (or already there from the parity tests)
    files = sorted(cache.glob("*.onnx"))
    assert [f.name for f in files] == [f"ilcs-{torch_engine.card.weights_sha256[:16]}-opset18.onnx"]

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    assert _other(torch_engine, name, cache).backend == name


@needs_onnx
def test_a_backend_that_disagrees_with_torch_is_refused(torch_engine, cache, monkeypatch):
    monkeypatch.setattr(backends, "onnx_disagreement", lambda *args, **kwargs: 0.5)
    with pytest.raises(BackendUnavailable, match="disagrees with torch by 5.00e-01"):
        _other(torch_engine, ONNX_BACKENDS[0], cache)


def test_onnxruntime_on_cuda_asks_for_the_cuda_provider(monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    providers = backends.ort_providers(torch.device("cuda", 1))
    assert providers[0][0] == "CUDAExecutionProvider" and providers[0][1]["device_id"] == 1
    assert providers[-1] == "CPUExecutionProvider"
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        backends.ort_providers(torch.device("cuda", 0))


@needs_onnx
def test_auto_measures_every_backend_and_serves_the_fastest(live, cache, caplog, png):
    with caplog.at_level(logging.INFO, logger="service"):
        with live(backend="auto", onnx_cache=cache, calibration_seconds=0.02, max_batch_size=4) as svc:
            serving = svc.get("/model").json()["serving"]
            rows = serving["calibration"]
            measured = {r["backend"] for r in rows}
            assert measured == set(available_backends(torch.device("cpu")))
            assert {r["batch_size"] for r in rows} == {1, 4}  # without ILCS_CALIBRATE: the extremes
            best = max(rows, key=lambda r: r["images_per_s"])
            assert serving["backend"] == best["backend"] == svc.runtime.engine.backend
            assert serving["max_batch_size"] == 4
            assert svc.classify(png).status_code == 200
    assert f"serving with {best['backend']}" in caplog.text
    assert "| backend | batch size | images/s | ms per batch |" in caplog.text


def test_a_named_backend_serves_without_measuring(live):
    with live(backend="torch") as svc:
        serving = svc.get("/model").json()["serving"]
    assert serving["backend"] == "torch" and serving["calibration"] is None
