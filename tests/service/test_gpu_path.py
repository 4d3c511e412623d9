"""The GPU path, as far as a CPU can check it: CUDA mocked, errors injected, fp16 compared with fp32.

fp16 tolerance: top-1 identical and softmax probabilities within ``FP16_PROB_ATOL`` of fp32 on the
same images (autocast keeps BatchNorm's statistics and the softmax in fp32).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from model_zoo import device as device_module
from model_zoo.device import resolve_device
from service.backends import TorchRunner
from service.inference import DeviceFailed, Engine, plan_workers

FP16_PROB_ATOL = 2e-2


@pytest.fixture
def engine(tiny_checkpoint):
    return Engine.load(tiny_checkpoint, "cpu", threads=1, workers=1, graph=False, backend="torch")


def _inputs(engine: Engine, n: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(n)
    return [engine.prepare(rng.integers(0, 256, (64, 64), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_cuda_n_must_name_a_gpu_that_is_there(two_gpus):
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"has 2 CUDA GPU\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")


def test_no_gpu_names_the_torch_build_and_what_to_check(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(ValueError, match=r"torch .* \(CUDA 13\.0\).*NVIDIA driver 580 or newer"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    with pytest.raises(ValueError, match=r"\(CUDA 12\.6\).*NVIDIA driver 525\.60\.13 or newer \(CUDA 12\.x\)"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(ValueError, match="a CPU-only build.*install the CUDA build"):
        resolve_device("cuda:0")
    assert device_module.resolve_device("auto") == torch.device("cpu")


def test_on_a_gpu_two_workers_with_torchs_threads(two_gpus):
    assert plan_workers(torch.device("cuda", 0), None, None) == (2, torch.get_num_threads())
    assert plan_workers(torch.device("cuda", 0), 2, 3) == (2, 3)


def test_fp16_autocast_keeps_top1_and_probabilities_close_to_fp32(engine):
    fp16 = Engine(engine.model, engine.card, engine.device, backend="torch")
    fp16.runner = TorchRunner(engine.model, engine.device, dtype=torch.float16)
    if not _cpu_autocast_fp16_works(fp16):
        pytest.skip("this torch has no fp16 autocast on the CPU")
    inputs = _inputs(engine, 6)
    for ref, half in zip(engine.predict(inputs), fp16.predict(inputs), strict=True):
        assert half.scores.argmax() == ref.scores.argmax()
        np.testing.assert_allclose(half.scores, ref.scores, atol=FP16_PROB_ATOL)
    # The weights stay fp32 (BatchNorm statistics among them): autocast casts per operation, nothing is folded away.
    assert all(p.dtype == torch.float32 for p in fp16.runner.model.parameters())


def _cpu_autocast_fp16_works(engine: Engine) -> bool:
    try:
        engine.predict(engine.example_input(1))
    except RuntimeError:
        return False
    return True


def test_out_of_memory_runs_the_batch_again_in_halves(engine, caplog):
    expected = [p.scores for p in engine.predict(_inputs(engine, 7))]
    real, sizes = engine.runner, []

    def small_gpu(x: torch.Tensor):
        sizes.append(len(x))
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(x)

    engine.runner = small_gpu
    with caplog.at_level(logging.WARNING, logger="service"):
        got = [p.scores for p in engine.predict(_inputs(engine, 7))]
    np.testing.assert_allclose(np.stack(got), np.stack(expected), atol=1e-6)
    assert sizes == [7, 3, 1, 2, 4, 2, 2]
    assert "running it in two halves" in caplog.text
    assert engine.broken is None


def test_out_of_memory_on_one_image_is_the_batchs_error(engine):
    def no_memory(x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    engine.runner = no_memory
    with pytest.raises(torch.cuda.OutOfMemoryError):
        engine.predict(_inputs(engine, 1))
    assert engine.broken is None  # memory comes back; the next batch may fit


def test_a_sticky_cuda_error_breaks_the_engine_for_good(engine):
    calls = []

    def lost_context(x):
        calls.append(len(x))
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    engine.runner = lost_context
    with pytest.raises(RuntimeError, match="illegal memory access"):
        engine.predict(_inputs(engine, 2))
    with pytest.raises(DeviceFailed, match="must be restarted"):
        engine.predict(_inputs(engine, 2))
    assert calls == [2]  # the broken device is not called again


def test_a_sticky_cuda_error_turns_the_service_unready(live, png):
    with live() as svc:

        def lost_context(x):
            raise RuntimeError("CUDA error: unspecified launch failure")

        svc.runtime.engine.runner = lost_context
        first = svc.classify(png)
        assert first.status_code == 500
        ready = svc.get("/readyz")
        assert ready.status_code == 503 and "unspecified launch failure" in ready.json()["detail"]
        assert svc.classify(png).status_code == 503
