"""The GPU's feed and the served model, as far as a CPU can check them (CUDA mocked where a CPU cannot run it).

- the model is traced and frozen under the same autocast as it runs eagerly, and computes what the eager model does;
- a GPU is sent one uint8 channel per image from pinned memory, and normalises it with the one preprocessing's
  arithmetic (run here on the CPU: equal to the CPU preprocessing within 1e-6);
- each model worker queues its GPU work on a CUDA stream of its own;
- on a GPU, decoding and heatmap encoding run in codec threads, not in the model thread that feeds the GPU;
- a warm-up that fails makes ``ilcs serve`` exit non-zero with the reason, for an orchestrator to restart it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
import torch

from model_zoo.device import to_device
from model_zoo.preprocess import Preprocess
from model_zoo.served import serve_model
from service.device_feed import DeviceFeed, WorkerStreams
from service.inference import Engine
from service.metrics import Metrics
from service.pipeline import BatchProcessor, Job, Upload, inspect_upload
from tests.service.test_pipeline import LIMITS

CUDA = torch.device("cuda", 0)


@pytest.fixture
def engine(tiny_checkpoint):
    return Engine.load(tiny_checkpoint, "cpu", threads=1, workers=1, graph=False, backend="torch")


def _grays(n: int, shape: tuple[int, int] = (80, 96), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


# ---- the served model ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "autocast"])
def test_the_frozen_graph_computes_what_the_eager_model_does(engine, dtype):
    """Traced under the autocast it runs in (bf16 stands in on the CPU for the GPU's fp16)."""
    card, x = engine.card, torch.cat([engine.prepare(g) for g in _grays(3)])
    shape = (card.in_chans, card.input_size, card.input_size)
    frozen = serve_model(engine.model, engine.device, freeze_shape=shape, dtype=dtype)
    eager = serve_model(engine.model, engine.device, dtype=dtype)
    assert frozen.graph is not None and eager.graph is None
    with torch.inference_mode():
        (fl, fa), (el, ea) = frozen(x), eager(x)
    assert fl.dtype == el.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(fl.float(), el.float(), atol=tol, rtol=0)
    torch.testing.assert_close(fa.float(), ea.float(), atol=tol, rtol=0)
    # The graph holds no BatchNorm (folded into the convolutions) and, under autocast, reduced-precision weights.
    graph = str(frozen.graph.graph)
    assert "batch_norm" not in graph
    assert dtype == torch.float32 or "BFloat16" in graph


# ---- one uint8 channel to the GPU, normalised there ---------------------------------------


def test_normalising_on_the_device_is_the_one_preprocessing(engine):
    """The GPU-side function, run on the CPU, gives the CPU preprocessing's output (also resizing, in any order)."""
    pre = engine.preprocess
    feed = DeviceFeed(pre, torch.device("cpu"), on_device=True)
    images = _grays(3, (80, 96)) + _grays(2, (64, 64), seed=1) + _grays(1, (130, 70), seed=2)
    images = [images[i] for i in (0, 3, 1, 5, 2, 4)]  # sizes interleaved
    sent = [feed.prepare(g) for g in images]
    assert all(s.dtype == torch.uint8 and s.shape == (1, 1, *g.shape) for s, g in zip(sent, images, strict=True))
    client = pre(_grays(1, seed=3)[0])  # a client-prepared float input (Open Inference Protocol FP32) goes as it is
    got = feed.batch([*sent, client])
    want = torch.cat([*(pre(g) for g in images), client])
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        Preprocess().normalise(Preprocess().gray_batch(images[0])).numpy(), Preprocess()(images[0]).numpy(), atol=1e-6
    )


def test_uint8_goes_only_to_a_gpu_and_only_with_torch(engine):
    assert engine.feed.on_device is False and engine.prepare(_grays(1)[0]).dtype == torch.float32
    pre = engine.preprocess
    assert DeviceFeed.for_backend(pre, CUDA, "torch").prepare(_grays(1)[0]).dtype == torch.uint8
    assert DeviceFeed.for_backend(pre, CUDA, "onnxruntime").on_device is False  # ONNX Runtime takes host floats
    assert DeviceFeed.for_backend(pre, torch.device("cpu"), "torch").on_device is False


def test_a_copy_to_the_gpu_is_pinned_and_does_not_wait():
    host = mock.MagicMock(name="uint8 batch")
    host.is_pinned.return_value = False
    to_device(host, CUDA)
    host.pin_memory.assert_called_once_with()
    host.pin_memory.return_value.to.assert_called_once_with(CUDA, non_blocking=True)
    already = mock.MagicMock(name="pinned batch")
    already.is_pinned.return_value = True
    to_device(already, CUDA)
    already.pin_memory.assert_not_called()
    already.to.assert_called_once_with(CUDA, non_blocking=True)
    cpu = torch.ones(2)
    assert to_device(cpu, torch.device("cpu")) is cpu


# ---- a CUDA stream per model worker --------------------------------------------------------


class FakeStreams:
    """Stands in for ``torch.cuda.Stream`` and ``torch.cuda.stream``: records which stream each thread runs on."""

    def __init__(self) -> None:
        self.made: list[object] = []
        self.local = threading.local()

    def new(self, device=None) -> object:
        stream = object()
        self.made.append(stream)
        return stream

    @contextmanager
    def use(self, stream):
        self.local.current = stream
        try:
            yield
        finally:
            self.local.current = None


@pytest.fixture
def fake_cuda_streams(monkeypatch) -> FakeStreams:
    fake = FakeStreams()
    monkeypatch.setattr(torch.cuda, "Stream", fake.new)
    monkeypatch.setattr(torch.cuda, "stream", fake.use)
    return fake


def test_each_model_worker_runs_on_its_own_cuda_stream(engine, fake_cuda_streams):
    engine.streams = WorkerStreams(CUDA)  # the data stays on the CPU; the streams are what is checked
    real, seen = engine.runner, []

    def runner(x):
        seen.append((threading.get_ident(), getattr(fake_cuda_streams.local, "current", None)))
        return real(x)

    engine.runner = runner
    both_in = threading.Barrier(2)

    def worker(_):
        both_in.wait(timeout=60)  # two distinct threads, as the batcher's two model workers
        for _ in range(2):
            engine.predict(engine.example_input(2))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(worker, range(2)))
    assert len(fake_cuda_streams.made) == 2  # one per worker, made once and kept
    by_thread = {}
    for thread, stream in seen:
        assert stream is not None, "a forward ran outside its worker's stream"
        by_thread.setdefault(thread, set()).add(id(stream))
    assert len(by_thread) == 2 and all(len(s) == 1 for s in by_thread.values())
    assert {next(iter(s)) for s in by_thread.values()} == {id(s) for s in fake_cuda_streams.made}


def test_the_cpu_has_no_streams(engine, fake_cuda_streams):
    engine.predict(engine.example_input(1))
    assert engine.streams.current() is None and fake_cuda_streams.made == []


def test_on_a_gpu_two_workers_by_default():
    from service.inference import plan_workers

    assert plan_workers(CUDA, None, 1) == (2, 1)


# ---- decoding and encoding off the thread that feeds the GPU ---------------------------------


def test_codec_threads_decode_and_encode_and_the_model_thread_only_predicts(engine, png, monkeypatch):
    import service.pipeline as pipeline

    threads: dict[str, set[str]] = {"decode": set(), "encode": set(), "predict": set()}

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            threads[name].add(threading.current_thread().name)
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(pipeline, "decode", spy("decode", pipeline.decode))
    monkeypatch.setattr(pipeline, "render_heatmap", spy("encode", pipeline.render_heatmap))
    engine.predict = spy("predict", engine.predict)
    with ThreadPoolExecutor(2, thread_name_prefix="codec") as codec:
        processor = BatchProcessor(engine, Metrics(), codec=codec)
        jobs = [Job(Upload(png), inspect_upload(Upload(png), LIMITS), "gray") for _ in range(4)]
        with ThreadPoolExecutor(1, thread_name_prefix="model") as model_thread:
            answers = model_thread.submit(processor, [*jobs, Job(Upload(b"junk"), jobs[0].header, "gray")]).result()
    assert threads["predict"] == {"model_0"}
    assert threads["decode"] and all(t.startswith("codec") for t in threads["decode"] | threads["encode"])
    assert threads["encode"]
    *good, bad = answers
    assert all(a.heatmap is not None for a in good) and isinstance(bad, Exception)  # each image still alone
    alone = BatchProcessor(engine, Metrics())  # the CPU: everything in the model thread, the same answers
    assert alone.codec is None
    for a, b in zip(good, alone(jobs), strict=True):
        np.testing.assert_array_equal(a.prediction.scores, b.prediction.scores)
        assert a.heatmap == b.heatmap


# ---- a warm-up that fails ends the process ------------------------------------------------------


FAILING_ENGINE = """
import sys
from service.inference import Engine

def broken_gpu(self, max_batch_size):
    raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

Engine.warmup = broken_gpu
from ilcs_cli import main
sys.exit(main(["serve", "--host", "127.0.0.1", "--port", "0"]))
"""


def test_a_failing_warm_up_makes_serve_exit_non_zero_with_the_reason(tiny_checkpoint):
    from service.run import STARTUP_FAILURE

    env = {k: v for k, v in os.environ.items() if not k.startswith("ILCS_")}
    env.update(ILCS_CHECKPOINT=str(tiny_checkpoint), ILCS_DEVICE="cpu", ILCS_BACKEND="torch", ILCS_LOG_FORMAT="text")
    result = subprocess.run(
        [sys.executable, "-c", FAILING_ENGINE], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == STARTUP_FAILURE != 0, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert f"exiting with status {STARTUP_FAILURE}: start-up failed: CUDA error: no kernel image" in last
